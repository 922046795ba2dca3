/* cpu.c — CPU feature detection and the generic (portable C) kernels. */
#include "cpu/cpu.h"
#include "cpu/gemm.h"
#include "core.h"

#include <cpuid.h>
#include <omp.h>
#include <stdatomic.h>

static void bf16_to_f32_generic(const uint16_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = wan_bf16_to_f32(src[i]);
}

static void f16_to_f32_generic(const uint16_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = wan_f16_to_f32(src[i]);
}

static float dot_f32_generic(const float *a, const float *b, size_t n)
{
    float s = 0.0f;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

const wan_kernels wan_kernels_generic = {
    .name = "generic",
    .bf16_to_f32 = bf16_to_f32_generic,
    .f16_to_f32 = f16_to_f32_generic,
    .dot_f32 = dot_f32_generic,
    .gemm = &wan_gemm_ukr_generic,
};

static wan_cpu_info detect(void)
{
    wan_cpu_info ci = { 0 };
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return ci;
    int fma = (c >> 12) & 1, f16c = (c >> 29) & 1, osxsave = (c >> 27) & 1;
    if (!osxsave)
        return ci;
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    int ymm_ok = (xlo & 0x6) == 0x6, zmm_ok = (xlo & 0xe6) == 0xe6;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return ci;
    int avx2 = (b >> 5) & 1;
    int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    ci.avx2 = ymm_ok && avx2 && fma && f16c;
    ci.avx512 = ci.avx2 && zmm_ok && f && dq && bw && vl;
    const int amx = ((d >> 24) & 1) && ((d >> 22) & 1) && (xlo & 0x60000) == 0x60000; /* AMX-TILE, AMX-BF16, XTILE* */
    if (ci.avx512 && __get_cpuid_count(7, 1, &a, &b, &c, &d))
        ci.avx512_bf16 = (a >> 5) & 1;
    ci.amx_bf16 = ci.avx512_bf16 && amx;
    return ci;
}

wan_cpu_info wan_cpu_get_info(void)
{
    wan_cpu_info ci = detect();
    ci.n_threads = omp_get_max_threads();
    return ci;
}

int wan_kernels_supported(const wan_kernels *k)
{
    wan_cpu_info ci = detect();
    if (k == &wan_kernels_avx512)
        return ci.avx512;
    if (k == &wan_kernels_avx2)
        return ci.avx2;
    return 1;
}

int wan_gemm_ukr_supported(const wan_gemm_ukr *u)
{
    const wan_cpu_info ci = detect();
    if (u == &wan_gemm_ukr_amx)
        return ci.amx_bf16 && wan_amx_request();
    if (u == &wan_gemm_ukr_avx512bf16)
        return ci.avx512_bf16;
    if (u == &wan_gemm_ukr_avx512)
        return ci.avx512;
    if (u == &wan_gemm_ukr_avx2)
        return ci.avx2;
    return 1;
}

const wan_gemm_ukr *wan_gemm_ukr_bf16(void)
{
    static atomic_int choice = -1; /* 0 none, 1 AMX, 2 AVX512-BF16: decided once (every linear in bf16 mode asks) */
    int c = atomic_load(&choice);
    if (c < 0) {
        c = wan_gemm_ukr_supported(&wan_gemm_ukr_amx) ? 1 : wan_gemm_ukr_supported(&wan_gemm_ukr_avx512bf16) ? 2 : 0;
        atomic_store(&choice, c);
    }
    return c == 1 ? &wan_gemm_ukr_amx : c == 2 ? &wan_gemm_ukr_avx512bf16 : NULL;
}

static _Atomic(const wan_kernels *) g_kernels;

const wan_kernels *wan_kernels_get(void)
{
    const wan_kernels *k = atomic_load(&g_kernels);
    if (k)
        return k;
    wan_cpu_info ci = detect();
    k = ci.avx512 ? &wan_kernels_avx512 : ci.avx2 ? &wan_kernels_avx2 : &wan_kernels_generic;
    atomic_store(&g_kernels, k);
    return k;
}

const char *wan_cpu_kernel_name(void) { return wan_kernels_get()->name; }
