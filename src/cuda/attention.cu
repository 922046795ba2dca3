/* attention.cu — attention on the GPU (validated on an H200, docs/CUDA.md).
 *
 * cu_attention, head dim 128 on compute capability 9.0 (H100, H200): flash_wgmma.cuh's TMA + wgmma kernel (or the
 * one WAN_CUDA_ATTN names; docs/CUDA.md "Attention on Hopper"). Elsewhere, head dims 64 and 128 (the Wan models'):
 * the bf16 tensor-core flash kernel of flash_bf16.cuh
 * (FlashAttention-2 work split, mma.sync m16n8k16 with f32 accumulation, online softmax, no score matrix). K and V
 * are first rounded to bf16 into scratch, [head][key][hd], for as many heads at a time as fit the scratch target;
 * q is rounded (times scale·log2(e)) as each block loads it. Results differ from the f32 path by bf16 rounding
 * (about 1e-3 of the output's scale).
 *
 * cu_attention, any other head dim <= 256, or every head dim with WAN_CUDA_ATTN=f32: flash-style f32 SIMT kernel,
 * no score matrix. A block owns FA_BQ queries of one head (FA_WARPS warps x FA_QW queries each) and walks the keys
 * in tiles of FA_BK = 32 held in shared memory with the block's queries. Within a warp, lane j scores key j of the
 * tile against the warp's FA_QW queries (q read by broadcast, K padded by one float per row so that the 32 lanes
 * hit 32 banks), the running max and sum are warp reductions (online softmax, exp2 with the scale·log2(e) folded
 * into q), and for the output each lane owns head dims lane + 32t (t < DPL), taking the tile's probabilities by
 * shuffle. hd <= 32·DPL <= 256. (Versions 2 and 3 of dev/cuda/attention_forward.cu are these two kernels.)
 * In both, the last key's multiplicity (backend.h) is log2(last_w) added to its score.
 *
 * cu_attention_frame (the VAE's single-head attention over a frame's pixels, head dim = channels up to 1024):
 * blocks of query rows through cuBLAS: S = scale·QᵀK into scratch, a row softmax kernel, O = V·Sᵀ. */
#include "cuda_common.cuh"
#include "flash_bf16.cuh"
#include "flash_wgmma.cuh"

#include <float.h>
#include <math.h>

#define FA_BK 32
#define FA_QW 8
#define FA_WARPS 4
#define FA_BQ (FA_WARPS * FA_QW)

template <int DPL>
__global__ void __launch_bounds__(FA_WARPS * 32)
k_flash_f32(const float *__restrict__ q, int64_t ldq, const float *__restrict__ k, int64_t ldk,
            const float *__restrict__ v, int64_t ldv, float *__restrict__ o, int64_t ldo, int64_t Lq, int64_t Lk,
            int hd, float qscale, float lw2)
{
    constexpr int HDP = 32 * DPL;
    extern __shared__ float sm[];
    float *Qs = sm;                            /* [FA_BQ][HDP]    */
    float *Ks = Qs + FA_BQ * HDP;              /* [FA_BK][HDP + 1] */
    float *Vs = Ks + FA_BK * (HDP + 1);        /* [FA_BK][HDP]    */
    const int head = blockIdx.y, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t q0 = (int64_t)blockIdx.x * FA_BQ;
    const int64_t col = (int64_t)head * hd;

    for (int i = threadIdx.x; i < FA_BQ * HDP; i += blockDim.x) {
        const int r = i / HDP, d = i % HDP;
        Qs[i] = (q0 + r < Lq && d < hd) ? q[(q0 + r) * ldq + col + d] * qscale : 0.0f;
    }
    float acc[FA_QW][DPL], mrow[FA_QW], lrow[FA_QW];
#pragma unroll
    for (int i = 0; i < FA_QW; i++) {
        mrow[i] = -INFINITY;
        lrow[i] = 0.0f;
#pragma unroll
        for (int t = 0; t < DPL; t++)
            acc[i][t] = 0.0f;
    }
    const float *Qw = Qs + warp * FA_QW * HDP;
    for (int64_t j0 = 0; j0 < Lk; j0 += FA_BK) {
        __syncthreads(); /* the previous tile is consumed (and, the first time, Qs is written) */
        for (int i = threadIdx.x; i < FA_BK * HDP; i += blockDim.x) {
            const int r = i / HDP, d = i % HDP;
            const bool in = j0 + r < Lk && d < hd;
            Ks[r * (HDP + 1) + d] = in ? k[(j0 + r) * ldk + col + d] : 0.0f;
            Vs[r * HDP + d] = in ? v[(j0 + r) * ldv + col + d] : 0.0f;
        }
        __syncthreads();
        float s[FA_QW];
#pragma unroll
        for (int i = 0; i < FA_QW; i++)
            s[i] = 0.0f;
        const float *kr = Ks + lane * (HDP + 1);
        for (int d = 0; d < hd; d++) {
            const float kd = kr[d];
#pragma unroll
            for (int i = 0; i < FA_QW; i++)
                s[i] += Qw[i * HDP + d] * kd;
        }
        const bool valid = j0 + lane < Lk; /* lane 0 always is: every tile has a key */
        const float lw = j0 + lane == Lk - 1 ? lw2 : 0.0f; /* the last key's multiplicity, log2 units */
#pragma unroll
        for (int i = 0; i < FA_QW; i++) {
            const float si = valid ? s[i] + lw : -INFINITY;
            const float mnew = fmaxf(mrow[i], warp_max(si));
            const float p = exp2f(si - mnew);
            const float alpha = exp2f(mrow[i] - mnew); /* 0 on the first tile (mrow = -inf) */
            lrow[i] = lrow[i] * alpha + warp_sum(p);
            mrow[i] = mnew;
#pragma unroll
            for (int t = 0; t < DPL; t++)
                acc[i][t] *= alpha;
            s[i] = p;
        }
        for (int j = 0; j < FA_BK; j++) {
            float vj[DPL];
#pragma unroll
            for (int t = 0; t < DPL; t++)
                vj[t] = Vs[j * HDP + lane + 32 * t];
#pragma unroll
            for (int i = 0; i < FA_QW; i++) {
                const float pj = __shfl_sync(0xffffffffu, s[i], j);
#pragma unroll
                for (int t = 0; t < DPL; t++)
                    acc[i][t] += pj * vj[t];
            }
        }
    }
#pragma unroll
    for (int i = 0; i < FA_QW; i++) {
        const int64_t qi = q0 + warp * FA_QW + i;
        if (qi >= Lq)
            continue;
        const float inv = 1.0f / lrow[i];
#pragma unroll
        for (int t = 0; t < DPL; t++) {
            const int d = lane + 32 * t;
            if (d < hd)
                o[qi * ldo + col + d] = acc[i][t] * inv;
        }
    }
}

