/* vae.cu — the VAE's ops on the GPU (validated on an H200, docs/CUDA.md): convolutions with temporal taps, channel
 * RMS norm (+ SiLU), DupUp3D / AvgDown3D shortcuts. Semantics: backend.h (each mirrors src/cpu/conv3d.h or vae.c).
 *
 * Convolution (version 1 of dev/cuda/conv3d.cu): as on the CPU, an explicit GEMM per temporal tap — the output
 * starts as the bias, a 1x1 stride-1 convolution multiplies the frame in place, any other geometry is unfolded
 * (im2col, with the zero padding, stride and nearest x2 upsampling folded into the gather) for a band of output
 * rows that fits the scratch target, and cublasSgemm accumulates W_tap·columns into it (f32, no TF32). An
 * implicit-GEMM kernel or cuDNN is the workbench's next candidate. */
#include "cuda_common.cuh"

#include <math.h>

#define GRID_STRIDE(i, n)                                                                                         \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

__global__ void k_fill_bias(float *out, const float *bias, int64_t hw, int64_t n)
{
    GRID_STRIDE(i, n)
    out[i] = bias ? bias[i / hw] : 0.0f;
}

/* col[k][p] for k < cin·kh·kw and p < rows·wo (output rows y0..y0+rows): the input value under kernel tap k at
 * output pixel p, 0 outside the (logical, upsampled) frame. */
__global__ void k_im2col(const float *in, float *col, int cin, int h, int w, int kh, int kw, int stride, int pad,
                         int up2, int wo, int y0, int64_t P, int64_t n)
{
    const int sh = up2 ? h / 2 : h, sw = up2 ? w / 2 : w, kk = kh * kw;
    GRID_STRIDE(i, n)
    {
        const int64_t p = i % P, k = i / P;
        const int ci = (int)(k / kk), rs = (int)(k % kk), r = rs / kw, s = rs % kw;
        const int oy = y0 + (int)(p / wo), ox = (int)(p % wo);
        const int iy = oy * stride + r - pad, ix = ox * stride + s - pad;
        float v = 0.0f;
        if (iy >= 0 && iy < h && ix >= 0 && ix < w)
            v = in[((int64_t)ci * sh + (up2 ? iy / 2 : iy)) * sw + (up2 ? ix / 2 : ix)];
        col[i] = v;
    }
}

void cu_conv2d_taps(wan_backend *be, const wan_conv_geom *g, int ntaps, const float *w, const float *bias,
                    const float *const *in, float *out)
{
    if (!cu_begin(be))
        return;
    cudaStream_t st = cu_of(be)->stream;
    const int64_t hw = (int64_t)g->ho * g->wo, K = (int64_t)g->cin * g->kh * g->kw;
    k_fill_bias<<<cu_blocks(g->cout * hw, CU_THREADS), CU_THREADS, 0, st>>>(out, bias, hw, g->cout * hw);
    if (!cu_check(be, "conv bias kernel") || hw == 0)
        return;
    const int direct = g->kh == 1 && g->kw == 1 && g->stride == 1 && !g->up2 && g->pad == 0;
    if (direct) {
        for (int a = 0; a < ntaps; a++)
            if (in[a] && !cu_sgemm(be, CUBLAS_OP_N, CUBLAS_OP_N, hw, g->cout, g->cin, 1.0f, in[a], hw,
                                   w + (int64_t)a * g->cout * g->cin, g->cin, 1.0f, out, hw, "conv 1x1 sgemm"))
                return;
        return;
    }
    int64_t rows = (int64_t)(CU_SCRATCH_TARGET / 4 / (size_t)(K * g->wo));
    rows = rows < 1 ? 1 : rows > g->ho ? g->ho : rows;
    float *col = (float *)cu_scratch(be, (size_t)(rows * g->wo * K) * 4);
    for (int64_t y0 = 0; col && y0 < g->ho && be->err.code == WAN_OK; y0 += rows) {
        const int64_t nr = g->ho - y0 < rows ? g->ho - y0 : rows, P = nr * g->wo;
        for (int a = 0; a < ntaps; a++) {
            if (!in[a])
                continue;
            k_im2col<<<cu_blocks(K * P, CU_THREADS), CU_THREADS, 0, st>>>(in[a], col, g->cin, g->h, g->w, g->kh, g->kw,
                                                                          g->stride, g->pad, g->up2, g->wo, (int)y0,
                                                                          P, K * P);
            if (!cu_check(be, "im2col kernel") ||
                !cu_sgemm(be, CUBLAS_OP_N, CUBLAS_OP_N, P, g->cout, K, 1.0f, col, P, w + (int64_t)a * g->cout * K, K,
                          1.0f, out + y0 * g->wo, hw, "conv sgemm"))
                return;
        }
    }
}

