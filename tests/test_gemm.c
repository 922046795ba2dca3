/* test_gemm.c — the packed GEMM and the row-dot path of every micro-kernel set this CPU can run (generic, AVX2,
 * AVX-512; the others are skipped with a message) against a naive double-precision product, for F32, BF16 and F16
 * weights and q8_0 ones (int8 values, one F16 scale per 32: against the product with the values they stand for,
 * q · scale, which is exact in f32), odd sizes (partial micro-tiles, several depth blocks, several packing rounds),
 * unaligned weights and scales,
 * strided x and y, with and without bias, on 1 to 3 threads. Tolerance 1e-5 · max|ref|: f32 sums of at most a
 * few hundred terms against double. */
#include "test.h"

#include "core.h"
#include "cpu/cpu.h"
#include "cpu/gemm.h"
#include "quant.h"

#include <stdlib.h>

#define GEMM_TOL 1e-5

static uint32_t g_seed = 777u;
static float frand(void) /* uniform in [-1, 1) */
{
    g_seed = g_seed * 1664525u + 1013904223u;
    return (float)((g_seed >> 8) * (1.0 / 8388608.0)) - 1.0f;
}

typedef struct gemm_case {
    int64_t M, N, K, ldx, ldy;
    wan_dtype dt;
    int misalign; /* bytes added to the weight address */
    int bias, threads;
} gemm_case;

/* Weights stored as c->dt at the given misalignment (I8: q8_0, the scales after the values, misaligned as much);
 * wf receives the values the kernel sees. The view, in *w. */
static uint8_t *make_weights(const gemm_case *c, float *wf, wan_tensor *w)
{
    const size_t es = wan_dtype_size(c->dt), nv = (size_t)(c->N * c->K);
    uint8_t *store = wan_malloc(nv * es + nv / WAN_Q8_BLOCK * 2 + 8);
    if (!store)
        return NULL;
    uint8_t *data = store + c->misalign;
    *w = wan_tensor_view(c->dt, 2, (int64_t[]){ c->N, c->K }, data);
    if (c->dt == WAN_DTYPE_I8 || c->dt == WAN_DTYPE_U8) { /* q8_0 / q4_0: random values (some zero blocks),
                                                                quantised as wan convert does */
        uint16_t *qs = (uint16_t *)(void *)(data + nv);
        float row[4096];
        for (int64_t n = 0; n < c->N; n++) {
            for (int64_t k = 0; k < c->K; k++)
                row[k] = (k / WAN_Q8_BLOCK) % 5 == 4 ? 0.0f : ldexpf(frand(), (int)(n % 7) - 4);
            uint16_t sc[4096 / WAN_Q8_BLOCK];
            if (c->dt == WAN_DTYPE_I8)
                wan_q8_quantize_row(row, c->K, (int8_t *)data + n * c->K, sc);
            else
                wan_q4_quantize_row(row, c->K, data + n * (c->K / 2), sc);
            memcpy(qs + n * (c->K / WAN_Q8_BLOCK), sc, sizeof(uint16_t) * (size_t)(c->K / WAN_Q8_BLOCK));
        }
        w->qscale = qs;
        for (int64_t n = 0; n < c->N; n++)
            wan_cpu_weight_row_to_f32(w, c->K, n, 0, c->K, wf + n * c->K);
        return store;
    }
    if (wan_dtype_is_f8(c->dt)) { /* random finite codes, a per-tensor scale that brings them to ~[-1, 1] */
        w->wscale = c->dt == WAN_DTYPE_F8_E4M3 ? 1.0f / 448.0f : 1.0f / 57344.0f;
        for (int64_t i = 0; i < c->N * c->K; i++) {
            uint8_t b;
            float v;
            do {
                b = (uint8_t)(frand() * 128.0f + 128.0f);
                v = c->dt == WAN_DTYPE_F8_E4M3 ? wan_f8e4m3_to_f32(b) : wan_f8e5m2_to_f32(b);
            } while (!isfinite(v));
            data[i] = b;
            wf[i] = v * w->wscale;
        }
        return store;
    }
    for (int64_t i = 0; i < c->N * c->K; i++) {
        float v = 0.5f * frand();
        if (c->dt == WAN_DTYPE_BF16) {
            uint16_t h = wan_f32_to_bf16(v);
            memcpy(data + 2 * i, &h, 2);
            v = wan_bf16_to_f32(h);
        } else if (c->dt == WAN_DTYPE_F16) {
            uint16_t h = wan_f32_to_f16(v);
            memcpy(data + 2 * i, &h, 2);
            v = wan_f16_to_f32(h);
        } else {
            memcpy(data + 4 * i, &v, 4);
        }
        wf[i] = v;
    }
    return store;
}

