/* rng.c — torch's CPU generator in C: MT19937 seeded like torch.manual_seed, and torch.randn's two
 * float32 paths.
 *
 * n >= 16 (contiguous float32): torch first fills the whole tensor with 24-bit uniforms, then turns
 * each block of 16 into normals with a vectorised Box–Muller (u = first 8, v = last 8):
 *   out[j] = r cos θ, out[j+8] = r sin θ, r = sqrt(-2 log(1 - u_j)), θ = 2π v_j,
 * and when n % 16 != 0 it draws 16 fresh uniforms into the last 16 slots and converts them again.
 * On x86 with AVX2+FMA (every current desktop/server CPU and every torch wheel) log, sin and cos come
 * from the cephes-style polynomials of ATen's avx_mathfun.h, compiled by GCC with fused
 * multiply-adds. The functions below evaluate the same polynomials one lane at a time with fmaf()
 * exactly where that build fuses, so the result is bit-identical to torch on such machines (checked
 * on 4M values and the fixtures in tests/fixtures/rng/), independent of the CPU this code runs on.
 *
 * torch builds without that kernel (AVX-512 capability, aarch64, ATEN_CPU_CAPABILITY=default) run the
 * same transform with the C library's logf/cosf/sinf instead (WAN_RANDN_TORCH_SCALAR; bit-identical
 * with glibc, and 38% of a latent's values then differ from the AVX2 kernel's by up to 2e-6).
 *
 * n < 16: torch draws each pair from two 53-bit uniforms in double precision, returns r cos θ and
 * caches r sin θ in the generator for the next element.
 *
 * This file relies on -std=c11 (no implicit contraction of a*b+c) and must not be built with
 * -ffast-math. */
#include "rng.h"

#include "wan.h"

#include <math.h>
#include <string.h>

/* ---- MT19937 ---------------------------------------------------------------------------------- */

void wan_torch_gen_seed(wan_torch_gen *g, uint64_t seed)
{
    g->mt[0] = (uint32_t)(seed & 0xffffffffu);
    for (int j = 1; j < WAN_MT_N; j++)
        g->mt[j] = 1812433253u * (g->mt[j - 1] ^ (g->mt[j - 1] >> 30)) + (uint32_t)j;
    g->next = WAN_MT_N;
    g->has_cached = 0;
    g->cached_normal = 0.0;
}

static void mt_twist(wan_torch_gen *g)
{
    for (int k = 0; k < WAN_MT_N; k++) {
        uint32_t y = (g->mt[k] & 0x80000000u) | (g->mt[(k + 1) % WAN_MT_N] & 0x7fffffffu);
        g->mt[k] = g->mt[(k + 397) % WAN_MT_N] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    }
    g->next = 0;
}

