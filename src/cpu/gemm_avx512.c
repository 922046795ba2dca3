/* gemm_avx512.c — AVX-512 GEMM micro-kernels: f32 8 x 32 (16 zmm accumulators, 8 packed activation rows, so 10
 * loads per 16 FMAs) and the opt-in AVX512-BF16 one of the same shape (vdpbf16ps on bf16 pairs), their packing, and
 * row dot products (compiled with the AVX-512 flags only here; see gemm.h). */
#include "cpu/cpu.h"
#include "cpu/gemm_bf16.h"
#include "cpu/gemm_simd.h"

#define MR 8
#define NR 32

static inline void store_row(float *c, __m512 v0, __m512 v1, const float *bias, int acc)
{
    if (acc) {
        v0 = _mm512_add_ps(v0, _mm512_loadu_ps(c));
        v1 = _mm512_add_ps(v1, _mm512_loadu_ps(c + 16));
    } else if (bias) {
        v0 = _mm512_add_ps(v0, _mm512_loadu_ps(bias));
        v1 = _mm512_add_ps(v1, _mm512_loadu_ps(bias + 16));
    }
    _mm512_storeu_ps(c, v0);
    _mm512_storeu_ps(c + 16, v1);
}

/* The epilogue of both 8 x 32 kernels: r[2i], r[2i+1] are output row i; rows < m, columns < n of C get
 * acc ? C + r : bias + r (an edge tile goes through a buffer). */
static inline void store_tile(const __m512 r[2 * MR], float *c, int64_t ldc, int m, int n, const float *bias, int acc)
{
    if (m == MR && n == NR) {
        for (int i = 0; i < MR; i++)
            store_row(c + i * ldc, r[2 * i], r[2 * i + 1], bias, acc);
        return;
    }
    _Alignas(64) float t[MR][NR];
    for (int i = 0; i < MR; i++)
        store_row(t[i], r[2 * i], r[2 * i + 1], NULL, 0);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
            c[i * ldc + j] = t[i][j] + (acc ? c[i * ldc + j] : bias ? bias[j] : 0.0f);
}

#define ROW(i)                                                                                    \
    do {                                                                                          \
        const __m512 ai = _mm512_set1_ps(a[i]);                                                   \
        c##i##_0 = _mm512_fmadd_ps(ai, b0, c##i##_0);                                             \
        c##i##_1 = _mm512_fmadd_ps(ai, b1, c##i##_1);                                             \
    } while (0)

#define DECL(i) __m512 c##i##_0 = _mm512_setzero_ps(), c##i##_1 = _mm512_setzero_ps()

static void kernel_8x32(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int m, int n,
                        const float *bias, int acc)
{
    for (int i = 0; i < m; i++) /* the tile is read (acc) or written at the end: fetch it while the sums run */
        __builtin_prefetch(c + i * ldc, 1, 3), __builtin_prefetch(c + i * ldc + NR - 1, 1, 3);
    DECL(0); DECL(1); DECL(2); DECL(3);
    DECL(4); DECL(5); DECL(6); DECL(7);
    for (int64_t p = 0; p < kc; p++) {
        const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        _mm_prefetch((const char *)(b + 4 * NR), _MM_HINT_T0);
        ROW(0); ROW(1); ROW(2); ROW(3);
        ROW(4); ROW(5); ROW(6); ROW(7);
        a += MR;
        b += NR;
    }
    store_tile((const __m512[2 * MR]){ c0_0, c0_1, c1_0, c1_1, c2_0, c2_1, c3_0, c3_1,
                                       c4_0, c4_1, c5_0, c5_1, c6_0, c6_1, c7_0, c7_1 },
               c, ldc, m, n, bias, acc);
}

static void pack_a_simd(const float *x, int64_t ldx, int rows, int64_t kc, float *dst)
{
    gemm_pack_a_simd(MR, x, ldx, rows, kc, dst);
}

