/* cpu.h — run-time CPU dispatch: one table of kernels per instruction set (internal). */
#ifndef WAN_CPU_H
#define WAN_CPU_H

#include <stddef.h>
#include <stdint.h>

/* Kernel table. Every entry is valid for every table (the generic one is the fallback). */
typedef struct wan_kernels {
    const char *name;
    /* dst[i] = float(src[i]) for n elements; src and dst must not overlap. */
    void (*bf16_to_f32)(const uint16_t *src, float *dst, size_t n);
    void (*f16_to_f32)(const uint16_t *src, float *dst, size_t n);
    /* sum_i a[i] * b[i] accumulated in f32 lanes. */
    float (*dot_f32)(const float *a, const float *b, size_t n);
    /* GEMM micro-kernels and packing of this instruction set (gemm.h). */
    const struct wan_gemm_ukr *gemm;
} wan_kernels;

/* The table chosen for this CPU (first call detects; thread-safe after that, and idempotent). */
const wan_kernels *wan_kernels_get(void);

/* The individual tables, for op tests that compare every ISA against the generic code. The ISA
 * tables are NULL-named ("") when the CPU cannot run them. */
extern const wan_kernels wan_kernels_generic;
extern const wan_kernels wan_kernels_avx2;
extern const wan_kernels wan_kernels_avx512;
/* Whether this CPU can run a table. */
int wan_kernels_supported(const wan_kernels *k);

#endif /* WAN_CPU_H */