uint32_t wan_torch_gen_u32(wan_torch_gen *g)
{
    if (g->next >= WAN_MT_N)
        mt_twist(g);
    uint32_t y = g->mt[g->next++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

uint64_t wan_torch_gen_u64(wan_torch_gen *g)
{
    uint64_t hi = wan_torch_gen_u32(g);
    uint64_t lo = wan_torch_gen_u32(g);
    return (hi << 32) | lo;
}

/* ---- float lanes of the AVX2 kernel --------------------------------------------------------- */

static inline uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Natural log for x in (0, 1]: split x = m·2^e with m in [0.5, 1), fold m below sqrt(1/2) into
 * [sqrt(1/2), sqrt(2)) by doubling, and evaluate the cephes logf polynomial in f = m - 1. The
 * constants are double literals rounded to float, as the reference tables are. */
static float lane_log(float x)
{
    static const double poly[9] = { 7.0376836292E-2,  -1.1514610310E-1, 1.1676998740E-1,
                                    -1.2420140846E-1, 1.4249322787E-1,  -1.6668057665E-1,
                                    2.0000714765E-1,  -2.4999993993E-1, 3.3333331174E-1 };
    const float ln2_lo = (float)-2.12194440e-4, ln2_hi = (float)0.693359375;
    const float sqrt_half = (float)0.707106781186547524;
    const float min_norm = u2f(0x00800000u);
    if (x < min_norm)
        x = min_norm;
    uint32_t bits = f2u(x);
    float e = (float)((int32_t)(bits >> 23) - 127) + 1.0f;
    float m = u2f((bits & ~0x7f800000u) | f2u(0.5f)); /* mantissa in [0.5, 1) */
    float extra = 0.0f;
    if (m < sqrt_half) {
        extra = m;
        e = e - 1.0f;
    }
    float f = (m - 1.0f) + extra;
    float f2 = f * f;
    float p = (float)poly[0];
    for (int k = 1; k < 9; k++)
        p = fmaf(p, f, (float)poly[k]);
    p = fmaf(p * f, f2, e * ln2_lo);
    p = fmaf(-f2, 0.5f, p);
    return fmaf(e, ln2_hi, f + p);
}

/* sin and cos of x >= 0 (x < 2π here): reduce by multiples of π/4 in three steps (Cody–Waite),
 * then pick the sine or cosine polynomial per octant, as cephes sinf/cosf do. */
static void lane_sincos(float x, float *s, float *c)
{
    const float four_over_pi = (float)1.27323954473516;
    const float dp1 = (float)-0.78515625, dp2 = (float)-2.4187564849853515625e-4,
                dp3 = (float)-3.77489497744594108e-8;
    const float sp0 = (float)-1.9515295891E-4, sp1 = (float)8.3321608736E-3,
                sp2 = (float)-1.6666654611E-1;
    const float cp0 = (float)2.443315711809948E-005, cp1 = (float)-1.388731625493765E-003,
                cp2 = (float)4.166664568298827E-002;
    uint32_t sin_sign = f2u(x) & 0x80000000u;
    x = fabsf(x);
    int32_t j = (int32_t)(x * four_over_pi); /* truncation, as cvttps */
    j = (j + 1) & ~1;
    float y = (float)j;
    sin_sign ^= (uint32_t)(j & 4) << 29;
    uint32_t cos_sign = (uint32_t)(~(j - 2) & 4) << 29;
    int cos_poly_is_cos = (j & 2) == 0;
    x = fmaf(y, dp1, x);
    x = fmaf(y, dp2, x);
    x = fmaf(y, dp3, x);
    float z = x * x;
    float pc = fmaf(fmaf(cp0, z, cp1), z, cp2) * z;
    pc = fmaf(pc, z, -(z * 0.5f)) + 1.0f; /* cos(x) on [-π/4, π/4] */
    float ps = fmaf(fmaf(sp0, z, sp1), z, sp2) * z;
    ps = fmaf(ps, x, x); /* sin(x) on [-π/4, π/4] */
    float sv = cos_poly_is_cos ? ps : pc;
    float cv = cos_poly_is_cos ? pc : ps;
    *s = u2f(f2u(sv) ^ sin_sign);
    *c = u2f(f2u(cv) ^ cos_sign);
}

/* torch's portable kernel (the AVX-512, aarch64 and "default" builds): the same transform per lane
 * with the C library's logf/cosf/sinf and θ rounded from double. */
static void box_muller16_scalar(float *d)
{
    for (int j = 0; j < 8; j++) {
        float r = sqrtf(-2.0f * logf(1.0f - d[j]));
        float theta = (float)(2.0 * 3.14159265358979323846 * (double)d[j + 8]);
        d[j] = r * cosf(theta);
        d[j + 8] = r * sinf(theta);
    }
}

/* 16 uniforms in place → 16 standard normals (mean 0, std 1 make the final fma an identity). */
static void box_muller16(float *d)
{
    const float two_pi = (float)(2.0f * 3.14159265358979323846);
    for (int j = 0; j < 8; j++) {
        float r = sqrtf(-2.0f * lane_log(1.0f - d[j]));
        float s, c;
        lane_sincos(two_pi * d[j + 8], &s, &c);
        d[j] = r * c;
        d[j + 8] = r * s;
    }
}

static float uniform24(wan_torch_gen *g)
{
    return (float)(wan_torch_gen_u32(g) & 0xffffffu) * (1.0f / 16777216.0f);
}

/* ---- scalar path (n < 16) --------------------------------------------------------------------- */

static double normal_scalar(wan_torch_gen *g)
{
    if (g->has_cached) {
        g->has_cached = 0;
        return g->cached_normal;
    }
    const double scale = 1.0 / 9007199254740992.0; /* 2^-53 */
    double u1 = (double)(wan_torch_gen_u64(g) & ((1ull << 53) - 1)) * scale;
    double u2 = (double)(wan_torch_gen_u64(g) & ((1ull << 53) - 1)) * scale;
    double r = sqrt(-2.0 * log1p(-u2));
    double theta = 2.0 * 3.14159265358979323846 * u1;
    g->cached_normal = r * sin(theta);
    g->has_cached = 1;
    return r * cos(theta);
}

void wan_torch_gen_randn(wan_torch_gen *g, wan_randn_kernel kernel, float *out, size_t n)
{
    void (*bm16)(float *) = kernel == WAN_RANDN_TORCH_SCALAR ? box_muller16_scalar : box_muller16;
    if (n < 16) {
        for (size_t i = 0; i < n; i++)
            out[i] = (float)normal_scalar(g);
        return;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = uniform24(g);
    for (size_t i = 0; i + 16 <= n; i += 16)
        bm16(out + i);
    if (n % 16 != 0) {
        float *tail = out + n - 16;
        for (int j = 0; j < 16; j++)
            tail[j] = uniform24(g);
        bm16(tail);
    }
}

wan_status wan_randn_ex(uint64_t seed, size_t n, wan_randn_kernel kernel, float *out)
{
    if ((n > 0 && !out) || (kernel != WAN_RANDN_TORCH_AVX2 && kernel != WAN_RANDN_TORCH_SCALAR))
        return WAN_ERR_INVALID_ARG;
    wan_torch_gen g;
    wan_torch_gen_seed(&g, seed);
    wan_torch_gen_randn(&g, kernel, out, n);
    return WAN_OK;
}

wan_status wan_randn(uint64_t seed, size_t n, float *out)
{
    return wan_randn_ex(seed, n, WAN_RANDN_TORCH_AVX2, out);
}
