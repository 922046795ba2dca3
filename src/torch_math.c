/* torch_math.c — scalar re-evaluation of the SLEEF u10 float32 expm1 that torch's AVX2 CPU kernel
 * calls (see torch_math.h). SLEEF builds it with -ffp-contract=off and fuses multiply-adds only where
 * it asks for them explicitly; every such place is an fmaf() below, every other operation is one IEEE
 * float operation (this file relies on -std=c11, which does not contract a*b+c, and must not be built
 * with -ffast-math). Intermediate values are carried as unevaluated pairs hi + lo ("double-float"),
 * as SLEEF does, to reach ~1-ulp results. */
#include "torch_math.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

typedef struct ff { float x, y; } ff; /* value = x + y, |y| <= ulp(x)/2 */

static inline ff ff_make(float x, float y) { return (ff){ x, y }; }

/* 2^q as a float (q in the normal exponent range) */
static inline float pow2i(int32_t q)
{
    uint32_t u = (uint32_t)(q + 0x7f) << 23;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* d·2^q in two factors so that intermediate powers stay representable */
static inline float ldexp2(float d, int32_t q) { return d * pow2i(q >> 1) * pow2i(q - (q >> 1)); }

/* pair + float, any magnitudes */
static inline ff ff_add2_pf(ff x, float y)
{
    float s = x.x + y, v = s - x.x;
    float t = (x.x - (s - v)) + (y - v);
    return ff_make(s, t + x.y);
}

/* pair + pair, any magnitudes */
static inline ff ff_add2_pp(ff x, ff y)
{
    float s = x.x + y.x, v = s - x.x;
    float t = (x.x - (s - v)) + (y.x - v);
    return ff_make(s, t + (x.y + y.y));
}

/* float + pair, |x| >= |y| */
static inline ff ff_add_fp(float x, ff y)
{
    float s = x + y.x;
    return ff_make(s, ((x - s) + y.x) + y.y);
}

static inline ff ff_mul_pf(ff x, float y)
{
    float s = x.x * y;
    return ff_make(s, fmaf(x.y, y, fmaf(x.x, y, -s)));
}

static inline ff ff_mul_pp(ff x, ff y)
{
    float s = x.x * y.x;
    return ff_make(s, fmaf(x.x, y.y, fmaf(x.y, y.x, fmaf(x.x, y.x, -s))));
}

static inline ff ff_sqr(ff x)
{
    float s = x.x * x.x;
    return ff_make(s, fmaf(x.x + x.x, x.y, fmaf(x.x, x.x, -s)));
}

#define LN2_HI 0.693145751953125f /* ln 2 split: a high part with trailing zeros + the rest */
#define LN2_LO 1.428606765330187045e-06f
#define INV_LN2 1.442695040888963407359924681001892137426645954152985934135449406931f

/* e^d as a pair, for a pair d with -104 <= d.x <= 89: reduce by k·ln2 (k = nearest integer, ties to
 * even as cvtps2dq), a degree-6 polynomial in pair arithmetic, then scale by 2^k. */
static ff exp_pair(ff d)
{
    float u = (d.x + d.y) * INV_LN2;
    int32_t q = (int32_t)nearbyintf(u);
    ff s = ff_add2_pf(d, (float)q * -LN2_HI);
    s = ff_add2_pf(s, (float)q * -LN2_LO);
    u = 0.1980960224e-3f;
    u = fmaf(u, s.x, 0.1394256484e-2f);
    u = fmaf(u, s.x, 0.8333456703e-2f);
    u = fmaf(u, s.x, 0.4166637361e-1f);
    ff t = ff_add2_pf(ff_mul_pf(s, u), 0.166666659414234244790680580464e+0f);
    t = ff_add2_pf(ff_mul_pp(s, t), 0.5f);
    t = ff_add2_pp(s, ff_mul_pp(ff_sqr(s), t));
    t = ff_add_fp(1.0f, t);
    return ff_make(ldexp2(t.x, q), ldexp2(t.y, q));
}

float wan_torch_expm1f(float a)
{
    if (isnan(a))
        return a;
    if (a > 88.72283172607421875f)
        return INFINITY;
    if (a < -16.635532333438687426013570f)
        return -1.0f;
    if (a == 0.0f && signbit(a))
        return -0.0f;
    ff d = ff_add2_pf(exp_pair(ff_make(a, 0.0f)), -1.0f);
    return d.x + d.y;
}
