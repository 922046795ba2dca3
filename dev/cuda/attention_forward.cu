/* attention_forward.cu — multi-head attention without a mask, out = softmax(scale·q·kᵀ)·v per head, q/k/v/out
 * [L, heads·hd] f32 (backend.h: be->attention).
 *   version 1: one thread per (query, head), online softmax over every key read from global memory (reference
 *              kernel; slow).
 *   version 2: src/cuda/attention.cu through the backend — f32 SIMT flash kernel, key tiles in shared memory.
 * Next candidate: bf16 inputs with tensor cores (mma.sync m16n8k16, f32 accumulators), FlashAttention-2 layout.
 *
 *   ./attention_forward validate [v]     random shapes (hd 32, 40, 64, 128; Lk 1..300) against the CPU
 *   ./attention_forward benchmark [v]    Wan2.2-A14B self-attention: 40 heads x 128, L = 75,600 (81 x 1280x720) */
#include "common.h"

#define N_VERSIONS 2

static void cpu_attention(const float *q, const float *k, const float *v, float *o, int Lq, int Lk, int H, int hd,
                          float scale)
{
    const int ld = H * hd;
    double *s = (double *)malloc((size_t)Lk * sizeof(double));
    for (int n = 0; n < H; n++)
        for (int i = 0; i < Lq; i++) {
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < Lk; j++) {
                double d = 0;
                for (int e = 0; e < hd; e++)
                    d += (double)q[(size_t)i * ld + n * hd + e] * k[(size_t)j * ld + n * hd + e];
                s[j] = d * scale;
                mx = fmax(mx, s[j]);
            }
            for (int j = 0; j < Lk; j++)
                sum += s[j] = exp(s[j] - mx);
            for (int e = 0; e < hd; e++) {
                double a = 0;
                for (int j = 0; j < Lk; j++)
                    a += s[j] * v[(size_t)j * ld + n * hd + e];
                o[(size_t)i * ld + n * hd + e] = (float)(a / sum);
            }
        }
    free(s);
}

__global__ void attention_v1(const float *q, const float *k, const float *v, float *o, int Lq, int Lk, int H, int hd,
                             float scale)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x, n = blockIdx.y, ld = H * hd;
    if (i >= Lq)
        return;
    const float *qi = q + (size_t)i * ld + n * hd;
    float *oi = o + (size_t)i * ld + n * hd;
    float m = -INFINITY, l = 0;
    for (int e = 0; e < hd; e++)
        oi[e] = 0;
    for (int j = 0; j < Lk; j++) {
        const float *kj = k + (size_t)j * ld + n * hd, *vj = v + (size_t)j * ld + n * hd;
        float s = 0;
        for (int e = 0; e < hd; e++)
            s += qi[e] * kj[e];
        s *= scale;
        const float mn = fmaxf(m, s), a = expf(m - mn), p = expf(s - mn);
        l = l * a + p;
        for (int e = 0; e < hd; e++)
            oi[e] = oi[e] * a + p * vj[e];
        m = mn;
    }
    for (int e = 0; e < hd; e++)
        oi[e] /= l;
}

typedef struct run { wan_backend *be; int version, Lq, Lk, H, hd; float *q, *k, *v, *o; } run;

static void forward(void *arg)
{
    run *r = (run *)arg;
    const float scale = 1.0f / sqrtf((float)r->hd);
    const int ld = r->H * r->hd;
    if (r->version == 1) {
        attention_v1<<<dim3((r->Lq + 127) / 128, r->H), 128>>>(r->q, r->k, r->v, r->o, r->Lq, r->Lk, r->H, r->hd,
                                                              scale);
        CUDA_CHECK(cudaGetLastError());
    } else {
        r->be->attention(r->be, r->q, ld, r->k, ld, r->v, ld, r->o, ld, r->Lq, r->Lk, r->H, r->hd, scale);
        backend_sync(r->be);
    }
}

static run make_run(wan_backend *be, int Lq, int Lk, int H, int hd, float **hq, float **hk, float **hv)
{
    run r = { be, 0, Lq, Lk, H, hd, NULL, NULL, NULL, NULL };
    const size_t nq = (size_t)Lq * H * hd, nk = (size_t)Lk * H * hd;
    *hq = make_random(nq, 1.0f, 1u), *hk = make_random(nk, 1.0f, 2u), *hv = make_random(nk, 1.0f, 3u);
    r.q = (float *)to_device(*hq, nq * 4), r.k = (float *)to_device(*hk, nk * 4), r.v = (float *)to_device(*hv, nk * 4);
    CUDA_CHECK(cudaMalloc(&r.o, nq * 4));
    return r;
}

static void free_run(run *r)
{
    cudaFree(r->q), cudaFree(r->k), cudaFree(r->v), cudaFree(r->o);
}

int main(int argc, char **argv)
{
    int version;
    const int val = parse_mode(argc, argv, &version, N_VERSIONS);
    wan_backend *be = cuda_backend();
    int failed = 0;
    if (val) {
        const int shapes[][4] = { { 1, 1, 1, 32 }, { 70, 300, 2, 128 }, { 33, 17, 3, 40 }, { 129, 64, 2, 64 },
                                  { 64, 512, 1, 128 } };
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
            float *hq, *hk, *hv;
            run r = make_run(be, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], &hq, &hk, &hv);
            float *ref = (float *)malloc((size_t)r.Lq * r.H * r.hd * 4);
            cpu_attention(hq, hk, hv, ref, r.Lq, r.Lk, r.H, r.hd, 1.0f / sqrtf((float)r.hd));
            for (int ver = 1; ver <= N_VERSIONS; ver++) {
                if (version && ver != version)
                    continue;
                char name[96];
                snprintf(name, sizeof name, "v%d Lq %d Lk %d heads %d hd %d", ver, r.Lq, r.Lk, r.H, r.hd);
                r.version = ver;
                forward(&r);
                CUDA_CHECK(cudaDeviceSynchronize());
                failed += !validate(name, r.o, ref, (size_t)r.Lq * r.H * r.hd, 2e-5);
            }
            free(ref), free(hq), free(hk), free(hv);
            free_run(&r);
        }
    } else {
        float *hq, *hk, *hv;
        run r = make_run(be, 75600, 75600, 40, 128, &hq, &hk, &hv);
        const double flop = 4.0 * r.Lq * (double)r.Lk * r.H * r.hd;
        for (int ver = 2; ver >= 1; ver--) { /* version 1 takes minutes at this size: the shorter L for it */
            if (version && ver != version)
                continue;
            r.version = ver;
            if (ver == 1)
                r.Lq = 1024;
            const double ms = time_ms(forward, &r, ver == 1 ? 1 : 3);
            printf("  v%d: Lq %d Lk %d: %.1f ms, %.1f TFLOP/s\n", ver, r.Lq, r.Lk, ms,
                   flop * r.Lq / 75600.0 / ms * 1e-9);
        }
        free(hq), free(hk), free(hv);
        free_run(&r);
    }
    wan_backend_free(be);
    return failed ? 1 : 0;
}
