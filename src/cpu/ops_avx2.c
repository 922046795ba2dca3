/* ops_avx2.c — AVX2 + FMA versions of the DiT's transcendental element-wise ops. */
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
