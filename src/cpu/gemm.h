/* gemm.h — dense linear layers on the CPU: y = x·Wᵀ + b with weights in F32, BF16 or F16 as stored
 * (internal). Three paths, chosen per call (wan_cpu_linear_set_mode; AUTO is what bench/gemm.c measured best):
 * weights of every dtype go to the packed GEMM below, which converts them while packing (or, for a few rows of x,
 * to row dot products that convert on the fly); OpenBLAS sgemm (F32 weights in place, BF16/F16 ones converted one
 * 32 MiB tile of rows at a time) remains for WAN_LINEAR_BLAS. No f32 copy of a whole matrix is ever made. */
#ifndef WAN_CPU_GEMM_H
#define WAN_CPU_GEMM_H

#include "core.h"

/* Floats of weight rows converted at once (32 MiB); the scratch a linear needs is at most this. Large tiles
 * keep OpenBLAS from repacking the activations once per small tile. */
#define WAN_LINEAR_TILE_FLOATS ((int64_t)1 << 23)

/* Scratch floats wan_cpu_linear needs for an [N, K] weight in the current mode (about 6 MiB at most in AUTO mode;
 * in WAN_LINEAR_BLAS mode 0 for 4-byte aligned F32, up to WAN_LINEAR_TILE_FLOATS otherwise). */
int64_t wan_cpu_linear_scratch(const wan_tensor *w);

/* y[m, n] = sum_k x[m, k] · W[n, k] + b[n] for m < M, n < N, where W is the 2-D (or 5-D conv, flattened to
 * [ne[0], rest]) weight view `w` of dtype F32/BF16/F16, float8 with its scale, or a q8_0 / q4_0 weight (quant.h),
 * and K its row length. b may be NULL. x has row stride
 * ldx, y row stride ldy (both in floats; y must not overlap x). scratch holds wan_cpu_linear_scratch(w)
 * floats (may be NULL when that is 0). Threads: one OpenMP team of n_threads; on the OpenBLAS path each
 * thread calls OpenBLAS single-threaded (this sets OpenBLAS's process-wide thread count to 1). Products under
 * ~2M multiply-adds run on the calling thread. */
void wan_cpu_linear(const float *x, int64_t M, int64_t ldx, const wan_tensor *w, const float *b, float *y,
                    int64_t ldy, float *scratch, int n_threads);

/* Sets the process-wide OpenBLAS thread count when it differs (n_threads <= 0: leave it), for callers
 * that use OpenBLAS's own threading directly. */
void wan_cpu_set_threads(int n_threads);

/* Overrides the tile size (floats; <= 0 restores WAN_LINEAR_TILE_FLOATS). For op tests, which exercise the
 * multi-tile paths on small matrices; not thread-safe. */
void wan_cpu_linear_set_tile(int64_t floats);

/* ---- packed GEMM (gemm.c driver, micro-kernels per ISA in gemm_avx2.c / gemm_avx512.c) ----------------
 * y = x·Wᵀ + b computed BLIS-style: W is packed straight from its stored dtype into [kc][nr] f32 panels (no f32
 * copy of the matrix), WAN_GEMM_MC rows of x into [kc][mr] blocks, and an mr x nr register-blocked micro-kernel
 * multiplies the two.
 * Each thread owns a range of output columns (and of rows when there are more threads than column panels) and
 * packs its own weight panels, so a product has no barrier inside: on a shared machine a descheduled thread
 * delays only its own share. */

/* Micro-kernel geometry and entry points of one instruction set. */
typedef struct wan_gemm_ukr {
    const char *name;
    int mr, nr; /* rows of x and weight rows (output columns) per micro-tile */
    /* Packed operands are 32-bit slots, each holding kpack consecutive k values: 1 (f32 operands; 0 means 1 too) or
     * 2 (a pair of bf16, for the bf16-product kernels). A depth block of kc values takes wan_gemm_slots(u, kc)
     * slots: ⌈kc / kpack⌉ rounded up to kalign (0 or 1: no rounding), the padding zero. */
    int kpack, kalign;
    /* C[i, j] (row stride ldc) for i < m <= mr, j < n <= nr: acc ? C + Σ_k x[i, k]·W[j, k]
     * : bias[j] (0 when bias is NULL) + Σ_k ..., over the kc values of the block. a is mr activation rows as
     * pack_a left them (f32 kernels: a[p·mr + i] = x[i, p]; rows i >= m hold zeros), b a panel as pack_b left it
     * (f32 kernels: b[p·nr + j] = W[j, p]); both 64-byte aligned. */
    void (*kernel)(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int m, int n, const float *bias,
                   int acc);
    /* Packs kc values of rows i < rows <= mr of x (row stride ldx; zero for rows <= i < mr) into mr ·
     * wan_gemm_slots(u, kc) slots, in `kernel`'s order (f32 kernels: dst[p·mr + i] = x[i·ldx + p]); may write up to
     * WAN_GEMM_A_SLACK floats past the group. */
    void (*pack_a)(const float *x, int64_t ldx, int rows, int64_t kc, float *dst);
    /* Packs W[n0 + j, k0 + p] for j < rows (zero for rows <= j < nr), p < kc, into nr · wan_gemm_slots(u, kc)
     * slots in `kernel`'s order (f32 kernels: dst[p·nr + j] = f32(W[n0 + j, k0 + p])); W is the weight w, rows of
     * ldw values in F32/BF16/F16 or float8 (times w->wscale) at any address, or q8_0 / q4_0 (then ldw = w->ne[1] and
     * k0 a multiple of WAN_Q8_BLOCK). */
    void (*pack_b)(const wan_tensor *w, int64_t ldw, int64_t n0, int rows, int64_t k0, int64_t kc, float *dst);
    /* Σ_k x[k]·f32(W[row, k]) over k < K = ldw for weight row `row` of w (any dtype pack_b takes). For products of a
     * few rows. */
    float (*dot)(const float *x, const wan_tensor *w, int64_t row, int64_t K);
} wan_gemm_ukr;

