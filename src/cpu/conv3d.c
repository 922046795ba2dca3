/* conv3d.c — VAE convolution, norm and attention kernels (see conv3d.h). */
#include "cpu/conv3d.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>


wan_conv_geom wan_conv_geom_make(int cin, int cout, int h, int w, int k, int stride, int same, int up2)
{
    wan_conv_geom g = { .cin = cin, .cout = cout, .h = h, .w = w, .kh = k, .kw = k, .stride = stride,
                        .pad = same ? (k - 1) / 2 : 0, .up2 = up2 };
    int extra = same ? 2 * g.pad : 1; /* the downsampler pads one row/column at the bottom/right */
    if (k == 1)
        extra = 0;
    g.ho = (h + extra - k) / stride + 1;
    g.wo = (w + extra - k) / stride + 1;
    return g;
}

static int is_direct(const wan_conv_geom *g)
{
    return g->kh == 1 && g->kw == 1 && g->stride == 1 && !g->up2 && g->pad == 0;
}

size_t wan_conv_scratch_min(const wan_conv_geom *g)
{
    if (is_direct(g))
        return 0;
    return (size_t)g->cin * g->kh * g->kw * g->wo;
}

/* One row of B for input channel plane `src` (stored size sh x sw), kernel offsets (r, s), output rows
 * [y0, y1): dst[(oy - y0) * wo + ox] = in[oy*stride + r - pad][ox*stride + s - pad] (0 outside). */
static void im2col_row(const wan_conv_geom *g, const float *src, int r, int s, int y0, int y1, float *dst)
{
    const int sw = g->up2 ? g->w / 2 : g->w;
    for (int oy = y0; oy < y1; oy++, dst += g->wo) {
        int iy = oy * g->stride + r - g->pad;
        if (iy < 0 || iy >= g->h) {
            memset(dst, 0, sizeof(float) * (size_t)g->wo);
            continue;
        }
        const float *row = src + (size_t)(g->up2 ? iy / 2 : iy) * sw;
        if (g->stride == 1 && !g->up2) {
            int x0 = s - g->pad; /* input column of ox = 0 */
            int lo = x0 < 0 ? -x0 : 0;
            int hi = g->w - x0 < g->wo ? g->w - x0 : g->wo;
            if (hi < lo)
                hi = lo;
            for (int ox = 0; ox < lo; ox++)
                dst[ox] = 0.0f;
            if (hi > lo)
                memcpy(dst + lo, row + x0 + lo, sizeof(float) * (size_t)(hi - lo));
            for (int ox = hi; ox < g->wo; ox++)
                dst[ox] = 0.0f;
            continue;
        }
        for (int ox = 0; ox < g->wo; ox++) {
            int ix = ox * g->stride + s - g->pad;
            dst[ox] = (ix < 0 || ix >= g->w) ? 0.0f : row[g->up2 ? ix / 2 : ix];
        }
    }
}

static void im2col(const wan_conv_geom *g, const float *in, int y0, int y1, float *B)
{
    const int kk = g->kh * g->kw;
    const int rows = g->cin * kk;
    const size_t n = (size_t)(y1 - y0) * g->wo;
    const size_t plane = (size_t)(g->up2 ? (g->h / 2) * (g->w / 2) : g->h * g->w);
#pragma omp parallel for schedule(static) if ((size_t)rows * n >= WAN_PAR_MIN)
    for (int k = 0; k < rows; k++) {
        int ci = k / kk, rs = k % kk;
        im2col_row(g, in + (size_t)ci * plane, rs / g->kw, rs % g->kw, y0, y1, B + (size_t)k * n);
    }
}

