#!/usr/bin/env bash
# Installs the pinned test-only Sparkplug decoder (package-lock.json beside this script) into DEST
# (an ignored build folder) with `npm ci`; a no-op when that exact lock is already installed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest=${1:?usage: install.sh DEST}
mkdir -p "$dest"
if [ -f "$dest/.installed-lock" ] && cmp -s "$here/package-lock.json" "$dest/.installed-lock" \
   && [ -d "$dest/node_modules/sparkplug-payload" ]; then
  cp "$here/decode.js" "$dest/decode.js"
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "install.sh: npm not found (scripts/bootstrap.sh installs it)" >&2; exit 1; }
cp "$here/package.json" "$here/package-lock.json" "$here/decode.js" "$dest/"
(cd "$dest" && npm ci --silent --no-audit --no-fund --ignore-scripts)
cp "$here/package-lock.json" "$dest/.installed-lock"
echo "install.sh: sparkplug-payload installed in $dest"
