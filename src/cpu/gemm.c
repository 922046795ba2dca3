/* gemm.c — linear layers: the packed GEMM driver (micro-kernels per ISA), the row-dot path for a few rows, and
 * OpenBLAS sgemm (weights in place, or BF16/F16 through a tiled conversion) for comparison. */
#include "cpu/gemm.h"
#include "cpu/cpu.h"
#include "quant.h"

#include <cblas.h>
#include <omp.h>
#include <pthread.h>
#include <string.h>

/* Declared here as well, so that a cblas.h from another BLAS vendor still compiles (we link OpenBLAS). */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);

static int64_t row_len(const wan_tensor *w)
{
    int64_t k = 1;
    for (int d = 1; d < w->ndim; d++)
        k *= w->ne[d];
    return k;
}

static int f32_in_place(const wan_tensor *w)
{
    return w->dtype == WAN_DTYPE_F32 && ((uintptr_t)w->data & 3u) == 0;
}

static int64_t g_tile_floats = WAN_LINEAR_TILE_FLOATS;
static wan_linear_mode g_mode = WAN_LINEAR_AUTO;

void wan_cpu_linear_set_tile(int64_t floats) { g_tile_floats = floats > 0 ? floats : WAN_LINEAR_TILE_FLOATS; }
void wan_cpu_linear_set_mode(wan_linear_mode mode) { g_mode = mode; }

/* Products with at most this many x rows use the row-dot path (no packing: each weight is read once). */
#define LINEAR_ROWS_MAX 4

/* The path AUTO takes, as bench/gemm.c measured it: the packed GEMM for every dtype (for BF16/F16 it reads the
 * weights once, converting while packing; for F32 it has run 1-3% faster than OpenBLAS's sgemm since the activation
 * rows are packed too). OpenBLAS only when WAN_LINEAR_BLAS forces it. */
static int use_packed(void) { return g_mode != WAN_LINEAR_BLAS; }

static int64_t tile_scratch(const wan_tensor *w)
{
    if (f32_in_place(w))
        return 0;
    int64_t n = w->ne[0], k = row_len(w);
    int64_t rows = g_tile_floats / k;
    if (rows < 1)
        rows = 1;
    return (rows < n ? rows : n) * k;
}

int64_t wan_cpu_linear_scratch(const wan_tensor *w)
{
    return use_packed() ? wan_gemm_scratch(w->ne[0], row_len(w)) : tile_scratch(w);
}

void wan_cpu_to_f32(const void *src, wan_dtype dtype, float *dst, int64_t n)
{
    const wan_kernels *kr = wan_kernels_get();
    if (dtype == WAN_DTYPE_F32) {
        memcpy(dst, src, (size_t)n * 4);
    } else if (((uintptr_t)src & 1u) == 0) {
        if (dtype == WAN_DTYPE_BF16)
            kr->bf16_to_f32(src, dst, (size_t)n);
        else
            kr->f16_to_f32(src, dst, (size_t)n);
    } else {
        const uint8_t *s = src;
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = dtype == WAN_DTYPE_BF16 ? wan_bf16_to_f32(h) : wan_f16_to_f32(h);
        }
    }
}

/* The f32 values of the 256 codes of each float8 format, filled once. */
static float g_f8_lut[2][256];
static pthread_once_t g_f8_once = PTHREAD_ONCE_INIT;

static void f8_lut_init(void)
{
    for (int c = 0; c < 256; c++) {
        g_f8_lut[0][c] = wan_f8e4m3_to_f32((uint8_t)c);
        g_f8_lut[1][c] = wan_f8e5m2_to_f32((uint8_t)c);
    }
}

