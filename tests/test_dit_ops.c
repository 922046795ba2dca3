/* test_dit_ops.c — the DiT's CPU kernels (linear, attention, norms, RoPE, activations) against naive
 * double-precision references. Tolerance: 1e-5 · max|ref| — f32 arithmetic against double, for sums of at
 * most a few thousand terms. */
#include "test.h"

#include "core.h"
#include "cpu/attention.h"
#include "cpu/gemm.h"
#include "cpu/ops.h"

#include <stdlib.h>

#define OPS_TOL 1e-5

static uint32_t g_lcg = 12345u;
static float frand(void) /* uniform in [-1, 1) */
{
    g_lcg = g_lcg * 1664525u + 1013904223u;
    return (float)((g_lcg >> 8) * (1.0 / 8388608.0)) - 1.0f;
}

static float *rand_vec(int64_t n, float amp)
{
    float *v = wan_malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; v && i < n; i++)
        v[i] = amp * frand();
    return v;
}

/* y = x·Wᵀ + b with W given as f32 values (already rounded as the kernel sees them). */
static void naive_linear(const float *x, int64_t M, int64_t K, const float *W, int64_t N, const float *b, float *y)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = b ? b[n] : 0.0;
            for (int64_t k = 0; k < K; k++)
                s += (double)x[m * K + k] * W[n * K + k];
            y[m * N + n] = (float)s;
        }
}

/* One linear with weights stored as `dt`, compared with the naive product of the stored values. */
static int linear_case(const char *name, wan_dtype dt, int64_t M, int64_t K, int64_t N, int misalign)
{
    float *x = rand_vec(M * K, 1.0f), *wf = rand_vec(N * K, 0.5f), *b = rand_vec(N, 1.0f);
    float *y = wan_malloc((size_t)(M * N) * 4), *ref = wan_malloc((size_t)(M * N) * 4);
    uint8_t *store = wan_malloc((size_t)(N * K) * 4 + 8);
    uint8_t *wd = store + misalign;
    for (int64_t i = 0; i < N * K; i++) {
        if (dt == WAN_DTYPE_BF16) {
            uint16_t h = wan_f32_to_bf16(wf[i]);
            memcpy(wd + 2 * i, &h, 2);
            wf[i] = wan_bf16_to_f32(h);
        } else if (dt == WAN_DTYPE_F16) {
            uint16_t h = wan_f32_to_f16(wf[i]);
            memcpy(wd + 2 * i, &h, 2);
            wf[i] = wan_f16_to_f32(h);
        } else {
            memcpy(wd + 4 * i, &wf[i], 4);
        }
    }
    wan_tensor w = wan_tensor_view(dt, 2, (int64_t[]){ N, K }, wd);
    int64_t ns = wan_cpu_linear_scratch(&w);
    float *scratch = ns ? wan_malloc((size_t)ns * 4) : NULL;
    wan_cpu_linear(x, M, K, &w, b, y, N, scratch, 2);
    naive_linear(x, M, K, wf, N, b, ref);
    int ok = wan_test_compare(name, y, ref, (size_t)(M * N), OPS_TOL);
    wan_free(x), wan_free(wf), wan_free(b), wan_free(y), wan_free(ref), wan_free(store), wan_free(scratch);
    return ok;
}

TEST(dit_ops_linear)
{
    CHECK(linear_case("linear f32", WAN_DTYPE_F32, 37, 70, 53, 0));
    CHECK(linear_case("linear f32 unaligned", WAN_DTYPE_F32, 5, 33, 17, 2));
    CHECK(linear_case("linear bf16", WAN_DTYPE_BF16, 37, 70, 53, 0));
    CHECK(linear_case("linear f16 odd address", WAN_DTYPE_F16, 9, 64, 31, 1));
    /* threaded paths: split over weight rows, over x rows */
    CHECK(linear_case("linear f32 threads, split N", WAN_DTYPE_F32, 97, 300, 200, 0));
    CHECK(linear_case("linear f32 threads, split M", WAN_DTYPE_F32, 601, 100, 40, 0));
    /* several conversion tiles (a small tile size stands in for a huge matrix), with each split */
    wan_cpu_linear_set_tile(100 * 64);
    int ok = linear_case("linear bf16 tiles, split N", WAN_DTYPE_BF16, 40, 100, 700, 0) &&
             linear_case("linear bf16 tiles, split M", WAN_DTYPE_BF16, 300, 100, 150, 0) &&
             linear_case("linear f16 tiles, serial", WAN_DTYPE_F16, 3, 100, 150, 0);
    wan_cpu_linear_set_tile(0);
    CHECK(ok);
}

