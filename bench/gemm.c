/* bench/gemm.c — the linear layer y = x·Wᵀ + b at the DiT shapes: wan.c's packed GEMM (weights packed straight
 * from their stored dtype) beside OpenBLAS (F32: sgemm on the weights in place; BF16: the tiled conversion to f32
 * followed by sgemm, the path wan_cpu_linear had before), same threads, back to back in one process. Prints
 * GFLOP/s, CPU seconds, the fraction of bench/peak's attainable f32 FMA throughput, and which path
 * wan_cpu_linear's AUTO mode takes; where the CPU has AMX or AVX512-BF16, also the opt-in bf16-product kernels
 * (WAN_CPU_GEMM=bf16; their fraction is of the same f32 peak, so it can pass 100%).
 *
 * q8_0 weights (int8 with an F16 scale per 32 values, `wan convert --quantize q8_0`) go through the same packed GEMM,
 * converted as they are packed; OpenBLAS then gets them through the tiled conversion.
 *
 * float8 weights (ComfyUI's E4M3 with a per-tensor scale) likewise.
 *
 *   build/bench/gemm [--m TOKENS] [--threads N] [--reps R] [--dtype f32|bf16|f16|q8_0|q4_0|f8|all] [--shape N,K]...
 *
 * Default: M = 1560 tokens (one 480p latent frame), shapes (N, K) = (5120, 5120) attention projections,
 * (13824, 5120) FFN up, (5120, 13824) FFN down, and the one-row time projection (30720, 5120) with M = 1. */
#define _POSIX_C_SOURCE 200809L
#include "bench.h"
#include "core.h"
#include "cpu/cpu.h"
#include "cpu/gemm.h"
#include "quant.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void openblas_set_num_threads(int num_threads);

typedef struct shape { int64_t M, N, K; } shape;

static void fill(float *p, int64_t n, uint32_t seed, float amp)
{
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < (n + 4095) / 4096; b++) {
        uint32_t s = seed * 2654435761u + (uint32_t)b * 40503u + 1u;
        for (int64_t i = b * 4096; i < n && i < (b + 1) * 4096; i++) {
            s = s * 1664525u + 1013904223u;
            p[i] = amp * ((float)(s >> 8) * (2.0f / 16777216.0f) - 1.0f);
        }
    }
}

typedef struct timing { double wall, cpu; } timing;

/* Best of reps runs of wan_cpu_linear in `mode`. */
static timing run_linear(wan_linear_mode mode, const float *x, const shape *s, const wan_tensor *w, const float *b,
                         float *y, int threads, int reps)
{
    wan_cpu_linear_set_mode(mode);
    const int64_t ns = wan_cpu_linear_scratch(w);
    float *scratch = ns ? wan_malloc((size_t)ns * sizeof(float)) : NULL;
    timing best = { INFINITY, 0 };
    for (int r = 0; r < reps; r++) {
        const double t0 = bench_now(), c0 = bench_cpu();
        wan_cpu_linear(x, s->M, s->K, w, b, y, s->N, scratch, threads);
        const double dt = bench_now() - t0;
        if (dt < best.wall)
            best = (timing){ dt, bench_cpu() - c0 };
    }
    wan_free(scratch);
    wan_cpu_linear_set_mode(WAN_LINEAR_AUTO);
    return best;
}

/* Best of reps runs of the packed GEMM with kernel set u (the opt-in bf16-product ones). */
static timing run_ukr(const wan_gemm_ukr *u, const float *x, const shape *s, const wan_tensor *w, const float *b,
                      float *y, int threads, int reps)
{
    float *scratch = wan_malloc((size_t)wan_gemm_scratch(s->N, s->K) * sizeof(float));
    timing best = { INFINITY, 0 };
    for (int r = 0; r < reps && scratch; r++) {
        const double t0 = bench_now(), c0 = bench_cpu();
        wan_gemm_packed(u, x, s->M, s->K, w, b, y, s->N, scratch, threads);
        const double dt = bench_now() - t0;
        if (dt < best.wall)
            best = (timing){ dt, bench_cpu() - c0 };
    }
    wan_free(scratch);
    return best;
}

/* OpenBLAS's own threaded sgemm on f32 weights (its thread pool, not ours). */
static timing run_sgemm(const float *x, const shape *s, const float *w, float *y, int threads, int reps)
{
    openblas_set_num_threads(threads);
    timing best = { INFINITY, 0 };
    for (int r = 0; r < reps; r++) {
        const double t0 = bench_now(), c0 = bench_cpu();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)s->M, (int)s->N, (int)s->K, 1.0f, x, (int)s->K, w,
                    (int)s->K, 0.0f, y, (int)s->N);
        const double dt = bench_now() - t0;
        if (dt < best.wall)
            best = (timing){ dt, bench_cpu() - c0 };
    }
    openblas_set_num_threads(1);
    return best;
}