void wan_cpu_weight_row_to_f32(const wan_tensor *w, int64_t ldw, int64_t row, int64_t k0, int64_t n, float *dst)
{
    if (wan_tensor_is_q4(w)) {
        wan_q4_row_to_f32(w, row, k0, n, dst);
    } else if (w->qscale) {
        wan_q8_row_to_f32(w, row, k0, n, dst);
    } else if (wan_dtype_is_f8(w->dtype)) {
        pthread_once(&g_f8_once, f8_lut_init);
        const uint8_t *p = (const uint8_t *)w->data + row * ldw + k0;
        const float s = w->wscale != 0.0f ? w->wscale : 1.0f, *lut = g_f8_lut[w->dtype == WAN_DTYPE_F8_E5M2];
        for (int64_t k = 0; k < n; k++)
            dst[k] = lut[p[k]] * s;
    } else
        wan_cpu_to_f32((const uint8_t *)w->data + (size_t)(row * ldw + k0) * wan_dtype_size(w->dtype), w->dtype, dst,
                       n);
}

/* ---- packed GEMM ------------------------------------------------------------------------------ */

#define GEN_MR 4
#define GEN_NR 8

static void kernel_generic(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int m, int n,
                           const float *bias, int acc)
{
    float t[GEN_MR][GEN_NR] = { { 0 } };
    for (int64_t p = 0; p < kc; p++, a += GEN_MR, b += GEN_NR)
        for (int i = 0; i < m; i++)
            for (int j = 0; j < GEN_NR; j++)
                t[i][j] += a[i] * b[j];
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
            c[i * ldc + j] = t[i][j] + (acc ? c[i * ldc + j] : bias ? bias[j] : 0.0f);
}

static void pack_a_generic(const float *x, int64_t ldx, int rows, int64_t kc, float *dst)
{
    for (int i = 0; i < GEN_MR; i++)
        for (int64_t p = 0; p < kc; p++)
            dst[p * GEN_MR + i] = i < rows ? x[i * ldx + p] : 0.0f;
}

static void pack_b_generic(const wan_tensor *w, int64_t ldw, int64_t n0, int rows, int64_t k0, int64_t kc, float *dst)
{
    float line[WAN_GEMM_KC];
    for (int j = 0; j < GEN_NR; j++) {
        if (j < rows)
            wan_cpu_weight_row_to_f32(w, ldw, n0 + j, k0, kc, line);
        for (int64_t p = 0; p < kc; p++)
            dst[p * GEN_NR + j] = j < rows ? line[p] : 0.0f;
    }
}

static float dot_generic(const float *x, const wan_tensor *w, int64_t row, int64_t K)
{
    float line[256], s = 0.0f;
    for (int64_t k0 = 0; k0 < K; k0 += 256) {
        const int64_t n = K - k0 < 256 ? K - k0 : 256;
        wan_cpu_weight_row_to_f32(w, K, row, k0, n, line);
        for (int64_t k = 0; k < n; k++)
            s += x[k0 + k] * line[k];
    }
    return s;
}

const wan_gemm_ukr wan_gemm_ukr_generic = {
    .name = "generic 4x8",
    .mr = GEN_MR,
    .nr = GEN_NR,
    .kernel = kernel_generic,
    .pack_a = pack_a_generic,
    .pack_b = pack_b_generic,
    .dot = dot_generic,
};

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Columns of packed weight room: the matrix's (up to WAN_GEMM_NC) plus WAN_GEMM_SPARE_COLS, so that a product with
 * few columns still gives every thread a panel of its own. */
#define WAN_GEMM_SPARE_COLS 2048

static int64_t room_cols(int64_t N) { return (min64(N, WAN_GEMM_NC) + 31) / 32 * 32 + WAN_GEMM_SPARE_COLS; }

/* Slots of one packed row for the largest depth block of a K-deep product: at most WAN_GEMM_KC (a multiple of every
 * kalign), and for short K at most K rounded up to 16 (the largest kalign). */
static int64_t block_slots(int64_t K) { return min64((K + 15) / 16 * 16, WAN_GEMM_KC); }

int64_t wan_gemm_scratch(int64_t N, int64_t K) { return block_slots(K) * room_cols(N) + 64; }

/* One thread's share: output rows [r0, r1) x weight panels [q0, q1). It packs up to `cap` panels at a time into its
 * own room `pb` (kc x nr each), then multiplies them with the rows, WAN_GEMM_MC rows at a time (packed on this
 * thread's stack, 96 KiB) so that those rows stay in L2 while each panel (in L1) meets all of them. */