void wan_test_naive_attention(const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v, int64_t ldv,
                            float *out, int64_t ldo, int64_t Lq, int64_t Lk, int H, int hd, double scale,
                            double last_w)
{
    double *s = malloc((size_t)Lk * sizeof(double));
    for (int n = 0; n < H; n++)
        for (int64_t i = 0; i < Lq; i++) {
            double mx = -INFINITY, sum = 0.0;
            for (int64_t j = 0; j < Lk; j++) {
                double d = 0.0;
                for (int c = 0; c < hd; c++)
                    d += (double)q[i * ldq + n * hd + c] * k[j * ldk + n * hd + c];
                s[j] = d * scale;
                mx = s[j] > mx ? s[j] : mx;
            }
            for (int64_t j = 0; j < Lk; j++)
                sum += (s[j] = exp(s[j] - mx) * (j == Lk - 1 ? last_w : 1.0));
            for (int c = 0; c < hd; c++) {
                double o = 0.0;
                for (int64_t j = 0; j < Lk; j++)
                    o += s[j] * v[j * ldv + n * hd + c];
                out[i * ldo + n * hd + c] = (float)(o / sum);
            }
        }
    free(s);
}

/* Last key of multiplicity w (1: plain attention). */
static int attention_case(const char *name, wan_att_tile_fn tile, int64_t Lq, int64_t Lk, int H, int hd, float amp,
                          float w)
{
    const int64_t ld = (int64_t)H * hd + 5; /* strides wider than the heads */
    float *q = rand_vec(Lq * ld, amp), *k = rand_vec(Lk * ld, amp), *v = rand_vec(Lk * ld, 1.0f);
    float *o = wan_calloc((size_t)(Lq * ld), 4), *ref = wan_calloc((size_t)(Lq * ld), 4);
    void *scratch = wan_malloc(wan_cpu_attention_scratch(Lk, H, hd, 2));
    const float scale = 1.0f / sqrtf((float)hd);
    wan_cpu_attention_force_tile(tile);
    wan_cpu_attention(q, ld, k, ld, v, ld, o, ld, Lq, Lk, H, hd, scale, w, scratch, 2);
    wan_cpu_attention_force_tile(NULL);
    wan_test_naive_attention(q, ld, k, ld, v, ld, ref, ld, Lq, Lk, H, hd, scale, w);
    int ok = wan_test_compare(name, o, ref, (size_t)(Lq * ld), OPS_TOL);
    wan_free(q), wan_free(k), wan_free(v), wan_free(o), wan_free(ref), wan_free(scratch);
    return ok;
}

/* The opt-in AMX attention (bf16 q·scale, k, v and probabilities, f32 softmax and sums) against the naive f32
 * attention of the bf16-rounded q·scale, k and v: what is left is the probabilities' rounding, 2^-9 relative each,
 * hence a bound of 1e-2 · max|ref| instead of OPS_TOL. A weighted last key goes through the f32 step with the
 * unrounded rows (the reference's score for it then differs by the rounding of q·scale only). */
