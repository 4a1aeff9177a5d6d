#!/usr/bin/python3
"""Runs every command block of README.md and docs/*.md as written, so the docs cannot drift.

Rules (also in docs/README.md, for whoever writes docs):

* A fenced block tagged ```sh, ```bash or ```shell is a script: it runs with
  `bash -e -o pipefail` and must exit 0. A ```console block runs its `$ ` lines (the other lines
  are sample output and are not compared).
* Each file runs in a fresh temporary directory, its blocks in order, each in its own bash (files
  persist from block to block, shell variables do not): a block is self-contained or builds on
  earlier blocks of the same file. The directory looks like a checkout: `build` links to the
  build tree under test, the repository's top-level entries (examples/, scripts/, deploy/, ...)
  are linked too, and the build tree is on PATH, so `build/tend ...` and `tend ...` both work.
* A block that cannot run in a test carries a visible marker on the line right above its fence:
  `<!-- doc-test: skip (the reason) -->`. The reason is required; skipped blocks are counted and
  listed in the summary. Keep them few.
* A fence without a language that contains a command (a line starting with `tend `,
  `build/tend `, `make ` or `$ `) is an error: tag it ```sh to run it, or ```text if it is a
  synopsis with placeholders (```text blocks never run).
* Each block gets --timeout seconds (default 300); everything it started (its whole process
  group) is killed when it ends.

Usage: run_doc_blocks.py --source CHECKOUT --build BUILD_DIR [FILE.md ...]
"""
import argparse
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

RUN_LANGS = {"sh", "bash", "shell", "console"}
SKIP_RE = re.compile(r"^<!--\s*doc-test:\s*skip\s*\((.+)\)\s*-->\s*$")
MARKER_RE = re.compile(r"^<!--\s*doc-test:")
COMMAND_RE = re.compile(r"^\s*(\$ |tend |build/tend |make )")


class Block:
    def __init__(self, path, line, lang, body, skip):
        self.path, self.line, self.lang, self.body, self.skip = path, line, lang, body, skip

    def where(self):
        return f"{self.path}:{self.line}"

    def script(self):
        if self.lang != "console":
            return "\n".join(self.body) + "\n"
        # `$ cmd` lines, with `> ` continuation lines, are the commands; the rest is output.
        out = []
        for l in self.body:
            if l.startswith("$ "):
                out.append(l[2:])
            elif l.startswith("> ") and out:
                out.append(l[2:])
        return "\n".join(out) + "\n"


def parse(path, rel):
    """Fenced blocks of one markdown file, with markers; errors for unmarked command fences."""
    lines = open(path, encoding="utf-8").read().split("\n")
    blocks, errors = [], []
    i = 0
    while i < len(lines):
        m = re.match(r"^(```+|~~~+)\s*([A-Za-z0-9_+-]*)", lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(1), m.group(2).lower()
        j = i + 1
        while j < len(lines) and not lines[j].startswith(fence):
            j += 1
        if j == len(lines):
            errors.append(f"{rel}:{i + 1}: unterminated code fence")
            break
        body = lines[i + 1:j]
        prev = lines[i - 1].strip() if i > 0 else ""
        skip = None
        if MARKER_RE.match(prev):
            s = SKIP_RE.match(prev)
            if not s or not s.group(1).strip():
                errors.append(f"{rel}:{i}: doc-test marker must read "
                              "'<!-- doc-test: skip (reason) -->'")
            else:
                skip = s.group(1).strip()
        if lang in RUN_LANGS:
            blocks.append(Block(rel, i + 1, lang, body, skip))
        elif lang == "" and any(COMMAND_RE.match(l) for l in body):
            errors.append(f"{rel}:{i + 1}: a command block without a language: tag it ```sh "
                          "(it runs) or ```text (a synopsis that never runs)")
        elif skip is not None:
            errors.append(f"{rel}:{i}: a skip marker on a block that never runs ({lang or 'untagged'})")
        i = j + 1
    return blocks, errors


def make_workdir(source, build):
    d = tempfile.mkdtemp(prefix="tend-doc-")
    os.symlink(os.path.abspath(build), os.path.join(d, "build"))
    for name in os.listdir(source):
        if name.startswith(".") or name in ("build", "build-asan"):
            continue
        os.symlink(os.path.join(os.path.abspath(source), name), os.path.join(d, name))
    return d


def run_block(block, cwd, env, timeout):
    start = time.monotonic()
    p = subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", block.script()], cwd=cwd,
                         env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        rc = f"timeout after {timeout} s"
    try:  # whatever the block left running in the background
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return rc, out.decode("utf-8", "replace"), time.monotonic() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("files", nargs="*", help="markdown files (default README.md docs/*.md)")
    a = ap.parse_args()
    source = os.path.abspath(a.source)
    if not os.access(os.path.join(a.build, "tend"), os.X_OK):
        print(f"run_doc_blocks: {a.build}/tend is not built", file=sys.stderr)
        return 1
    files = a.files or (["README.md"] + sorted(
        os.path.relpath(p, source) for p in glob.glob(os.path.join(source, "docs", "*.md"))))
    env = dict(os.environ)
    env["PATH"] = os.path.abspath(a.build) + os.pathsep + env.get("PATH", "")
    ran, skipped, failed, errors = 0, [], [], []
    for rel in files:
        blocks, errs = parse(os.path.join(source, rel), rel)
        errors += errs
        workdir = make_workdir(source, a.build)
        try:
            for b in blocks:
                if b.skip is not None:
                    skipped.append(f"{b.where()} ({b.skip})")
                    print(f"SKIP {b.where()}: {b.skip}", flush=True)
                    continue
                rc, out, secs = run_block(b, workdir, env, a.timeout)
                ran += 1
                if rc == 0:
                    print(f"PASS {b.where()} ({secs:.1f} s)", flush=True)
                    continue
                failed.append(b.where())
                print(f"FAIL {b.where()}: exit {rc} after {secs:.1f} s\n--- block ---\n"
                      f"{b.script()}--- output (last 60 lines) ---", flush=True)
                print("\n".join(out.rstrip().split("\n")[-60:]), flush=True)
                break  # later blocks of this file build on this one
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    for e in errors:
        print(f"ERROR {e}")
    print(f"\ndoc blocks: {ran} run, {len(failed)} failed, {len(skipped)} skipped, "
          f"{len(errors)} malformed")
    for s in skipped:
        print(f"  skipped {s}")
    return 1 if failed or errors else 0


if __name__ == "__main__":
    sys.exit(main())
