#!/usr/bin/env bash
# Issue #16 item 12: what `make demo` (TEND_BOOTSTRAP=build) installs on a fresh Debian 12 next to
# `make test` (all packages). An estimate from the package index, nothing is downloaded: the
# closure lists every alternative of an "a | b" dependency, so both figures are upper bounds.
#
#   scripts/measure_bootstrap_sets.sh
# Dependency closure (Depends+PreDepends, no Recommends: bootstrap uses --no-install-recommends) of
# a package set, minus Priority: required (on every Debian), with download and installed size.
set -euo pipefail
cd "$(dirname "$0")/.."
closure() {
  apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances "$@" 2>/dev/null | grep -v '^ ' | grep -v '^<' | sort -u
}
sizes() {
  xargs apt-cache show --no-all-versions 2>/dev/null | awk '
    /^Package:/{if(p!="" && pr!="required"){n++; dl+=s; inst+=i} p=$2; pr=""; s=0; i=0}
    /^Priority:/{pr=$2} /^Size:/{s=$2} /^Installed-Size:/{i=$2}
    END{if(p!="" && pr!="required"){n++; dl+=s; inst+=i}
        printf "packages=%d download_MB=%d installed_MB=%d\n", n, dl/1e6, inst/1e3}'
}
eval "$(sed -n '/^BUILD_PKGS=(/,/^)/p;/^TEST_PKGS=(/,/^)/p' scripts/bootstrap.sh)"
echo "build set (make demo): $(closure "${BUILD_PKGS[@]}" npm | sizes)"
echo "full set (make test):  $(closure "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}" npm | sizes)"
