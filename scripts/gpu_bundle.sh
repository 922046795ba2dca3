#!/bin/sh
# Packs the CUDA build for a GPU machine that has the CUDA runtime but none of the project's Debian libraries
# (the device tool's lent machines, docs/CUDA.md "Running on a lent GPU"). Run after `make cuda`.
# Writes gpu-bundle.tar.xz (~6 MB, git-ignored) of gpu-bundle/: bin/{wan_tests, gpu, attention_forward,
# matmul_bf16, conv3d, layernorm_modulate, and the CPU benches peak, gemm and transformer for the host's CPU},
# stripped, and lib/ with OpenBLAS, libcjson, libgomp and the Fortran runtime OpenBLAS needs. FFmpeg is left out (its
# dependency tree is ~200 MB): its functions are stubs that abort, so these binaries must not be asked to read or
# write a video. scripts/gpu_check.sh unpacks and runs it there.
set -eu
cd "$(dirname "$0")/.."
CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc)")")}
OUT=gpu-bundle
rm -rf $OUT && mkdir -p $OUT/bin $OUT/lib
LIBS="build-cuda/libwan.a -lcjson -lz -lopenblas -lm -lpthread -L$CUDA_HOME/lib64 -lcublasLt -lcublas -lcudart -lstdc++"
# FFmpeg stubs: every av*/sws* symbol the link leaves undefined becomes a function that aborts.
NOFF=$OUT/ffmpeg_stubs.o
gcc -fopenmp -o $OUT/probe build-cuda/tests/*.o $LIBS 2>&1 | sed -n "s/.*undefined reference to .\([A-Za-z_0-9]*\).*/\1/p" |
  sort -u | awk 'BEGIN { print "#include <stdio.h>\n#include <stdlib.h>" }
    { printf "void %s(void) { fputs(\"%s: FFmpeg is not in this bundle\\n\", stderr); abort(); }\n", $1, $1 }' \
  > $OUT/ffmpeg_stubs.c || true
gcc -c -o $NOFF $OUT/ffmpeg_stubs.c
gcc -fopenmp $NOFF -o $OUT/bin/wan_tests build-cuda/tests/*.o $LIBS
gcc -fopenmp $NOFF -o $OUT/bin/gpu build-cuda/bench/gpu.o $LIBS
for b in peak gemm transformer; do gcc -std=c11 -O2 -fopenmp -Iinclude -Isrc -o $OUT/bin/$b bench/$b.c $LIBS; done
ARCH="-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90a,code=sm_90a"
for p in attention_forward matmul_bf16 conv3d layernorm_modulate; do
  nvcc -std=c++17 -O2 $ARCH -Iinclude -Isrc -Xcompiler -fopenmp \
    -o $OUT/bin/$p dev/cuda/$p.cu $LIBS &
done
wait
strip $OUT/bin/*
rm -f $OUT/probe $OUT/ffmpeg_stubs.*
for l in libopenblas.so.0 libcjson.so.1 libgomp.so.1 libgfortran.so.5 libquadmath.so.0; do cp -L /lib/x86_64-linux-gnu/$l $OUT/lib/; done
tar cf - $OUT | xz -9 -T2 > $OUT.tar.xz
ls -la $OUT.tar.xz
