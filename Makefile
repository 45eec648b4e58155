# Tandem's entry points. `make run` and `make test` work on a fresh Debian bookworm machine:
# both install what is missing through scripts/install-deps.sh first.
SHELL := /bin/bash
BUILD ?= build
# One clang tree with ASan+UBSan and fuzzer coverage serves `test-asan` and `fuzz`.
CHECK_BUILD ?= build-check
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 10
# The trees `make` configures compile in unity batches: shared headers are compiled once per
# batch, which cuts a clean build's compile time by about a third.
UNITY ?= -DCMAKE_UNITY_BUILD=ON
SOURCES = $(shell git ls-files --cached --others --exclude-standard -- 'src/*.cc' 'src/*.h' 'bench/*.cc' 'bench/*.h' 'tests/*.cc' 'tests/*.h' 2>/dev/null)

.PHONY: all deps build test test-integration check-configure test-asan fuzz format format-check lint bench run clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@test -f $(BUILD)/build.ninja || cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(UNITY)
	cmake --build $(BUILD) -j $(JOBS)

# The integration tests (real processes) in the release build, the unit tests under ASan+UBSan,
# the fuzzers briefly, and the formatting check. Each test is compiled once: the unit tests only
# in the sanitized tree, where they also catch undefined behaviour.
test: deps
	@test -f $(BUILD)/build.ninja || cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(UNITY)
	cmake --build $(BUILD) --target tandem integration_tests -j $(JOBS)
	$(MAKE) --no-print-directory test-integration
	$(MAKE) --no-print-directory check-configure
	cmake --build $(CHECK_BUILD) --target unit_tests fuzzers -j $(JOBS)
	$(MAKE) --no-print-directory test-asan
	$(MAKE) --no-print-directory fuzz
	$(MAKE) --no-print-directory format-check
	@echo "make test: all checks passed"

test-integration:
	ctest --test-dir $(BUILD) -L integration --output-on-failure -j $(JOBS)

check-configure: deps
	@test -f $(CHECK_BUILD)/build.ninja || CC=clang CXX=clang++ cmake -S . -B $(CHECK_BUILD) -G Ninja \
	  -DCMAKE_BUILD_TYPE=Check -DTANDEM_SANITIZE=ON -DTANDEM_FUZZ=ON -DTANDEM_BUILD_BENCH=OFF $(UNITY)

# The unit tests under AddressSanitizer and UndefinedBehaviorSanitizer (clang).
test-asan: check-configure
	cmake --build $(CHECK_BUILD) --target unit_tests -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir $(CHECK_BUILD) -L unit --output-on-failure -j $(JOBS)

# Every libFuzzer target, each run for FUZZ_SECONDS from its seed corpus.
fuzz: check-configure
	cmake --build $(CHECK_BUILD) --target fuzzers -j $(JOBS)
	scripts/run-fuzzers.sh $(CHECK_BUILD) $(FUZZ_SECONDS)

format:
	clang-format -i $(SOURCES)

format-check:
	clang-format --dry-run --Werror $(SOURCES)

lint: build
	clang-tidy -p $(BUILD) --quiet $(filter %.cc,$(filter src/%,$(SOURCES)))

bench: deps
	scripts/install-deps.sh --bench
	@test -f $(BUILD)/build.ninja || cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(UNITY)
	cmake --build $(BUILD) -j $(JOBS)
	bench/run-all.sh $(BUILD)

run: build
	scripts/run-demo.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(CHECK_BUILD) build-*
