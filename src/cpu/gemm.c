/* gemm.c — linear layers on OpenBLAS sgemm, with tiled conversion of BF16/F16 weights. */
#include "cpu/gemm.h"
#include "cpu/cpu.h"

#include <cblas.h>
#include <omp.h>
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

void wan_cpu_linear_set_tile(int64_t floats) { g_tile_floats = floats > 0 ? floats : WAN_LINEAR_TILE_FLOATS; }

int64_t wan_cpu_linear_scratch(const wan_tensor *w)
{
    if (f32_in_place(w))
        return 0;
    int64_t n = w->ne[0], k = row_len(w);
    int64_t rows = g_tile_floats / k;
    if (rows < 1)
        rows = 1;
    return (rows < n ? rows : n) * k;
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
void wan_cpu_linear(const float *x, int64_t M, int64_t ldx, const wan_tensor *w, const float *b, float *y,
                    int64_t ldy, float *scratch, int n_threads)
{
    const int64_t N = w->ne[0], K = row_len(w);
    if (M <= 0 || N <= 0)
        return;
    const int in_place = f32_in_place(w);
    const int64_t rows = in_place ? N : wan_cpu_linear_scratch(w) / K;
    const size_t esz = wan_dtype_size(w->dtype);
    if (n_threads < 1 || M * N * K < LINEAR_SERIAL_MACS)
        n_threads = 1;
    if (openblas_get_num_threads() != 1)
        openblas_set_num_threads(1);
#pragma omp parallel num_threads(n_threads)
    {
        const int T = omp_get_num_threads(), id = omp_get_thread_num();
        for (int64_t n0 = 0; n0 < N; n0 += rows) {
            const int64_t nt = N - n0 < rows ? N - n0 : rows;
            const float *tile = (const float *)w->data + n0 * K;
            if (!in_place) {
                const uint8_t *src = (const uint8_t *)w->data + (size_t)(n0 * K) * esz;
#pragma omp for schedule(static)
                for (int64_t r = 0; r < nt; r++)
                    wan_cpu_to_f32(src + (size_t)(r * K) * esz, w->dtype, scratch + r * K, K);
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

void wan_cpu_set_threads(int n_threads)
{
    if (n_threads > 0 && openblas_get_num_threads() != n_threads)
        openblas_set_num_threads(n_threads);
}
