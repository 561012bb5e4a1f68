# Makefile: the thin wrapper a person types. It installs missing Debian packages, configures
# CMake and builds; all real build logic lives in CMakeLists.txt.
#   make            build (build/multigrain)
#   make test       build and run every test, then the sanitizer build of the unit/oracle tests and
#                   the unit/oracle tests of a build without oneDNN (the reference paths)
#   make demo       the main job on the embedded default dataset (Fashion-MNIST)
#   make test-asan  AddressSanitizer + UBSan build of the unit and oracle tests only
#   make test-nodnnl  the unit and oracle tests built with MG_ONEDNN=OFF
#   make bench      end-to-end speed and memory against PyTorch and ONNX Runtime (bench/run.sh, ~4 min)
BUILD ?= build
BUILD_ASAN ?= build-asan
BUILD_NODNNL ?= build-nodnnl
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
CTEST_FLAGS ?=

.PHONY: all deps build test test-fast test-asan test-nodnnl demo bench clean

all: build

deps:
	@scripts/install-deps.sh --build

# Configure when the build folder has no build files yet: checking for the generated Makefile (or
# build.ninja) rather than CMakeCache.txt, so that a configure that was interrupted (the cache is
# written first) is run again instead of leaving a folder that `cmake --build` cannot use.
build: deps
	@test -f $(BUILD)/Makefile -o -f $(BUILD)/build.ninja || \
	  cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

# The test packages go in before configuring: CMake looks for the PyTorch oracle when it configures,
# and a build folder configured before python3-torch was installed (make, make demo) would register
# the oracle tests without their reference generators (they would skip); configuring again is cheap.
test-fast: deps
	@scripts/install-deps.sh --test
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_FLAGS)

test: test-fast test-asan test-nodnnl

test-asan:
	@scripts/install-deps.sh --test
	cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DMG_SANITIZE=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD_ASAN) -j $(JOBS)
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j $(JOBS) -L 'unit|oracle' -LE slow $(CTEST_FLAGS)

# MG_ONEDNN=OFF is a supported configuration (no fused network; reference and OpenBLAS kernels):
# its build and tests once more, so that it keeps building.
test-nodnnl:
	@scripts/install-deps.sh --test
	cmake -S . -B $(BUILD_NODNNL) -DCMAKE_BUILD_TYPE=Release -DMG_ONEDNN=OFF $(CMAKE_FLAGS)
	cmake --build $(BUILD_NODNNL) -j $(JOBS)
	cd $(BUILD_NODNNL) && ctest --output-on-failure -j $(JOBS) -L 'unit|oracle' -LE slow $(CTEST_FLAGS)

demo: build
	@scripts/install-deps.sh --demo
	@scripts/demo.sh $(BUILD)/multigrain $(BUILD)/demo

bench: build
	@scripts/install-deps.sh --bench
	bench/run.sh --build $(BUILD)
	@echo "per-module benchmarks: bench/README.md (bench_ops, bench_layers, run_data.sh, run_search.sh)"

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_NODNNL)
