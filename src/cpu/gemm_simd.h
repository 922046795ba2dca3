/* gemm_simd.h — AVX2 helpers shared by the GEMM micro-kernel files (gemm_avx2.c, gemm_avx512.c): 8 x 8
 * transposes for packing weights and activations, and the one-row dot product with on-the-fly BF16/F16 conversion
 * (internal; include only from files compiled with at least the AVX2 flags). */
#ifndef WAN_CPU_GEMM_SIMD_H
#define WAN_CPU_GEMM_SIMD_H

#include "cpu/gemm.h"
#include "quant.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

/* Eight consecutive F32/BF16/F16 values at element k of w (any alignment), as f32. */
static inline __m256 load8(const void *w, wan_dtype dtype, int64_t k)
{
    if (dtype == WAN_DTYPE_F32)
        return _mm256_loadu_ps((const float *)w + k);
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + k));
    if (dtype == WAN_DTYPE_F16)
        return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* Scale i of a q8_0 scale array (F16 at any alignment), converted by F16C. */
static inline float q8_scale_f16c(const uint16_t *qscale, int64_t i)
{
    uint16_t h;
    memcpy(&h, qscale + i, sizeof h);
    return _cvtsh_ss(h);
}

/* Eight consecutive int8 values at element k of q (any alignment), times s, as f32. */
static inline __m256 load8_q8(const int8_t *q, int64_t k, __m256 s)
{
    const __m128i v = _mm_loadl_epi64((const __m128i *)(const void *)(q + k)); /* movq: any alignment */
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)), s);
}

/* Eight consecutive q4_0 values (4 bytes at p: low nibble first, each q + 8), times s, as f32: every byte twice, then
 * shifted by 0 or 4 and masked. */
static inline __m256 load8_q4(const uint8_t *p, __m256 s)
{
    int32_t four;
    memcpy(&four, p, 4);
    const __m128i dup = _mm_shuffle_epi8(_mm_cvtsi32_si128(four), _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, -1, -1, -1, -1,
                                                                                   -1, -1, -1, -1));
    const __m256i n = _mm256_and_si256(_mm256_srlv_epi32(_mm256_cvtepu8_epi32(dup),
                                                         _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4)),
                                       _mm256_set1_epi32(15));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(n, _mm256_set1_epi32(8))), s);
}

/* Eight consecutive float8 values (F8_E4M3 or F8_E5M2) at p (any alignment), times s, as f32. E4M3: normal codes
 * become f32 bits by moving the exponent and mantissa up 20 bits and adding 120 to the exponent; subnormal ones
 * (exponent 0) are m · 2^-9; S.1111.111 is NaN. E5M2 is the top byte of a half. */
static inline __m256 load8_f8(const uint8_t *p, wan_dtype dt, __m256 s)
{
    const __m128i v = _mm_loadl_epi64((const __m128i *)(const void *)p);
    if (dt == WAN_DTYPE_F8_E5M2)
        return _mm256_mul_ps(_mm256_cvtph_ps(_mm_slli_epi16(_mm_cvtepu8_epi16(v), 8)), s);
    const __m256i x = _mm256_cvtepu8_epi32(v), em = _mm256_and_si256(x, _mm256_set1_epi32(0x7F));
    const __m256 normal = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_slli_epi32(em, 20), _mm256_set1_epi32(120 << 23)));
    const __m256 subn = _mm256_mul_ps(_mm256_cvtepi32_ps(em), _mm256_set1_ps(1.0f / 512.0f));
    __m256 r = _mm256_blendv_ps(subn, normal, _mm256_castsi256_ps(_mm256_cmpgt_epi32(em, _mm256_set1_epi32(7))));
    r = _mm256_blendv_ps(r, _mm256_set1_ps(NAN), _mm256_castsi256_ps(_mm256_cmpeq_epi32(em, _mm256_set1_epi32(0x7F))));
    r = _mm256_or_ps(r, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(x, _mm256_set1_epi32(0x80)), 24)));
    return _mm256_mul_ps(r, s);
}

/* 8 x 8 transpose of r[0..7]: dst[p·ldd + i] = r[i][p], stored from p = 0 up (so that with ldd < 8 each line's tail
 * is overwritten by the next line's head, and the last line writes 8 - ldd floats past the 8 x ldd block). */