static int attention_case_amx(const char *name, int64_t Lq, int64_t Lk, int H, float amp, float w)
{
    const int hd = 128;
    const int64_t ld = (int64_t)H * hd + 5;
    float *q = rand_vec(Lq * ld, amp), *k = rand_vec(Lk * ld, amp), *v = rand_vec(Lk * ld, 1.0f);
    float *qr = wan_malloc((size_t)(Lq * ld) * 4), *kr = wan_malloc((size_t)(Lk * ld) * 4);
    float *vr = wan_malloc((size_t)(Lk * ld) * 4);
    float *o = wan_calloc((size_t)(Lq * ld), 4), *ref = wan_calloc((size_t)(Lq * ld), 4);
    void *scratch = wan_malloc(wan_cpu_attention_scratch(Lk, H, hd, 2));
    const float scale = 1.0f / sqrtf((float)hd);
    const int64_t tiled = w != 1.0f ? Lk - 1 : Lk; /* rows that go through the tiles */
    for (int64_t i = 0; i < Lq * ld; i++)
        qr[i] = wan_bf16_to_f32(wan_f32_to_bf16(q[i] * scale));
    for (int64_t i = 0; i < Lk * ld; i++) {
        kr[i] = i < tiled * ld ? wan_bf16_to_f32(wan_f32_to_bf16(k[i])) : k[i];
        vr[i] = i < tiled * ld ? wan_bf16_to_f32(wan_f32_to_bf16(v[i])) : v[i];
    }
    wan_cpu_attention_set_bf16(1);
    wan_cpu_attention(q, ld, k, ld, v, ld, o, ld, Lq, Lk, H, hd, scale, w, scratch, 2);
    wan_cpu_attention_set_bf16(0);
    wan_test_naive_attention(qr, ld, kr, ld, vr, ld, ref, ld, Lq, Lk, H, hd, 1.0f, w);
    int ok = wan_test_compare(name, o, ref, (size_t)(Lq * ld), 1e-2);
    wan_free(q), wan_free(k), wan_free(v), wan_free(qr), wan_free(kr), wan_free(vr), wan_free(o), wan_free(ref);
    wan_free(scratch);
    return ok;
}

TEST(dit_ops_attention_amx)
{
    if (!wan_gemm_ukr_supported(&wan_gemm_ukr_amx)) {
        printf("    skipping: no AMX on this CPU (or the OS refused the tile state)\n");
        return;
    }
    CHECK(attention_case_amx("attention amx 100 x 300", 100, 300, 3, 1.0f, 1.0f));
    CHECK(attention_case_amx("attention amx 97 x 33 large scores", 97, 33, 2, 6.0f, 1.0f));
    CHECK(attention_case_amx("attention amx 200 x 129, last key x384", 200, 129, 2, 1.0f, 384.0f));
    CHECK(attention_case_amx("attention amx 13 x 1, only key x512", 13, 1, 2, 1.0f, 512.0f));
}

TEST(dit_ops_attention)
{
    /* tails everywhere: Lq not a multiple of 48 or 6, Lk not a multiple of 128 or 16 */
    CHECK(attention_case("attention generic hd32", wan_att_tile_generic, 100, 300, 3, 32, 1.0f, 1.0f));
    CHECK(attention_case("attention generic hd24", wan_att_tile_generic, 7, 5, 2, 24, 1.0f, 1.0f));
    CHECK(attention_case("attention generic large scores", wan_att_tile_generic, 50, 260, 2, 32, 6.0f, 1.0f));
    /* a last key of multiplicity w (a context's trailing pad rows): after a ragged tile, after exactly one full
     * tile, alone, and with scores large enough that it holds the running max */
    CHECK(attention_case("attention generic last key x501", wan_att_tile_generic, 100, 12, 3, 32, 1.0f, 501.0f));
    CHECK(attention_case("attention generic last key x384, 128 before", wan_att_tile_generic, 50, 129, 2, 24, 1.0f,
                         384.0f));
    CHECK(attention_case("attention generic only key x512", wan_att_tile_generic, 7, 1, 2, 32, 1.0f, 512.0f));
    CHECK(attention_case("attention generic last key x200 large scores", wan_att_tile_generic, 50, 40, 2, 32, 6.0f,
                         200.0f));
    if (!wan_cpu_use_avx2()) {
        printf("    (no AVX2: the AVX2 tile kernel is not tested on this CPU)\n");
        return;
    }
    CHECK(attention_case("attention avx2 hd32", wan_att_tile_avx2, 100, 300, 3, 32, 1.0f, 1.0f));
    CHECK(attention_case("attention avx2 hd128", wan_att_tile_avx2, 61, 517, 2, 128, 1.0f, 1.0f));
    CHECK(attention_case("attention avx2 one key", wan_att_tile_avx2, 13, 1, 2, 16, 1.0f, 1.0f));
    CHECK(attention_case("attention avx2 large scores", wan_att_tile_avx2, 50, 260, 2, 32, 6.0f, 1.0f));
    CHECK(attention_case("attention dispatch hd128", NULL, 97, 200, 2, 128, 1.0f, 1.0f));
    CHECK(attention_case("attention avx2 hd128 last key x493", wan_att_tile_avx2, 61, 20, 2, 128, 1.0f, 493.0f));
    CHECK(attention_case("attention avx2 only key x512", wan_att_tile_avx2, 13, 1, 2, 16, 1.0f, 512.0f));
    if (!wan_cpu_use_avx512()) {
        printf("    (no AVX-512: the AVX-512 tile kernel is not tested on this CPU)\n");
        return;
    }
    /* odd panel counts (a 16-key panel alone at a tile's end), one key, every hd multiple of 32 up to 128 */
    CHECK(attention_case("attention avx512 hd32", wan_att_tile_avx512, 100, 300, 3, 32, 1.0f, 1.0f));
    CHECK(attention_case("attention avx512 hd128", wan_att_tile_avx512, 61, 517, 2, 128, 1.0f, 1.0f));
    CHECK(attention_case("attention avx512 hd64 144 keys", wan_att_tile_avx512, 37, 144, 2, 64, 1.0f, 1.0f));
    CHECK(attention_case("attention avx512 one key", wan_att_tile_avx512, 13, 1, 2, 32, 1.0f, 1.0f));
    CHECK(attention_case("attention avx512 large scores", wan_att_tile_avx512, 50, 260, 2, 32, 6.0f, 1.0f));
    CHECK(attention_case("attention avx512 hd128 last key x493", wan_att_tile_avx512, 61, 20, 2, 128, 1.0f, 493.0f));
}

