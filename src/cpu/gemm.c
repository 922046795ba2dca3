/* gemm.c — linear layers on OpenBLAS sgemm, with tiled conversion of BF16/F16 weights. */
#include "cpu/gemm.h"
#include "cpu/cpu.h"

#include <cblas.h>
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

int64_t wan_cpu_linear_scratch(const wan_tensor *w)
{
    if (f32_in_place(w))
        return 0;
    int64_t n = w->ne[0], k = row_len(w);
    int64_t rows = WAN_LINEAR_TILE_FLOATS / k;
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

static void add_bias(float *y, int64_t M, int64_t N, int64_t ldy, const float *b, int n_threads)
{
#pragma omp parallel for num_threads(n_threads) schedule(static) if (M * N > 65536)
    for (int64_t m = 0; m < M; m++) {
        float *r = y + m * ldy;
        for (int64_t n = 0; n < N; n++)
            r[n] += b[n];
    }
}

void wan_cpu_linear(const float *x, int64_t M, int64_t ldx, const wan_tensor *w, const float *b, float *y,
                    int64_t ldy, float *scratch, int n_threads)
{
    const int64_t N = w->ne[0], K = row_len(w);
    if (M <= 0 || N <= 0)
        return;
    if (f32_in_place(w)) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1.0f, x, (int)ldx,
                    (const float *)w->data, (int)K, 0.0f, y, (int)ldy);
    } else {
        const size_t esz = wan_dtype_size(w->dtype);
        int64_t rows = wan_cpu_linear_scratch(w) / K;
        for (int64_t n0 = 0; n0 < N; n0 += rows) {
            int64_t nt = N - n0 < rows ? N - n0 : rows;
            const uint8_t *src = (const uint8_t *)w->data + (size_t)(n0 * K) * esz;
#pragma omp parallel for num_threads(n_threads) schedule(static) if (nt * K > 65536)
            for (int64_t r = 0; r < nt; r++)
                wan_cpu_to_f32(src + (size_t)(r * K) * esz, w->dtype, scratch + r * K, K);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)nt, (int)K, 1.0f, x, (int)ldx,
                        scratch, (int)K, 0.0f, y + n0, (int)ldy);
        }
    }
    if (b)
        add_bias(y, M, N, ldy, b, n_threads);
}

void wan_cpu_set_threads(int n_threads)
{
    if (n_threads > 0 && openblas_get_num_threads() != n_threads)
        openblas_set_num_threads(n_threads);
}
