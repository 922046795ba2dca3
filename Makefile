# wan.c — plain Makefile. `make` builds build/libwan.a and build/wan; `make test` runs every test;
# `make SANITIZE=address,undefined test` does the same under the sanitizers (in build-san/).
CC ?= gcc
SANITIZE ?=
BUILD ?= build
OPT ?= -O2

ifneq ($(SANITIZE),)
BUILD := build-san
SANFLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
endif

CFLAGS := -std=c11 $(OPT) -g -Wall -Wextra -fopenmp -fPIC -Iinclude -Isrc $(SANFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := -fopenmp $(SANFLAGS)
PKGS := libcjson libmicrohttpd zlib libavformat libavcodec libswscale libavutil
LDLIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lcjson -lmicrohttpd -lz -lavformat -lavcodec -lswscale -lavutil) -lopenblas -lm -lpthread

AVX2_FLAGS := -mavx2 -mfma -mf16c
AVX512_FLAGS := -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512bf16
AMX_FLAGS := $(AVX512_FLAGS) -mamx-tile -mamx-bf16

LIB_SRC := $(sort $(wildcard src/*.c src/cpu/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_SRC := $(sort $(wildcard tools/cli/*.c tools/server/*.c))
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(sort $(wildcard tests/*.c))
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)

# CUDA backend (docs/CUDA.md): `make cuda` builds build-cuda/ with src/cuda/*.cu (nvcc: sm_80 and sm_90a code, PTX
# for newer GPUs) in place of src/cuda_stub.c, linked with cuBLASLt/cuBLAS/cudart. Without WAN_CUDA=1 (the default
# build) nothing here applies and nvcc is never run.
NVCC ?= nvcc
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(shell command -v $(NVCC) 2>/dev/null))
CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90a,code=sm_90a \
             -gencode arch=compute_90,code=compute_90
NVCCFLAGS := -std=c++17 -O2 -g $(CUDA_ARCH) -Xcompiler -Wall,-Wextra,-fPIC -Iinclude -Isrc $(EXTRA_NVCCFLAGS)
CUDA_OBJ :=
ifeq ($(WAN_CUDA),1)
CUDA_SRC := $(sort $(wildcard src/cuda/*.cu))
CUDA_OBJ := $(CUDA_SRC:%.cu=$(BUILD)/%.o)
LIB_OBJ := $(filter-out $(BUILD)/src/cuda_stub.o,$(LIB_OBJ)) $(CUDA_OBJ)
LDLIBS += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart -lstdc++
endif

.PHONY: all lib cli test check fuzz bench clean deps cuda
all: $(BUILD)/wan $(BUILD)/wan_tests

lib: $(BUILD)/libwan.a
cli: $(BUILD)/wan

deps:
	sh scripts/setup.sh

$(BUILD)/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX2_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX512_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%_amx.o: %_amx.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AMX_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libwan.a: $(LIB_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/wan: $(CLI_OBJ) $(BUILD)/libwan.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/wan_tests: $(TEST_OBJ) $(BUILD)/libwan.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The whole suite: C unit/parity tests plus the CLI checks; ends with "N passed, N failed".
test: $(BUILD)/wan $(BUILD)/wan_tests
	sh tests/run_all.sh $(BUILD)

check: test

# libFuzzer targets (clang). FUZZ_SECONDS bounds each run.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := $(patsubst fuzz/%.c,%,$(wildcard fuzz/fuzz_*.c))
# parsers that live outside the library, linked into every fuzz target
FUZZ_EXTRA_SRC := tools/server/http_parse.c
fuzz:
	$(MAKE) CC=clang BUILD=build-fuzz EXTRA_CFLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" build-fuzz/libwan.a
	@mkdir -p build-fuzz/fuzz
	@for t in $(FUZZ_TARGETS); do \
	  clang -std=c11 -g -O1 -fopenmp -Iinclude -Isrc -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	    fuzz/$$t.c $(FUZZ_EXTRA_SRC) build-fuzz/libwan.a -o build-fuzz/fuzz/$$t $(LDLIBS) || exit 1; \
	  mkdir -p build-fuzz/corpus/$$t; \
	  cp -n fuzz/corpus/$$t/* build-fuzz/corpus/$$t/ 2>/dev/null; \
	  echo "fuzzing $$t for $(FUZZ_SECONDS)s"; \
	  build-fuzz/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 build-fuzz/corpus/$$t || exit 1; \
	done

# Side-by-side benchmarks (bench/README.md): every bench/*.c is one program in $(BUILD)/bench/. `bench/run_all.sh`
# builds and runs them all.
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/*.c))
bench: $(BENCH_BIN)

$(BUILD)/bench/%: bench/%.c bench/bench.h $(BUILD)/libwan.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libwan.a $(LDFLAGS) $(LDLIBS)

cuda:
	$(MAKE) BUILD=build-cuda WAN_CUDA=1 build-cuda/wan build-cuda/wan_tests build-cuda/bench/gpu

$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/bench/gpu: $(BUILD)/bench/gpu.o $(BUILD)/libwan.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

clean:
	rm -rf build build-san build-fuzz build-cuda

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(BUILD)/bench/gpu.d