TEST(dit_ops_norms)
{
    const int64_t L = 9, D = 40, ld = 44, U = 3, ml = 2 * D;
    float *x = rand_vec(L * ld, 2.0f), *y = wan_calloc((size_t)(L * ld), 4), *ref = wan_calloc((size_t)(L * ld), 4);
    float *w = rand_vec(D, 1.0f), *b = rand_vec(D, 1.0f), *mod = rand_vec(U * ml, 1.0f);
    int32_t rows[9] = { 0, 0, 1, 1, 2, 2, 0, 1, 2 };
    for (int64_t l = 0; l < L; l++)
        x[l * ld + 3] += 5.0f; /* a non-zero mean */
    for (int pass = 0; pass < 2; pass++) {
        const int affine = pass == 0;
        wan_cpu_layernorm(x, y, L, D, ld, 1e-6f, affine ? w : NULL, affine ? b : NULL, mod, mod + D, rows, ml, 2);
        for (int64_t l = 0; l < L; l++) {
            double mu = 0, var = 0;
            for (int64_t i = 0; i < D; i++)
                mu += x[l * ld + i];
            mu /= D;
            for (int64_t i = 0; i < D; i++)
                var += (x[l * ld + i] - mu) * (x[l * ld + i] - mu);
            var /= D;
            const float *sh = mod + rows[l] * ml, *sc = sh + D;
            for (int64_t i = 0; i < D; i++) {
                double v = (x[l * ld + i] - mu) / sqrt(var + 1e-6);
                if (affine)
                    v = v * w[i] + b[i];
                ref[l * ld + i] = (float)(v * (1.0 + sc[i]) + sh[i]);
            }
        }
        CHECK(wan_test_compare(affine ? "layernorm affine+mod" : "layernorm mod", y, ref, (size_t)(L * ld), OPS_TOL));
    }
    memcpy(y, x, (size_t)(L * ld) * 4);
    wan_cpu_rmsnorm(y, L, D, ld, 1e-6f, w, 2);
    for (int64_t l = 0; l < L; l++) {
        double s2 = 0;
        for (int64_t i = 0; i < D; i++)
            s2 += (double)x[l * ld + i] * x[l * ld + i];
        for (int64_t i = 0; i < D; i++)
            ref[l * ld + i] = (float)(x[l * ld + i] / sqrt(s2 / D + 1e-6) * w[i]);
        for (int64_t i = D; i < ld; i++)
            ref[l * ld + i] = x[l * ld + i]; /* untouched past D */
    }
    CHECK(wan_test_compare("rmsnorm", y, ref, (size_t)(L * ld), OPS_TOL));
    memcpy(y, x, (size_t)(L * ld) * 4);
    wan_cpu_gated_add(y, ld, b, 0, L, D, mod + D, rows, ml, 2); /* y += gate · b (row stride 0: same row) */
    for (int64_t l = 0; l < L; l++)
        for (int64_t i = 0; i < ld; i++)
            ref[l * ld + i] = i < D ? x[l * ld + i] + b[i] * mod[rows[l] * ml + D + i] : x[l * ld + i];
    CHECK(wan_test_compare("gated_add", y, ref, (size_t)(L * ld), OPS_TOL));
    wan_free(x), wan_free(y), wan_free(ref), wan_free(w), wan_free(b), wan_free(mod);
}