static double as_bf16(float v) { return wan_bf16_to_f32(wan_f32_to_bf16(v)); }

/* Runs one case through `u` (packed, or row dots when rows is set) and compares with the naive product (of the
 * operands rounded to bf16 when `u` is a bf16-product kernel set). Cells of y outside the M x N product (the stride
 * padding) must stay untouched. */
static int run_case(const wan_gemm_ukr *u, const gemm_case *c, int rows)
{
    const int bf = u->kpack == 2;
    const int64_t M = c->M, N = c->N, K = c->K;
    float *x = wan_malloc((size_t)(M * c->ldx) * 4), *wf = wan_malloc((size_t)(N * K) * 4);
    float *b = wan_malloc((size_t)N * 4), *y = wan_malloc((size_t)(M * c->ldy) * 4);
    float *ref = wan_malloc((size_t)(M * N) * 4), *got = wan_malloc((size_t)(M * N) * 4);
    float *scratch = wan_malloc((size_t)wan_gemm_scratch(N, K) * 4);
    wan_tensor w;
    uint8_t *store = wf ? make_weights(c, wf, &w) : NULL;
    int ok = x && b && y && ref && got && scratch && store;
    for (int64_t i = 0; ok && i < M * c->ldx; i++)
        x[i] = frand();
    for (int64_t i = 0; ok && i < N; i++)
        b[i] = frand();
    for (int64_t i = 0; ok && i < M * c->ldy; i++)
        y[i] = 12345.0f;
    for (int64_t m = 0; ok && m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = c->bias ? b[n] : 0.0;
            for (int64_t k = 0; k < K; k++)
                s += bf ? as_bf16(x[m * c->ldx + k]) * as_bf16(wf[n * K + k])
                        : (double)x[m * c->ldx + k] * wf[n * K + k];
            ref[m * N + n] = (float)s;
        }
    if (ok) {
        const float *bb = c->bias ? b : NULL;
        if (rows)
            wan_gemm_rows(u, x, M, c->ldx, &w, bb, y, c->ldy, c->threads);
        else
            wan_gemm_packed(u, x, M, c->ldx, &w, bb, y, c->ldy, scratch, c->threads);
        int pad_ok = 1;
        for (int64_t m = 0; m < M; m++) {
            memcpy(got + m * N, y + m * c->ldy, (size_t)N * 4);
            for (int64_t n = N; n < c->ldy; n++)
                pad_ok &= y[m * c->ldy + n] == 12345.0f;
        }
        char name[160];
        snprintf(name, sizeof name, "%s %s %s M%lld N%lld K%lld%s%s t%d", u->name, rows ? "rows" : "packed",
                 c->dt == WAN_DTYPE_I8 ? "q8_0" : c->dt == WAN_DTYPE_U8 ? "q4_0" : wan_dtype_name(c->dt), (long long)M, (long long)N, (long long)K, c->misalign ? " unaligned" : "",
                 c->bias ? " bias" : "", c->threads);
        ok = wan_test_compare(name, got, ref, (size_t)(M * N), GEMM_TOL);
        if (!pad_ok)
            printf("    %s: wrote outside the product\n", name);
        ok &= pad_ok;
    }
    wan_free(x), wan_free(wf), wan_free(b), wan_free(y), wan_free(ref), wan_free(got), wan_free(scratch);
    wan_free(store);
    return ok;
}

static const wan_kernels *const g_tables[] = { &wan_kernels_generic, &wan_kernels_avx2, &wan_kernels_avx512 };

