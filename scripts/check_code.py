#!/usr/bin/env python3
"""Checks that keep the code base honest, run by the test suite (tests/CMakeLists.txt):

  layers           no module includes a header of a module it does not depend on: each
                   src/<module>/CMakeLists.txt declares its DEPS (tend_<module> libraries), and an
                   #include "<other>/..." must name the module itself or one of its (transitive)
                   dependencies, each listed before it in TEND_MODULES (CMakeLists.txt). So dsp
                   cannot include model, agent cannot include telemetry, nothing includes cli or
                   runtime except what sits above them.
  function-length  no function in src/ is longer than 150 lines (docs/architecture.md: aim for
                   60).
  self-test        both checks catch a violation planted in a scratch tree.

Usage: check_code.py layers|function-length|self-test [--root DIR]
"""
import argparse
import os
import re
import shutil
import sys
import tempfile

MAX_FUNCTION_LINES = 150
INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/[^"]+"')
FUNC_START = re.compile(r"^[A-Za-z_][\w:<>,\s\*&~\[\]]*\([^;]*$")


def read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def modules(root):
    text = read(os.path.join(root, "CMakeLists.txt"))
    m = re.search(r"set\(TEND_MODULES ([^)]*)\)", text)
    if not m:
        sys.exit("check_code: no TEND_MODULES in CMakeLists.txt")
    return m.group(1).split()


def declared_deps(root, mod, names):
    """The tend_* libraries a module's CMakeLists.txt names, as module names."""
    path = os.path.join(root, "src", mod, "CMakeLists.txt")
    if not os.path.exists(path):
        return set()
    text = read(path)
    deps = set()
    for lib in re.findall(r"\btend_([a-z_]+)\b", text):
        if lib in names and lib != mod:
            deps.add(lib)
    return deps


def check_layers(root):
    order = modules(root)
    names = set(order)
    direct = {m: declared_deps(root, m, names) for m in order}
    errors = []
    for m in order:
        for d in direct[m]:
            if order.index(d) > order.index(m):
                errors.append(f"src/{m}/CMakeLists.txt: depends on {d}, which TEND_MODULES lists after {m}")
    closure = {}
    for m in order:  # dependencies come first, so their closures are known
        c = set()
        for d in direct[m]:
            c |= {d} | closure.get(d, set())
        closure[m] = c
    for m in order:
        base = os.path.join(root, "src", m)
        for dirpath, _, files in os.walk(base):
            for name in sorted(files):
                if not name.endswith((".h", ".cc")):
                    continue
                path = os.path.join(dirpath, name)
                for n, line in enumerate(read(path).splitlines(), 1):
                    inc = INCLUDE.match(line)
                    if not inc:
                        continue
                    other = inc.group(1)
                    if other in names and other != m and other not in closure[m]:
                        rel = os.path.relpath(path, root)
                        errors.append(f"{rel}:{n}: {m} includes {other}/ (not among its dependencies: "
                                      f"{', '.join(sorted(closure[m])) or 'none'})")
    return errors


def functions(path):
    """(name line, start, length) of every top-level function body: a line at column 0 that opens
    a definition and the next line that is a lone '}' at column 0."""
    lines = read(path).splitlines()
    out = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if FUNC_START.match(line) and not line.startswith(("namespace", "class", "struct", "enum", "#")):
            j = i
            while j < len(lines) and not lines[j].rstrip().endswith("{") and not lines[j].rstrip().endswith(";"):
                j += 1
            if j < len(lines) and lines[j].rstrip().endswith("{"):
                k = j + 1
                while k < len(lines) and lines[k].rstrip() != "}":
                    if lines[k] and not lines[k][0].isspace() and lines[k][0] not in "/#}":
                        break  # a new top-level declaration: not a function body after all
                    k += 1
                if k < len(lines) and lines[k].rstrip() == "}":
                    out.append((line.strip(), i + 1, k - i + 1))
                    i = k
        i += 1
    return out


def check_function_length(root):
    errors = []
    for dirpath, _, files in os.walk(os.path.join(root, "src")):
        for name in sorted(files):
            if not name.endswith(".cc"):
                continue
            path = os.path.join(dirpath, name)
            for sig, start, length in functions(path):
                if length > MAX_FUNCTION_LINES:
                    rel = os.path.relpath(path, root)
                    errors.append(f"{rel}:{start}: {length} lines (at most {MAX_FUNCTION_LINES}): {sig}")
    return errors


def self_test():
    tmp = tempfile.mkdtemp(prefix="tend_check_code_")
    try:
        def write(rel, text):
            p = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w") as f:
                f.write(text)
        write("CMakeLists.txt", "set(TEND_MODULES core dsp model agent telemetry)\n")
        write("src/core/CMakeLists.txt", "tend_add_library(tend_core SOURCES a.cc)\n")
        write("src/dsp/CMakeLists.txt", "tend_add_library(tend_dsp SOURCES a.cc DEPS tend_core)\n")
        write("src/model/CMakeLists.txt", "tend_add_library(tend_model SOURCES a.cc DEPS tend_core)\n")
        write("src/agent/CMakeLists.txt", "tend_add_library(tend_agent SOURCES a.cc DEPS tend_dsp)\n")
        write("src/telemetry/CMakeLists.txt", "tend_add_library(tend_telemetry SOURCES a.cc DEPS tend_core)\n")
        write("src/agent/a.cc", '#include "dsp/x.h"\n#include "core/y.h"\nint f() {\n  return 1;\n}\n')
        if check_layers(tmp):
            return ["self-test: a clean tree was reported"]
        problems = []
        write("src/dsp/b.cc", '#include "model/session.h"\n')
        write("src/agent/c.h", '#include "telemetry/telemetry.h"\n')
        errs = check_layers(tmp)
        if not any("src/dsp/b.cc:1: dsp includes model/" in e for e in errs):
            problems.append("self-test: dsp -> model not caught: %s" % errs)
        if not any("src/agent/c.h:1: agent includes telemetry/" in e for e in errs):
            problems.append("self-test: agent -> telemetry not caught: %s" % errs)
        write("src/core/CMakeLists.txt", "tend_add_library(tend_core SOURCES a.cc DEPS tend_agent)\n")
        if not any("depends on agent, which TEND_MODULES lists after core" in e for e in check_layers(tmp)):
            problems.append("self-test: a dependency on a later module not caught")
        body = "\n".join("  x += %d;" % i for i in range(MAX_FUNCTION_LINES))
        write("src/model/long.cc", "int Long(int x) {\n%s\n  return x;\n}\n\nint Short() {\n  return 0;\n}\n" % body)
        errs = check_function_length(tmp)
        if len(errs) != 1 or "src/model/long.cc:1:" not in errs[0]:
            problems.append("self-test: long function not caught exactly once: %s" % errs)
        return problems
    finally:
        shutil.rmtree(tmp)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("check", choices=["layers", "function-length", "self-test"])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    if args.check == "layers":
        errors = check_layers(root)
    elif args.check == "function-length":
        errors = check_function_length(root)
    else:
        errors = self_test()
    for e in errors:
        print(e)
    if errors:
        print(f"check_code {args.check}: {len(errors)} problem(s)")
        return 1
    print(f"check_code {args.check}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
