/* common.h — helpers of the dev/cuda/ workbench (llm.c style): error checks, random data, comparing a device
 * result with the CPU reference, timing a kernel. Each workbench file is one standalone program:
 *   ./prog validate [version]    every version (or one) against the CPU reference on several shapes
 *   ./prog benchmark [version]   the Wan-size shape, ms and TFLOP/s (or GB/s) per version
 * The version in use is always the one in src/cuda/, called through the backend table (each program links
 * build-cuda/libwan.a: run `make cuda` first), so the workbench measures the production code itself; the other
 * versions are references and candidates. A candidate that wins moves into src/cuda/. */
#ifndef WAN_DEV_CUDA_COMMON_H
#define WAN_DEV_CUDA_COMMON_H

#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"

#define CUDA_CHECK(call)                                                                                          \
    do {                                                                                                          \
        cudaError_t e_ = (call);                                                                                  \
        if (e_ != cudaSuccess) {                                                                                  \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));               \
            exit(1);                                                                                              \
        }                                                                                                         \
    } while (0)

static inline float *make_random(size_t n, float amp, unsigned seed)
{
    float *h = (float *)malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        h[i] = amp * ((float)(seed >> 8) * (2.0f / 16777216.0f) - 1.0f);
    }
    return h;
}

static inline void *to_device(const void *h, size_t bytes)
{
    void *d;
    CUDA_CHECK(cudaMalloc(&d, bytes ? bytes : 1));
    CUDA_CHECK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    return d;
}

/* Compares the device array d (n floats) with the host reference; passes when max|d - ref| <= tol·max|ref|.
 * Prints one line; returns 1 on success. */
static inline int validate(const char *name, const float *d, const float *ref, size_t n, double tol)
{
    float *h = (float *)malloc(n * sizeof(float));
    CUDA_CHECK(cudaMemcpy(h, d, n * sizeof(float), cudaMemcpyDeviceToHost));
    double max_abs = 0, max_ref = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        const double e = fabs((double)h[i] - ref[i]);
        if (!(e <= max_abs)) {
            max_abs = isnan(e) ? INFINITY : e;
            at = i;
        }
        max_ref = fmax(max_ref, fabs((double)ref[i]));
    }
    const int ok = max_abs <= tol * max_ref;
    printf("  %-48s max abs diff %.3g at %zu (got %g, ref %g), max|ref| %.3g: %s\n", name, max_abs, at, h[at],
           ref[at], max_ref, ok ? "ok" : "MISMATCH");
    free(h);
    return ok;
}

/* Milliseconds per call of fn(arg), the best of `reps` after one warm-up call. Wall clock around a device-wide
 * synchronisation, so that work the backend queues on its own stream is counted too. */
static inline double time_ms(void (*fn)(void *), void *arg, int reps)
{
    fn(arg);
    CUDA_CHECK(cudaDeviceSynchronize());
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        fn(arg);
        CUDA_CHECK(cudaDeviceSynchronize());
        clock_gettime(CLOCK_MONOTONIC, &t1);
        const double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) * 1e-6;
        best = ms < best ? ms : best;
    }
    CUDA_CHECK(cudaGetLastError());
    return best;
}

/* argv: [validate|benchmark] [version]; version 0 means all. Returns 1 for validate, 0 for benchmark. */
static inline int parse_mode(int argc, char **argv, int *version, int n_versions)
{
    *version = argc > 2 ? atoi(argv[2]) : 0;
    if (argc < 2 || (strcmp(argv[1], "validate") && strcmp(argv[1], "benchmark")) || *version < 0 ||
        *version > n_versions) {
        fprintf(stderr, "usage: %s validate|benchmark [version 1..%d]\n", argv[0], n_versions);
        exit(2);
    }
    return !strcmp(argv[1], "validate");
}

/* The CUDA backend (exits with its message when there is none). */
static inline wan_backend *cuda_backend(void)
{
    wan_backend *be = NULL;
    wan_error err;
    memset(&err, 0, sizeof err);
    if (wan_backend_create("cuda", 0, &be, &err) != WAN_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    printf("device: %s\n", be->device);
    return be;
}

static inline void backend_sync(wan_backend *be)
{
    wan_error err;
    memset(&err, 0, sizeof err);
    if (be->sync(be, &err) != WAN_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
}

#endif /* WAN_DEV_CUDA_COMMON_H */