template <int DPL>
static void launch_flash(wan_backend *be, const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v,
                         int64_t ldv, float *o, int64_t ldo, int64_t Lq, int64_t Lk, int heads, int hd, float qscale,
                         float lw2)
{
    constexpr int HDP = 32 * DPL;
    const size_t smem = (size_t)(FA_BQ * HDP + FA_BK * (HDP + 1) + FA_BK * HDP) * sizeof(float);
    if (cudaFuncSetAttribute(k_flash_f32<DPL>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) !=
        cudaSuccess) {
        cu_check(be, "flash attention: shared memory attribute");
        return;
    }
    const dim3 grid((unsigned)((Lq + FA_BQ - 1) / FA_BQ), (unsigned)heads);
    k_flash_f32<DPL><<<grid, FA_WARPS * 32, smem, cu_of(be)->stream>>>(q, ldq, k, ldk, v, ldv, o, ldo, Lq, Lk, hd,
                                                                        qscale, lw2);
    cu_check(be, "flash attention kernel");
}

/* The bf16 tensor-core path (hd 64 or 128): heads in groups whose bf16 K and V fit the scratch target. */
template <class C>
static void attention_bf16(wan_backend *be, const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v,
                           int64_t ldv, float *out, int64_t ldo, int64_t Lq, int64_t Lk, int heads, float qscale,
                           float lw2)
{
    const size_t per_head = (size_t)Lk * C::HD * 2 * sizeof(__nv_bfloat16); /* K and V of one head */
    int nh = (int)(CU_SCRATCH_TARGET / per_head);
    nh = nh < 1 ? 1 : nh > heads ? heads : nh;
    const int groups = (heads + nh - 1) / nh;
    nh = (heads + groups - 1) / groups; /* as even as possible: no small last wave of a whole group */
    __nv_bfloat16 *kb = (__nv_bfloat16 *)cu_scratch(be, per_head * (size_t)nh);
    if (!kb)
        return;
    __nv_bfloat16 *vb = kb + (size_t)nh * Lk * C::HD;
    const cudaStream_t st = cu_of(be)->stream;
    for (int h0 = 0; h0 < heads; h0 += nh) {
        const int n = heads - h0 < nh ? heads - h0 : nh;
        cudaError_t e = fa_kv_to_bf16(k, ldk, v, ldv, Lk, C::HD, h0, n, kb, vb, st);
        if (e == cudaSuccess)
            e = fa_launch<C>(q, ldq, kb, vb, out, ldo, Lq, Lk, h0, n, qscale, lw2, st);
        if (e != cudaSuccess) {
            wan_backend_fail(be, WAN_ERR_INTERNAL, "bf16 flash attention (head dim %d, heads %d..%d): %s", C::HD, h0,
                             h0 + n - 1, cudaGetErrorString(e));
            return;
        }
    }
}

