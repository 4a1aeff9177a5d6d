# Thin wrapper around CMake so that `make`, `make test`, `make demo` and `make bench` just work.
# Every target first runs scripts/bootstrap.sh, which is a fast no-op once the machine is set up.

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=
CTEST_ARGS ?=

.PHONY: all bootstrap configure build test test-unit test-asan fuzz demo demo-vision backbone-cutpaste bench bench-fleet measure-alarms format clean

all: build

bootstrap:
	@scripts/bootstrap.sh

# A build dir first configured by `make demo` (TEND_BOOTSTRAP=build: no test packages yet) is
# configured again once by the first command that installed them all, so that configure-time probes
# (PyTorch for the test models) see them.
$(BUILD)/CMakeCache.txt: | bootstrap
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS)
	@if [ "$${TEND_BOOTSTRAP:-all}" = build ]; then touch $(BUILD)/.tend-build-packages-only; fi

configure: bootstrap $(BUILD)/CMakeCache.txt
	@if [ "$${TEND_BOOTSTRAP:-all}" = all ] && [ -f $(BUILD)/.tend-build-packages-only ]; then \
	  echo "configure: the test packages are installed now: configuring $(BUILD) again"; \
	  cmake -S . -B $(BUILD) && rm $(BUILD)/.tend-build-packages-only; fi

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# The whole suite: unit and integration tests (the latter start real servers on loopback).
test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

test-unit: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -L unit $(CTEST_ARGS)

# Unit tests under AddressSanitizer + UndefinedBehaviorSanitizer (CI runs this too).
test-asan: bootstrap
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DTEND_SANITIZE=ON -DTEND_BUILD_BENCH=OFF $(CMAKE_ARGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/support/lsan.supp UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS) -L unit $(CTEST_ARGS)

# Every fuzz target of fuzz/ for FUZZ_SECONDS in total (libFuzzer + ASan/UBSan with clang, in
# build-fuzz/; tend's own mutation harness otherwise). Crashes land in <build>/fuzz/artifacts/.
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 600
fuzz: bootstrap
	scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# The main job on an embedded default: train on a healthy simulated press, run it to die failure.
# Builds only the `tend` binary: the tests and benchmarks (most of a fresh build) wait for `make test`.
# The press demo needs no image backbone: a first `make demo` skips building it (bootstrap's
# npm download and conversion); `make test` and `make demo-vision` build it when they need it.
# Likewise it installs only the Debian packages that build tend (TEND_BOOTSTRAP=build): the test
# servers, chromium, PyTorch and clang come with the first `make test`.
demo: export TEND_SKIP_BACKBONE := 1
demo: export TEND_BOOTSTRAP := build
demo: configure
	@echo "make demo: building $(BUILD)/tend only (tests and benchmarks are built by 'make test'); a first build takes a few minutes"
	@start=$$(date +%s); cmake --build $(BUILD) -j $(JOBS) --target tend && \
	  echo "make demo: $(BUILD)/tend built in $$(( $$(date +%s) - start )) s; running scripts/demo.sh"
	scripts/demo.sh $(BUILD)/tend

# Visual inspection on the shared magnetic-tile photographs (docs/vision.md); like `demo`, it
# builds only the `tend` binary.
demo-vision: configure
	cmake --build $(BUILD) -j $(JOBS) --target tend
	scripts/demo_vision.sh $(BUILD)/tend

# A backbone fine-tuned self-supervised (CutPaste) on a line's good images only; then
# `tend train --backbone $(CUTPASTE_OUT)`. Seeded and deterministic; 300 steps took 13 min on the
# shared 2 cores at load 5-7 (docs/vision.md, "Diagnosis, and a backbone fine-tuned ...").
CUTPASTE_GOOD  ?= ../shared/data/magnetic-tiles/MT_Free
CUTPASTE_OUT   ?= third_party/backbones/mobilenet_v2_cutpaste.onnx
CUTPASTE_STEPS ?= 300
backbone-cutpaste: bootstrap
	nice -n 10 /usr/bin/python3 scripts/backbones/cutpaste_finetune.py .cache/npm/nsfwjs-4.4.0.tgz \
	  $(CUTPASTE_GOOD) $(CUTPASTE_OUT) --steps $(CUTPASTE_STEPS)

bench: build
	scripts/bench.sh $(BUILD)

# Alarm quality on the real bearing and valve data next to a numpy reference (about a minute;
# docs/alarms.md): tables and timelines in $(BUILD)/alarms.
measure-alarms: configure
	cmake --build $(BUILD) -j $(JOBS) --target tend
	/usr/bin/python3 scripts/measure_alarms.py --tend $(BUILD)/tend --out $(BUILD)/alarms

# The fleet's scale figures: 1,000 simulated devices at 10x into PostgreSQL through two ingest
# instances, and the console's device-list latency (docs/fleet.md, "Scale"). A few minutes.
bench-fleet: build
	scripts/bench_fleet.sh $(BUILD)

format:
	find src tests bench fuzz -name '*.cc' -o -name '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