static void pack_b_avx512(const wan_tensor *w, int64_t ldw, int64_t n0, int rows, int64_t k0, int64_t kc, float *dst)
{
    gemm_pack_b_simd(NR, w, ldw, n0, rows, k0, kc, dst);
}

const wan_gemm_ukr wan_gemm_ukr_avx512 = {
    .name = "avx512 8x32",
    .mr = MR,
    .nr = NR,
    .kernel = kernel_8x32,
    .pack_a = pack_a_simd,
    .pack_b = pack_b_avx512,
    .dot = gemm_dot_simd,
};

/* ---- bf16 products (AVX512-BF16, opt-in: gemm.h) --------------------------------------------------------------
 * The same 8 x 32 register blocking: per slot (a pair of k values), two panel vectors of 16 slot pairs and one
 * broadcast slot per row; vdpbf16ps adds both products of a pair into each f32 lane. */

#define BF_ROW(i)                                                                                 \
    do {                                                                                          \
        const __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i]);                               \
        c##i##_0 = _mm512_dpbf16_ps(c##i##_0, ai, b0);                                            \
        c##i##_1 = _mm512_dpbf16_ps(c##i##_1, ai, b1);                                            \
    } while (0)

static void kernel_bf16_8x32(int64_t kc, const float *af, const float *bf, float *c, int64_t ldc, int m, int n,
                             const float *bias, int acc)
{
    for (int i = 0; i < m; i++)
        __builtin_prefetch(c + i * ldc, 1, 3), __builtin_prefetch(c + i * ldc + NR - 1, 1, 3);
    const uint32_t *a = (const uint32_t *)af, *b = (const uint32_t *)bf;
    DECL(0); DECL(1); DECL(2); DECL(3);
    DECL(4); DECL(5); DECL(6); DECL(7);
    for (int64_t s = 0, slots = wan_gemm_slots(&wan_gemm_ukr_avx512bf16, kc); s < slots; s++) {
        const __m512bh b0 = (__m512bh)_mm512_load_si512(b), b1 = (__m512bh)_mm512_load_si512(b + 16);
        BF_ROW(0); BF_ROW(1); BF_ROW(2); BF_ROW(3);
        BF_ROW(4); BF_ROW(5); BF_ROW(6); BF_ROW(7);
        a += MR;
        b += NR;
    }
    store_tile((const __m512[2 * MR]){ c0_0, c0_1, c1_0, c1_1, c2_0, c2_1, c3_0, c3_1,
                                       c4_0, c4_1, c5_0, c5_1, c6_0, c6_1, c7_0, c7_1 },
               c, ldc, m, n, bias, acc);
}

/* dst[s·MR + i] = pair s of row i (zero rows past `rows`). */
static void pack_a_bf16(const float *x, int64_t ldx, int rows, int64_t kc, float *dst)
{
    const int64_t slots = wan_gemm_slots(&wan_gemm_ukr_avx512bf16, kc);
    uint32_t line[WAN_GEMM_KC + 16], *d = (uint32_t *)dst;
    for (int i = 0; i < MR; i++) {
        bf16_pairs(i < rows ? x + i * ldx : NULL, WAN_DTYPE_F32, kc, slots, line);
        for (int64_t s = 0; s < slots; s++)
            d[s * MR + i] = line[s];
    }
}

static void pack_b_bf16(const wan_tensor *w, int64_t ldw, int64_t n0, int rows, int64_t k0, int64_t kc, float *dst)
{
    gemm_pack_b_bf16(&wan_gemm_ukr_avx512bf16, w, ldw, n0, rows, k0, kc, dst);
}

const wan_gemm_ukr wan_gemm_ukr_avx512bf16 = {
    .name = "avx512-bf16 8x32",
    .mr = MR,
    .nr = NR,
    .kpack = 2,
    .kalign = 1,
    .kernel = kernel_bf16_8x32,
    .pack_a = pack_a_bf16,
    .pack_b = pack_b_bf16,
    .dot = gemm_dot_simd,
};
