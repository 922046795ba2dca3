/* matmul_bf16.cu — the linear layer y[M, N] = x[M, K]·W[N, K]ᵀ + b with BF16 weights and f32 activations
 * (backend.h: be->linear).
 *   version 1: one thread per output, f32 accumulation of x times the exact bf16 weight (reference kernel).
 *   version 2: src/cuda/gemm.cu through the backend — activations rounded to bf16, cuBLASLt bf16 GEMM with f32
 *              accumulation, bias kernel (what the transformer uses).
 *   version 3: the same backend with WAN_CUDA_GEMM=f32 — weight tiles converted to f32, cublasSgemm (exact).
 * Next candidates: the bias as a cuBLASLt epilogue; cached matmul descriptors and heuristics per shape; keeping
 * activations in bf16 between ops so that the conversion pass disappears.
 *
 *   ./matmul_bf16 validate [v]     random shapes against the CPU (v2 to 1e-2: bf16 activations, the rest 1e-5)
 *   ./matmul_bf16 benchmark [v]    the A14B block's GEMMs at 75,600 tokens: (N, K) = (5120, 5120), (13824, 5120),
 *                                  (5120, 13824) */
#include "common.h"

#include <cuda_bf16.h>
#include <stdint.h>

#define N_VERSIONS 3

__global__ void matmul_v1(const float *x, const __nv_bfloat16 *w, const float *b, float *y, int M, int N, int K)
{
    const int n = blockIdx.x * blockDim.x + threadIdx.x, m = blockIdx.y;
    if (n >= N)
        return;
    float s = 0;
    for (int k = 0; k < K; k++)
        s += x[(size_t)m * K + k] * __bfloat162float(w[(size_t)n * K + k]);
    y[(size_t)m * N + n] = s + b[n];
}

typedef struct run { wan_backend *be, *be_f32; int version, M, N, K; float *x, *b, *y; uint16_t *w; } run;

static void forward(void *arg)
{
    run *r = (run *)arg;
    if (r->version == 1) {
        matmul_v1<<<dim3((r->N + 127) / 128, r->M), 128>>>(r->x, (const __nv_bfloat16 *)r->w, r->b, r->y, r->M, r->N,
                                                           r->K);
        CUDA_CHECK(cudaGetLastError());
        return;
    }
    wan_backend *be = r->version == 2 ? r->be : r->be_f32;
    const int64_t ne[2] = { r->N, r->K };
    const wan_tensor w = wan_tensor_view(WAN_DTYPE_BF16, 2, ne, r->w);
    be->linear(be, r->x, r->M, r->K, &w, r->b, r->y, r->N);
    backend_sync(be);
}

static run make_run(wan_backend *be, wan_backend *bf, int M, int N, int K, float **hx, uint16_t **hw, float **hb)
{
    run r = { be, bf, 0, M, N, K, NULL, NULL, NULL, NULL };
    *hx = make_random((size_t)M * K, 1.0f, 1u), *hb = make_random((size_t)N, 0.1f, 2u);
    float *wf = make_random((size_t)N * K, 0.05f, 3u);
    *hw = (uint16_t *)malloc((size_t)N * K * 2);
    for (size_t i = 0; i < (size_t)N * K; i++)
        (*hw)[i] = wan_f32_to_bf16(wf[i]);
    free(wf);
    r.x = (float *)to_device(*hx, (size_t)M * K * 4), r.b = (float *)to_device(*hb, (size_t)N * 4);
    r.w = (uint16_t *)to_device(*hw, (size_t)N * K * 2);
    CUDA_CHECK(cudaMalloc(&r.y, (size_t)M * N * 4));
    return r;
}

int main(int argc, char **argv)
{
    int version;
    const int val = parse_mode(argc, argv, &version, N_VERSIONS);
    wan_backend *be = cuda_backend(), *bf = NULL;
    wan_error err;
    memset(&err, 0, sizeof err);
    setenv("WAN_CUDA_GEMM", "f32", 1);
    if (wan_backend_create("cuda", 0, &bf, &err) != WAN_OK)
        return fprintf(stderr, "%s\n", err.msg), 1;
    int failed = 0;
    const int val_shapes[][3] = { { 1, 1, 1 }, { 37, 51, 70 }, { 300, 200, 256 }, { 1, 30720, 5120 },
                                  { 2048, 640, 1024 } };
    const int bench_shapes[][3] = { { 75600, 5120, 5120 }, { 75600, 13824, 5120 }, { 75600, 5120, 13824 } };
    const int ns = val ? 5 : 3;
    for (int s = 0; s < ns; s++) {
        const int *sh = val ? val_shapes[s] : bench_shapes[s];
        float *hx, *hb;
        uint16_t *hw;
        run r = make_run(be, bf, sh[0], sh[1], sh[2], &hx, &hw, &hb);
        float *ref = NULL;
        if (val) {
            ref = (float *)malloc((size_t)r.M * r.N * 4);
            for (int m = 0; m < r.M; m++)
                for (int n = 0; n < r.N; n++) {
                    double a = hb[n];
                    for (int k = 0; k < r.K; k++)
                        a += (double)hx[(size_t)m * r.K + k] * wan_bf16_to_f32(hw[(size_t)n * r.K + k]);
                    ref[(size_t)m * r.N + n] = (float)a;
                }
        }
        for (int ver = 1; ver <= N_VERSIONS; ver++) {
            if (version && ver != version)
                continue;
            r.version = ver;
            if (val) {
                char name[96];
                snprintf(name, sizeof name, "v%d M %d N %d K %d", ver, r.M, r.N, r.K);
                forward(&r);
                CUDA_CHECK(cudaDeviceSynchronize());
                failed += !validate(name, r.y, ref, (size_t)r.M * r.N, ver == 2 ? 1e-2 : 1e-5);
            } else if (ver != 1 || version == 1) { /* v1 is far too slow at these sizes unless asked for */
                const double ms = time_ms(forward, &r, 3);
                printf("  v%d M %d N %d K %d: %.2f ms, %.1f TFLOP/s\n", ver, r.M, r.N, r.K, ms,
                       2.0 * r.M * (double)r.N * r.K / ms * 1e-9);
            }
        }
        free(ref), free(hx), free(hw), free(hb);
        cudaFree(r.x), cudaFree(r.b), cudaFree(r.w), cudaFree(r.y);
    }
    wan_backend_free(bf);
    wan_backend_free(be);
    return failed ? 1 : 0;
}
