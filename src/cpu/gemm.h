/* gemm.h — dense linear layers on the CPU: y = x·Wᵀ + b with weights in F32, BF16 or F16 as stored
 * (internal). F32 weights go to OpenBLAS in place; BF16/F16 weights are converted one tile of rows at a
 * time into a caller-provided scratch buffer, so no f32 copy of a whole matrix is ever made. */
#ifndef WAN_CPU_GEMM_H
#define WAN_CPU_GEMM_H

#include "core.h"

/* Floats of weight rows converted at once (32 MiB); the scratch a linear needs is at most this. Large tiles
 * keep OpenBLAS from repacking the activations once per small tile. */
#define WAN_LINEAR_TILE_FLOATS ((int64_t)1 << 23)

/* Scratch floats wan_cpu_linear needs for an [N, K] weight (0 for 4-byte aligned F32). */
int64_t wan_cpu_linear_scratch(const wan_tensor *w);

/* y[m, n] = sum_k x[m, k] · W[n, k] + b[n] for m < M, n < N, where W is the 2-D (or 5-D conv, flattened to
 * [ne[0], rest]) weight view `w` of dtype F32/BF16/F16 and K its row length. b may be NULL. x has row stride
 * ldx, y row stride ldy (both in floats; y must not overlap x). scratch holds wan_cpu_linear_scratch(w)
 * floats (may be NULL when that is 0). Threads: one OpenMP team of n_threads converts the tiles and splits
 * the product; each thread calls OpenBLAS single-threaded (this sets OpenBLAS's process-wide thread count
 * to 1). Products under ~2M multiply-adds run on the calling thread. */
void wan_cpu_linear(const float *x, int64_t M, int64_t ldx, const wan_tensor *w, const float *b, float *y,
                    int64_t ldy, float *scratch, int n_threads);

/* Sets the process-wide OpenBLAS thread count when it differs (n_threads <= 0: leave it), for callers
 * that use OpenBLAS's own threading directly. */
void wan_cpu_set_threads(int n_threads);

/* Overrides the tile size (floats; <= 0 restores WAN_LINEAR_TILE_FLOATS). For op tests, which exercise the
 * multi-tile paths on small matrices; not thread-safe. */
void wan_cpu_linear_set_tile(int64_t floats);

/* Converts n elements of F32/BF16/F16 data (any alignment) to f32. */
void wan_cpu_to_f32(const void *src, wan_dtype dtype, float *dst, int64_t n);

#endif /* WAN_CPU_GEMM_H */
