#!/usr/bin/env bash
# `make fuzz`: every fuzz target of fuzz/ for a share of TOTAL seconds (default 600), with
# libFuzzer + AddressSanitizer + UndefinedBehaviorSanitizer when Debian's clang and libFuzzer are
# installed (a separate build in BUILD, default build-fuzz), else with tend's own mutation harness
# from the normal build (build/). Prints the inputs run per target and exits non-zero when any
# target crashed, hung or broke a property; the input is then in BUILD/fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [BUILD] [TOTAL_SECONDS] [TARGET...]
#
# FUZZ_ENGINE=harness forces the mutation harness even where clang is installed (a machine too
# busy for the sanitizer build; the harness build is the normal one, without sanitizers).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
build=${1:-build-fuzz}
total=${2:-600}
shift $(( $# > 2 ? 2 : $# )) || true
jobs=${JOBS:-$(nproc)}

have_libfuzzer() {
  command -v clang++ >/dev/null 2>&1 || return 1
  local t
  t=$(mktemp -d)
  echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' \
    >"$t/f.cc"
  clang++ -fsanitize=fuzzer,address "$t/f.cc" -o "$t/f" >/dev/null 2>&1
  local ok=$?
  rm -rf "$t"
  return $ok
}

launcher=()
command -v ccache >/dev/null 2>&1 &&
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
if [ "${FUZZ_ENGINE:-}" != harness ] && have_libfuzzer; then
  engine=libfuzzer
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
    -DCMAKE_CXX_COMPILER=clang++ -DTEND_FUZZ_ENGINE=libfuzzer -DTEND_SANITIZE=ON \
    -DTEND_WERROR=OFF -DTEND_BUILD_BENCH=OFF -DTEND_BUILD_TESTS=OFF "${launcher[@]}" >/dev/null
else
  [ "${FUZZ_ENGINE:-}" = harness ] && echo "fuzz: FUZZ_ENGINE=harness: tend's mutation harness from build/" \
    || echo "fuzz: clang with libFuzzer not found; using tend's mutation harness from build/"
  engine=harness
  build=build
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" -j "$jobs" --target tend_fuzz_targets

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in fuzz/targets/fuzz_*.cc; do targets+=("$(basename "$f" .cc)"); done
fi
share=$(( total / ${#targets[@]} ))
[ "$share" -ge 1 ] || share=1
summary="$build/fuzz/summary.txt"
mkdir -p "$build/fuzz"
: >"$summary"
failed=0
for t in "${targets[@]}"; do
  bin="$build/fuzz/$t"
  [ -x "$bin" ] || { echo "fuzz: $t was not built" | tee -a "$summary"; failed=1; continue; }
  work="$build/fuzz/work/$t"
  art="$build/fuzz/artifacts/$t/"
  mkdir -p "$work" "$art"
  args=(-max_total_time="$share" -timeout=20 -artifact_prefix="$art" -print_final_stats=1)
  [ -f "fuzz/dict/$t.dict" ] && args+=(-dict="fuzz/dict/$t.dict")
  [ "$engine" = libfuzzer ] && args+=(-rss_limit_mb=4096)
  log="$build/fuzz/$t.log"
  echo "fuzz: $t for ${share}s ($engine)"
  set +e
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} "$bin" "${args[@]}" "$work" "fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | tail -1 | grep -Eo '[0-9]+' || echo "?")
  if [ $rc -ne 0 ]; then
    failed=1
    echo "$t: FAILED (exit $rc) after ${runs} runs; see $log and $art" | tee -a "$summary"
    tail -30 "$log"
  else
    echo "$t: $runs inputs in ${share}s, no crash" | tee -a "$summary"
  fi
done
echo "fuzz: summary in $summary"
exit $failed