extern const wan_gemm_ukr wan_gemm_ukr_generic, wan_gemm_ukr_avx2, wan_gemm_ukr_avx512;

/* bf16-product kernels (opt-in, never AUTO: the fp32 reference does not round): activations and weights are
 * rounded to bf16 (to nearest even) as they are packed, products are summed in f32. AVX512-BF16: vdpbf16ps, 8 x 32
 * (gemm_avx512.c). AMX-BF16: tdpbf16ps on 2 x 2 tiles of 16 x 16, 32 x 32 (gemm_amx.c). */
extern const wan_gemm_ukr wan_gemm_ukr_avx512bf16, wan_gemm_ukr_amx;

/* Whether this CPU (and, for AMX, the OS: the tile data permission is requested here, once per process) can run
 * `u`. Thread-safe. */
int wan_gemm_ukr_supported(const wan_gemm_ukr *u);

/* Asks Linux for the AMX tile data state (arch_prctl), once per process; 1 when granted (gemm_amx.c). */
int wan_amx_request(void);
/* Loads the tile configuration every AMX kernel here uses (8 tiles of 16 rows x 64 bytes) on the calling thread,
 * once per thread; only after wan_amx_request() granted the state. */
void wan_amx_configure(void);

/* The fastest bf16-product kernel set this CPU can run (AMX, else AVX512-BF16), or NULL when it has neither. */
const wan_gemm_ukr *wan_gemm_ukr_bf16(void);

/* Slots of one packed row or column for a depth block of kc values (see wan_gemm_ukr.kpack). */
static inline int64_t wan_gemm_slots(const wan_gemm_ukr *u, int64_t kc)
{
    const int64_t kp = u->kpack > 1 ? u->kpack : 1, ka = u->kalign > 1 ? u->kalign : 1;
    return ((kc + kp - 1) / kp + ka - 1) / ka * ka;
}

/* Blocking of the packed GEMM. */
#define WAN_GEMM_KC 256   /* slots of one packed block (256 f32 values, 512 bf16)  */
#define WAN_GEMM_NC 4096  /* weight rows packed at once (a multiple of every nr) */
#define WAN_GEMM_MC 96    /* x rows multiplied with each packed panel in turn (a multiple of every mr) */
#define WAN_GEMM_A_SLACK 8 /* floats pack_a may write past its group */

/* Floats of scratch the packed GEMM needs for an [N, K] weight (any ISA, any M, any thread count): the packed weight
 * blocks of all threads together. */
int64_t wan_gemm_scratch(int64_t N, int64_t K);

/* The packed product with micro-kernel set `u` (any table the CPU supports), M >= 1: as wan_cpu_linear, with
 * scratch of wan_gemm_scratch(N, K) floats and one OpenMP team of n_threads (>= 1). */
void wan_gemm_packed(const wan_gemm_ukr *u, const float *x, int64_t M, int64_t ldx, const wan_tensor *w,
                     const float *b, float *y, int64_t ldy, float *scratch, int n_threads);

/* The one-row-at-a-time product (for M of a few rows): y[m, n] = u->dot(x[m], W[n]) + b[n], split over
 * weight rows. Needs no scratch. */
void wan_gemm_rows(const wan_gemm_ukr *u, const float *x, int64_t M, int64_t ldx, const wan_tensor *w,
                   const float *b, float *y, int64_t ldy, int n_threads);

/* Which implementation wan_cpu_linear uses: AUTO picks per shape and dtype (the choice bench/gemm.c
 * measured); the others force one, for benchmarks and tests. Process-wide; not thread-safe. */
typedef enum wan_linear_mode {
    WAN_LINEAR_AUTO = 0,
    WAN_LINEAR_BLAS,
    WAN_LINEAR_PACKED,
    WAN_LINEAR_BF16
} wan_linear_mode;
/* WAN_LINEAR_BF16: products of more than 4 rows through wan_gemm_ukr_bf16() (AUTO where the CPU has neither AMX nor
 * AVX512-BF16). Results then differ from the f32 ones by the rounding of both operands to bf16 (~3 significant
 * digits), as under torch.autocast(dtype=torch.bfloat16). */
void wan_cpu_linear_set_mode(wan_linear_mode mode);

/* Converts n elements of F32/BF16/F16 data (any alignment) to f32. */
void wan_cpu_to_f32(const void *src, wan_dtype dtype, float *dst, int64_t n);

/* Values k0 <= k < k0 + n of row `row` of a linear weight w (rows of ldw values in F32/BF16/F16 or float8 with its
 * wscale, or q8_0 / q4_0 with ldw = w->ne[1]) as f32. */
void wan_cpu_weight_row_to_f32(const wan_tensor *w, int64_t ldw, int64_t row, int64_t k0, int64_t n, float *dst);

#endif /* WAN_CPU_GEMM_H */
