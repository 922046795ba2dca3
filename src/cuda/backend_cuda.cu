/* backend_cuda.cu — the "cuda" backend: device selection, memory, the stream, cuBLAS/cuBLASLt handles, scratch,
 * and the table of backend.h (the ops are in the other files of src/cuda/). Built only by `make cuda`, which
 * leaves src/cuda_stub.c out. Validated on an H200 (docs/CUDA.md). */
#include "cuda_common.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *cu_scratch(wan_backend *be, size_t bytes)
{
    cu_state *s = cu_of(be);
    if (bytes <= s->scratch_bytes)
        return s->scratch;
    cudaStreamSynchronize(s->stream); /* queued kernels may still use the old buffer */
    cudaFree(s->scratch);
    s->scratch = NULL;
    s->scratch_bytes = 0;
    bytes = (bytes + 255) / 256 * 256;
    cudaError_t e = cudaMalloc(&s->scratch, bytes);
    if (e != cudaSuccess) {
        s->scratch = NULL;
        wan_backend_fail(be, WAN_ERR_NOMEM, "cannot allocate %zu MiB of device scratch: %s", bytes >> 20,
                         cudaGetErrorString(e));
        return NULL;
    }
    s->scratch_bytes = bytes;
    return s->scratch;
}

/* ---- memory ------------------------------------------------------------------------------------------- */

static void *cuda_alloc(wan_backend *be, size_t bytes)
{
    if (!cu_begin(be))
        return NULL;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaGetLastError();
        cudaMemGetInfo(&free_b, &total_b);
        wan_backend_fail(be, WAN_ERR_NOMEM, "cudaMalloc(%zu MiB): %s (%zu of %zu MiB free)", bytes >> 20,
                         cudaGetErrorString(e), free_b >> 20, total_b >> 20);
        return NULL;
    }
    return p;
}

static void cuda_free(wan_backend *be, void *p)
{
    if (!p)
        return;
    cudaSetDevice(cu_of(be)->device);
    cudaStreamSynchronize(cu_of(be)->stream); /* a queued kernel may still read p */
    cudaFree(p);
}

static void memcpy_op(wan_backend *be, void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                      const char *what)
{
    if (!bytes || !cu_begin(be))
        return;
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, kind, cu_of(be)->stream);
    if (e != cudaSuccess)
        wan_backend_fail(be, WAN_ERR_INTERNAL, "%s of %zu bytes: %s", what, bytes, cudaGetErrorString(e));
}

/* Pageable host memory: the call returns once the source has been staged, so the caller may reuse it. */
static void cuda_upload(wan_backend *be, void *dst, const void *src, size_t bytes)
{
    memcpy_op(be, dst, src, bytes, cudaMemcpyHostToDevice, "upload");
}

static void cuda_download(wan_backend *be, void *dst, const void *src, size_t bytes)
{
    memcpy_op(be, dst, src, bytes, cudaMemcpyDeviceToHost, "download");
    if (be->err.code == WAN_OK) {
        cudaError_t e = cudaStreamSynchronize(cu_of(be)->stream);
        if (e != cudaSuccess)
            wan_backend_fail(be, WAN_ERR_INTERNAL, "download: %s", cudaGetErrorString(e));
    }
}

static void cuda_copy(wan_backend *be, void *dst, const void *src, size_t bytes)
{
    memcpy_op(be, dst, src, bytes, cudaMemcpyDeviceToDevice, "device copy");
}

static void cuda_zero(wan_backend *be, void *dst, size_t bytes)
{
    if (!bytes || !cu_begin(be))
        return;
    cudaError_t e = cudaMemsetAsync(dst, 0, bytes, cu_of(be)->stream);
    if (e != cudaSuccess)
        wan_backend_fail(be, WAN_ERR_INTERNAL, "memset of %zu bytes: %s", bytes, cudaGetErrorString(e));
}

static wan_status cuda_sync(wan_backend *be, wan_error *err)
{
    cudaSetDevice(cu_of(be)->device);
    cudaError_t e = cudaStreamSynchronize(cu_of(be)->stream);
    if (e == cudaSuccess)
        e = cudaGetLastError();
    if (e != cudaSuccess)
        wan_backend_fail(be, WAN_ERR_INTERNAL, "a queued kernel failed: %s", cudaGetErrorString(e));
    wan_status rc = be->err.code;
    if (rc != WAN_OK && err)
        *err = be->err;
    memset(&be->err, 0, sizeof be->err);
    return rc;
}

static void cuda_destroy(wan_backend *be)
{
    cu_state *s = cu_of(be);
    if (s) {
        cudaSetDevice(s->device);
        if (s->stream)
            cudaStreamSynchronize(s->stream);
        cudaFree(s->scratch);
        cudaFree(s->lt_ws);
        if (s->lt)
            cublasLtDestroy(s->lt);
        if (s->blas)
            cublasDestroy(s->blas);
        if (s->stream)
            cudaStreamDestroy(s->stream);
        wan_free(s);
    }
    wan_free(be);
}

/* ---- creation ----------------------------------------------------------------------------------------- */

