/* attention_avx512.c — AVX-512 tile kernel of the flash attention: 6 x 32 register blocks (12 zmm accumulators) for
 * Q·Kᵀ (two packed 16-key panels at a time) and P·V (32 output dims at a time); the online softmax is the AVX2 one
 * (attention_simd.h). Same arithmetic as the AVX2 tile, f32 throughout. */
#include "cpu/attention_simd.h"

#include <immintrin.h>

#define ROWS6(X) X(0) X(1) X(2) X(3) X(4) X(5)

/* S[r][0..32) = scale · Q[r]·[panel p0 | panel p1] for 6 rows. */
static inline void qk_6x32(const float *Q, int hd, const float *p0, const float *p1, float scale, float *S)
{
#define QK_DECL(i) __m512 a##i##0 = _mm512_setzero_ps(), a##i##1 = _mm512_setzero_ps();
    ROWS6(QK_DECL)
    for (int d = 0; d < hd; d++) {
        const __m512 k0 = _mm512_loadu_ps(p0 + d * WAN_ATT_KP), k1 = _mm512_loadu_ps(p1 + d * WAN_ATT_KP);
#define QK_FMA(i)                                                                                 \
        {                                                                                         \
            const __m512 qv = _mm512_set1_ps(Q[(int64_t)(i) * hd + d]);                           \
            a##i##0 = _mm512_fmadd_ps(qv, k0, a##i##0);                                           \
            a##i##1 = _mm512_fmadd_ps(qv, k1, a##i##1);                                           \
        }
        ROWS6(QK_FMA)
    }
    const __m512 sc = _mm512_set1_ps(scale);
#define QK_STORE(i)                                                                               \
    _mm512_storeu_ps(S + (int64_t)(i) * WAN_ATT_BK, _mm512_mul_ps(a##i##0, sc));                  \
    _mm512_storeu_ps(S + (int64_t)(i) * WAN_ATT_BK + 16, _mm512_mul_ps(a##i##1, sc));
    ROWS6(QK_STORE)
}

/* S[r][0..16) for the tile's last, odd panel. */
static inline void qk_6x16(const float *Q, int hd, const float *p0, float scale, float *S)
{
#define QK1_DECL(i) __m512 a##i = _mm512_setzero_ps();
    ROWS6(QK1_DECL)
    for (int d = 0; d < hd; d++) {
        const __m512 k0 = _mm512_loadu_ps(p0 + d * WAN_ATT_KP);
#define QK1_FMA(i) a##i = _mm512_fmadd_ps(_mm512_set1_ps(Q[(int64_t)(i) * hd + d]), k0, a##i);
        ROWS6(QK1_FMA)
    }
    const __m512 sc = _mm512_set1_ps(scale);
#define QK1_STORE(i) _mm512_storeu_ps(S + (int64_t)(i) * WAN_ATT_BK, _mm512_mul_ps(a##i, sc));
    ROWS6(QK1_STORE)
}

/* O[r][0..32) += Σ_j P[r][j] · V[j][0..32) for 6 rows (V rows hd floats apart). */
static inline void pv_6x32(const float *P, const float *V, int bk, int hd, float *O)
{
#define PV_LOAD(i)                                                                                \
    __m512 a##i##0 = _mm512_loadu_ps(O + (int64_t)(i) * hd), a##i##1 = _mm512_loadu_ps(O + (int64_t)(i) * hd + 16);
    ROWS6(PV_LOAD)
    for (int j = 0; j < bk; j++) {
        const __m512 v0 = _mm512_loadu_ps(V + (int64_t)j * hd), v1 = _mm512_loadu_ps(V + (int64_t)j * hd + 16);
#define PV_FMA(i)                                                                                 \
        {                                                                                         \
            const __m512 p = _mm512_set1_ps(P[(int64_t)(i) * WAN_ATT_BK + j]);                    \
            a##i##0 = _mm512_fmadd_ps(p, v0, a##i##0);                                            \
            a##i##1 = _mm512_fmadd_ps(p, v1, a##i##1);                                            \
        }
        ROWS6(PV_FMA)
    }
#define PV_STORE(i)                                                                               \
    _mm512_storeu_ps(O + (int64_t)(i) * hd, a##i##0);                                             \
    _mm512_storeu_ps(O + (int64_t)(i) * hd + 16, a##i##1);
    ROWS6(PV_STORE)
}

void wan_att_tile_avx512(const float *Q, int bq, const float *Kp, const float *V, int bk, int hd, float scale,
                         float *S, float *O, float *m, float *l)
{
    const int npanels = (bk + WAN_ATT_KP - 1) / WAN_ATT_KP;
    const int64_t panel = (int64_t)hd * WAN_ATT_KP;
    for (int p = 0; p < npanels; p += 2)
        for (int r0 = 0; r0 < bq; r0 += 6) {
            float *s = S + (int64_t)r0 * WAN_ATT_BK + p * WAN_ATT_KP;
            if (p + 1 < npanels)
                qk_6x32(Q + (int64_t)r0 * hd, hd, Kp + p * panel, Kp + (p + 1) * panel, scale, s);
            else
                qk_6x16(Q + (int64_t)r0 * hd, hd, Kp + p * panel, scale, s);
        }
    att_softmax_rows(S, bq, bk, hd, O, m, l);
    for (int d0 = 0; d0 < hd; d0 += 32)
        for (int r0 = 0; r0 < bq; r0 += 6)
            pv_6x32(S + (int64_t)r0 * WAN_ATT_BK, V + d0, bk, hd, O + (int64_t)r0 * hd + d0);
}
