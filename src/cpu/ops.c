/* ops.c — norms, modulation, RoPE, activations and residuals of the DiT (portable C + AVX2 dispatch). */
#include "cpu/ops.h"
#include "cpu/cpu.h"

#include <math.h>
#include <stdatomic.h>

/* wan_kernels_supported(k), asked once and kept in *cached (-1: not yet asked). */
static int supported_once(atomic_int *cached, const wan_kernels *k)
{
    int v = atomic_load(cached);
    if (v < 0) {
        v = wan_kernels_supported(k) ? 1 : 0;
        atomic_store(cached, v);
    }
    return v;
}

int wan_cpu_use_avx2(void)
{
    static atomic_int cached = -1;
    return supported_once(&cached, &wan_kernels_avx2);
}

int wan_cpu_use_avx512(void)
{
    static atomic_int cached = -1;
    return supported_once(&cached, &wan_kernels_avx512);
}

/* Σ (x[i] - c)^p over i < n for p = 1 or 2, in double over 8 interleaved partial sums (AVX2: 2 x 4 lanes):
 * independent additions instead of one chain whose add latency bounds the loop. */
#define SUM_LANES 8
static double row_sum(const float *x, int64_t n, double c, int p, int avx2)
{
    if (avx2)
        return wan_cpu_row_sum_avx2(x, n, c, p);
    double acc[SUM_LANES] = { 0 };
    int64_t i = 0;
    for (; i + SUM_LANES <= n; i += SUM_LANES)
        for (int j = 0; j < SUM_LANES; j++) {
            const double d = (double)x[i + j] - c;
            acc[j] += p == 2 ? d * d : d;
        }
    for (int j = 0; i + j < n; j++) {
        const double d = (double)x[i + j] - c;
        acc[j] += p == 2 ? d * d : d;
    }
    double s = 0.0;
    for (int j = 0; j < SUM_LANES; j++)
        s += acc[j];
    return s;
}

/* Rows are independent; parallelise when the work is large enough to pay for the team. */
#define ROWS_PAR(L, D) if ((L) * (D) > 32768)

void wan_cpu_layernorm(const float *x, float *y, int64_t L, int64_t D, int64_t ld, float eps, const float *w,
                       const float *b, const float *shift, const float *scale, const int32_t *tok_row,
                       int64_t mod_ld, int n_threads)
{
    const int avx2 = wan_cpu_use_avx2();
#pragma omp parallel for num_threads(n_threads) schedule(static) ROWS_PAR(L, D)
    for (int64_t l = 0; l < L; l++) {
        const float *xr = x + l * ld;
        float *yr = y + l * ld;
        const double mean = row_sum(xr, D, 0.0, 1, avx2) / (double)D, s2 = row_sum(xr, D, mean, 2, avx2);
        const float rstd = (float)(1.0 / sqrt(s2 / (double)D + (double)eps));
        const float mu = (float)mean;
        const int64_t off = tok_row ? tok_row[l] * mod_ld : 0;
        const float *sh = shift ? shift + off : NULL, *sc = scale ? scale + off : NULL;
        if (avx2) {
            wan_cpu_norm_row_avx2(xr, yr, D, mu, rstd, w, w ? b : NULL, sc, sh);
            continue;
        }
        for (int64_t i = 0; i < D; i++) {
            float v = (xr[i] - mu) * rstd;
            if (w)
                v = v * w[i] + b[i];
            if (sc)
                v = v * (1.0f + sc[i]) + sh[i];
            yr[i] = v;
        }
    }
}

void wan_cpu_rmsnorm(float *x, int64_t L, int64_t D, int64_t ld, float eps, const float *w, int n_threads)
{
    const int avx2 = wan_cpu_use_avx2();
#pragma omp parallel for num_threads(n_threads) schedule(static) ROWS_PAR(L, D)
    for (int64_t l = 0; l < L; l++) {
        float *xr = x + l * ld;
        const double s2 = row_sum(xr, D, 0.0, 2, avx2);
        const float r = (float)(1.0 / sqrt(s2 / (double)D + (double)eps));
        for (int64_t i = 0; i < D; i++)
            xr[i] = xr[i] * r * w[i];
    }
}