TEST(dit_ops_activations)
{
    const int64_t n = 20003; /* several chunks and a vector tail */
    float *x = wan_malloc(n * 4), *y = wan_malloc(n * 4), *ref = wan_malloc(n * 4);
    for (int64_t i = 0; i < n; i++)
        x[i] = -12.0f + 24.0f * (float)i / (float)(n - 1);
    memcpy(y, x, n * 4);
    wan_cpu_gelu_tanh(y, n, 2);
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        ref[i] = (float)(0.5 * v * (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (v + 0.044715 * v * v * v))));
    }
    CHECK(wan_test_compare("gelu_tanh", y, ref, (size_t)n, OPS_TOL));
    wan_cpu_silu(x, y, n);
    for (int64_t i = 0; i < n; i++)
        ref[i] = (float)(x[i] / (1.0 + exp(-(double)x[i])));
    CHECK(wan_test_compare("silu", y, ref, (size_t)n, OPS_TOL));
    wan_free(x), wan_free(y), wan_free(ref);
}

TEST(dit_ops_rope)
{
    /* hd 32 splits 12/10/10 (spec §3.1): unequal per axis, so a mixed-up axis shows */
    const int nf = 3, nh = 4, nw = 5, H = 2, hd = 32, dt = 12, dh = 10, dw = 10;
    const int64_t L = (int64_t)nf * nh * nw, ld = H * hd + 3;
    float *x = rand_vec(L * ld, 1.0f), *y = wan_malloc((size_t)(L * ld) * 4), *ref = wan_malloc((size_t)(L * ld) * 4);
    float *tt = wan_malloc(nf * dt * 4), *th = wan_malloc(nh * dh * 4), *tw = wan_malloc(nw * dw * 4);
    wan_cpu_rope_table(tt, nf, dt, 10000.0);
    wan_cpu_rope_table(th, nh, dh, 10000.0);
    wan_cpu_rope_table(tw, nw, dw, 10000.0);
    memcpy(y, x, (size_t)(L * ld) * 4);
    memcpy(ref, x, (size_t)(L * ld) * 4);
    wan_cpu_rope(y, ld, nf, nh, nw, H, hd, dt, dh, tt, th, tw, 2);
    for (int64_t l = 0; l < L; l++) {
        const int pos[3] = { (int)(l / (nh * nw)), (int)(l / nw % nh), (int)(l % nw) };
        for (int n = 0; n < H; n++)
            for (int m = 0; m < hd / 2; m++) {
                int axis = m < dt / 2 ? 0 : m < (dt + dh) / 2 ? 1 : 2;
                int j = axis == 0 ? m : axis == 1 ? m - dt / 2 : m - (dt + dh) / 2;
                int da = axis == 0 ? dt : axis == 1 ? dh : dw;
                double phi = pos[axis] * pow(10000.0, -2.0 * j / da);
                double a = x[l * ld + n * hd + 2 * m], b = x[l * ld + n * hd + 2 * m + 1];
                ref[l * ld + n * hd + 2 * m] = (float)(a * cos(phi) - b * sin(phi));
                ref[l * ld + n * hd + 2 * m + 1] = (float)(a * sin(phi) + b * cos(phi));
            }
    }
    CHECK(wan_test_compare("rope", y, ref, (size_t)(L * ld), OPS_TOL));
    wan_free(x), wan_free(y), wan_free(ref), wan_free(tt), wan_free(th), wan_free(tw);
}
