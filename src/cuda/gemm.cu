/* gemm.cu — linear layers y = x·Wᵀ + b on the GPU (validated on an H200, docs/CUDA.md).
 *
 * Row-major y[M, N] = x[M, K]·W[N, K]ᵀ is, column-major, yᵀ[N, M] = W·xᵀ: the weight (column-major [K, N], ld K)
 * transposed times the activations (column-major [K, M], ld ldx), so no data is moved.
 * - BF16 weights: the activations are rounded to bf16 into scratch (in row chunks that fit the scratch target),
 *   then cuBLASLt multiplies bf16 x bf16 with f32 accumulation into f32 y (tensor cores). cublasGemmEx is the
 *   fallback when the Lt heuristic offers no algorithm for a shape or alignment.
 * - F32 weights: cublasSgemm in place (pedantic math: no TF32).
 * - F16 weights, or BF16 with WAN_CUDA_GEMM=f32: tiles of weight rows converted to f32 in scratch, then sgemm:
 *   exact f32 products as on the CPU.
 * The bias is added by a separate kernel (an epilogue fusion is a dev/cuda/ candidate). */
#include "cuda_common.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

__global__ void k_add_bias(float *y, int64_t M, int64_t N, int64_t ldy, const float *b)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < M * N; i += (int64_t)gridDim.x * blockDim.x)
        y[(i / N) * ldy + i % N] += b[i % N];
}

void cu_add_bias(wan_backend *be, float *y, int64_t M, int64_t N, int64_t ldy, const float *b)
{
    k_add_bias<<<cu_blocks(M * N, CU_THREADS), CU_THREADS, 0, cu_of(be)->stream>>>(y, M, N, ldy, b);
    cu_check(be, "bias kernel");
}

__global__ void k_rows_to_bf16(const float *x, int64_t M, int64_t K, int64_t ldx, __nv_bfloat16 *dst)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < M * K; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(x[(i / K) * ldx + i % K]);
}

__global__ void k_tile_to_f32(const void *w, int dt, int64_t n0, int64_t rows, int64_t K, float *dst)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < rows * K; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t src = n0 * K + i;
        if (dt == WAN_DTYPE_BF16)
            dst[i] = __bfloat162float(((const __nv_bfloat16 *)w)[src]);
        else if (dt == WAN_DTYPE_F16)
            dst[i] = __half2float(((const __half *)w)[src]);
        else
            dst[i] = ((const float *)w)[src];
    }
}

void cu_weight_tile_to_f32(wan_backend *be, const void *w, wan_dtype dt, int64_t n0, int64_t rows, int64_t K,
                           float *dst)
{
    k_tile_to_f32<<<cu_blocks(rows * K, CU_THREADS), CU_THREADS, 0, cu_of(be)->stream>>>(w, (int)dt, n0, rows, K, dst);
    cu_check(be, "weight conversion kernel");
}

int cu_sgemm(wan_backend *be, cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k, float alpha,
             const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
             const char *what)
{
    if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX || lda > INT32_MAX || ldb > INT32_MAX || ldc > INT32_MAX) {
        wan_backend_fail(be, WAN_ERR_UNSUPPORTED, "%s: GEMM dimension over 2^31", what);
        return 0;
    }
    return cu_blas_ok(be, cublasSgemm(cu_of(be)->blas, ta, tb, (int)m, (int)n, (int)k, &alpha, A, (int)lda, B,
                                      (int)ldb, &beta, C, (int)ldc), what);
}

/* Largest power of two (<= 256) dividing both the address and the leading dimension in bytes: what cuBLASLt may
 * assume about a matrix. */
static uint32_t lt_align(const void *p, int64_t ld_bytes)
{
    uint64_t v = (uint64_t)(uintptr_t)p | (uint64_t)ld_bytes | 256u;
    return (uint32_t)(v & (~v + 1));
}

/* D[m, n] (f32, ld ldd) = op_T(A)·B with A [k, m] and B [k, n] bf16 column-major; 0 when Lt has no algorithm. */
static int lt_bf16(wan_backend *be, int64_t m, int64_t n, int64_t k, const void *A, int64_t lda, const void *B,
                   int64_t ldb, float *D, int64_t ldd)
{
    cu_state *s = cu_of(be);
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    const uint64_t ws = CU_LT_WORKSPACE;
    const uint32_t aa = lt_align(A, lda * 2), ab = lt_align(B, ldb * 2), ad = lt_align(D, ldd * 4);
    int found = 0, done = 0;
    cublasLtMatmulHeuristicResult_t heur;
    if (cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, (uint64_t)k, (uint64_t)m, lda) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, (uint64_t)k, (uint64_t)n, ldb) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatrixLayoutCreate(&ld, CUDA_R_32F, (uint64_t)m, (uint64_t)n, ldd) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulPreferenceCreate(&pref) == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws) ==
            CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof aa) ==
            CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof ab) ==
            CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ad, sizeof ad) ==
            CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ad, sizeof ad) ==
            CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulAlgoGetHeuristic(s->lt, op, la, lb, ld, ld, pref, 1, &heur, &found) == CUBLAS_STATUS_SUCCESS &&
        found > 0) {
        const float one = 1.0f, zero = 0.0f;
        done = cu_blas_ok(be, cublasLtMatmul(s->lt, op, &one, A, la, B, lb, &zero, D, ld, D, ld, &heur.algo, s->lt_ws,
                                             CU_LT_WORKSPACE, s->stream), "cublasLtMatmul (bf16)");
        if (!done)
            done = -1; /* failed: the sticky error is set, no fallback */
    }
    if (pref)
        cublasLtMatmulPreferenceDestroy(pref);
    if (ld)
        cublasLtMatrixLayoutDestroy(ld);
    if (lb)
        cublasLtMatrixLayoutDestroy(lb);
    if (la)
        cublasLtMatrixLayoutDestroy(la);
    if (op)
        cublasLtMatmulDescDestroy(op);
    return done;
}