TEST(gemm_packed_every_isa)
{
    static const gemm_case cases[] = {
        /* M, N, K, ldx, ldy, dtype, misalign, bias, threads */
        { 1, 1, 1, 1, 1, WAN_DTYPE_F32, 0, 1, 1 },
        { 5, 17, 7, 7, 17, WAN_DTYPE_F32, 0, 0, 1 },          /* partial tiles in both directions      */
        { 13, 33, 300, 301, 40, WAN_DTYPE_F32, 2, 1, 2 },    /* two depth blocks, strides, unaligned   */
        { 97, 47, 257, 257, 47, WAN_DTYPE_BF16, 0, 1, 3 },   /* row groups past WAN_GEMM_MC, 3 threads */
        { 7, 65, 513, 520, 65, WAN_DTYPE_BF16, 1, 0, 2 },    /* odd address, three depth blocks        */
        { 31, 40, 100, 100, 41, WAN_DTYPE_F16, 0, 1, 2 },
        { 9, 19, 64, 64, 19, WAN_DTYPE_F16, 1, 1, 1 },
        { 2, 9000, 3, 3, 9000, WAN_DTYPE_BF16, 0, 1, 1 },     /* more panels than one thread's room     */
        { 200, 3, 20, 20, 3, WAN_DTYPE_F32, 0, 1, 3 },       /* one panel, threads split the rows      */
        { 5, 17, 64, 64, 17, WAN_DTYPE_I8, 0, 0, 1 },         /* q8_0: partial tiles                    */
        { 13, 33, 320, 321, 40, WAN_DTYPE_I8, 1, 1, 2 },     /* two depth blocks, odd addresses        */
        { 97, 48, 288, 288, 48, WAN_DTYPE_I8, 0, 1, 3 },     /* full panels, 3 threads                 */
        { 2, 9000, 32, 32, 9000, WAN_DTYPE_I8, 3, 1, 1 },
        { 13, 33, 300, 301, 40, WAN_DTYPE_F8_E4M3, 1, 1, 2 }, /* float8 with a scale: edges, two depth blocks */
        { 97, 48, 264, 264, 48, WAN_DTYPE_F8_E5M2, 0, 1, 3 },
        { 5, 16, 8, 8, 16, WAN_DTYPE_F8_E4M3, 3, 0, 1 },
        { 13, 33, 320, 321, 40, WAN_DTYPE_U8, 1, 1, 2 },     /* q4_0 */
        { 97, 48, 288, 288, 48, WAN_DTYPE_U8, 0, 1, 3 },
    };
    for (size_t t = 0; t < sizeof g_tables / sizeof *g_tables; t++) {
        if (!wan_kernels_supported(g_tables[t])) {
            printf("    skipping %s: this CPU cannot run it\n", g_tables[t]->gemm->name);
            continue;
        }
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
            CHECK(run_case(g_tables[t]->gemm, &cases[i], 0));
    }
}

/* The opt-in bf16-product kernels (AVX512-BF16, AMX) against the double product of the bf16-rounded operands:
 * odd k (a half-filled last pair), k past one depth block (512 values), k under one AMX step (32), partial tiles,
 * every weight dtype, odd addresses, strides, 1 to 3 threads. Skipped, with the reason, where the CPU lacks them. */
TEST(gemm_bf16_products)
{
    static const gemm_case cases[] = {
        /* M, N, K, ldx, ldy, dtype, misalign, bias, threads */
        { 1, 1, 1, 1, 1, WAN_DTYPE_F32, 0, 1, 1 },
        { 5, 17, 7, 7, 17, WAN_DTYPE_F32, 0, 0, 1 },
        { 40, 33, 301, 301, 40, WAN_DTYPE_F32, 2, 1, 2 },
        { 97, 70, 1100, 1100, 70, WAN_DTYPE_BF16, 0, 1, 3 },
        { 33, 65, 513, 520, 65, WAN_DTYPE_BF16, 1, 0, 2 },
        { 31, 40, 100, 100, 41, WAN_DTYPE_F16, 0, 1, 2 },
        { 64, 64, 32, 32, 64, WAN_DTYPE_F16, 1, 1, 1 },
        { 40, 33, 608, 608, 40, WAN_DTYPE_I8, 1, 1, 2 },
        { 33, 40, 300, 300, 40, WAN_DTYPE_F8_E4M3, 1, 1, 2 },
        { 33, 40, 608, 608, 40, WAN_DTYPE_U8, 1, 1, 2 },
        { 32, 64, 64, 64, 64, WAN_DTYPE_I8, 0, 0, 1 },
    };
    static const wan_gemm_ukr *const ukrs[] = { &wan_gemm_ukr_avx512bf16, &wan_gemm_ukr_amx };
    for (size_t t = 0; t < sizeof ukrs / sizeof *ukrs; t++) {
        if (!wan_gemm_ukr_supported(ukrs[t])) {
            printf("    skipping %s: this CPU (or OS) cannot run it\n", ukrs[t]->name);
            continue;
        }
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
            CHECK(run_case(ukrs[t], &cases[i], 0));
    }
    const wan_gemm_ukr *best = wan_gemm_ukr_bf16();
    printf("    bf16 products here: %s\n", best ? best->name : "none (AUTO stays f32)");
}

