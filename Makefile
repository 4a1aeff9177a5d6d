# Thin wrapper around CMake so that `make`, `make test`, `make demo` and `make bench` just work.
# Every target first runs scripts/bootstrap.sh, which is a fast no-op once the machine is set up.

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=
CTEST_ARGS ?=

.PHONY: all bootstrap configure build test test-unit test-asan demo bench bench-fleet format clean

all: build

bootstrap:
	@scripts/bootstrap.sh

$(BUILD)/CMakeCache.txt: | bootstrap
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS)

configure: bootstrap $(BUILD)/CMakeCache.txt

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

# The main job on an embedded default: train on a healthy simulated press, run it to die failure.
demo: build
	scripts/demo.sh $(BUILD)/tend

bench: build
	scripts/bench.sh $(BUILD)

# The fleet's scale figures: 1,000 simulated devices at 10x into PostgreSQL through two ingest
# instances, and the console's device-list latency (docs/fleet.md, "Scale"). A few minutes.
bench-fleet: build
	scripts/bench_fleet.sh $(BUILD)

format:
	find src tests bench -name '*.cc' -o -name '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