static void linear_bf16(wan_backend *be, const float *x, int64_t M, int64_t ldx, const wan_tensor *w, float *y,
                        int64_t ldy, int64_t N, int64_t K)
{
    cu_state *s = cu_of(be);
    int64_t mc = (int64_t)(CU_SCRATCH_TARGET / 2 / (size_t)K);
    mc = mc < 1 ? 1 : mc > M ? M : mc;
    __nv_bfloat16 *xb = (__nv_bfloat16 *)cu_scratch(be, (size_t)(mc * K) * 2);
    for (int64_t m0 = 0; xb && m0 < M && be->err.code == WAN_OK; m0 += mc) {
        const int64_t rows = M - m0 < mc ? M - m0 : mc;
        k_rows_to_bf16<<<cu_blocks(rows * K, CU_THREADS), CU_THREADS, 0, s->stream>>>(x + m0 * ldx, rows, K, ldx, xb);
        if (!cu_check(be, "bf16 conversion kernel"))
            return;
        const int r = lt_bf16(be, N, rows, K, w->data, K, xb, K, y + m0 * ldy, ldy);
        if (r == 0) { /* no Lt algorithm for this shape/alignment: the classic API */
            const float one = 1.0f, zero = 0.0f;
            cu_blas_ok(be, cublasGemmEx(s->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)rows, (int)K, &one, w->data,
                                        CUDA_R_16BF, (int)K, xb, CUDA_R_16BF, (int)K, &zero, y + m0 * ldy, CUDA_R_32F,
                                        (int)ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                       "cublasGemmEx (bf16)");
        }
    }
}

/* F16 weights, or BF16 in f32 mode: tiles of weight rows converted to f32, then sgemm. */
static void linear_tiles_f32(wan_backend *be, const float *x, int64_t M, int64_t ldx, const wan_tensor *w, float *y,
                             int64_t ldy, int64_t N, int64_t K)
{
    int64_t nc = (int64_t)(CU_SCRATCH_TARGET / 4 / (size_t)K);
    nc = nc < 1 ? 1 : nc > N ? N : nc;
    float *t = (float *)cu_scratch(be, (size_t)(nc * K) * 4);
    for (int64_t n0 = 0; t && n0 < N && be->err.code == WAN_OK; n0 += nc) {
        const int64_t rows = N - n0 < nc ? N - n0 : nc;
        cu_weight_tile_to_f32(be, w->data, w->dtype, n0, rows, K, t);
        cu_sgemm(be, CUBLAS_OP_T, CUBLAS_OP_N, rows, M, K, 1.0f, t, K, x, ldx, 0.0f, y + n0, ldy, "sgemm (weight tile)");
    }
}

void cu_linear(wan_backend *be, const float *x, int64_t M, int64_t ldx, const wan_tensor *w, const float *b, float *y,
               int64_t ldy)
{
    if (!cu_begin(be) || M < 1)
        return;
    const int64_t N = w->ne[0], K = wan_tensor_numel(w) / (N > 0 ? N : 1);
    if (N < 1 || K < 1)
        return;
    if (w->dtype == WAN_DTYPE_F32)
        cu_sgemm(be, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, 1.0f, (const float *)w->data, K, x, ldx, 0.0f, y, ldy,
                 "sgemm (f32 weights)");
    else if (w->dtype == WAN_DTYPE_BF16 && !cu_of(be)->gemm_f32)
        linear_bf16(be, x, M, ldx, w, y, ldy, N, K);
    else if (w->dtype == WAN_DTYPE_BF16 || w->dtype == WAN_DTYPE_F16)
        linear_tiles_f32(be, x, M, ldx, w, y, ldy, N, K);
    else
        wan_backend_fail(be, WAN_ERR_UNSUPPORTED, "linear: weight dtype %s (expected F32, BF16 or F16)",
                         wan_dtype_name(w->dtype));
    if (b && be->err.code == WAN_OK)
        cu_add_bias(be, y, M, N, ldy, b);
}
