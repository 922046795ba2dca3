/* kernels_avx512.c — AVX-512 kernels (compiled with the AVX-512 flags only here). */
#include "cpu/cpu.h"
#include "cpu/gemm.h"
#include "core.h"

#include <immintrin.h>

static void bf16_to_f32_avx512(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(src + i));
        __m512i w = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
        _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(w));
    }
    for (; i < n; i++)
        dst[i] = wan_bf16_to_f32(src[i]);
}

static void f16_to_f32_avx512(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    for (; i < n; i++)
        dst[i] = wan_f16_to_f32(src[i]);
}

static float dot_f32_avx512(const float *a, const float *b, size_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

const wan_kernels wan_kernels_avx512 = {
    .name = "avx512",
    .bf16_to_f32 = bf16_to_f32_avx512,
    .f16_to_f32 = f16_to_f32_avx512,
    .dot_f32 = dot_f32_avx512,
    .gemm = &wan_gemm_ukr_avx512,
};