static void share(const wan_gemm_ukr *u, const float *x, int64_t ldx, int64_t r0, int64_t r1, const wan_tensor *w,
                  int64_t K, int64_t q0, int64_t q1, int64_t cap, const float *bias, float *y, int64_t ldy, float *pb)
{
    _Alignas(64) float pa[WAN_GEMM_MC * WAN_GEMM_KC + WAN_GEMM_A_SLACK];
    const int mr = u->mr, nr = u->nr;
    const int64_t N = w->ne[0], depth = (int64_t)WAN_GEMM_KC * (u->kpack > 1 ? u->kpack : 1);
    for (int64_t qc = q0; qc < q1; qc += cap) {
        const int64_t qn = min64(cap, q1 - qc);
        for (int64_t pc = 0; pc < K; pc += depth) {
            const int64_t kc = min64(depth, K - pc), ks = wan_gemm_slots(u, kc);
            for (int64_t q = 0; q < qn; q++)
                u->pack_b(w, K, (qc + q) * nr, (int)min64(nr, N - (qc + q) * nr), pc, kc, pb + q * nr * ks);
            for (int64_t ic = r0; ic < r1; ic += WAN_GEMM_MC) {
                const int64_t ie = min64(ic + WAN_GEMM_MC, r1);
                for (int64_t i = ic; i < ie; i += mr) /* the rows in the micro-kernel's order, one stream in L1 */
                    u->pack_a(x + i * ldx + pc, ldx, (int)min64(mr, ie - i), kc, pa + (i - ic) * ks);
                for (int64_t q = 0; q < qn; q++) {
                    const int64_t n0 = (qc + q) * nr;
                    const int n = (int)min64(nr, N - n0);
                    const float *bq = pb + q * nr * ks, *bb = bias && pc == 0 ? bias + n0 : NULL;
                    for (int64_t i = ic; i < ie; i += mr)
                        u->kernel(kc, pa + (i - ic) * ks, bq, y + i * ldy + n0, ldy, (int)min64(mr, ie - i), n, bb,
                                  pc > 0);
                }
            }
        }
    }
}

void wan_gemm_packed(const wan_gemm_ukr *u, const float *x, int64_t M, int64_t ldx, const wan_tensor *w,
                     const float *b, float *y, int64_t ldy, float *scratch, int n_threads)
{
    const int64_t N = w->ne[0], K = row_len(w);
    if (M <= 0 || N <= 0)
        return;
    const int mr = u->mr, nr = u->nr;
    const int64_t np = ceil_div(N, nr), ns = ceil_div(M, mr), room = room_cols(N);
    /* threads: a grid of tm row groups x tn column groups, each thread with at least one panel of room */
    int64_t T = n_threads < 1 ? 1 : n_threads;
    T = min64(T, min64(room / nr, np * ns));
    const int64_t tn = min64(T, np), tm = T / tn;
    const int64_t cap = room / (tm * tn) / nr; /* panels of room per thread */
    float *pb = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    const int64_t per = cap * nr * block_slots(K);
#pragma omp parallel num_threads((int)(tm * tn))
    {
        const int64_t id = omp_get_thread_num(), ti = id / tn, tj = id % tn;
        const int64_t r0 = ns * ti / tm * mr, r1 = min64(M, ns * (ti + 1) / tm * mr);
        share(u, x, ldx, r0, r1, w, K, np * tj / tn, np * (tj + 1) / tn, cap, b, y, ldy, pb + id * per);
    }
}

void wan_gemm_rows(const wan_gemm_ukr *u, const float *x, int64_t M, int64_t ldx, const wan_tensor *w,
                   const float *b, float *y, int64_t ldy, int n_threads)
{
    const int64_t N = w->ne[0], K = row_len(w);
#pragma omp parallel for num_threads(n_threads < 1 ? 1 : n_threads) schedule(static)
    for (int64_t n = 0; n < N; n++)
        for (int64_t m = 0; m < M; m++)
            y[m * ldy + n] = u->dot(x + m * ldx, w, n, K) + (b ? b[n] : 0.0f);
}

/* Products below this many multiply-adds run on the calling thread alone. */
#define LINEAR_SERIAL_MACS ((int64_t)1 << 21)

