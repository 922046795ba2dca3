/* attention_simd.h — the online-softmax step shared by the AVX2 and AVX-512 attention tile kernels (internal;
 * include only from files compiled with at least the AVX2 flags). */
#ifndef WAN_CPU_ATTENTION_SIMD_H
#define WAN_CPU_ATTENTION_SIMD_H

#include "cpu/attention.h"
#include "cpu/vec_avx2.h"

#include <math.h>

/* Online-softmax update of one row: S[0..bk) becomes exp(S - m_new); returns the rescale factor of O. */
static inline float att_softmax_row(float *s, int bk, float *m, float *l)
{
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 mx = ninf;
    int j = 0;
    for (; j + 8 <= bk; j += 8)
        mx = _mm256_max_ps(mx, _mm256_loadu_ps(s + j));
    float mxs = wan_hmax256(mx);
    for (; j < bk; j++)
        mxs = s[j] > mxs ? s[j] : mxs;
    const float mnew = mxs > *m ? mxs : *m;
    const float alpha = expf(*m - mnew);
    const __m256 mv = _mm256_set1_ps(mnew);
    __m256 sum = _mm256_setzero_ps();
    for (j = 0; j + 8 <= bk; j += 8) {
        const __m256 p = wan_exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv));
        _mm256_storeu_ps(s + j, p);
        sum = _mm256_add_ps(sum, p);
    }
    float sums = wan_hsum256(sum);
    for (; j < bk; j++) {
        s[j] = expf(s[j] - mnew);
        sums += s[j];
    }
    *l = *l * alpha + sums;
    *m = mnew;
    return alpha;
}

/* The softmax step of a tile: rows r < bq of S (row stride WAN_ATT_BK, bk keys) become exp(S - m_new), m and l are
 * updated, and each row of O (hd a multiple of 8) is rescaled by e^(m_old - m_new) where that is not 1. */
static inline void att_softmax_rows(float *S, int bq, int bk, int hd, float *O, float *m, float *l)
{
    for (int r = 0; r < bq; r++) {
        const float alpha = att_softmax_row(S + (int64_t)r * WAN_ATT_BK, bk, &m[r], &l[r]);
        if (alpha != 1.0f) {
            const __m256 av = _mm256_set1_ps(alpha);
            float *orow = O + (int64_t)r * hd;
            for (int d = 0; d < hd; d += 8)
                _mm256_storeu_ps(orow + d, _mm256_mul_ps(_mm256_loadu_ps(orow + d), av));
        }
    }
}

#endif /* WAN_CPU_ATTENTION_SIMD_H */