/* One thread per (frame, pixel): the norm over channels, then every channel of that pixel. */
__global__ void k_chan_rmsnorm(const float *x, float *y, int c, int64_t hw, const float *gamma, int silu, int64_t n)
{
    const float scale = sqrtf((float)c);
    GRID_STRIDE(i, n)
    {
        const int64_t f = i / hw, p = i % hw;
        const float *xf = x + f * c * hw + p;
        float ss = 0.0f;
        for (int k = 0; k < c; k++)
            ss += xf[(int64_t)k * hw] * xf[(int64_t)k * hw];
        const float nrm = fmaxf(sqrtf(ss), 1e-12f);
        float *yf = y + f * c * hw + p;
        for (int k = 0; k < c; k++) {
            const float v = xf[(int64_t)k * hw] / nrm * scale * gamma[k];
            yf[(int64_t)k * hw] = silu ? v / (1.0f + expf(-v)) : v;
        }
    }
}

void cu_chan_rmsnorm(wan_backend *be, const float *x, float *y, int c, int64_t hw, int n, const float *gamma, int silu)
{
    if (!cu_begin(be) || (int64_t)n * hw < 1)
        return;
    k_chan_rmsnorm<<<cu_blocks(n * hw, CU_THREADS), CU_THREADS, 0, cu_of(be)->stream>>>(x, y, c, hw, gamma, silu,
                                                                                        n * hw);
    cu_check(be, "channel rmsnorm kernel");
}

/* One thread per output element. */
__global__ void k_dupup_add(float *y, const float *x, int cin, int cout, int h, int w, int ft, int fs, int trim,
                            int64_t n)
{
    const int f3 = ft * fs * fs, rep = cout * f3 / cin, ho = h * fs, wo = w * fs;
    GRID_STRIDE(i, n)
    {
        const int xx = (int)(i % wo), yy = (int)((i / wo) % ho), o = (int)((i / ((int64_t)wo * ho)) % cout);
        const int t = (int)(i / ((int64_t)wo * ho * cout)) + trim, ti = t / ft, a = t % ft;
        const int j = o * f3 + a * fs * fs + (yy % fs) * fs + xx % fs;
        y[i] += x[(((int64_t)ti * cin + j / rep) * h + yy / fs) * w + xx / fs];
    }
}

void cu_dupup_add(wan_backend *be, float *y, const float *x, int cin, int cout, int n_in, int h, int w, int ft, int fs,
                  int trim)
{
    const int64_t n = (int64_t)(n_in * ft - trim) * cout * h * fs * w * fs;
    if (!cu_begin(be) || n < 1)
        return;
    k_dupup_add<<<cu_blocks(n, CU_THREADS), CU_THREADS, 0, cu_of(be)->stream>>>(y, x, cin, cout, h, w, ft, fs, trim,
                                                                                n);
    cu_check(be, "dupup kernel");
}

__global__ void k_avgdown_add(float *y, const float *x, int cin, int cout, int h, int w, int ft, int fs, int pad,
                              int64_t n)
{
    const int f3 = ft * fs * fs, g = cin * f3 / cout, ho = h / fs, wo = w / fs;
    GRID_STRIDE(i, n)
    {
        const int xx = (int)(i % wo), yy = (int)((i / wo) % ho), o = (int)((i / ((int64_t)wo * ho)) % cout);
        const int t = (int)(i / ((int64_t)wo * ho * cout));
        float sum = 0.0f;
        for (int j = o * g; j < o * g + g; j++) {
            const int ci = j / f3, rest = j % f3, a = rest / (fs * fs), b = rest / fs % fs, d = rest % fs;
            const int ti = ft * t + a - pad;
            if (ti >= 0)
                sum += x[(((int64_t)ti * cin + ci) * h + fs * yy + b) * w + fs * xx + d];
        }
        y[i] += sum / (float)g;
    }
}

void cu_avgdown_add(wan_backend *be, float *y, const float *x, int cin, int cout, int n_in, int h, int w, int ft,
                    int fs)
{
    const int pad = (ft - n_in % ft) % ft;
    const int64_t n = (int64_t)((n_in + pad) / ft) * cout * (h / fs) * (w / fs);
    if (!cu_begin(be) || n < 1)
        return;
    k_avgdown_add<<<cu_blocks(n, CU_THREADS), CU_THREADS, 0, cu_of(be)->stream>>>(y, x, cin, cout, h, w, ft, fs, pad,
                                                                                  n);
    cu_check(be, "avgdown kernel");
}