TEST(gemm_rows_every_isa)
{
    static const gemm_case cases[] = {
        { 1, 30, 5, 5, 30, WAN_DTYPE_F32, 0, 1, 1 },
        { 3, 50, 67, 70, 51, WAN_DTYPE_BF16, 0, 1, 2 },
        { 4, 21, 33, 33, 21, WAN_DTYPE_F16, 1, 0, 2 },
        { 2, 17, 16, 16, 17, WAN_DTYPE_F32, 2, 1, 3 },
        { 1, 30, 32, 32, 30, WAN_DTYPE_I8, 0, 1, 1 },
        { 3, 50, 96, 100, 51, WAN_DTYPE_I8, 1, 0, 2 },
        { 2, 20, 37, 37, 20, WAN_DTYPE_F8_E4M3, 1, 1, 2 },
        { 4, 9, 64, 64, 9, WAN_DTYPE_F8_E5M2, 0, 0, 1 },
        { 3, 50, 96, 100, 51, WAN_DTYPE_U8, 1, 1, 2 },
    };
    for (size_t t = 0; t < sizeof g_tables / sizeof *g_tables; t++) {
        if (!wan_kernels_supported(g_tables[t])) {
            printf("    skipping %s: this CPU cannot run it\n", g_tables[t]->gemm->name);
            continue;
        }
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
            CHECK(run_case(g_tables[t]->gemm, &cases[i], 1));
    }
}

/* wan_cpu_linear in each mode (AUTO, OpenBLAS, packed) with the scratch it asks for. */
TEST(gemm_linear_modes)
{
    static const wan_linear_mode modes[] = { WAN_LINEAR_AUTO, WAN_LINEAR_BLAS, WAN_LINEAR_PACKED };
    static const wan_dtype dts[] = { WAN_DTYPE_F32, WAN_DTYPE_BF16, WAN_DTYPE_F16, WAN_DTYPE_I8, WAN_DTYPE_F8_E4M3,
                                     WAN_DTYPE_F8_E5M2, WAN_DTYPE_U8 };
    for (size_t mi = 0; mi < 3; mi++)
        for (size_t di = 0; di < sizeof dts / sizeof *dts; di++)
            for (int64_t M = 1; M <= 130; M += 129) {
                const int64_t N = 70, K = dts[di] == WAN_DTYPE_I8 || dts[di] == WAN_DTYPE_U8 ? 320 : 300;
                gemm_case c = { M, N, K, K, N, dts[di], 0, 1, 2 };
                float *x = wan_malloc((size_t)(M * K) * 4), *wf = wan_malloc((size_t)(N * K) * 4);
                float *b = wan_malloc((size_t)N * 4), *y = wan_malloc((size_t)(M * N) * 4);
                float *ref = wan_malloc((size_t)(M * N) * 4);
                wan_tensor w;
                uint8_t *store = make_weights(&c, wf, &w);
                for (int64_t i = 0; i < M * K; i++)
                    x[i] = frand();
                for (int64_t i = 0; i < N; i++)
                    b[i] = frand();
                for (int64_t m = 0; m < M; m++)
                    for (int64_t n = 0; n < N; n++) {
                        double s = b[n];
                        for (int64_t k = 0; k < K; k++)
                            s += (double)x[m * K + k] * wf[n * K + k];
                        ref[m * N + n] = (float)s;
                    }
                wan_cpu_linear_set_mode(modes[mi]);
                const int64_t ns = wan_cpu_linear_scratch(&w);
                float *scratch = ns ? wan_malloc((size_t)ns * 4) : NULL;
                wan_cpu_linear(x, M, K, &w, b, y, N, scratch, 2);
                wan_cpu_linear_set_mode(WAN_LINEAR_AUTO);
                char name[96];
                snprintf(name, sizeof name, "linear mode %d %s M%lld", (int)modes[mi], wan_dtype_name(dts[di]),
                         (long long)M);
                const int ok = wan_test_compare(name, y, ref, (size_t)(M * N), GEMM_TOL);
                wan_free(x), wan_free(wf), wan_free(b), wan_free(y), wan_free(ref), wan_free(store);
                wan_free(scratch);
                CHECK(ok);
            }
}

