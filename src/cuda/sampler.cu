/* sampler.cu — classifier-free guidance and the scheduler updates on the GPU (validated on an H200, docs/CUDA.md).
 * Every operation is an explicitly rounded intrinsic (__fmul_rn, __fadd_rn, ...), so nvcc cannot contract a product
 * and a sum into an FMA: the results are bit-identical to the CPU's f32 loops (backend.h, sampler.c). */
#include "cuda_common.cuh"

#define GRID_STRIDE(i, n)                                                                                         \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

__global__ void k_guide(float *cond, const float *uncond, float g, int64_t n)
{
    GRID_STRIDE(i, n)
    cond[i] = __fadd_rn(uncond[i], __fmul_rn(g, __fsub_rn(cond[i], uncond[i])));
}

void cu_guide(wan_backend *be, float *cond, const float *uncond, float g, int64_t n)
{
    if (!cu_begin(be) || n < 1)
        return;
    k_guide<<<cu_blocks(n, CU_THREADS), CU_THREADS, 0, cu_of(be)->stream>>>(cond, uncond, g, n);
    cu_check(be, "guidance kernel");
}

__global__ void k_update(wan_sampler_update k, const float *v, const float *x, float *out, float *m1, float *m2,
                         float *xl, int64_t n)
{
    GRID_STRIDE(i, n)
    {
        const float vi = v[i], xi = x[i];
        if (k.kind == WAN_UPDATE_EULER) {
            out[i] = __fadd_rn(xi, __fmul_rn(k.dt, vi));
            continue;
        }
        const float m = __fsub_rn(xi, __fmul_rn(k.sigma, vi)), h1 = m1[i];
        float xc = xi, p;
        if (k.kind == WAN_UPDATE_UNIPC && k.corr) {
            const float base = __fsub_rn(__fmul_rn(k.ccx, xl[i]), __fmul_rn(k.ccm, h1));
            float res = __fmul_rn(k.rho1, __fsub_rn(m, h1));
            if (k.last_order == 2)
                res = __fadd_rn(__fmul_rn(k.rho0, __fdiv_rn(__fsub_rn(m2[i], h1), k.crk)), res);
            xc = __fsub_rn(base, __fmul_rn(k.ccb, res));
        }
        if (k.to_zero) {
            p = m;
        } else if (k.kind == WAN_UPDATE_UNIPC) {
            p = __fsub_rn(__fmul_rn(k.cx, xc), __fmul_rn(k.cm, m));
            if (k.order == 2)
                p = __fsub_rn(p, __fmul_rn(k.cb, __fmul_rn(0.5f, __fdiv_rn(__fsub_rn(h1, m), k.rk))));
        } else {
            p = __fsub_rn(__fmul_rn(k.cx, xi), __fmul_rn(k.cm, m));
            if (k.order == 2)
                p = __fsub_rn(p, __fmul_rn(k.cd, __fmul_rn(k.inv_r0, __fsub_rn(m, h1))));
        }
        m2[i] = h1;
        m1[i] = m;
        if (k.kind == WAN_UPDATE_UNIPC)
            xl[i] = xc;
        out[i] = p;
    }
}

void cu_sampler_update(wan_backend *be, const wan_sampler_update *u, const float *v, const float *x, float *out,
                       float *m1, float *m2, float *xl, int64_t n)
{
    if (!cu_begin(be) || n < 1)
        return;
    k_update<<<cu_blocks(n, CU_THREADS), CU_THREADS, 0, cu_of(be)->stream>>>(*u, v, x, out, m1, m2, xl, n);
    cu_check(be, "sampler update kernel");
}