static double max_rel(const float *a, const float *b, int64_t n)
{
    double md = 0.0, mr = 0.0;
    for (int64_t i = 0; i < n; i++) {
        md = fmax(md, fabs((double)a[i] - b[i]));
        mr = fmax(mr, fabs((double)b[i]));
    }
    return mr > 0 ? md / mr : md;
}

/* Wall GFLOP/s against threads x the one-core peak, and GFLOP per CPU second against the one-core peak (the
 * steadier figure when other processes share the cores). */
static void report(const char *what, timing t, double flops, const double peak[2])
{
    const double g = flops / t.wall * 1e-9, gc = flops / t.cpu * 1e-9;
    printf("  %-36s %7.3f s %6.1f GFLOP/s %5.1f%% | %6.2f CPU s %6.1f GFLOP/CPU-s %5.1f%% of core peak\n", what,
           t.wall, g, 100.0 * g / peak[1], t.cpu, gc, 100.0 * gc / peak[0]);
}

static void bench_shape(const shape *s, wan_dtype dt, int threads, int reps, const double peak[2])
{
    const double flops = 2.0 * s->M * s->N * s->K;
    float *x = wan_malloc((size_t)(s->M * s->K) * 4), *wf = wan_malloc((size_t)(s->N * s->K) * 4);
    float *b = wan_malloc((size_t)s->N * 4), *y0 = wan_malloc((size_t)(s->M * s->N) * 4);
    float *y1 = wan_malloc((size_t)(s->M * s->N) * 4);
    const int64_t NK = s->N * s->K;
    void *wd = dt == WAN_DTYPE_F32 ? (void *)wf
                                   : wan_malloc(dt == WAN_DTYPE_I8 || dt == WAN_DTYPE_U8
                                                    ? (size_t)NK + (size_t)(NK / WAN_Q8_BLOCK) * 2
                                                : dt == WAN_DTYPE_F8_E4M3 ? (size_t)NK
                                                                          : (size_t)NK * 2);
    if (!x || !wf || !b || !y0 || !y1 || !wd) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    fill(x, s->M * s->K, 1, 1.0f);
    fill(wf, s->N * s->K, 2, 1.0f / sqrtf((float)s->K));
    fill(b, s->N, 3, 0.1f);
    uint16_t *qs = dt == WAN_DTYPE_I8 || dt == WAN_DTYPE_U8 ? (uint16_t *)(void *)((int8_t *)wd + NK) : NULL;
    float f8_scale = 0.0f;
    if (dt == WAN_DTYPE_F8_E4M3) { /* codes of w / scale, scale = max|w| / 448: nearest of the 256 values */
        float amax = 0.0f, lut[256];
        for (int64_t i = 0; i < NK; i++)
            amax = fmaxf(amax, fabsf(wf[i]));
        f8_scale = amax / 448.0f;
        for (int c = 0; c < 256; c++)
            lut[c] = wan_f8e4m3_to_f32((uint8_t)c);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < NK; i++) {
            const float v = wf[i] / f8_scale;
            int best = 0;
            for (int c = 0; c < 256; c++)
                if (isfinite(lut[c]) && fabsf(lut[c] - v) < fabsf(lut[best] - v))
                    best = c;
            ((uint8_t *)wd)[i] = (uint8_t)best;
        }
    } else if (dt == WAN_DTYPE_I8 || dt == WAN_DTYPE_U8) {
#pragma omp parallel for schedule(static)
        for (int64_t n = 0; n < s->N; n++) {
            uint16_t *sn = qs + n * (s->K / WAN_Q8_BLOCK);
            if (dt == WAN_DTYPE_I8)
                wan_q8_quantize_row(wf + n * s->K, s->K, (int8_t *)wd + n * s->K, sn);
            else
                wan_q4_quantize_row(wf + n * s->K, s->K, (uint8_t *)wd + n * (s->K / 2), sn);
        }
    } else if (dt != WAN_DTYPE_F32) {
        uint16_t *h = wd;
        for (int64_t i = 0; i < s->N * s->K; i++)
            h[i] = dt == WAN_DTYPE_BF16 ? wan_f32_to_bf16(wf[i]) : wan_f32_to_f16(wf[i]);
    }
    wan_tensor w = wan_tensor_view(dt, 2, (int64_t[]){ s->N, s->K }, wd);
    w.qscale = qs;
    w.wscale = f8_scale;
    printf("M %lld x N %lld x K %lld, %s weights, %.1f GFLOP\n", (long long)s->M, (long long)s->N, (long long)s->K,
           dt == WAN_DTYPE_I8 ? "q8_0" : dt == WAN_DTYPE_U8 ? "q4_0" : wan_dtype_name(dt), flops * 1e-9);
    run_linear(WAN_LINEAR_PACKED, x, s, &w, b, y1, threads, 1); /* warm the pages of every buffer */
    timing tb = run_linear(WAN_LINEAR_BLAS, x, s, &w, b, y0, threads, reps);
    timing tp = run_linear(WAN_LINEAR_PACKED, x, s, &w, b, y1, threads, reps);
    report(dt == WAN_DTYPE_F32 ? "OpenBLAS sgemm (one team, in place)" : "OpenBLAS sgemm (tiled conversion)", tb,
           flops, peak);
    if (dt == WAN_DTYPE_F32) {
        float *y2 = wan_malloc((size_t)(s->M * s->N) * 4);
        report("OpenBLAS sgemm (its own threads)", run_sgemm(x, s, wf, y2, threads, reps), flops, peak);
        wan_free(y2);
    }
    char name[64];
    snprintf(name, sizeof name, "wan.c %s (%s)", s->M <= 4 ? "row dots" : "packed",
             wan_kernels_get()->gemm->name);
    report(name, tp, flops, peak);
    printf("  ratio wan.c / OpenBLAS: %.2f wall, %.2f CPU; max rel diff %.2e; AUTO uses %s\n", tp.wall / tb.wall,
           tp.cpu / tb.cpu, max_rel(y1, y0, s->M * s->N), "wan.c");
    static const wan_gemm_ukr *const bf16[] = { &wan_gemm_ukr_amx, &wan_gemm_ukr_avx512bf16 };
    for (int i = 0; i < 2 && s->M > 4; i++) /* the opt-in bf16 products (WAN_CPU_GEMM=bf16), where the CPU has them */
        if (wan_gemm_ukr_supported(bf16[i])) {
            snprintf(name, sizeof name, "wan.c bf16 products (%s)", bf16[i]->name);
            const timing tf = run_ukr(bf16[i], x, s, &w, b, y0, threads, reps);
            report(name, tf, flops, peak);
            printf("  ratio bf16 products / f32 packed: %.2f wall; max rel diff to the f32 result %.2e\n",
                   tf.wall / tp.wall, max_rel(y0, y1, s->M * s->N));
        }
    fflush(stdout);
    if (wd != wf)
        wan_free(wd);
    wan_free(x), wan_free(wf), wan_free(b), wan_free(y0), wan_free(y1);
}

