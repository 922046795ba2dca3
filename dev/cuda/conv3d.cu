/* conv3d.cu — the VAE's causal 3x3x3 convolution of one frame: out[cout, h·w] = bias + sum over the three temporal
 * taps of W[tap] (*) frame[tap] ("same" padding), as be->conv2d_taps does it (backend.h).
 *   version 1: one thread per output value, direct loops (reference kernel).
 *   version 2: src/cuda/vae.cu through the backend — im2col per tap over bands of output rows, cublasSgemm
 *              accumulating into the bias-initialised output (f32, no TF32).
 * Next candidates: an implicit-GEMM kernel with bf16 tensor cores (no im2col buffer), cuDNN's convolution
 * (NCHW frames, the taps as a batch summed by beta = 1), TF32 as an opt-in.
 *
 *   ./conv3d validate [v]     random channel counts and frame sizes against the CPU
 *   ./conv3d benchmark [v]    the Wan2.1 decoder's heaviest shapes: 384 ch at 90x160 (latent), 192 ch at 360x640,
 *                             96 ch at 720x1280 */
#include "common.h"

#define N_VERSIONS 2

__global__ void conv_v1(const float *w, const float *b, const float *in0, const float *in1, const float *in2,
                        float *out, int cin, int cout, int h, int wd)
{
    const int p = blockIdx.x * blockDim.x + threadIdx.x, o = blockIdx.y;
    if (p >= h * wd)
        return;
    const int oy = p / wd, ox = p % wd;
    const float *in[3] = { in0, in1, in2 };
    float s = b[o];
    for (int a = 0; a < 3; a++)
        for (int c = 0; c < cin; c++)
            for (int r = 0; r < 3; r++)
                for (int q = 0; q < 3; q++) {
                    const int iy = oy + r - 1, ix = ox + q - 1;
                    if (iy >= 0 && iy < h && ix >= 0 && ix < wd)
                        s += w[(((size_t)a * cout + o) * cin + c) * 9 + r * 3 + q] * in[a][((size_t)c * h + iy) * wd + ix];
                }
    out[(size_t)o * h * wd + p] = s;
}

typedef struct run { wan_backend *be; int version, cin, cout, h, w; float *wt, *b, *in[3], *out; } run;

static void forward(void *arg)
{
    run *r = (run *)arg;
    if (r->version == 1) {
        conv_v1<<<dim3((r->h * r->w + 127) / 128, r->cout), 128>>>(r->wt, r->b, r->in[0], r->in[1], r->in[2], r->out,
                                                                   r->cin, r->cout, r->h, r->w);
        CUDA_CHECK(cudaGetLastError());
        return;
    }
    const wan_conv_geom g = wan_conv_geom_make(r->cin, r->cout, r->h, r->w, 3, 1, 1, 0);
    const float *taps[3] = { r->in[0], r->in[1], r->in[2] };
    r->be->conv2d_taps(r->be, &g, 3, r->wt, r->b, taps, r->out);
    backend_sync(r->be);
}

int main(int argc, char **argv)
{
    int version;
    const int val = parse_mode(argc, argv, &version, N_VERSIONS);
    wan_backend *be = cuda_backend();
    int failed = 0;
    const int val_shapes[][4] = { { 1, 1, 1, 1 }, { 5, 7, 9, 11 }, { 16, 32, 20, 36 }, { 64, 24, 33, 17 } };
    const int bench_shapes[][4] = { { 384, 384, 90, 160 }, { 192, 192, 360, 640 }, { 96, 96, 720, 1280 } };
    for (int s = 0; s < (val ? 4 : 3); s++) {
        const int *sh = val ? val_shapes[s] : bench_shapes[s];
        run r = { be, 0, sh[0], sh[1], sh[2], sh[3], NULL, NULL, { NULL }, NULL };
        const size_t nw = (size_t)3 * r.cout * r.cin * 9, ni = (size_t)r.cin * r.h * r.w, no = (size_t)r.cout * r.h * r.w;
        float *hw = make_random(nw, 0.05f, 1u), *hb = make_random((size_t)r.cout, 0.1f, 2u), *hi[3];
        r.wt = (float *)to_device(hw, nw * 4), r.b = (float *)to_device(hb, (size_t)r.cout * 4);
        for (int a = 0; a < 3; a++) {
            hi[a] = make_random(ni, 1.0f, 3u + a);
            r.in[a] = (float *)to_device(hi[a], ni * 4);
        }
        CUDA_CHECK(cudaMalloc(&r.out, no * 4));
        float *ref = NULL;
        if (val) {
            ref = (float *)malloc(no * 4);
            for (int o = 0; o < r.cout; o++)
                for (int y = 0; y < r.h; y++)
                    for (int x = 0; x < r.w; x++) {
                        double acc = hb[o];
                        for (int a = 0; a < 3; a++)
                            for (int c = 0; c < r.cin; c++)
                                for (int p = 0; p < 3; p++)
                                    for (int q = 0; q < 3; q++) {
                                        const int iy = y + p - 1, ix = x + q - 1;
                                        if (iy >= 0 && iy < r.h && ix >= 0 && ix < r.w)
                                            acc += (double)hw[(((size_t)a * r.cout + o) * r.cin + c) * 9 + p * 3 + q] *
                                                   hi[a][((size_t)c * r.h + iy) * r.w + ix];
                                    }
                        ref[((size_t)o * r.h + y) * r.w + x] = (float)acc;
                    }
        }
        for (int ver = 1; ver <= N_VERSIONS; ver++) {
            if (version && ver != version)
                continue;
            r.version = ver;
            char name[96];
            snprintf(name, sizeof name, "v%d cin %d cout %d %dx%d", ver, r.cin, r.cout, r.h, r.w);
            if (val) {
                forward(&r);
                CUDA_CHECK(cudaDeviceSynchronize());
                failed += !validate(name, r.out, ref, no, 2e-5);
            } else {
                const double ms = time_ms(forward, &r, 3);
                printf("  %s: %.2f ms, %.1f TFLOP/s\n", name, ms, 2.0 * 27 * r.cin * (double)r.cout * r.h * r.w / ms * 1e-9);
            }
        }
        free(ref), free(hw), free(hb);
        for (int a = 0; a < 3; a++)
            free(hi[a]), cudaFree(r.in[a]);
        cudaFree(r.wt), cudaFree(r.b), cudaFree(r.out);
    }
    wan_backend_free(be);
    return failed ? 1 : 0;
}
