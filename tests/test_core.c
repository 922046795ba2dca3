/* test_core.c — allocation accounting, conversions, CPU dispatch (every ISA table vs generic). */
#include "test.h"

#include "core.h"
#include "cpu/cpu.h"

#include <stdlib.h>

TEST(mem_accounting)
{
    size_t before = wan_mem_current();
    void *p = wan_malloc(1000);
    CHECK(p != NULL);
    CHECK(((uintptr_t)p & 63) == 0);
    CHECK(wan_mem_current() == before + 1000);
    CHECK(wan_mem_peak() >= before + 1000);
    p = wan_realloc(p, 5000);
    CHECK(p != NULL);
    CHECK(wan_mem_current() == before + 5000);
    wan_free(p);
    CHECK(wan_mem_current() == before);
}

TEST(mem_fault_injection)
{
    wan_mem_fail_after(2);
    void *a = wan_malloc(16), *b = wan_malloc(16), *c = wan_malloc(16);
    wan_mem_fail_after(0);
    CHECK(a != NULL && b == NULL && c != NULL);
    wan_free(a);
    wan_free(c);
}

TEST(bf16_f16_roundtrip)
{
    CHECK(wan_bf16_to_f32(wan_f32_to_bf16(1.0f)) == 1.0f);
    CHECK(wan_bf16_to_f32(wan_f32_to_bf16(-2.5f)) == -2.5f);
    /* round to nearest even: 1 + 2^-8 lies halfway between two bf16 values -> 1.0 */
    CHECK(wan_bf16_to_f32(wan_f32_to_bf16(1.00390625f)) == 1.0f);
    CHECK(wan_f16_to_f32(wan_f32_to_f16(0.333251953125f)) == 0.333251953125f);
    CHECK(wan_f16_to_f32(0x3c00) == 1.0f);
    CHECK(wan_f16_to_f32(0x0001) == 5.9604644775390625e-08f);
    CHECK(wan_f32_to_f16(65520.0f) == 0x7c00);
    CHECK(wan_f32_to_f16(65504.0f) == 0x7bff);
    for (uint32_t h = 0; h < 0x7c00; h++) /* every finite positive half round-trips */
        CHECK_MSG(wan_f32_to_f16(wan_f16_to_f32((uint16_t)h)) == h, "half 0x%04x", h);
}

TEST(cpu_kernels_match_generic)
{
    const wan_kernels *tables[] = { &wan_kernels_avx2, &wan_kernels_avx512 };
    enum { N = 1003 };
    uint16_t src[N];
    float a[N], b[N], ref[N], got[N];
    srand(7);
    for (int i = 0; i < N; i++) {
        a[i] = (float)rand() / RAND_MAX - 0.5f;
        b[i] = (float)rand() / RAND_MAX - 0.5f;
        src[i] = (uint16_t)(rand() & 0x7bff);
    }
    printf("    dispatch picks '%s'\n", wan_cpu_kernel_name());
    for (size_t t = 0; t < 2; t++) {
        if (!wan_kernels_supported(tables[t])) {
            printf("    %s: not supported on this CPU, skipped\n", tables[t]->name);
            continue;
        }
        wan_kernels_generic.bf16_to_f32(src, ref, N);
        tables[t]->bf16_to_f32(src, got, N);
        CHECK(memcmp(ref, got, sizeof ref) == 0);
        wan_kernels_generic.f16_to_f32(src, ref, N);
        tables[t]->f16_to_f32(src, got, N);
        CHECK(memcmp(ref, got, sizeof ref) == 0);
        double d = 0;
        for (int i = 0; i < N; i++)
            d += (double)a[i] * b[i];
        float s = tables[t]->dot_f32(a, b, N);
        CHECK_MSG(fabs(s - d) < 1e-4, "%s dot %g vs %g", tables[t]->name, s, d);
    }
}

TEST(arena)
{
    wan_arena a;
    CHECK(wan_arena_init(&a, 1024, NULL) == WAN_OK);
    void *p = wan_arena_alloc(&a, 100);
    size_t mark = a.used;
    void *q = wan_arena_alloc(&a, 100);
    CHECK(p && q && ((uintptr_t)q & 63) == 0);
    CHECK(wan_arena_alloc(&a, 2000) == NULL);
    wan_arena_reset(&a, mark);
    CHECK(wan_arena_alloc(&a, 100) == q);
    wan_arena_free(&a);
}

TEST(status_strings)
{
    CHECK(strcmp(wan_status_str(WAN_OK), "ok") == 0);
    CHECK(strcmp(wan_status_str(WAN_ERR_FORMAT), "malformed file") == 0);
    CHECK(strcmp(wan_dtype_name(WAN_DTYPE_BF16), "BF16") == 0);
    CHECK(wan_dtype_size(WAN_DTYPE_F8_E4M3) == 1);
}