static inline void transpose8_store(const __m256 r[8], float *dst, int64_t ldd)
{
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(s0, s4, 0x20));
    _mm256_storeu_ps(dst + ldd, _mm256_permute2f128_ps(s1, s5, 0x20));
    _mm256_storeu_ps(dst + 2 * ldd, _mm256_permute2f128_ps(s2, s6, 0x20));
    _mm256_storeu_ps(dst + 3 * ldd, _mm256_permute2f128_ps(s3, s7, 0x20));
    _mm256_storeu_ps(dst + 4 * ldd, _mm256_permute2f128_ps(s0, s4, 0x31));
    _mm256_storeu_ps(dst + 5 * ldd, _mm256_permute2f128_ps(s1, s5, 0x31));
    _mm256_storeu_ps(dst + 6 * ldd, _mm256_permute2f128_ps(s2, s6, 0x31));
    _mm256_storeu_ps(dst + 7 * ldd, _mm256_permute2f128_ps(s3, s7, 0x31));
}

/* wan_gemm_ukr.pack_b for panels of nr (a multiple of 8, at most 32) rows. Full panels with kc a multiple of 8 are
 * converted and transposed 8 x 8 straight from the matrix; edge panels go through a [nr][kc] f32 buffer (zero rows
 * past `rows`). */
static inline void gemm_pack_b_simd(int nr, const wan_tensor *w, int64_t ldw, int64_t n0, int rows, int64_t k0,
                                    int64_t kc, float *dst)
{
    const wan_dtype dtype = w->dtype;
    if (rows == nr && kc % 8 == 0 && wan_tensor_is_q4(w)) { /* q4_0: as q8_0, 4 bytes per 8 values */
        const uint8_t *src = (const uint8_t *)w->data + n0 * (ldw / 2) + k0 / 2;
        const int64_t nb = ldw / WAN_Q8_BLOCK;
        for (int j = 0; j < nr; j += 8)
            for (int64_t p = 0; p < kc; p += 8) {
                __m256 r[8];
                for (int i = 0; i < 8; i++)
                    r[i] = load8_q4(src + (j + i) * (ldw / 2) + p / 2,
                                    _mm256_set1_ps(q8_scale_f16c(w->qscale, (n0 + j + i) * nb + (k0 + p) / WAN_Q8_BLOCK)));
                transpose8_store(r, dst + p * nr + j, nr);
            }
        return;
    }
    if (rows == nr && kc % 8 == 0 && w->qscale) { /* q8_0: k0 and every 8-value group lie inside one scale block */
        const int8_t *src = (const int8_t *)w->data + n0 * ldw + k0;
        const int64_t nb = ldw / WAN_Q8_BLOCK;
        for (int j = 0; j < nr; j += 8)
            for (int64_t p = 0; p < kc; p += 8) {
                __m256 r[8];
                for (int i = 0; i < 8; i++)
                    r[i] = load8_q8(src, (j + i) * ldw + p,
                                    _mm256_set1_ps(q8_scale_f16c(w->qscale, (n0 + j + i) * nb + (k0 + p) / WAN_Q8_BLOCK)));
                transpose8_store(r, dst + p * nr + j, nr);
            }
        return;
    }
    if (rows == nr && kc % 8 == 0 && wan_dtype_is_f8(dtype)) {
        const uint8_t *src = (const uint8_t *)w->data + n0 * ldw + k0;
        const __m256 s = _mm256_set1_ps(w->wscale != 0.0f ? w->wscale : 1.0f);
        for (int j = 0; j < nr; j += 8)
            for (int64_t p = 0; p < kc; p += 8) {
                __m256 r[8];
                for (int i = 0; i < 8; i++)
                    r[i] = load8_f8(src + (j + i) * ldw + p, dtype, s);
                transpose8_store(r, dst + p * nr + j, nr);
            }
        return;
    }
    if (rows == nr && kc % 8 == 0) {
        const uint8_t *src = (const uint8_t *)w->data + (size_t)(n0 * ldw + k0) * wan_dtype_size(dtype);
        for (int j = 0; j < nr; j += 8) /* 8 rows at a time: 8 sequential streams for the prefetcher */
            for (int64_t p = 0; p < kc; p += 8) {
                __m256 r[8];
                for (int i = 0; i < 8; i++)
                    r[i] = load8(src, dtype, (j + i) * ldw + p);
                transpose8_store(r, dst + p * nr + j, nr);
            }
        return;
    }
    _Alignas(32) float t[32 * WAN_GEMM_KC];
    for (int j = 0; j < nr; j++) {
        if (j < rows)
            wan_cpu_weight_row_to_f32(w, ldw, n0 + j, k0, kc, t + j * kc);
        else
            memset(t + j * kc, 0, (size_t)kc * sizeof(float));
    }
    for (int64_t p = 0; p < kc; p++)
        for (int j = 0; j < nr; j++)
            dst[p * nr + j] = t[j * kc + p];
}

