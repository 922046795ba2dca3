/* cuda_common.cuh — state and helpers shared by the CUDA backend's files (internal to src/cuda/).
 *
 * Every op runs on the backend's one stream. An op first checks the sticky error (cu_begin), launches, then
 * records a launch failure (cu_check). Scratch is one grow-only device buffer; growing it waits for the stream
 * first, because queued kernels may still read the old one. */
#ifndef WAN_CUDA_COMMON_CUH
#define WAN_CUDA_COMMON_CUH

#include "backend.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

/* Bytes of scratch an op aims to stay within (it splits its work into pieces that fit); an op whose smallest
 * piece needs more grows the buffer further. */
#define CU_SCRATCH_TARGET ((size_t)256 << 20)
/* cuBLASLt workspace. */
#define CU_LT_WORKSPACE ((size_t)32 << 20)
/* Threads per block of the element-wise kernels. */
#define CU_THREADS 256

/* Which kernel runs head-dim-128 attention on compute capability 9.0 (docs/CUDA.md). */
enum { CU_ATTN_MMA = 0, CU_ATTN_WGMMA = 1, CU_ATTN_TMA = 2, CU_ATTN_TMA_PIPE = 3, CU_ATTN_DEFAULT = CU_ATTN_TMA };

typedef struct cu_state {
    int device;
    int sm_count;
    cudaStream_t stream;
    cublasHandle_t blas;     /* f32 GEMMs (convolutions, VAE attention, the f32 linear path)   */
    cublasLtHandle_t lt;     /* bf16 GEMMs of the linear layers                                */
    void *lt_ws;             /* cuBLASLt workspace, CU_LT_WORKSPACE bytes                       */
    void *scratch;           /* grow-only                                                      */
    size_t scratch_bytes;
    int gemm_f32;            /* WAN_CUDA_GEMM=f32: BF16 weights converted to f32 tiles, sgemm   */
    int attn_f32;            /* WAN_CUDA_ATTN=f32: the f32 SIMT attention for every head dim     */
    int attn_kind;           /* head dim 128 on sm_90: CU_ATTN_* (WAN_CUDA_ATTN=mma|wgmma|tma|tma-pipe) */
    int sm;                  /* compute capability, major·10 + minor (90: the sm_90a wgmma code) */
} cu_state;

static inline cu_state *cu_of(wan_backend *be) { return (cu_state *)be->impl; }

/* 0 when an earlier op failed (the op is then skipped); makes the backend's device current. */
static inline int cu_begin(wan_backend *be)
{
    if (be->err.code != WAN_OK)
        return 0;
    cudaError_t e = cudaSetDevice(cu_of(be)->device);
    if (e != cudaSuccess) {
        wan_backend_fail(be, WAN_ERR_INTERNAL, "cudaSetDevice(%d): %s", cu_of(be)->device, cudaGetErrorString(e));
        return 0;
    }
    return 1;
}

/* Records a failed launch (or an earlier asynchronous fault) of `what`. Returns 1 when all is well. */
static inline int cu_check(wan_backend *be, const char *what)
{
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess)
        return 1;
    wan_backend_fail(be, WAN_ERR_INTERNAL, "%s: %s", what, cudaGetErrorString(e));
    return 0;
}

static inline int cu_blas_ok(wan_backend *be, cublasStatus_t st, const char *what)
{
    if (st == CUBLAS_STATUS_SUCCESS)
        return 1;
    wan_backend_fail(be, WAN_ERR_INTERNAL, "%s: cuBLAS status %d", what, (int)st);
    return 0;
}

static inline unsigned cu_blocks(int64_t n, int threads)
{
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b > 65535LL * 512 ? 65535LL * 512 : b);
}

/* Reductions over a warp's 32 lanes (every lane gets the result). */
static __device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

static __device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets it. red: 32 floats of shared
 * memory, reusable right after the call. */