/* Head dim 128 on compute capability 9.0: flash_wgmma.cuh, in head groups that fit the scratch target. */
static void attention_wgmma(wan_backend *be, const float *q, int64_t ldq, const float *k, int64_t ldk,
                            const float *v, int64_t ldv, float *out, int64_t ldo, int64_t Lq, int64_t Lk, int heads,
                            float qscale, float lw2)
{
    const size_t per_head = fw_bytes_per_head(Lk);
    int nh = (int)(CU_SCRATCH_TARGET / per_head);
    nh = nh < 1 ? 1 : nh > heads ? heads : nh;
    const int groups = (heads + nh - 1) / nh;
    nh = (heads + groups - 1) / groups;
    __nv_bfloat16 *kb = (__nv_bfloat16 *)cu_scratch(be, per_head * (size_t)nh);
    if (!kb)
        return;
    __nv_bfloat16 *vt = kb + (size_t)nh * Lk * FW_HD;
    const cudaStream_t st = cu_of(be)->stream;
    /* the TMA kernels need the driver's tensor-map encoder; without it (an old driver) the cp.async kernel runs */
    const int kind = cu_of(be)->attn_kind != CU_ATTN_WGMMA && !ft_encoder() ? CU_ATTN_WGMMA : cu_of(be)->attn_kind;
    for (int h0 = 0; h0 < heads; h0 += nh) {
        const int n = heads - h0 < nh ? heads - h0 : nh;
        cudaError_t e = fw_kv_prepare(k, ldk, v, ldv, Lk, h0, n, kb, vt, st);
        if (e == cudaSuccess)
            switch (kind) {
            case CU_ATTN_TMA: /* 3 stages, no ping-pong: the fastest on an H200 (dev/cuda v11) */
                e = ft_launch<3, false, false>(q, ldq, kb, vt, out, ldo, Lq, Lk, h0, n, qscale, lw2, st);
                break;
            case CU_ATTN_TMA_PIPE: /* FlashAttention-3's schedule (v14) */
                e = ft_launch<3, true, true>(q, ldq, kb, vt, out, ldo, Lq, Lk, h0, n, qscale, lw2, st);
                break;
            default: /* CU_ATTN_WGMMA: cp.async, block barriers (v8) */
                e = fw_launch<FW_SW128>(q, ldq, kb, vt, out, ldo, Lq, Lk, h0, n, qscale, lw2, st);
                break;
            }
        if (e != cudaSuccess) {
            const int tma = kind != CU_ATTN_WGMMA;
            wan_backend_fail(be, WAN_ERR_INTERNAL, "%s flash attention (Lq %lld, Lk %lld, heads %d..%d): %s%s",
                             tma ? "TMA wgmma" : "wgmma", (long long)Lq, (long long)Lk, h0, h0 + n - 1,
                             cudaGetErrorString(e),
                             tma && e == cudaErrorNotSupported ? " (the driver refused the K/Vᵀ tensor maps)" : "");
            return;
        }
    }
}