/* y[m0:m1, n0+r0 : n0+r1) = x[m0:m1] · tile[r0:r1]ᵀ + b, on the calling thread (OpenBLAS set to 1 thread). */
static void block(const float *x, int64_t m0, int64_t m1, int64_t ldx, const float *tile, int64_t r0, int64_t r1,
                  int64_t K, const float *b, float *y, int64_t ldy, int64_t n0)
{
    if (m1 <= m0 || r1 <= r0)
        return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(m1 - m0), (int)(r1 - r0), (int)K, 1.0f,
                x + m0 * ldx, (int)ldx, tile + r0 * K, (int)K, 0.0f, y + m0 * ldy + n0 + r0, (int)ldy);
    if (b)
        for (int64_t m = m0; m < m1; m++) {
            float *r = y + m * ldy + n0;
            for (int64_t n = r0; n < r1; n++)
                r[n] += b[n0 + n];
        }
}

/* One thread pool: the OpenMP team converts each tile of weight rows together, then every thread multiplies
 * its own share of the tile with a single-threaded sgemm. Two pools (OpenMP regions next to OpenBLAS's own
 * threads) spin against each other. */
static void linear_blas(const float *x, int64_t M, int64_t ldx, const wan_tensor *w, const float *b, float *y,
                        int64_t ldy, float *scratch, int n_threads)
{
    const int64_t N = w->ne[0], K = row_len(w);
    const int in_place = f32_in_place(w);
    const int64_t rows = in_place ? N : tile_scratch(w) / K;
    if (openblas_get_num_threads() != 1)
        openblas_set_num_threads(1);
#pragma omp parallel num_threads(n_threads)
    {
        const int T = omp_get_num_threads(), id = omp_get_thread_num();
        for (int64_t n0 = 0; n0 < N; n0 += rows) {
            const int64_t nt = N - n0 < rows ? N - n0 : rows;
            const float *tile = (const float *)w->data + n0 * K;
            if (!in_place) {
#pragma omp for schedule(static)
                for (int64_t r = 0; r < nt; r++)
                    wan_cpu_weight_row_to_f32(w, K, n0 + r, 0, K, scratch + r * K);
                tile = scratch;
            }
            /* split over x rows when there are plenty (each sgemm repacks its whole x share once per
             * tile, so a narrow weight share per thread would repack x often), else over weight rows */
            if (M >= 128 * (int64_t)T || (nt < 32 * (int64_t)T && M >= T))
                block(x, M * id / T, M * (id + 1) / T, ldx, tile, 0, nt, K, b, y, ldy, n0);
            else
                block(x, 0, M, ldx, tile, nt * id / T, nt * (id + 1) / T, K, b, y, ldy, n0);
            if (!in_place && n0 + rows < N) {
#pragma omp barrier
            }
        }
    }
}

void wan_cpu_linear(const float *x, int64_t M, int64_t ldx, const wan_tensor *w, const float *b, float *y,
                    int64_t ldy, float *scratch, int n_threads)
{
    const int64_t N = w->ne[0], K = row_len(w);
    if (M <= 0 || N <= 0)
        return;
    if (n_threads < 1 || M * N * K < LINEAR_SERIAL_MACS)
        n_threads = 1;
    const wan_gemm_ukr *u = wan_kernels_get()->gemm, *ub = g_mode == WAN_LINEAR_BF16 ? wan_gemm_ukr_bf16() : NULL;
    if (ub && M > LINEAR_ROWS_MAX)
        wan_gemm_packed(ub, x, M, ldx, w, b, y, ldy, scratch, n_threads);
    else if (use_packed() && M <= LINEAR_ROWS_MAX)
        wan_gemm_rows(u, x, M, ldx, w, b, y, ldy, n_threads);
    else if (use_packed())
        wan_gemm_packed(u, x, M, ldx, w, b, y, ldy, scratch, n_threads);
    else
        linear_blas(x, M, ldx, w, b, y, ldy, scratch, n_threads);
}

void wan_cpu_set_threads(int n_threads)
{
    if (n_threads > 0 && openblas_get_num_threads() != n_threads)
        openblas_set_num_threads(n_threads);
}
