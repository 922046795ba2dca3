/* gemm_avx2.c — AVX2 + FMA + F16C GEMM micro-kernel (6 x 16), weight packing and row dot products
 * (compiled with the AVX2 flags only here; see gemm.h). */
#include "cpu/cpu.h"
#include "cpu/gemm_simd.h"

#define MR 6
#define NR 16

/* Stores one 16-wide output row from two accumulators: acc ? c + v : bias + v. */
static inline void store_row(float *c, __m256 v0, __m256 v1, const float *bias, int acc)
{
    if (acc) {
        v0 = _mm256_add_ps(v0, _mm256_loadu_ps(c));
        v1 = _mm256_add_ps(v1, _mm256_loadu_ps(c + 8));
    } else if (bias) {
        v0 = _mm256_add_ps(v0, _mm256_loadu_ps(bias));
        v1 = _mm256_add_ps(v1, _mm256_loadu_ps(bias + 8));
    }
    _mm256_storeu_ps(c, v0);
    _mm256_storeu_ps(c + 8, v1);
}

#define ROW(i)                                                                                    \
    do {                                                                                          \
        const __m256 ai = _mm256_broadcast_ss(a + i);                                             \
        c##i##0 = _mm256_fmadd_ps(ai, b0, c##i##0);                                               \
        c##i##1 = _mm256_fmadd_ps(ai, b1, c##i##1);                                               \
    } while (0)

static void kernel_6x16(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int m, int n,
                        const float *bias, int acc)
{
    for (int i = 0; i < m; i++) /* the tile is read (acc) or written at the end: fetch it while the sums run */
        __builtin_prefetch(c + i * ldc, 1, 3), __builtin_prefetch(c + i * ldc + NR - 1, 1, 3);
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
#pragma GCC unroll 8
    for (int64_t p = 0; p < kc; p++) {
        const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
        ROW(0);
        ROW(1);
        ROW(2);
        ROW(3);
        ROW(4);
        ROW(5);
        a += MR;
        b += NR;
    }
    if (m == MR && n == NR) {
        store_row(c + 0 * ldc, c00, c01, bias, acc);
        store_row(c + 1 * ldc, c10, c11, bias, acc);
        store_row(c + 2 * ldc, c20, c21, bias, acc);
        store_row(c + 3 * ldc, c30, c31, bias, acc);
        store_row(c + 4 * ldc, c40, c41, bias, acc);
        store_row(c + 5 * ldc, c50, c51, bias, acc);
        return;
    }
    float t[MR][NR];
    _mm256_storeu_ps(t[0], c00), _mm256_storeu_ps(t[0] + 8, c01);
    _mm256_storeu_ps(t[1], c10), _mm256_storeu_ps(t[1] + 8, c11);
    _mm256_storeu_ps(t[2], c20), _mm256_storeu_ps(t[2] + 8, c21);
    _mm256_storeu_ps(t[3], c30), _mm256_storeu_ps(t[3] + 8, c31);
    _mm256_storeu_ps(t[4], c40), _mm256_storeu_ps(t[4] + 8, c41);
    _mm256_storeu_ps(t[5], c50), _mm256_storeu_ps(t[5] + 8, c51);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
            c[i * ldc + j] = t[i][j] + (acc ? c[i * ldc + j] : bias ? bias[j] : 0.0f);
}

static void pack_a_simd(const float *x, int64_t ldx, int rows, int64_t kc, float *dst)
{
    gemm_pack_a_simd(MR, x, ldx, rows, kc, dst);
}

static void pack_b_avx2(const wan_tensor *w, int64_t ldw, int64_t n0, int rows, int64_t k0, int64_t kc, float *dst)
{
    gemm_pack_b_simd(NR, w, ldw, n0, rows, k0, kc, dst);
}

const wan_gemm_ukr wan_gemm_ukr_avx2 = {
    .name = "avx2 6x16",
    .mr = MR,
    .nr = NR,
    .kernel = kernel_6x16,
    .pack_a = pack_a_simd,
    .pack_b = pack_b_avx2,
    .dot = gemm_dot_simd,
};
