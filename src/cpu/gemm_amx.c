/* gemm_amx.c — AMX-BF16 GEMM micro-kernel (opt-in bf16 products, gemm.h): a 32 x 32 output block as 2 x 2 tiles of
 * 16 x 16 f32, fed by two 16-row tiles of activations and two 16-column tiles of weight pairs per 32 values of k
 * (4 tdpbf16ps per step). Compiled with the AVX-512 and AMX flags only here. */
#define _GNU_SOURCE
#include "cpu/cpu.h"
#include "cpu/amx.h"

#include <immintrin.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MR 32
#define NR 32
#define KB 16 /* slots (k pairs) per tile step: 32 bf16 = one 64-byte tile row */

/* Linux: a process must ask for the AMX tile data state before its first tile instruction. */
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

int wan_amx_request(void)
{
    static atomic_int granted = -1;
    int g = atomic_load(&granted);
    if (g < 0) {
        g = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
        atomic_store(&granted, g);
    }
    return g;
}

/* The tile configuration (palette 1), loaded once per thread: tiles 0-3 the f32 accumulators, 4-5 the activation
 * rows 0-15 / 16-31, 6-7 the weight pairs of columns 0-15 / 16-31; all 16 rows of 64 bytes. */
typedef struct tilecfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg;

static _Thread_local int t_configured;

/* A constant in memory, not a local: gcc 12 does not count _tile_loadconfig as reading its operand, and dropped the
 * stores that filled a local configuration (palette 1 with zero-sized tiles: SIGILL at the first tile instruction). */
static const tilecfg k_config = {
    .palette = 1,
    .colsb = { 64, 64, 64, 64, 64, 64, 64, 64 },
    .rows = { 16, 16, 16, 16, 16, 16, 16, 16 },
};

static void load_config(void) { _tile_loadconfig(&k_config); }

void wan_amx_configure(void)
{
    if (t_configured)
        return;
    load_config();
    t_configured = 1;
}

static void kernel_amx(int64_t kc, const float *af, const float *bf, float *c, int64_t ldc, int m, int n,
                       const float *bias, int acc)
{
    wan_amx_configure();
    const uint32_t *a = (const uint32_t *)af, *b = (const uint32_t *)bf;
    const int64_t steps = wan_gemm_slots(&wan_gemm_ukr_amx, kc) / KB;
    amx_block_load(NULL, 0);
    for (int64_t s = 0; s < steps; s++, a += MR * KB, b += KB * NR)
        amx_block_step(a, a + 16 * KB, b, b + 16, NR * 4);
    _Alignas(64) float t[MR][NR];
    amx_block_store(&t[0][0], NR);
    const __mmask16 m0 = (__mmask16)(n >= 16 ? 0xffff : (1u << n) - 1);
    const __mmask16 m1 = (__mmask16)(n >= 32 ? 0xffff : n > 16 ? (1u << (n - 16)) - 1 : 0);
    for (int i = 0; i < m; i++) {
        float *ci = c + i * ldc;
        __m512 v0 = _mm512_load_ps(t[i]), v1 = _mm512_load_ps(t[i] + 16);
        if (acc) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, ci));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, ci + 16));
        } else if (bias) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, bias));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, bias + 16));
        }
        _mm512_mask_storeu_ps(ci, m0, v0);
        _mm512_mask_storeu_ps(ci + 16, m1, v1);
    }
}

/* dst[(s / KB)·MR·KB + i·KB + s % KB] = pair s of row i (zero rows past `rows`, zero slots up to a whole step): each
 * step's 32 rows of 16 slots are two 16 x 64-byte activation tiles. */
static void pack_a_amx(const float *x, int64_t ldx, int rows, int64_t kc, float *dst)
{
    const int64_t slots = wan_gemm_slots(&wan_gemm_ukr_amx, kc);
    uint32_t line[WAN_GEMM_KC + 16], *d = (uint32_t *)dst;
    for (int i = 0; i < MR; i++) {
        bf16_pairs(i < rows ? x + i * ldx : NULL, WAN_DTYPE_F32, kc, slots, line);
        for (int64_t s = 0; s < slots; s += KB)
            memcpy(d + s * MR + i * KB, line + s, KB * 4);
    }
}

static void pack_b_amx(const wan_tensor *w, int64_t ldw, int64_t n0, int rows, int64_t k0, int64_t kc, float *dst)
{
    gemm_pack_b_bf16(&wan_gemm_ukr_amx, w, ldw, n0, rows, k0, kc, dst);
}

const wan_gemm_ukr wan_gemm_ukr_amx = {
    .name = "amx-bf16 32x32",
    .mr = MR,
    .nr = NR,
    .kpack = 2,
    .kalign = KB,
    .kernel = kernel_amx,
    .pack_a = pack_a_amx,
    .pack_b = pack_b_amx,
    .dot = gemm_dot_simd,
};
