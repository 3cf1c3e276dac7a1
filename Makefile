# Thin wrapper over CMake presets (CMakePresets.json); every real setting lives there.
#   make            release build           make test     format check + tsan, asan-ubsan, release
#   make debug      debug build             make demo     release build, then `crew demo`
#   make tsan       TSan build              make bench    release build, then crew_bench
#   make asan-ubsan ASan+UBSan build        make format / check-format / deps / clean

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

JOBS ?= $(shell nproc)
BENCH_ARGS ?=
# Test stages in the order `make test` runs them: the cheapest way to find a race first.
TEST_PRESETS := tsan asan-ubsan release
BUILD_PRESETS := release debug asan-ubsan tsan

# True when make runs with -n: then only show commands, and print no (stale) summaries.
DRY_RUN := $(findstring n,$(firstword -$(MAKEFLAGS)))

.PHONY: all build deps $(BUILD_PRESETS) test $(addprefix test-,$(TEST_PRESETS)) demo bench \
        format check-format clean

all: build

# `make test` checks once, then tells its sub-makes not to check again.
deps:
	$(if $(CREW_DEPS_CHECKED),@true,scripts/install-deps.sh)

build: release

$(BUILD_PRESETS): deps
	cmake --preset $@
	cmake --build --preset $@ -j$(JOBS)

# Each stage logs ctest's output to build/<preset>/ctest.log, which `test` summarises at the end.
test-release test-asan-ubsan: test-%: %
	ctest --preset $* 2>&1 | tee build/$*/ctest.log

# On some kernels (large mmap_rnd_bits) TSan binaries die with "unexpected memory mapping"; there
# the tests run with ASLR off. A one-line probe decides, so machines that do not need it keep ASLR.
test-tsan: tsan build/tsan-probe
	if build/tsan-probe >/dev/null 2>&1; then wrap=(); \
	else echo "tsan: probe failed; running ctest under setarch -R (ASLR off)"; \
	     wrap=(setarch "$$(uname -m)" -R); fi; \
	"$${wrap[@]}" ctest --preset tsan 2>&1 | tee build/tsan/ctest.log

build/tsan-probe:
	mkdir -p build
	printf '#include <thread>\nint main() { std::thread t([] {}); t.join(); }\n' | \
	  g++ -std=c++20 -fsanitize=thread -x c++ - -o $@

# Stops at the first failing stage; always ends with each stage's ctest summary.
test: deps check-format
	@status=0; ran=(); \
	for p in $(TEST_PRESETS); do \
	  ran+=("$$p"); [[ -n "$(DRY_RUN)" ]] || rm -f "build/$$p/ctest.log"; \
	  if ! $(MAKE) --no-print-directory CREW_DEPS_CHECKED=1 test-$$p; then status=1; break; fi; \
	done; \
	if [[ -z "$(DRY_RUN)" ]]; then \
	  echo; echo "==================== test summary ===================="; \
	  for p in "$${ran[@]}"; do \
	    echo "--- $$p"; \
	    log="build/$$p/ctest.log"; \
	    if [[ ! -s "$$log" ]]; then echo "(no ctest output: configure or build failed)"; \
	    elif grep -q 'tests passed' "$$log"; then sed -n '/tests passed/,$$p' "$$log"; \
	    else tail -n 15 "$$log"; fi; \
	  done; \
	  if [[ $$status -eq 0 ]]; then echo "make test: all stages passed"; \
	  else echo "make test: FAILED at stage $${ran[-1]}"; fi; \
	fi; \
	exit $$status

demo: release
	./build/release/crew demo

bench: release
	./build/release/crew_bench $(BENCH_ARGS)

format:
	scripts/check-format.sh --fix

check-format:
	scripts/check-format.sh

clean:
	rm -rf build
