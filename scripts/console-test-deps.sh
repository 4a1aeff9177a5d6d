#!/usr/bin/env bash
# Installs the fleet console browser test's npm packages (puppeteer-core, pinned with integrity
# hashes by tests/console/package-lock.json) into an ignored folder, by default build/console-node.
# A fast no-op once done. Chromium itself comes from Debian (scripts/bootstrap.sh).
#
#   scripts/console-test-deps.sh [DEST]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$here/build/console-node}
lock="$here/tests/console/package-lock.json"
if [ -f "$dest/.installed" ] && cmp -s "$dest/.installed" "$lock" && [ -d "$dest/node_modules/puppeteer-core" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "console-test-deps: npm not found (scripts/bootstrap.sh installs it)" >&2; exit 1; }
mkdir -p "$dest"
cp "$here/tests/console/package.json" "$lock" "$dest/"
(cd "$dest" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >"$dest/npm.log" 2>&1) \
  || { echo "console-test-deps: npm ci failed, see $dest/npm.log" >&2; tail -5 "$dest/npm.log" >&2; exit 1; }
cp "$lock" "$dest/.installed"
