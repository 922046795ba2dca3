/* layernorm_modulate.cu — y = LN(x)·(1 + scale) + shift over rows of D floats, no affine (the DiT's pre-attention
 * and pre-FFN norm; backend.h: be->layernorm).
 *   version 1: one thread per row (reference kernel; poor coalescing).
 *   version 2: src/cuda/ops.cu through the backend — one 256-thread block per row, two-pass mean and variance with
 *              warp-shuffle tree reductions.
 * Next candidates: one warp per row with the row held in registers (a single read of x); fusing the norm into
 * the following GEMM's activation conversion to bf16.
 *
 *   ./layernorm_modulate validate [v]     random shapes against the CPU (double accumulation)
 *   ./layernorm_modulate benchmark [v]    L = 75,600 rows of D = 5120: GB/s (read x once, write y once) */
#include "common.h"

#define N_VERSIONS 2

__global__ void layernorm_v1(const float *x, float *y, int L, int D, float eps, const float *shift, const float *scale)
{
    const int l = blockIdx.x * blockDim.x + threadIdx.x;
    if (l >= L)
        return;
    const float *xr = x + (size_t)l * D;
    float s = 0, s2 = 0;
    for (int i = 0; i < D; i++)
        s += xr[i];
    const float mu = s / D;
    for (int i = 0; i < D; i++)
        s2 += (xr[i] - mu) * (xr[i] - mu);
    const float r = 1.0f / sqrtf(s2 / D + eps);
    for (int i = 0; i < D; i++)
        y[(size_t)l * D + i] = (xr[i] - mu) * r * (1.0f + scale[i]) + shift[i];
}

typedef struct run { wan_backend *be; int version, L, D; float *x, *y, *mod; } run;

static void forward(void *arg)
{
    run *r = (run *)arg;
    if (r->version == 1) {
        layernorm_v1<<<(r->L + 127) / 128, 128>>>(r->x, r->y, r->L, r->D, 1e-6f, r->mod, r->mod + r->D);
        CUDA_CHECK(cudaGetLastError());
        return;
    }
    r->be->layernorm(r->be, r->x, r->y, r->L, r->D, r->D, 1e-6f, NULL, NULL, r->mod, r->mod + r->D, NULL, 2 * r->D);
    backend_sync(r->be);
}

int main(int argc, char **argv)
{
    int version;
    const int val = parse_mode(argc, argv, &version, N_VERSIONS);
    wan_backend *be = cuda_backend();
    int failed = 0;
    const int val_shapes[][2] = { { 1, 1 }, { 7, 33 }, { 100, 5120 }, { 513, 3072 } };
    for (int s = 0; s < (val ? 4 : 1); s++) {
        run r = { be, 0, val ? val_shapes[s][0] : 75600, val ? val_shapes[s][1] : 5120, NULL, NULL, NULL };
        const size_t n = (size_t)r.L * r.D;
        float *hx = make_random(n, 3.0f, 1u), *hm = make_random((size_t)2 * r.D, 0.5f, 2u);
        r.x = (float *)to_device(hx, n * 4), r.mod = (float *)to_device(hm, (size_t)2 * r.D * 4);
        CUDA_CHECK(cudaMalloc(&r.y, n * 4));
        float *ref = NULL;
        if (val) {
            ref = (float *)malloc(n * 4);
            for (int l = 0; l < r.L; l++) {
                double a = 0, a2 = 0;
                for (int i = 0; i < r.D; i++)
                    a += hx[(size_t)l * r.D + i];
                const double mu = a / r.D;
                for (int i = 0; i < r.D; i++)
                    a2 += (hx[(size_t)l * r.D + i] - mu) * (hx[(size_t)l * r.D + i] - mu);
                const double rs = 1.0 / sqrt(a2 / r.D + 1e-6);
                for (int i = 0; i < r.D; i++)
                    ref[(size_t)l * r.D + i] = (float)((hx[(size_t)l * r.D + i] - mu) * rs * (1.0 + hm[r.D + i]) + hm[i]);
            }
        }
        for (int ver = 1; ver <= N_VERSIONS; ver++) {
            if (version && ver != version)
                continue;
            r.version = ver;
            char name[96];
            snprintf(name, sizeof name, "v%d L %d D %d", ver, r.L, r.D);
            if (val) {
                forward(&r);
                CUDA_CHECK(cudaDeviceSynchronize());
                failed += !validate(name, r.y, ref, n, 2e-5);
            } else {
                const double ms = time_ms(forward, &r, 5);
                printf("  %s: %.3f ms, %.0f GB/s\n", name, ms, 2.0 * n * 4 / ms * 1e-6);
            }
        }
        free(ref), free(hx), free(hm);
        cudaFree(r.x), cudaFree(r.y), cudaFree(r.mod);
    }
    wan_backend_free(be);
    return failed ? 1 : 0;
}