int main(int argc, char **argv)
{
    int threads = bench_max_threads(), reps = 2, nshapes = 0;
    int64_t M = 1560;
    const char *dts = "all";
    shape custom[8];
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        long long n, k;
        if (!strcmp(a, "--m")) M = atoll(v);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else if (!strcmp(a, "--dtype")) dts = v;
        else if (!strcmp(a, "--shape") && nshapes < 8 && sscanf(v, "%lld,%lld", &n, &k) == 2)
            custom[nshapes++] = (shape){ 0, n, k };
        else {
            fprintf(stderr, "usage: see the comment at the top of bench/gemm.c\n");
            return 2;
        }
    }
    if (threads < 1 || reps < 1 || M < 1)
        return 2;
    shape def[] = { { M, 5120, 5120 }, { M, 13824, 5120 }, { M, 5120, 13824 }, { 1, 30720, 5120 } };
    shape *sh = nshapes ? custom : def;
    const int n = nshapes ? nshapes : (int)(sizeof def / sizeof *def);
    for (int i = 0; i < n; i++)
        if (nshapes)
            sh[i].M = M;
    double peak[2];
    bench_peak_gflops(BENCH_PEAK_F32, 1, 0.2, 3, &peak[0]);
    peak[1] = peak[0] * threads;
    printf("gemm bench: %d threads, kernels %s; attainable f32 FMA peak (bench/peak) %.1f GFLOP/s per core, so %.1f "
           "GFLOP/s for %d threads on idle cores\n", threads, wan_cpu_kernel_name(), peak[0], peak[1], threads);
    static const wan_dtype all[] = { WAN_DTYPE_F32, WAN_DTYPE_BF16, WAN_DTYPE_F16, WAN_DTYPE_I8, WAN_DTYPE_F8_E4M3,
                                     WAN_DTYPE_U8 };
    static const char *const names[] = { "f32", "bf16", "f16", "q8_0", "f8", "q4_0" };
    for (int i = 0; i < n; i++)
        for (int d = 0; d < 6; d++) {
            if (strcmp(dts, "all") ? strcasecmp(dts, names[d]) : d == 2 || d >= 4)
                continue; /* "all": f32, bf16 and q8_0 */
            if ((all[d] == WAN_DTYPE_I8 || all[d] == WAN_DTYPE_U8) && (sh[i].K % WAN_Q8_BLOCK)) {
                printf("%s: skipping K = %lld (not whole blocks of %d)\n", names[d], (long long)sh[i].K, WAN_Q8_BLOCK);
                continue;
            }
            bench_shape(&sh[i], all[d], threads, reps, peak);
        }
    return 0;
}
