# Tandem's entry points. `make run` and `make test` work on a fresh Debian bookworm machine:
# both install what is missing through scripts/install-deps.sh first.
SHELL := /bin/bash
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 15
SOURCES = $(shell git ls-files --cached --others --exclude-standard -- 'src/*.cc' 'src/*.h' 'bench/*.cc' 'bench/*.h' 'tests/*.cc' 'tests/*.h' 2>/dev/null)

.PHONY: all deps build test test-release test-asan fuzz format format-check lint bench run clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@test -f $(BUILD)/build.ninja || cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j $(JOBS)

# All tests in the release build, unit tests again under ASan+UBSan, the fuzzers briefly, and
# the formatting check.
test: build
	$(MAKE) --no-print-directory test-release
	$(MAKE) --no-print-directory test-asan
	$(MAKE) --no-print-directory fuzz
	$(MAKE) --no-print-directory format-check
	@echo "make test: all checks passed"

test-release:
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

test-asan: deps
	@test -f $(ASAN_BUILD)/build.ninja || cmake -S . -B $(ASAN_BUILD) -G Ninja \
	  -DCMAKE_BUILD_TYPE=Debug -DTANDEM_SANITIZE=ON -DTANDEM_BUILD_BENCH=OFF
	cmake --build $(ASAN_BUILD) --target unit_tests -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir $(ASAN_BUILD) -L unit --output-on-failure -j $(JOBS)

# Builds every libFuzzer target with clang and runs each for FUZZ_SECONDS from its seed corpus.
fuzz: deps
	@test -f $(FUZZ_BUILD)/build.ninja || CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -G Ninja \
	  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTANDEM_FUZZ=ON -DTANDEM_BUILD_BENCH=OFF
	cmake --build $(FUZZ_BUILD) --target fuzzers -j $(JOBS)
	scripts/run-fuzzers.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

format:
	clang-format -i $(SOURCES)

format-check:
	clang-format --dry-run --Werror $(SOURCES)

lint: build
	clang-tidy -p $(BUILD) --quiet $(filter %.cc,$(filter src/%,$(SOURCES)))

bench: deps
	scripts/install-deps.sh --bench
	@test -f $(BUILD)/build.ninja || cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j $(JOBS)
	bench/run-all.sh $(BUILD)

run: build
	scripts/run-demo.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) build-*