void wan_conv_taps(const wan_conv_geom *g, int ntaps, const float *w, const float *bias,
                   const float *const *in, float *out, float *scratch, size_t scratch_floats)
{
    const size_t hw = (size_t)g->ho * g->wo;
    const int K = g->cin * g->kh * g->kw;
    for (int o = 0; o < g->cout; o++) {
        float b = bias ? bias[o] : 0.0f, *dst = out + (size_t)o * hw;
        for (size_t i = 0; i < hw; i++)
            dst[i] = b;
    }
    if (is_direct(g)) {
        for (int a = 0; a < ntaps; a++)
            if (in[a])
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->cout, (int)hw, K, 1.0f,
                            w + (size_t)a * g->cout * K, K, in[a], (int)hw, 1.0f, out, (int)hw);
        return;
    }
    size_t per_row = (size_t)K * g->wo;
    int block = (int)(scratch_floats / per_row);
    if (block < 1)
        block = 1; /* the caller guarantees scratch_floats >= wan_conv_scratch_min */
    for (int y0 = 0; y0 < g->ho; y0 += block) {
        int y1 = y0 + block < g->ho ? y0 + block : g->ho;
        int n = (y1 - y0) * g->wo;
        for (int a = 0; a < ntaps; a++) {
            if (!in[a])
                continue;
            im2col(g, in[a], y0, y1, scratch);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->cout, n, K, 1.0f,
                        w + (size_t)a * g->cout * K, K, scratch, n, 1.0f, out + (size_t)y0 * g->wo,
                        (int)hw);
        }
    }
}

void wan_rms_norm_silu(const float *x, float *y, int c, size_t hw, const float *gamma, int silu, float *ss)
{
    const float scale = sqrtf((float)c);
    const int par = (size_t)c * hw >= WAN_PAR_MIN;
#pragma omp parallel if (par)
    {
        /* sum of squares over channels, pixels split between threads */
#pragma omp for schedule(static)
        for (size_t p0 = 0; p0 < hw; p0 += 256) {
            size_t p1 = p0 + 256 < hw ? p0 + 256 : hw;
            for (size_t p = p0; p < p1; p++)
                ss[p] = 0.0f;
            for (int ch = 0; ch < c; ch++) {
                const float *xr = x + (size_t)ch * hw;
                for (size_t p = p0; p < p1; p++)
                    ss[p] += xr[p] * xr[p];
            }
            for (size_t p = p0; p < p1; p++) {
                float nrm = sqrtf(ss[p]);
                ss[p] = nrm > 1e-12f ? nrm : 1e-12f;
            }
        }
#pragma omp for schedule(static)
        for (int ch = 0; ch < c; ch++) {
            const float *xr = x + (size_t)ch * hw;
            float *yr = y + (size_t)ch * hw, gm = gamma[ch];
            for (size_t p = 0; p < hw; p++) {
                float v = xr[p] / ss[p] * scale * gm;
                yr[p] = silu ? v / (1.0f + expf(-v)) : v;
            }
        }
    }
}

void wan_attention_frame(const float *qkv, float *o, int c, int n, float *s, int rows)
{
    const float *q = qkv, *k = qkv + (size_t)c * n, *v = qkv + (size_t)2 * c * n;
    const float scale = 1.0f / sqrtf((float)c);
    for (int i0 = 0; i0 < n; i0 += rows) {
        int nb = i0 + rows < n ? rows : n - i0;
        /* s[nb, n] = q[:, i0:i0+nb]^T k * scale */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nb, n, c, scale, q + i0, n, k, n, 0.0f, s, n);
#pragma omp parallel for schedule(static) if ((size_t)nb * n >= WAN_PAR_MIN)
        for (int i = 0; i < nb; i++) {
            float *row = s + (size_t)i * n, mx = -FLT_MAX, sum = 0.0f;
            for (int j = 0; j < n; j++)
                mx = row[j] > mx ? row[j] : mx;
            for (int j = 0; j < n; j++) {
                row[j] = expf(row[j] - mx);
                sum += row[j];
            }
            float inv = 1.0f / sum;
            for (int j = 0; j < n; j++)
                row[j] *= inv;
        }
        /* o[:, i0:i0+nb] = v s^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c, nb, n, 1.0f, v, n, s, n, 0.0f, o + i0, n);
    }
}
