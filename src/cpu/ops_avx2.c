/* ops_avx2.c — AVX2 + FMA versions of the DiT's norms' row passes and transcendental element-wise ops. */
#include "cpu/ops.h"
#include "cpu/vec_avx2.h"

#include <math.h>

void wan_cpu_gelu_tanh_avx2(float *x, int64_t n)
{
    /* 0.5·(1 + tanh(u)) == sigmoid(2u): x / (1 + e^(-2u)), u = sqrt(2/pi)·(x + 0.044715·x³) */
    const __m256 k2 = _mm256_set1_ps(-2.0f * 0.7978845608028654f), c = _mm256_set1_ps(0.044715f);
    const __m256 one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 u = _mm256_fmadd_ps(_mm256_mul_ps(c, v), _mm256_mul_ps(v, v), v);
        __m256 e = wan_exp256(_mm256_mul_ps(k2, u));
        _mm256_storeu_ps(x + i, _mm256_div_ps(v, _mm256_add_ps(one, e)));
    }
    for (; i < n; i++) {
        float u = 0.7978845608028654f * (x[i] + 0.044715f * x[i] * x[i] * x[i]);
        x[i] = x[i] / (1.0f + expf(-2.0f * u));
    }
}

double wan_cpu_row_sum_avx2(const float *x, int64_t n, double c, int p)
{
    const __m256d cv = _mm256_set1_pd(c);
    __m256d a0 = _mm256_setzero_pd(), a1 = a0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), cv);
        const __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), cv);
        if (p == 2) {
            a0 = _mm256_fmadd_pd(d0, d0, a0);
            a1 = _mm256_fmadd_pd(d1, d1, a1);
        } else {
            a0 = _mm256_add_pd(a0, d0);
            a1 = _mm256_add_pd(a1, d1);
        }
    }
    _Alignas(32) double t[4];
    _mm256_store_pd(t, _mm256_add_pd(a0, a1));
    double s = (t[0] + t[1]) + (t[2] + t[3]);
    for (; i < n; i++) {
        const double d = (double)x[i] - c;
        s += p == 2 ? d * d : d;
    }
    return s;
}

void wan_cpu_norm_row_avx2(const float *x, float *y, int64_t n, float mu, float rstd, const float *w,
                           const float *b, const float *scale, const float *shift)
{
    const __m256 m = _mm256_set1_ps(mu), r = _mm256_set1_ps(rstd), one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), m), r);
        if (w)
            v = _mm256_fmadd_ps(v, _mm256_loadu_ps(w + i), b ? _mm256_loadu_ps(b + i) : _mm256_setzero_ps());
        if (scale)
            v = _mm256_fmadd_ps(v, _mm256_add_ps(one, _mm256_loadu_ps(scale + i)), _mm256_loadu_ps(shift + i));
        _mm256_storeu_ps(y + i, v);
    }
    for (; i < n; i++) {
        float v = (x[i] - mu) * rstd;
        if (w)
            v = v * w[i] + (b ? b[i] : 0.0f);
        if (scale)
            v = v * (1.0f + scale[i]) + shift[i];
        y[i] = v;
    }
}