/* The float8 decoders (scalar, and the AVX2 one through the packed GEMM of one-hot rows) against torch's values of
 * all 256 codes of both formats (tests/fixtures/fp8/reference.safetensors, tools/ref/dump_fp8.py). */
TEST(gemm_float8_codes_match_torch)
{
    static const wan_dtype dts[2] = { WAN_DTYPE_F8_E4M3, WAN_DTYPE_F8_E5M2 };
    static const char *const names[2] = { "e4m3fn_codes", "e5m2_codes" };
    for (int f = 0; f < 2; f++) {
        wan_host_tensor ref = { 0 };
        CHECK(wan_test_read("fp8/reference.safetensors", names[f], WAN_DTYPE_F32, &ref));
        const float *r = ref.data;
        uint8_t codes[256];
        float got[256];
        for (int i = 0; i < 256; i++)
            codes[i] = (uint8_t)i;
        wan_tensor w = wan_tensor_view(dts[f], 2, (int64_t[]){ 1, 256 }, codes);
        wan_cpu_weight_row_to_f32(&w, 256, 0, 0, 256, got);
        int nan = 0;
        for (int i = 0; i < 256; i++) {
            nan += isnan(r[i]);
            CHECK_MSG(isnan(r[i]) ? isnan(got[i]) : got[i] == r[i] && signbit(got[i]) == signbit(r[i]),
                      "%s code %d: %g, torch %g", names[f], i, (double)got[i], (double)r[i]);
        }
        /* the SIMD decode: W [8, 256] of the finite codes (NaN ones as 0), y = I · Wᵀ gives them back */
        uint8_t wb[8 * 256];
        float *x = wan_calloc(256 * 256, sizeof(float)), *y = wan_malloc(256 * 8 * sizeof(float));
        float *scratch = wan_malloc((size_t)wan_gemm_scratch(8, 256) * sizeof(float));
        CHECK(x && y && scratch);
        for (int n = 0; n < 8; n++)
            for (int k = 0; k < 256; k++)
                wb[n * 256 + k] = isfinite(r[k]) ? (uint8_t)k : 0;
        for (int k = 0; k < 256; k++)
            x[k * 256 + k] = 1.0f;
        wan_tensor w8 = wan_tensor_view(dts[f], 2, (int64_t[]){ 8, 256 }, wb);
        for (size_t t = 0; t < sizeof g_tables / sizeof *g_tables; t++) {
            if (!wan_kernels_supported(g_tables[t]))
                continue;
            wan_gemm_packed(g_tables[t]->gemm, x, 256, 256, &w8, NULL, y, 8, scratch, 1);
            int bad = 0;
            for (int k = 0; k < 256; k++)
                for (int n = 0; n < 8; n++)
                    bad += y[k * 8 + n] != (isfinite(r[k]) ? r[k] : 0.0f);
            CHECK_MSG(!bad, "%s, %s: %d values differ", names[f], g_tables[t]->gemm->name, bad);
        }
        printf("    %s: 256 codes (%d NaN) equal torch's, scalar and packed\n", names[f], nan);
        wan_free(x), wan_free(y), wan_free(scratch);
        wan_host_tensor_free(&ref);
    }
}

/* Input of the quantiser tests: 4 blocks of random values at growing magnitudes (2^-6 to 2^3), the second block all
 * zero, a NaN and `inf` (an infinity) in the third. */
static void quantiser_input(float *x, int K, float inf)
{
    for (int i = 0; i < K; i++)
        x[i] = ldexpf(frand(), i / WAN_Q8_BLOCK * 3 - 6);
    for (int i = WAN_Q8_BLOCK; i < 2 * WAN_Q8_BLOCK; i++)
        x[i] = 0.0f;
    x[2 * WAN_Q8_BLOCK + 3] = NAN;
    x[2 * WAN_Q8_BLOCK + 5] = inf;
}

/* wan_q8_quantize_row: every value within half a step of its block's scale (plus the clamp when the F16 scale rounded
 * down), the largest at ±127, an all-zero block at scale 0, NaN as 0 and ±inf at ±127 without spoiling the scale. */