void wan_cpu_gated_add(float *x, int64_t ldx, const float *y, int64_t ldy, int64_t L, int64_t D,
                       const float *gate, const int32_t *tok_row, int64_t mod_ld, int n_threads)
{
#pragma omp parallel for num_threads(n_threads) schedule(static) ROWS_PAR(L, D)
    for (int64_t l = 0; l < L; l++) {
        float *xr = x + l * ldx;
        const float *yr = y + l * ldy;
        if (gate) {
            const float *g = gate + (tok_row ? tok_row[l] * mod_ld : 0);
            for (int64_t i = 0; i < D; i++)
                xr[i] += yr[i] * g[i];
        } else {
            for (int64_t i = 0; i < D; i++)
                xr[i] += yr[i];
        }
    }
}

static float gelu_tanh1(float x)
{
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    float u = k * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

void wan_cpu_gelu_tanh(float *x, int64_t n, int n_threads)
{
    const int64_t chunk = 16384;
    const int64_t nchunks = (n + chunk - 1) / chunk;
    const int avx2 = wan_cpu_use_avx2();
#pragma omp parallel for num_threads(n_threads) schedule(static) if (nchunks > 1)
    for (int64_t c = 0; c < nchunks; c++) {
        int64_t i0 = c * chunk, i1 = i0 + chunk < n ? i0 + chunk : n;
        if (avx2) {
            wan_cpu_gelu_tanh_avx2(x + i0, i1 - i0);
        } else {
            for (int64_t i = i0; i < i1; i++)
                x[i] = gelu_tanh1(x[i]);
        }
    }
}

void wan_cpu_silu(const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] / (1.0f + expf(-x[i]));
}

void wan_cpu_rope_table(float *tab, int n_pos, int dim, double theta)
{
    const int half = dim / 2;
    for (int j = 0; j < half; j++) {
        const double freq = 1.0 / pow(theta, (double)(2 * j) / (double)dim);
        for (int p = 0; p < n_pos; p++) {
            const double a = (double)p * freq;
            tab[((int64_t)p * half + j) * 2 + 0] = (float)cos(a);
            tab[((int64_t)p * half + j) * 2 + 1] = (float)sin(a);
        }
    }
}

static void rotate(float *x, const float *cs, int npairs)
{
    for (int m = 0; m < npairs; m++) {
        const float c = cs[2 * m], s = cs[2 * m + 1];
        const float a = x[2 * m], b = x[2 * m + 1];
        x[2 * m] = a * c - b * s;
        x[2 * m + 1] = a * s + b * c;
    }
}

void wan_cpu_rope(float *x, int64_t ld, int nf, int nh, int nw, int heads, int hd, int dt, int dh,
                  const float *tab_t, const float *tab_h, const float *tab_w, int n_threads)
{
    const int pt = dt / 2, ph = dh / 2, pw = (hd - dt - dh) / 2;
    const int64_t L = (int64_t)nf * nh * nw;
#pragma omp parallel for num_threads(n_threads) schedule(static) ROWS_PAR(L, (int64_t)heads * hd)
    for (int64_t l = 0; l < L; l++) {
        const int w = (int)(l % nw), h = (int)((l / nw) % nh), f = (int)(l / ((int64_t)nw * nh));
        const float *ct = tab_t + (int64_t)f * pt * 2, *ch = tab_h + (int64_t)h * ph * 2;
        const float *cw = tab_w + (int64_t)w * pw * 2;
        for (int n = 0; n < heads; n++) {
            float *xh = x + l * ld + (int64_t)n * hd;
            rotate(xh, ct, pt);
            rotate(xh + 2 * pt, ch, ph);
            rotate(xh + 2 * (pt + ph), cw, pw);
        }
    }
}
