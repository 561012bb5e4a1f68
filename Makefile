# Makefile: the thin wrapper a person types. It installs missing Debian packages, configures
# CMake and builds; all real build logic lives in CMakeLists.txt.
#   make            build (build/multigrain)
#   make test       build and run every test, then the sanitizer build of the unit/oracle tests
#   make demo       the main job on the embedded default dataset (Fashion-MNIST)
#   make test-asan  AddressSanitizer + UBSan build of the unit and oracle tests only
#   make bench      end-to-end speed and memory against PyTorch and ONNX Runtime (bench/run.sh, ~4 min)
BUILD ?= build
BUILD_ASAN ?= build-asan
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
CTEST_FLAGS ?=

.PHONY: all deps build test test-fast test-asan demo bench clean

all: build

deps:
	@scripts/install-deps.sh --build

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test-fast: build
	@scripts/install-deps.sh --test
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_FLAGS)

test: test-fast test-asan

test-asan:
	@scripts/install-deps.sh --test
	cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DMG_SANITIZE=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD_ASAN) -j $(JOBS)
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j $(JOBS) -L 'unit|oracle' -LE slow $(CTEST_FLAGS)

demo: build
	@scripts/install-deps.sh --demo
	@scripts/demo.sh $(BUILD)/multigrain $(BUILD)/demo

bench: build
	@scripts/install-deps.sh --bench
	bench/run.sh --build $(BUILD)
	@echo "per-module benchmarks: bench/README.md (bench_ops, bench_layers, run_data.sh, run_search.sh)"

clean:
	rm -rf $(BUILD) $(BUILD_ASAN)
