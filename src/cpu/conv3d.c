/* conv3d.c — VAE convolution, norm and attention kernels (see conv3d.h). */
#include "cpu/conv3d.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <omp.h>
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
    for (int k = 0; k < rows; k++) {
        int ci = k / kk, rs = k % kk;
        im2col_row(g, in + (size_t)ci * plane, rs / g->kw, rs % g->kw, y0, y1, B + (size_t)k * n);
    }
}

/* One thread's share: output pixels [p0, p1) of a 1x1 convolution. */
static void direct_part(const wan_conv_geom *g, int ntaps, const float *w, const float *const *in, float *out,
                        size_t p0, size_t p1)
{
    const size_t hw = (size_t)g->ho * g->wo;
    for (int a = 0; a < ntaps; a++)
        if (in[a] && p1 > p0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->cout, (int)(p1 - p0), g->cin, 1.0f,
                        w + (size_t)a * g->cout * g->cin, g->cin, in[a] + p0, (int)hw, 1.0f, out + p0, (int)hw);
}

/* One thread's share: output rows [r0, r1), im2col in blocks of rows that fit its scratch. */
static void rows_part(const wan_conv_geom *g, int ntaps, const float *w, const float *const *in, float *out,
                      int r0, int r1, float *scratch, size_t scratch_floats)
{
    const size_t hw = (size_t)g->ho * g->wo, per_row = (size_t)g->cin * g->kh * g->kw * g->wo;
    const int K = g->cin * g->kh * g->kw;
    int block = (int)(scratch_floats / per_row);
    if (block < 1)
        block = 1; /* the caller guarantees at least wan_conv_scratch_min per thread */
    for (int y0 = r0; y0 < r1; y0 += block) {
        int y1 = y0 + block < r1 ? y0 + block : r1;
        int n = (y1 - y0) * g->wo;
        for (int a = 0; a < ntaps; a++) {
            if (!in[a])
                continue;
            im2col(g, in[a], y0, y1, scratch);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->cout, n, K, 1.0f,
                        w + (size_t)a * g->cout * K, K, scratch, n, 1.0f, out + (size_t)y0 * g->wo, (int)hw);
        }
    }
}

void wan_conv_taps(const wan_conv_geom *g, int ntaps, const float *w, const float *bias,
                   const float *const *in, float *out, float *scratch, size_t scratch_floats, int nt)
{
    const size_t hw = (size_t)g->ho * g->wo;
    if (nt > g->ho)
        nt = g->ho > 0 ? g->ho : 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        const int r0 = (int)((int64_t)g->ho * tid / nth), r1 = (int)((int64_t)g->ho * (tid + 1) / nth);
        const size_t p0 = (size_t)r0 * g->wo, p1 = (size_t)r1 * g->wo;
        for (int o = 0; o < g->cout; o++) {
            float b = bias ? bias[o] : 0.0f, *dst = out + (size_t)o * hw;
            for (size_t i = p0; i < p1; i++)
                dst[i] = b;
        }
        if (is_direct(g)) {
            direct_part(g, ntaps, w, in, out, p0, p1);
        } else {
            size_t share = scratch_floats / (size_t)nth;
            rows_part(g, ntaps, w, in, out, r0, r1, scratch + (size_t)tid * share, share);
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

void wan_attention_frame(const float *qkv, float *o, int c, int n, float *s, int rows, int nt)
{
    const float *q = qkv, *k = qkv + (size_t)c * n, *v = qkv + (size_t)2 * c * n;
    const float scale = 1.0f / sqrtf((float)c);
    const int nblk = (n + rows - 1) / rows;
#pragma omp parallel for schedule(dynamic) num_threads(nt) if (nt > 1 && nblk > 1)
    for (int blk = 0; blk < nblk; blk++) {
        const int i0 = blk * rows, nb = i0 + rows < n ? rows : n - i0;
        float *sb = s + (size_t)omp_get_thread_num() * rows * n;
        /* sb[nb, n] = q[:, i0:i0+nb]^T k * scale */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nb, n, c, scale, q + i0, n, k, n, 0.0f, sb, n);
        for (int i = 0; i < nb; i++) {
            float *row = sb + (size_t)i * n, mx = -FLT_MAX, sum = 0.0f;
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
        /* o[:, i0:i0+nb] = v sb^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c, nb, n, 1.0f, v, n, sb, n, 0.0f, o + i0, n);
    }
}
