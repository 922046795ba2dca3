/* bench/bench.h — helpers shared by the benchmarks (header-only; each bench program is one .c file): clocks,
 * CPU time and peak RSS from getrusage, and the attainable FMA throughput of this machine (the limit every
 * kernel is held against; bench/peak.c prints it). */
#ifndef WAN_BENCH_H
#define WAN_BENCH_H

#include "wan.h"

#include <immintrin.h>
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* User + system CPU seconds of this process (all threads). */
static inline double bench_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

/* CPU seconds of the calling thread alone: unlike bench_cpu, blind to other threads of the process that spin
 * meanwhile (an idle OpenMP team, OpenBLAS's own pool waiting for work). */
static inline double bench_thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Peak resident set of this process so far, MiB. */
static inline double bench_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

static inline int bench_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* Dependent-free FMA chains: 12 (AVX2) or 16 (AVX-512) accumulators cover the latency x issue width of current
 * cores. The multiplier < 1 and the addend keep the values finite and normal. Returns a sum so that nothing is
 * optimised away. */
__attribute__((target("avx2,fma"))) static inline float bench_fma_avx2(long iters)
{
    const __m256 m = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-3f);
    __m256 a[12];
    for (int i = 0; i < 12; i++)
        a[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++)
            a[i] = _mm256_fmadd_ps(a[i], m, c);
    }
    float s = 0.0f, t[8];
    for (int i = 0; i < 12; i++) {
        _mm256_storeu_ps(t, a[i]);
        s += t[0] + t[7];
    }
    return s;
}

__attribute__((target("avx512f"))) static inline float bench_fma_avx512(long iters)
{
    const __m512 m = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(1e-3f);
    __m512 a[16];
    for (int i = 0; i < 16; i++)
        a[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            a[i] = _mm512_fmadd_ps(a[i], m, c);
    }
    float s = 0.0f;
    for (int i = 0; i < 16; i++)
        s += _mm512_reduce_add_ps(a[i]);
    return s;
}

/* vdpbf16ps: 16 lanes x 2 bf16 products per instruction. */
__attribute__((target("avx512f,avx512bf16"))) static inline float bench_dpbf16(long iters)
{
    const __m512bh x = (__m512bh)_mm512_set1_epi16(0x3c00), y = (__m512bh)_mm512_set1_epi16(0x3a00);
    __m512 a[16];
    for (int i = 0; i < 16; i++)
        a[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            a[i] = _mm512_dpbf16_ps(a[i], x, y);
    }
    float s = 0.0f;
    for (int i = 0; i < 16; i++)
        s += _mm512_reduce_add_ps(a[i]);
    return s;
}

enum { BENCH_PEAK_F32 = 0, BENCH_PEAK_BF16 = 1 };

static volatile float bench_sink;

/* The attainable throughput of `threads` threads each running the widest FMA loop this CPU has (kind
 * BENCH_PEAK_F32) or vdpbf16ps (BENCH_PEAK_BF16; 0 when the CPU lacks AVX512-BF16), 2 FLOPs per multiply-add, best of
 * `reps` runs of about `seconds` each. Returns wall GFLOP/s; *per_cpu_s (if not NULL) receives GFLOP per CPU
 * second of the FMA threads themselves (each thread's own CPU clock, so that spinning idle threads of the process
 * do not count), i.e. what one core does while it runs — the steadier figure when other processes share the
 * cores. */
static inline double bench_peak_gflops(int kind, int threads, double seconds, int reps, double *per_cpu_s)
{
    const wan_cpu_info ci = wan_cpu_get_info();
    if (per_cpu_s)
        *per_cpu_s = 0.0;
    if ((kind == BENCH_PEAK_BF16 && !ci.avx512_bf16) || (kind == BENCH_PEAK_F32 && !ci.avx2))
        return 0.0;
    const int wide = kind == BENCH_PEAK_BF16 || ci.avx512;
    const double flops_per_iter = kind == BENCH_PEAK_BF16 ? 16.0 * 32 * 2 : wide ? 16.0 * 16 * 2 : 12.0 * 8 * 2;
    long iters = 1 << 16;
    for (;;) { /* calibrate on one thread, by its CPU time */
        const double c0 = bench_thread_cpu();
        bench_sink = kind == BENCH_PEAK_BF16 ? bench_dpbf16(iters) : wide ? bench_fma_avx512(iters)
                                                                          : bench_fma_avx2(iters);
        const double dc = bench_thread_cpu() - c0;
        if (dc > 0.05) {
            iters = (long)(iters * seconds / dc) + 1;
            break;
        }
        iters *= 4;
    }
    double best = 0.0;
    for (int r = 0; r < reps; r++) {
        const double t0 = bench_now();
        double dc = 0.0;
#pragma omp parallel num_threads(threads) reduction(+ : dc)
        {
            const double c0 = bench_thread_cpu();
            float s = kind == BENCH_PEAK_BF16 ? bench_dpbf16(iters) : wide ? bench_fma_avx512(iters)
                                                                           : bench_fma_avx2(iters);
            bench_sink = s;
            dc += bench_thread_cpu() - c0;
        }
        const double dt = bench_now() - t0, flops = threads * (double)iters * flops_per_iter;
        if (flops / dt * 1e-9 > best)
            best = flops / dt * 1e-9;
        if (per_cpu_s && dc > 0 && flops / dc * 1e-9 > *per_cpu_s)
            *per_cpu_s = flops / dc * 1e-9;
    }
    return best;
}

#endif /* WAN_BENCH_H */