static __device__ __forceinline__ float block_sum(float v, float *red)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    v = warp_sum(v);
    if (lane == 0)
        red[warp] = v;
    __syncthreads();
    v = warp_sum(lane < nw ? red[lane] : 0.0f);
    __syncthreads();
    return v;
}

/* Scratch of at least `bytes` (the old contents are lost), or NULL with the sticky error set. */
void *cu_scratch(wan_backend *be, size_t bytes);

/* y[m·ldy + n] += b[n] for m < M, n < N. */
void cu_add_bias(wan_backend *be, float *y, int64_t M, int64_t N, int64_t ldy, const float *b);

/* dst[r·K + k] = f32(W[(n0 + r)·K + k]) for r < rows: a tile of weight rows of dtype F32/BF16/F16. */
void cu_weight_tile_to_f32(wan_backend *be, const void *w, wan_dtype dt, int64_t n0, int64_t rows, int64_t K,
                           float *dst);

/* Column-major f32 GEMM on the backend stream: C[m, n] = alpha·op(A)·op(B) + beta·C (cublasSgemm). */
int cu_sgemm(wan_backend *be, cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k, float alpha,
             const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
             const char *what);

/* The ops, one per file family (gemm.cu, attention.cu, ops.cu, vae.cu, sampler.cu). */
void cu_linear(wan_backend *be, const float *x, int64_t M, int64_t ldx, const wan_tensor *w, const float *b, float *y,
               int64_t ldy);
void cu_attention(wan_backend *be, const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v,
                  int64_t ldv, float *out, int64_t ldo, int64_t Lq, int64_t Lk, int heads, int hd, float scale,
                  float last_w);
void cu_attention_frame(wan_backend *be, const float *qkv, float *o, int c, int npix);
void cu_layernorm(wan_backend *be, const float *x, float *y, int64_t L, int64_t D, int64_t ld, float eps,
                  const float *w, const float *b, const float *shift, const float *scale, const int32_t *tok_row,
                  int64_t mod_ld);
void cu_rmsnorm(wan_backend *be, float *x, int64_t L, int64_t D, int64_t ld, float eps, const float *w);
void cu_rope(wan_backend *be, float *x, int64_t ld, int nf, int nh, int nw, int heads, int hd, int dt, int dh,
             const float *tab_t, const float *tab_h, const float *tab_w);
void cu_gelu_tanh(wan_backend *be, float *x, int64_t n);
void cu_silu(wan_backend *be, const float *x, float *y, int64_t n);
void cu_gated_add(wan_backend *be, float *x, int64_t ldx, const float *y, int64_t ldy, int64_t L, int64_t D,
                  const float *gate, const int32_t *tok_row, int64_t mod_ld);
void cu_add_rows(wan_backend *be, float *y, const float *table, const float *x, int64_t U, int64_t n, int64_t ldx,
                 int64_t xn);
void cu_patchify(wan_backend *be, const float *x, float *patches, int C, int T, int H, int W, int pt, int ph, int pw);
void cu_unpatchify(wan_backend *be, const float *p, float *out, int C, int T, int H, int W, int pt, int ph, int pw);
void cu_add(wan_backend *be, float *x, const float *y, int64_t n);
void cu_conv2d_taps(wan_backend *be, const wan_conv_geom *g, int ntaps, const float *w, const float *bias,
                    const float *const *in, float *out);
void cu_chan_rmsnorm(wan_backend *be, const float *x, float *y, int c, int64_t hw, int n, const float *gamma, int silu);
void cu_dupup_add(wan_backend *be, float *y, const float *x, int cin, int cout, int n_in, int h, int w, int ft, int fs,
                  int trim);
void cu_avgdown_add(wan_backend *be, float *y, const float *x, int cin, int cout, int n_in, int h, int w, int ft,
                    int fs);
void cu_guide(wan_backend *be, float *cond, const float *uncond, float g, int64_t n);
void cu_sampler_update(wan_backend *be, const wan_sampler_update *u, const float *v, const float *x, float *out,
                       float *m1, float *m2, float *xl, int64_t n);

#endif /* WAN_CUDA_COMMON_CUH */