TEST(gemm_q8_quantize_row)
{
    enum { K = 4 * WAN_Q8_BLOCK };
    float x[K];
    int8_t q[K];
    uint16_t sc[K / WAN_Q8_BLOCK];
    quantiser_input(x, K, -INFINITY);
    wan_q8_quantize_row(x, K, q, sc);
    for (int b = 0; b < K / WAN_Q8_BLOCK; b++) {
        const float s = wan_f16_to_f32(sc[b]);
        float amax = 0.0f;
        int qmax = 0;
        for (int i = b * WAN_Q8_BLOCK; i < (b + 1) * WAN_Q8_BLOCK; i++) {
            if (isfinite(x[i]))
                amax = fmaxf(amax, fabsf(x[i]));
            qmax = abs(q[i]) > qmax ? abs(q[i]) : qmax;
        }
        printf("    block %d: max|x| %.4g, scale %.4g, max|q| %d\n", b, (double)amax, (double)s, qmax);
        CHECK(b == 1 ? s == 0.0f && qmax == 0 : qmax == 127 && fabsf(s - amax / 127.0f) <= amax / 127.0f * 0x1p-10f);
        for (int i = b * WAN_Q8_BLOCK; i < (b + 1) * WAN_Q8_BLOCK; i++) {
            if (isnan(x[i]))
                CHECK(q[i] == 0);
            else if (isinf(x[i]))
                CHECK(q[i] == (x[i] > 0 ? 127 : -127));
            else
                CHECK_MSG(fabsf((float)q[i] * s - x[i]) <= 0.5f * s + amax * 0x1p-10f, "x[%d] = %g -> %d", i,
                          (double)x[i], q[i]);
        }
    }
}

/* wan_q4_quantize_row: nibble k % 2 of byte k / 2 holds q + 8; the block's value of largest magnitude is q = -8 and
 * every value is within half a step (or, on the other side, clamped at 7 steps: at most one step off); zero blocks, NaN and ±inf as for q8_0; wan_q4_row_to_f32 (the reference of the
 * q4_0 GEMM cases) reads the same values at any offset. */
TEST(gemm_q4_quantize_row)
{
    enum { K = 4 * WAN_Q8_BLOCK };
    float x[K], back[K];
    uint8_t q[K / 2];
    uint16_t sc[K / WAN_Q8_BLOCK];
    quantiser_input(x, K, INFINITY);
    wan_q4_quantize_row(x, K, q, sc);
    wan_tensor w = wan_tensor_view(WAN_DTYPE_U8, 2, (int64_t[]){ 1, K }, q);
    w.qscale = sc;
    wan_q4_row_to_f32(&w, 0, 0, K, back);
    for (int b = 0; b < K / WAN_Q8_BLOCK; b++) {
        const float s = wan_f16_to_f32(sc[b]);
        float m = 0.0f;
        for (int i = b * WAN_Q8_BLOCK; i < (b + 1) * WAN_Q8_BLOCK; i++)
            if (isfinite(x[i]) && fabsf(x[i]) > fabsf(m))
                m = x[i];
        printf("    block %d: extreme %.4g, scale %.4g\n", b, (double)m, (double)s);
        CHECK(b == 1 ? s == 0.0f : fabsf(s - m / -8.0f) <= fabsf(m) / 8.0f * 0x1p-10f);
        for (int i = b * WAN_Q8_BLOCK; i < (b + 1) * WAN_Q8_BLOCK; i++) {
            const int qi = (q[i / 2] >> (4 * (i % 2)) & 15) - 8;
            CHECK(back[i] == (float)qi * s);
            if (isnan(x[i]))
                CHECK(qi == 0);
            else if (isinf(x[i]))
                CHECK(qi == (s < 0 ? -8 : 7));
            else if (x[i] == m && m != 0.0f)
                CHECK(qi == -8);
            else /* half a step, or the clamp at 7 steps on the side opposite the extreme (at most one step) */
                CHECK_MSG(fabsf((float)qi * s - x[i]) <= fmaxf(0.5f * fabsf(s), fabsf(x[i]) - 7.0f * fabsf(s)) +
                                                             fabsf(m) * 0x1p-9f,
                          "x[%d] = %g -> %d", i, (double)x[i], qi);
        }
    }
    float part[40];
    wan_q4_row_to_f32(&w, 0, 7, 40, part); /* an odd start, across a block boundary */
    CHECK(!memcmp(part, back + 7, sizeof part));
}
