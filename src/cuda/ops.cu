/* ops.cu — the transformer's element-wise and per-row ops on the GPU (validated on an H200, docs/CUDA.md): layer
 * norm with modulation, RMS norm over all heads, RoPE, GELU (tanh), SiLU, gated residual, modulation tables, patch
 * gather/scatter, add. Semantics: backend.h (each mirrors a wan_cpu_* kernel of src/cpu/ops.h). Norms: one block
 * per row, f32 tree reductions (the CPU sums in double; the difference is ~1e-7 relative). */
#include "cuda_common.cuh"

#include <math.h>

#define GRID_STRIDE(i, n)                                                                                         \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

#define LAUNCH(kernel, n, ...)                                                                                    \
    do {                                                                                                          \
        kernel<<<cu_blocks((n), CU_THREADS), CU_THREADS, 0, cu_of(be)->stream>>>(__VA_ARGS__);                   \
        cu_check(be, #kernel);                                                                                    \
    } while (0)

/* ---- norms -------------------------------------------------------------------------------------------------- */

__global__ void k_layernorm(const float *x, float *y, int64_t D, int64_t ld, float eps, const float *w, const float *b,
                            const float *shift, const float *scale, const int32_t *tok_row, int64_t mod_ld)
{
    __shared__ float red[32];
    const int64_t l = blockIdx.x;
    const float *xr = x + l * ld;
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
        s += xr[i];
    const float mu = block_sum(s, red) / (float)D;
    float s2 = 0.0f;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
        const float d = xr[i] - mu;
        s2 += d * d;
    }
    const float rstd = 1.0f / sqrtf(block_sum(s2, red) / (float)D + eps);
    const int64_t off = tok_row ? tok_row[l] * mod_ld : 0;
    float *yr = y + l * ld;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
        float v = (xr[i] - mu) * rstd;
        if (w)
            v = v * w[i] + b[i];
        if (scale)
            v = v * (1.0f + scale[off + i]) + shift[off + i];
        yr[i] = v;
    }
}

void cu_layernorm(wan_backend *be, const float *x, float *y, int64_t L, int64_t D, int64_t ld, float eps,
                  const float *w, const float *b, const float *shift, const float *scale, const int32_t *tok_row,
                  int64_t mod_ld)
{
    if (!cu_begin(be) || L < 1)
        return;
    k_layernorm<<<(unsigned)L, CU_THREADS, 0, cu_of(be)->stream>>>(x, y, D, ld, eps, w, b, shift, scale, tok_row,
                                                                   mod_ld);
    cu_check(be, "layernorm kernel");
}

__global__ void k_rmsnorm(float *x, int64_t D, int64_t ld, float eps, const float *w)
{
    __shared__ float red[32];
    float *xr = x + (int64_t)blockIdx.x * ld;
    float s2 = 0.0f;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
        s2 += xr[i] * xr[i];
    const float r = 1.0f / sqrtf(block_sum(s2, red) / (float)D + eps);
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
        xr[i] = xr[i] * r * w[i];
}

void cu_rmsnorm(wan_backend *be, float *x, int64_t L, int64_t D, int64_t ld, float eps, const float *w)
{
    if (!cu_begin(be) || L < 1)
        return;
    k_rmsnorm<<<(unsigned)L, CU_THREADS, 0, cu_of(be)->stream>>>(x, D, ld, eps, w);
    cu_check(be, "rmsnorm kernel");
}

/* ---- RoPE --------------------------------------------------------------------------------------------------- */

/* One thread per (token, head, channel pair). */
__global__ void k_rope(float *x, int64_t ld, int nh, int nw, int heads, int hd, int pt, int ph, const float *tab_t,
                       const float *tab_h, const float *tab_w, int64_t n)
{
    const int npairs = hd / 2, pw = npairs - pt - ph;
    GRID_STRIDE(i, n)
    {
        const int m = (int)(i % npairs);
        const int64_t th = i / npairs;
        const int head = (int)(th % heads);
        const int64_t l = th / heads;
        const int w = (int)(l % nw), h = (int)((l / nw) % nh), f = (int)(l / ((int64_t)nw * nh));
        const float *cs;
        if (m < pt)
            cs = tab_t + ((int64_t)f * pt + m) * 2;
        else if (m < pt + ph)
            cs = tab_h + ((int64_t)h * ph + (m - pt)) * 2;
        else
            cs = tab_w + ((int64_t)w * pw + (m - pt - ph)) * 2;
        float *p = x + l * ld + (int64_t)head * hd + 2 * m;
        const float a = p[0], b = p[1], c = cs[0], s = cs[1];
        p[0] = a * c - b * s;
        p[1] = a * s + b * c;
    }
}

void cu_rope(wan_backend *be, float *x, int64_t ld, int nf, int nh, int nw, int heads, int hd, int dt, int dh,
             const float *tab_t, const float *tab_h, const float *tab_w)
{
    if (!cu_begin(be))
        return;
    const int64_t n = (int64_t)nf * nh * nw * heads * (hd / 2);
    if (n > 0)
        LAUNCH(k_rope, n, x, ld, nh, nw, heads, hd, dt / 2, dh / 2, tab_t, tab_h, tab_w, n);
}