void cu_attention(wan_backend *be, const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v,
                  int64_t ldv, float *out, int64_t ldo, int64_t Lq, int64_t Lk, int heads, int hd, float scale,
                  float last_w)
{
    if (!cu_begin(be) || Lq < 1)
        return;
    if (Lk < 1 || hd < 1 || hd > 256 || heads < 1 || heads > 65535 || (Lq + FA_BQ - 1) / FA_BQ > INT32_MAX ||
        Lk > INT32_MAX || !(last_w >= 1.0f)) {
        wan_backend_fail(be, WAN_ERR_UNSUPPORTED, "attention: Lq %lld, Lk %lld, heads %d, head dim %d, last key "
                         "weight %g (supported: 1 <= Lk < 2^31, head dim <= 256, weight >= 1)", (long long)Lq,
                         (long long)Lk, heads, hd, (double)last_w);
        return;
    }
    const float qs = scale * 1.4426950408889634f; /* log2(e): the kernels use exp2 */
    const float lw2 = log2f(last_w);              /* the last key's multiplicity on its score */
    const cu_state *cs = cu_of(be);
    if (!cs->attn_f32 && cs->attn_kind != CU_ATTN_MMA && hd == 128 && cs->sm == 90 && ldq % 4 == 0 && ldo % 2 == 0 &&
        (uintptr_t)q % 16 == 0 && (uintptr_t)out % 8 == 0) {
        attention_wgmma(be, q, ldq, k, ldk, v, ldv, out, ldo, Lq, Lk, heads, qs, lw2);
        return;
    }
    if (!cu_of(be)->attn_f32 && hd == 128) {
        attention_bf16<fa_cfg_hd128>(be, q, ldq, k, ldk, v, ldv, out, ldo, Lq, Lk, heads, qs, lw2);
        return;
    }
    if (!cu_of(be)->attn_f32 && hd == 64) {
        attention_bf16<fa_cfg_hd64>(be, q, ldq, k, ldk, v, ldv, out, ldo, Lq, Lk, heads, qs, lw2);
        return;
    }
    switch ((hd + 31) / 32) {
    case 1: launch_flash<1>(be, q, ldq, k, ldk, v, ldv, out, ldo, Lq, Lk, heads, hd, qs, lw2); break;
    case 2: launch_flash<2>(be, q, ldq, k, ldk, v, ldv, out, ldo, Lq, Lk, heads, hd, qs, lw2); break;
    case 3: launch_flash<3>(be, q, ldq, k, ldk, v, ldv, out, ldo, Lq, Lk, heads, hd, qs, lw2); break;
    case 4: launch_flash<4>(be, q, ldq, k, ldk, v, ldv, out, ldo, Lq, Lk, heads, hd, qs, lw2); break;
    case 5: launch_flash<5>(be, q, ldq, k, ldk, v, ldv, out, ldo, Lq, Lk, heads, hd, qs, lw2); break;
    case 6: launch_flash<6>(be, q, ldq, k, ldk, v, ldv, out, ldo, Lq, Lk, heads, hd, qs, lw2); break;
    case 7: launch_flash<7>(be, q, ldq, k, ldk, v, ldv, out, ldo, Lq, Lk, heads, hd, qs, lw2); break;
    default: launch_flash<8>(be, q, ldq, k, ldk, v, ldv, out, ldo, Lq, Lk, heads, hd, qs, lw2); break;
    }
}

/* ---- VAE frame attention ---------------------------------------------------------------------------------- */

/* In place over rows of S (row r at S + r·ld, n values): softmax. One block per row. */
__global__ void k_softmax_rows(float *S, int64_t ld, int n)
{
    __shared__ float red[32];
    float *row = S + (int64_t)blockIdx.x * ld;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    float mx = -FLT_MAX;
    for (int j = threadIdx.x; j < n; j += blockDim.x)
        mx = fmaxf(mx, row[j]);
    mx = warp_max(mx);
    if (lane == 0)
        red[warp] = mx;
    __syncthreads();
    mx = lane < nw ? red[lane] : -FLT_MAX;
    mx = warp_max(mx);
    __syncthreads();
    float sum = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        const float e = expf(row[j] - mx);
        row[j] = e;
        sum += e;
    }
    sum = warp_sum(sum);
    if (lane == 0)
        red[warp] = sum;
    __syncthreads();
    sum = lane < nw ? red[lane] : 0.0f;
    sum = warp_sum(sum);
    const float inv = 1.0f / sum;
    for (int j = threadIdx.x; j < n; j += blockDim.x)
        row[j] *= inv;
}

void cu_attention_frame(wan_backend *be, const float *qkv, float *o, int c, int npix)
{
    if (!cu_begin(be) || c < 1 || npix < 1)
        return;
    const int64_t n = npix;
    int64_t rows = (int64_t)(CU_SCRATCH_TARGET / 4 / (size_t)n);
    rows = rows < 1 ? 1 : rows > n ? n : rows;
    float *S = (float *)cu_scratch(be, (size_t)(rows * n) * 4);
    const float *q = qkv, *k = qkv + (int64_t)c * n, *v = qkv + 2 * (int64_t)c * n;
    const float scale = 1.0f / sqrtf((float)c);
    for (int64_t i0 = 0; S && i0 < n && be->err.code == WAN_OK; i0 += rows) {
        const int64_t nb = n - i0 < rows ? n - i0 : rows;
        /* column-major S[n, nb] (row i of the scores is column i) = Kᵀ[n, c]·Q[c, nb] */
        if (!cu_sgemm(be, CUBLAS_OP_N, CUBLAS_OP_T, n, nb, c, scale, k, n, q + i0, n, 0.0f, S, n, "frame scores"))
            return;
        k_softmax_rows<<<(unsigned)nb, CU_THREADS, 0, cu_of(be)->stream>>>(S, n, (int)n);
        if (!cu_check(be, "frame softmax kernel"))
            return;
        /* o[:, i0 + i] = sum_j P[i, j]·v[:, j]: column-major o-block[nb, c] = Pᵀ... = S^T[nb, n]·V^T[n, c] */
        cu_sgemm(be, CUBLAS_OP_T, CUBLAS_OP_N, nb, c, n, 1.0f, S, n, v, n, 0.0f, o + i0, n, "frame output");
    }
}
