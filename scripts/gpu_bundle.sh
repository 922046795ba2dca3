#!/bin/sh
# Packs the CUDA build for a GPU machine that has the CUDA runtime but none of the project's Debian libraries
# (the device tool's lent machines, docs/CUDA.md "Checklist"). Run after `make cuda` and `make -C dev/cuda`.
# Writes gpu-bundle/ (git-ignored): bin/{wan_tests,gpu,attention_forward,matmul_bf16,conv3d,layernorm_modulate},
# stripped, with OpenBLAS linked statically and libcjson/libgomp beside them in lib/. FFmpeg is left out (its
# dependency tree is ~200 MB): its functions are stubs that abort, so these binaries must not be asked to read or
# write a video. Usage there: LD_LIBRARY_PATH=gpu-bundle/lib:/usr/local/cuda/lib64 gpu-bundle/bin/wan_tests backend
set -eu
cd "$(dirname "$0")/.."
CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc)")")}
BLAS=-lopenblas
OUT=gpu-bundle
rm -rf $OUT && mkdir -p $OUT/bin $OUT/lib
LIBS="build-cuda/libwan.a -lcjson -lz $BLAS -lgfortran -lm -lpthread -L$CUDA_HOME/lib64 -lcublasLt -lcublas -lcudart -lstdc++"
# FFmpeg stubs: every av*/sws* symbol the link leaves undefined becomes a function that aborts.
NOFF=$OUT/ffmpeg_stubs.o
gcc -fopenmp -o $OUT/probe build-cuda/tests/*.o $LIBS 2>&1 | sed -n "s/.*undefined reference to .\([A-Za-z_0-9]*\).*/\1/p" |
  sort -u | awk 'BEGIN { print "#include <stdio.h>\n#include <stdlib.h>" }
    { printf "void %s(void) { fputs(\"%s: FFmpeg is not in this bundle\\n\", stderr); abort(); }\n", $1, $1 }' \
  > $OUT/ffmpeg_stubs.c || true
gcc -c -o $NOFF $OUT/ffmpeg_stubs.c
gcc -fopenmp $NOFF -o $OUT/bin/wan_tests build-cuda/tests/*.o $LIBS
gcc -fopenmp $NOFF -o $OUT/bin/gpu build-cuda/bench/gpu.o $LIBS
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
