/* attention_avx2.c — AVX2 + FMA tile kernel of the flash attention: 6x16 register blocks for Q·Kᵀ and P·V,
 * vectorised online softmax. */
#include "cpu/attention.h"
#include "cpu/attention_simd.h"

#include <math.h>

/* The 6x16 register blocks are written out row by row (12 named accumulators): left as loops over an array,
 * gcc -O2 keeps the accumulators in memory. */
#define ROWS6(X) X(0) X(1) X(2) X(3) X(4) X(5)

/* S[r][j0..j0+16) = scale · Q[r]·K_panel for 6 rows r0..r0+5. */
static inline void qk_6x16(const float *Q, int hd, const float *panel, float scale, float *S)
{
#define QK_DECL(i) __m256 a##i##0 = _mm256_setzero_ps(), a##i##1 = _mm256_setzero_ps();
    ROWS6(QK_DECL)
    for (int d = 0; d < hd; d++) {
        const __m256 k0 = _mm256_load_ps(panel + d * WAN_ATT_KP), k1 = _mm256_load_ps(panel + d * WAN_ATT_KP + 8);
#define QK_FMA(i)                                                                                 \
        {                                                                                         \
            const __m256 qv = _mm256_broadcast_ss(Q + (int64_t)(i) * hd + d);                     \
            a##i##0 = _mm256_fmadd_ps(qv, k0, a##i##0);                                           \
            a##i##1 = _mm256_fmadd_ps(qv, k1, a##i##1);                                           \
        }
        ROWS6(QK_FMA)
    }
    const __m256 sc = _mm256_set1_ps(scale);
#define QK_STORE(i)                                                                               \
    _mm256_storeu_ps(S + (int64_t)(i) * WAN_ATT_BK, _mm256_mul_ps(a##i##0, sc));                  \
    _mm256_storeu_ps(S + (int64_t)(i) * WAN_ATT_BK + 8, _mm256_mul_ps(a##i##1, sc));
    ROWS6(QK_STORE)
}

/* O[r][d0..d0+16) += sum_j P[r][j] · V[j][d0..d0+16) for 6 rows. */
static inline void pv_6x16(const float *P, const float *V, int bk, int hd, float *O)
{
#define PV_LOAD(i)                                                                                \
    __m256 a##i##0 = _mm256_loadu_ps(O + (int64_t)(i) * hd), a##i##1 = _mm256_loadu_ps(O + (int64_t)(i) * hd + 8);
    ROWS6(PV_LOAD)
    for (int j = 0; j < bk; j++) {
        const __m256 v0 = _mm256_loadu_ps(V + (int64_t)j * hd), v1 = _mm256_loadu_ps(V + (int64_t)j * hd + 8);
#define PV_FMA(i)                                                                                 \
        {                                                                                         \
            const __m256 p = _mm256_broadcast_ss(P + (int64_t)(i) * WAN_ATT_BK + j);              \
            a##i##0 = _mm256_fmadd_ps(p, v0, a##i##0);                                            \
            a##i##1 = _mm256_fmadd_ps(p, v1, a##i##1);                                            \
        }
        ROWS6(PV_FMA)
    }
#define PV_STORE(i)                                                                               \
    _mm256_storeu_ps(O + (int64_t)(i) * hd, a##i##0);                                             \
    _mm256_storeu_ps(O + (int64_t)(i) * hd + 8, a##i##1);
    ROWS6(PV_STORE)
}

void wan_att_tile_avx2(const float *Q, int bq, const float *Kp, const float *V, int bk, int hd, float scale,
                       float *S, float *O, float *m, float *l)
{
    const int npanels = (bk + WAN_ATT_KP - 1) / WAN_ATT_KP;
    for (int p = 0; p < npanels; p++)
        for (int r0 = 0; r0 < bq; r0 += 6)
            qk_6x16(Q + (int64_t)r0 * hd, hd, Kp + (int64_t)p * hd * WAN_ATT_KP, scale,
                    S + (int64_t)r0 * WAN_ATT_BK + p * WAN_ATT_KP);
    att_softmax_rows(S, bq, bk, hd, O, m, l);
    for (int d0 = 0; d0 < hd; d0 += 16)
        for (int r0 = 0; r0 < bq; r0 += 6)
            pv_6x16(S + (int64_t)r0 * WAN_ATT_BK, V + d0, bk, hd, O + (int64_t)r0 * hd + d0);
}