/* ---- activations and residuals ----------------------------------------------------------------------------- */

__global__ void k_gelu_tanh(float *x, int64_t n)
{
    GRID_STRIDE(i, n)
    {
        /* 0.5·(1 + tanh(u)) = sigmoid(2u), as the CPU's AVX2 kernel */
        const float v = x[i], u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
        x[i] = v / (1.0f + expf(-2.0f * u));
    }
}

void cu_gelu_tanh(wan_backend *be, float *x, int64_t n)
{
    if (cu_begin(be) && n > 0)
        LAUNCH(k_gelu_tanh, n, x, n);
}

__global__ void k_silu(const float *x, float *y, int64_t n)
{
    GRID_STRIDE(i, n)
    y[i] = x[i] / (1.0f + expf(-x[i]));
}

void cu_silu(wan_backend *be, const float *x, float *y, int64_t n)
{
    if (cu_begin(be) && n > 0)
        LAUNCH(k_silu, n, x, y, n);
}

__global__ void k_gated_add(float *x, int64_t ldx, const float *y, int64_t ldy, int64_t D, const float *gate,
                            const int32_t *tok_row, int64_t mod_ld, int64_t n)
{
    GRID_STRIDE(i, n)
    {
        const int64_t l = i / D, d = i % D;
        const float yv = y[l * ldy + d];
        x[l * ldx + d] += gate ? yv * gate[(tok_row ? tok_row[l] * mod_ld : 0) + d] : yv;
    }
}

void cu_gated_add(wan_backend *be, float *x, int64_t ldx, const float *y, int64_t ldy, int64_t L, int64_t D,
                  const float *gate, const int32_t *tok_row, int64_t mod_ld)
{
    if (cu_begin(be) && L * D > 0)
        LAUNCH(k_gated_add, L * D, x, ldx, y, ldy, D, gate, tok_row, mod_ld, L * D);
}

__global__ void k_add_rows(float *y, const float *table, const float *x, int64_t nn, int64_t ldx, int64_t xn,
                           int64_t n)
{
    GRID_STRIDE(i, n)
    {
        const int64_t u = i / nn, k = i % nn;
        y[i] = table[k] + x[u * ldx + k % xn];
    }
}

void cu_add_rows(wan_backend *be, float *y, const float *table, const float *x, int64_t U, int64_t n, int64_t ldx,
                 int64_t xn)
{
    if (cu_begin(be) && U * n > 0)
        LAUNCH(k_add_rows, U * n, y, table, x, n, ldx, xn, U * n);
}

__global__ void k_add(float *x, const float *y, int64_t n)
{
    GRID_STRIDE(i, n)
    x[i] += y[i];
}

void cu_add(wan_backend *be, float *x, const float *y, int64_t n)
{
    if (cu_begin(be) && n > 0)
        LAUNCH(k_add, n, x, y, n);
}

/* ---- patches ------------------------------------------------------------------------------------------------ */

/* One thread per grid element (c, t, y, x); inverse 0: grid -> patches, 1: patches -> grid. In the patch vector
 * the channel is outermost (patchify, the Conv3d weight order) or innermost (unpatchify, the head's order). */
__global__ void k_patch(const float *src, float *dst, int C, int T, int H, int W, int pt, int ph, int pw, int inverse,
                        int64_t n)
{
    const int64_t K = (int64_t)C * pt * ph * pw;
    GRID_STRIDE(i, n)
    {
        const int x = (int)(i % W), y = (int)((i / W) % H), t = (int)((i / ((int64_t)W * H)) % T);
        const int c = (int)(i / ((int64_t)W * H * T));
        const int64_t l = ((int64_t)(t / pt) * (H / ph) + y / ph) * (W / pw) + x / pw;
        const int64_t inner = ((int64_t)(t % pt) * ph + y % ph) * pw + x % pw;
        if (inverse)
            dst[i] = src[l * K + inner * C + c];
        else
            dst[l * K + (int64_t)c * pt * ph * pw + inner] = src[i];
    }
}

void cu_patchify(wan_backend *be, const float *x, float *patches, int C, int T, int H, int W, int pt, int ph, int pw)
{
    const int64_t n = (int64_t)C * T * H * W;
    if (cu_begin(be) && n > 0)
        LAUNCH(k_patch, n, x, patches, C, T, H, W, pt, ph, pw, 0, n);
}

void cu_unpatchify(wan_backend *be, const float *p, float *out, int C, int T, int H, int W, int pt, int ph, int pw)
{
    const int64_t n = (int64_t)C * T * H * W;
    if (cu_begin(be) && n > 0)
        LAUNCH(k_patch, n, p, out, C, T, H, W, pt, ph, pw, 1, n);
}