/* wan_gemm_ukr.pack_a for mr = 6 or 8 (see gemm.h): 8 x 8 transposes of the rows stored with line stride mr (the
 * last line of a group writing 8 - mr floats into WAN_GEMM_A_SLACK). Rows past `rows` are zero. */
static inline void gemm_pack_a_simd(int mr, const float *x, int64_t ldx, int rows, int64_t kc, float *dst)
{
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8) {
        __m256 r[8];
        for (int i = 0; i < 8; i++)
            r[i] = i < rows && i < mr ? _mm256_loadu_ps(x + i * ldx + p) : _mm256_setzero_ps();
        transpose8_store(r, dst + p * mr, mr);
    }
    for (; p < kc; p++)
        for (int i = 0; i < mr; i++)
            dst[p * mr + i] = i < rows ? x[i * ldx + p] : 0.0f;
}

static inline float hsum(__m256 v)
{
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
}

static inline float gemm_dot_simd(const float *x, const wan_tensor *wt, int64_t row, int64_t K)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    int64_t k = 0;
    if (wan_tensor_is_q4(wt)) { /* q4_0: 16 bytes a block */
        const uint8_t *q = (const uint8_t *)wt->data + row * (K / 2);
        const uint16_t *qs = wt->qscale + row * (K / WAN_Q8_BLOCK);
        for (int64_t b = 0; k < K; k += WAN_Q8_BLOCK, b++) {
            const __m256 sc = _mm256_set1_ps(q8_scale_f16c(qs, b));
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), load8_q4(q + k / 2, sc), s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 8), load8_q4(q + k / 2 + 4, sc), s1);
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 16), load8_q4(q + k / 2 + 8, sc), s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 24), load8_q4(q + k / 2 + 12, sc), s1);
        }
        return hsum(_mm256_add_ps(s0, s1));
    }
    if (wt->qscale) { /* q8_0: K is whole blocks of 32, one scale each */
        const int8_t *q = (const int8_t *)wt->data + row * K;
        const uint16_t *qs = wt->qscale + row * (K / WAN_Q8_BLOCK);
        for (int64_t b = 0; k < K; k += WAN_Q8_BLOCK, b++) {
            const __m256 sc = _mm256_set1_ps(q8_scale_f16c(qs, b));
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), load8_q8(q, k, sc), s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 8), load8_q8(q, k + 8, sc), s1);
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 16), load8_q8(q, k + 16, sc), s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 24), load8_q8(q, k + 24, sc), s1);
        }
        return hsum(_mm256_add_ps(s0, s1));
    }
    const wan_dtype dtype = wt->dtype;
    if (wan_dtype_is_f8(dtype)) {
        const uint8_t *q = (const uint8_t *)wt->data + row * K;
        const __m256 sc = _mm256_set1_ps(wt->wscale != 0.0f ? wt->wscale : 1.0f);
        for (; k + 16 <= K; k += 16) {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), load8_f8(q + k, dtype, sc), s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 8), load8_f8(q + k + 8, dtype, sc), s1);
        }
        float s = hsum(_mm256_add_ps(s0, s1));
        if (k < K) {
            float t[16];
            wan_cpu_weight_row_to_f32(wt, K, row, k, K - k, t);
            for (int64_t i = k; i < K; i++)
                s += x[i] * t[i - k];
        }
        return s;
    }
    const uint8_t *w = (const uint8_t *)wt->data + (size_t)(row * K) * wan_dtype_size(dtype);
    for (; k + 16 <= K; k += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), load8(w, dtype, k), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 8), load8(w, dtype, k + 8), s1);
    }
    float s = hsum(_mm256_add_ps(s0, s1));
    if (k < K) {
        float t[16];
        wan_cpu_to_f32(w + (size_t)k * wan_dtype_size(dtype), dtype, t, K - k);
        for (int64_t i = k; i < K; i++)
            s += x[i] * t[i - k];
    }
    return s;
}

#endif /* WAN_CPU_GEMM_SIMD_H */