static void fill_table(wan_backend *be)
{
    be->name = "cuda";
    be->host_memory = 0;
    be->alloc = cuda_alloc;
    be->free = cuda_free;
    be->upload = cuda_upload;
    be->download = cuda_download;
    be->copy = cuda_copy;
    be->zero = cuda_zero;
    be->sync = cuda_sync;
    be->destroy = cuda_destroy;
    be->linear = cu_linear;
    be->attention = cu_attention;
    be->layernorm = cu_layernorm;
    be->rmsnorm = cu_rmsnorm;
    be->rope = cu_rope;
    be->gelu_tanh = cu_gelu_tanh;
    be->silu = cu_silu;
    be->gated_add = cu_gated_add;
    be->add_rows = cu_add_rows;
    be->patchify = cu_patchify;
    be->unpatchify = cu_unpatchify;
    be->conv2d_taps = cu_conv2d_taps;
    be->chan_rmsnorm = cu_chan_rmsnorm;
    be->attention_frame = cu_attention_frame;
    be->add = cu_add;
    be->dupup_add = cu_dupup_add;
    be->avgdown_add = cu_avgdown_add;
    be->guide = cu_guide;
    be->sampler_update = cu_sampler_update;
}

/* Opens device `dev`: checks it exists and is sm_80 or newer (the build's targets: sm_80, sm_90, and PTX for
 * later GPUs). */
static wan_status open_device(int dev, cudaDeviceProp *prop, wan_error *err)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return wan_err(err, WAN_ERR_UNSUPPORTED, "cuda backend: no CUDA device: %s", cudaGetErrorString(e));
    }
    if (n == 0)
        return wan_err(err, WAN_ERR_UNSUPPORTED, "cuda backend: no CUDA device (cudaGetDeviceCount gives 0)");
    if (dev >= n)
        return wan_err(err, WAN_ERR_UNSUPPORTED, "cuda backend: device %d requested, %d present", dev, n);
    if ((e = cudaGetDeviceProperties(prop, dev)) != cudaSuccess || (e = cudaSetDevice(dev)) != cudaSuccess)
        return wan_err(err, WAN_ERR_UNSUPPORTED, "cuda backend: device %d: %s", dev, cudaGetErrorString(e));
    if (prop->major < 8)
        return wan_err(err, WAN_ERR_UNSUPPORTED, "cuda backend: device %d (%s) is sm_%d%d; bf16 tensor cores need "
                       "sm_80 or newer", dev, prop->name, prop->major, prop->minor);
    return WAN_OK;
}

/* ", <kernel> attention" when WAN_CUDA_ATTN (a) picked a head-dim-128 kernel other than the f32 one on sm_90. */
static const char *attn_name(const cu_state *s, const char *a)
{
    if (!a || s->sm != 90)
        return "";
    switch (s->attn_kind) {
    case CU_ATTN_MMA: return ", mma.sync attention";
    case CU_ATTN_WGMMA: return ", wgmma attention";
    case CU_ATTN_TMA: return ", TMA attention";
    default: return ", TMA pipelined attention";
    }
}

wan_status wan_backend_cuda_create(int dev, wan_backend **out, wan_error *err)
{
    *out = NULL;
    cudaDeviceProp prop;
    wan_status rc = open_device(dev, &prop, err);
    if (rc != WAN_OK)
        return rc;
    wan_backend *be = (wan_backend *)wan_calloc(1, sizeof *be);
    cu_state *s = (cu_state *)wan_calloc(1, sizeof *s);
    if (!be || !s) {
        wan_free(be);
        wan_free(s);
        return wan_err(err, WAN_ERR_NOMEM, "cuda backend: out of host memory");
    }
    be->impl = s;
    s->device = dev;
    s->sm_count = prop.multiProcessorCount;
    const char *g = getenv("WAN_CUDA_GEMM");
    s->gemm_f32 = g && !strcmp(g, "f32");
    const char *a = getenv("WAN_CUDA_ATTN");
    s->attn_f32 = a && !strcmp(a, "f32");
    s->attn_kind = !a ? CU_ATTN_DEFAULT : !strcmp(a, "mma") ? CU_ATTN_MMA : !strcmp(a, "wgmma") ? CU_ATTN_WGMMA
                 : !strcmp(a, "tma") ? CU_ATTN_TMA : !strcmp(a, "tma-pipe") ? CU_ATTN_TMA_PIPE
                 : CU_ATTN_DEFAULT;
    s->sm = prop.major * 10 + prop.minor;
    const char *what = NULL;
    if (cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking) != cudaSuccess)
        what = "cudaStreamCreate";
    else if (cublasCreate(&s->blas) != CUBLAS_STATUS_SUCCESS || cublasSetStream(s->blas, s->stream) !=
             CUBLAS_STATUS_SUCCESS || cublasSetMathMode(s->blas, CUBLAS_PEDANTIC_MATH) != CUBLAS_STATUS_SUCCESS)
        what = "cublasCreate";
    else if (cublasLtCreate(&s->lt) != CUBLAS_STATUS_SUCCESS)
        what = "cublasLtCreate";
    else if (cudaMalloc(&s->lt_ws, CU_LT_WORKSPACE) != cudaSuccess)
        what = "cudaMalloc (cuBLASLt workspace)";
    if (what) {
        cudaGetLastError();
        cuda_destroy(be);
        return wan_err(err, WAN_ERR_UNSUPPORTED, "cuda backend: device %d (%s): %s failed", dev, prop.name, what);
    }
    fill_table(be);
    be->n_threads = 1;
    snprintf(be->device, sizeof be->device, "%.48s, sm_%d%d, %zu MiB, %d SMs%s%s", prop.name, prop.major,
             prop.minor, prop.totalGlobalMem >> 20, prop.multiProcessorCount, s->gemm_f32 ? ", f32 GEMM" : "",
             s->attn_f32 ? ", f32 attention" : attn_name(s, a));
    *out = be;
    return WAN_OK;
}
