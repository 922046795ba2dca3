/* gemm_bf16.h — packing for the bf16-product GEMM kernels (gemm_avx512.c's vdpbf16ps kernel, gemm_amx.c's tile
 * kernel): values rounded to bf16 (to nearest even, as vcvtne2ps2bf16 does) and paired along k into 32-bit slots
 * (internal; include only from files compiled with the AVX-512 BF16 flags). */
#ifndef WAN_CPU_GEMM_BF16_H
#define WAN_CPU_GEMM_BF16_H

#include "cpu/gemm.h"
#include "cpu/gemm_simd.h"

#include <immintrin.h>
#include <string.h>

/* gcc 12's tile intrinsics are asm statements that do not declare the memory they read or write (tileloadd,
 * tilestored take the address in a register): this fence, between C code that writes or reads a buffer and the tile
 * instructions that read or write it, keeps the compiler from moving or dropping those accesses. */
#define WAN_TILE_FENCE() __asm__ volatile("" ::: "memory")

/* line[s] = the pair (v[2s], v[2s+1]) as bf16 (low half first) for s < slots, where v is the first kc values of src
 * (F32/BF16/F16 at any address) followed by zeros; src NULL: all zeros. */
static inline void bf16_pairs(const void *src, wan_dtype dtype, int64_t kc, int64_t slots, uint32_t *line)
{
    if (!src) {
        memset(line, 0, (size_t)slots * 4);
        return;
    }
    int64_t k = 0;
    if (dtype == WAN_DTYPE_BF16) {
        memcpy(line, src, (size_t)(kc * 2));
        k = kc;
    } else {
        for (; k + 32 <= kc; k += 32) {
            const __m512 lo = _mm512_insertf32x8(_mm512_castps256_ps512(load8(src, dtype, k)),
                                                 load8(src, dtype, k + 8), 1);
            const __m512 hi = _mm512_insertf32x8(_mm512_castps256_ps512(load8(src, dtype, k + 16)),
                                                 load8(src, dtype, k + 24), 1);
            _mm512_storeu_si512(line + k / 2, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        }
        uint16_t *h = (uint16_t *)line;
        for (; k < kc; k++) {
            float f;
            wan_cpu_to_f32((const uint8_t *)src + (size_t)k * wan_dtype_size(dtype), dtype, &f, 1);
            h[k] = wan_f32_to_bf16(f);
        }
    }
    if (k % 2)
        ((uint16_t *)line)[k++] = 0;
    for (int64_t s = k / 2; s < slots; s++)
        line[s] = 0;
}

/* wan_gemm_ukr.pack_b of both bf16 kernel sets `u`: dst[s·nr + j] = pair s of W row n0 + j (zero rows past
 * `rows`, zero slots up to wan_gemm_slots). */
static inline void gemm_pack_b_bf16(const wan_gemm_ukr *u, const wan_tensor *w, int64_t ldw, int64_t n0, int rows,
                                    int64_t k0, int64_t kc, float *dst)
{
    const int nr = u->nr;
    const int64_t slots = wan_gemm_slots(u, kc);
    uint32_t line[WAN_GEMM_KC + 16], *d = (uint32_t *)dst;
    const size_t es = wan_dtype_size(w->dtype);
    const int conv = w->qscale || wan_dtype_is_f8(w->dtype); /* q8_0, q4_0, float8: a row segment as f32 first */
    float tmp[2 * WAN_GEMM_KC];
    for (int j = 0; j < nr; j++) {
        const void *src = NULL;
        if (j < rows && conv)
            wan_cpu_weight_row_to_f32(w, ldw, n0 + j, k0, kc, tmp), src = tmp;
        else if (j < rows)
            src = (const uint8_t *)w->data + (size_t)((n0 + j) * ldw + k0) * es;
        bf16_pairs(src, conv ? WAN_DTYPE_F32 : w->dtype, kc, slots, line);
        for (int64_t s = 0; s < slots; s++)
            d[s * nr + j] = line[s];
    }
}

#endif /* WAN_CPU_GEMM_BF16_H */
