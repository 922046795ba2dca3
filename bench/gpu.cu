/* bench/gpu.cu — the CUDA backend at full size (built by `make cuda` as build-cuda/bench/gpu; first run on an H200 in
 * the fifth session, docs/PERFORMANCE.md). Two parts, each timed with the backend's ops and random weights:
 *
 * 1. Transformer blocks at Wan2.2-A14B width (D 5120, 40 heads x 128, FFN 13824, BF16 weights) over 75,600 tokens
 *    (81 frames at 1280x720: 21 x 45 x 80 patches) and 512 text rows: the op sequence of dit.c's run_block on the
 *    backend table. Prints ms per block, TFLOP/s and the fraction of the GPU's dense bf16 peak, and the same split
 *    into GEMMs, attention and the rest (a second pass that synchronises after every op).
 * 2. A VAE decode workload of 81 frames at 1280x720 shaped like the Wan2.1 decoder (z16, base 96, mult 1,2,4,4,
 *    2 resnets per level, temporal upsampling in the first two up blocks): one latent frame per chunk, every causal
 *    3x3x3 convolution with its three temporal taps, norms, the mid attention, upsampling. It reproduces the
 *    decoder's FLOPs and memory traffic with random weights, not a real decode (that is tests/test_vae_backend.c's).
 *
 *   build-cuda/bench/gpu [--device N] [--tokens L] [--layers N] [--text-len Lt] [--reps R] [--no-dit] [--no-vae]
 *                        [--frames F] [--size WxH] */
#include "backend.h"

#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct opts {
    int device, layers, text_len, reps, dit, vae, frames, width, height;
    long tokens;
    double datasheet; /* NVIDIA's dense bf16 TFLOP/s for this GPU (datasheet_tflops), 0: unknown */
} opts;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int die(wan_backend *be, const char *what)
{
    wan_error err = {};
    if (be->sync(be, &err) == WAN_OK)
        return 0;
    fprintf(stderr, "%s: %s\n", what, err.msg);
    exit(1);
}

/* Dense bf16 tensor-core peak: SMs x clock x (dense bf16 FLOP per SM per clock: 4096 on sm_90, 2048 on sm_80). */
static double bf16_peak(int device, char *name, size_t len)
{
    cudaDeviceProp p;
    int khz = 0;
    cudaGetDeviceProperties(&p, device);
    cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, device);
    snprintf(name, len, "%s", p.name);
    const double per_clk = p.major >= 9 ? 4096.0 : p.major == 8 && p.minor == 0 ? 2048.0 : 1024.0;
    return p.multiProcessorCount * (khz * 1e3) * per_clk;
}

/* Device memory in use now (all processes), GiB. The backend frees nothing while a part runs (its scratch only
 * grows), so the value after a part is that part's peak plus what earlier parts left allocated. */
static double used_gib(void)
{
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    return (double)(tot - fr) / (1 << 30);
}

/* NVIDIA's datasheet dense bf16 figure for the GPUs this project has seen or targets (TFLOP/s), 0 if unknown: the
 * clock-based peak above uses the maximum boost clock, which these figures do not. */
static double datasheet_tflops(const char *name)
{
    if (strstr(name, "H100") && strstr(name, "PCIe"))
        return 756.0;
    if (strstr(name, "H100") || strstr(name, "H200") || strstr(name, "H800"))
        return 989.4;
    if (strstr(name, "A100") || strstr(name, "A800"))
        return 312.0;
    return 0.0;
}

/* Backend buffer of n floats, uploaded from `init` (NULL: zeros). */
static float *dev_floats(wan_backend *be, size_t n, const float *init)
{
    float *p = (float *)be->alloc(be, n * sizeof(float));
    die(be, "alloc");
    if (init)
        be->upload(be, p, init, n * sizeof(float));
    else
        be->zero(be, p, n * sizeof(float));
    return p;
}

static float *host_random(size_t n, float amp, unsigned seed)
{
    float *h = (float *)malloc(n * sizeof(float));
    unsigned s = seed;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        h[i] = amp * ((float)(s >> 8) * (2.0f / 16777216.0f) - 1.0f);
    }
    return h;
}

/* ---- transformer ------------------------------------------------------------------------------------------ */

typedef struct lin { wan_tensor w; float *b; } lin;
typedef struct blk { float *sst, *nq, *nk, *nq2, *nk2, *n2w, *n2b; lin q, k, v, o, q2, k2, v2, o2, f1, f2; } blk;

enum { T_GEMM, T_ATTN, T_OTHER, T_N };
typedef struct timer { wan_backend *be; int on; double t[T_N], last; } timer;

static void tick(timer *t, int cls)
{
    if (!t->on)
        return;
    die(t->be, "op");
    const double n = now_s();
    t->t[cls] += n - t->last;
    t->last = n;
}

static lin make_lin(wan_backend *be, int64_t N, int64_t K, const uint16_t *src)
{
    lin l;
    void *d = be->alloc(be, (size_t)(N * K) * 2);
    die(be, "alloc weights");
    be->upload(be, d, src, (size_t)(N * K) * 2);
    const int64_t ne[2] = { N, K };
    l.w = wan_tensor_view(WAN_DTYPE_BF16, 2, ne, d);
    float *hb = host_random((size_t)N, 0.01f, (unsigned)N);
    l.b = dev_floats(be, (size_t)N, hb);
    free(hb);
    return l;
}

typedef struct dit_bufs { float *x, *h, *q, *k, *v, *o, *c, *ck, *cv, *u, *tproj, *mod, *tab[3]; int32_t *none; } dit_bufs;

/* dit.c's run_block on the backend (modulation for one timestep). */
static void block(wan_backend *be, const blk *b, dit_bufs *r, int64_t L, int64_t Lt, int nf, int nh, int nw,
                  int64_t chunk, timer *tm)
{
    const int64_t D = 5120, F = 13824, ml = 6 * D;
    const int H = 40, hd = 128, dh = 2 * (hd / 6), dt = hd - 2 * dh;
    const float eps = 1e-6f, sc = 1.0f / sqrtf((float)hd);
    const float *M = r->mod;
    be->add_rows(be, r->mod, b->sst, r->tproj, 1, ml, ml, ml);
    be->layernorm(be, r->x, r->h, L, D, D, eps, NULL, NULL, M, M + D, NULL, ml);
    tick(tm, T_OTHER);
    be->linear(be, r->h, L, D, &b->q.w, b->q.b, r->q, D);
    be->linear(be, r->h, L, D, &b->k.w, b->k.b, r->k, D);
    be->linear(be, r->h, L, D, &b->v.w, b->v.b, r->v, D);
    tick(tm, T_GEMM);
    be->rmsnorm(be, r->q, L, D, D, eps, b->nq);
    be->rmsnorm(be, r->k, L, D, D, eps, b->nk);
    be->rope(be, r->q, D, nf, nh, nw, H, hd, dt, dh, r->tab[0], r->tab[1], r->tab[2]);
    be->rope(be, r->k, D, nf, nh, nw, H, hd, dt, dh, r->tab[0], r->tab[1], r->tab[2]);
    tick(tm, T_OTHER);
    be->attention(be, r->q, D, r->k, D, r->v, D, r->o, D, L, L, H, hd, sc, 1.0f);
    tick(tm, T_ATTN);
    be->linear(be, r->o, L, D, &b->o.w, b->o.b, r->h, D);
    tick(tm, T_GEMM);
    be->gated_add(be, r->x, D, r->h, D, L, D, M + 2 * D, NULL, ml);
    be->layernorm(be, r->x, r->h, L, D, D, eps, b->n2w, b->n2b, NULL, NULL, NULL, 0);
    tick(tm, T_OTHER);
    be->linear(be, r->h, L, D, &b->q2.w, b->q2.b, r->q, D);
    be->linear(be, r->c, Lt, D, &b->k2.w, b->k2.b, r->ck, D);
    be->linear(be, r->c, Lt, D, &b->v2.w, b->v2.b, r->cv, D);
    tick(tm, T_GEMM);
    be->rmsnorm(be, r->q, L, D, D, eps, b->nq2);
    be->rmsnorm(be, r->ck, Lt, D, D, eps, b->nk2);
    tick(tm, T_OTHER);
    be->attention(be, r->q, D, r->ck, D, r->cv, D, r->o, D, L, Lt, H, hd, sc, 1.0f);
    tick(tm, T_ATTN);
    be->linear(be, r->o, L, D, &b->o2.w, b->o2.b, r->h, D);
    tick(tm, T_GEMM);
    be->gated_add(be, r->x, D, r->h, D, L, D, NULL, NULL, 0);
    be->layernorm(be, r->x, r->h, L, D, D, eps, NULL, NULL, M + 3 * D, M + 4 * D, NULL, ml);
    tick(tm, T_OTHER);
    for (int64_t c0 = 0; c0 < L; c0 += chunk) {
        const int64_t n = L - c0 < chunk ? L - c0 : chunk;
        be->linear(be, r->h + c0 * D, n, D, &b->f1.w, b->f1.b, r->u, F);
        tick(tm, T_GEMM);
        be->gelu_tanh(be, r->u, n * F);
        tick(tm, T_OTHER);
        be->linear(be, r->u, n, F, &b->f2.w, b->f2.b, r->o + c0 * D, D);
        tick(tm, T_GEMM);
    }
    be->gated_add(be, r->x, D, r->o, D, L, D, M + 5 * D, NULL, ml);
    tick(tm, T_OTHER);
}

static void bench_dit(wan_backend *be, const opts *o, double peak)
{
    const int64_t D = 5120, F = 13824, Lt = o->text_len, chunk = 16384;
    int nf = 21, nh = 45, nw = 80;
    if (o->tokens != 75600) { /* any other count: one row of frames */
        nf = 1, nh = 1, nw = (int)o->tokens;
    }
    const int64_t L = (int64_t)nf * nh * nw;
    printf("transformer: %d blocks at A14B width (D %lld, 40 heads x 128, FFN %lld, bf16 weights), %lld tokens "
           "(grid %dx%dx%d), %lld text rows\n", o->layers, (long long)D, (long long)F, (long long)L, nf, nh, nw,
           (long long)Lt);
    uint16_t *wsrc = (uint16_t *)malloc((size_t)(F * D) * 2);
    float *hw = host_random((size_t)(F * D), 0.02f, 12345u);
    for (int64_t i = 0; i < F * D; i++)
        wsrc[i] = wan_f32_to_bf16(hw[i]);
    free(hw);
    blk *blocks = (blk *)calloc((size_t)o->layers, sizeof *blocks);
    float *ones = (float *)malloc((size_t)(6 * D) * sizeof(float)), *small = host_random((size_t)(6 * D), 0.1f, 7u);
    for (int64_t i = 0; i < 6 * D; i++)
        ones[i] = 1.0f;
    for (int i = 0; i < o->layers; i++) {
        blk *b = &blocks[i];
        b->sst = dev_floats(be, (size_t)(6 * D), small);
        b->nq = dev_floats(be, (size_t)D, ones), b->nk = dev_floats(be, (size_t)D, ones);
        b->nq2 = dev_floats(be, (size_t)D, ones), b->nk2 = dev_floats(be, (size_t)D, ones);
        b->n2w = dev_floats(be, (size_t)D, ones), b->n2b = dev_floats(be, (size_t)D, NULL);
        lin *sq[8] = { &b->q, &b->k, &b->v, &b->o, &b->q2, &b->k2, &b->v2, &b->o2 };
        for (int j = 0; j < 8; j++)
            *sq[j] = make_lin(be, D, D, wsrc);
        b->f1 = make_lin(be, F, D, wsrc);
        b->f2 = make_lin(be, D, F, wsrc);
    }
    free(wsrc);
    dit_bufs r;
    float *hx = host_random((size_t)(L * D), 1.0f, 99u);
    r.x = dev_floats(be, (size_t)(L * D), hx);
    free(hx);
    r.h = dev_floats(be, (size_t)(L * D), NULL), r.q = dev_floats(be, (size_t)(L * D), NULL);
    r.k = dev_floats(be, (size_t)(L * D), NULL), r.v = dev_floats(be, (size_t)(L * D), NULL);
    r.o = dev_floats(be, (size_t)(L * D), NULL);
    float *hc = host_random((size_t)(Lt * D), 1.0f, 5u);
    r.c = dev_floats(be, (size_t)(Lt * D), hc);
    free(hc);
    r.ck = dev_floats(be, (size_t)(Lt * D), NULL), r.cv = dev_floats(be, (size_t)(Lt * D), NULL);
    r.u = dev_floats(be, (size_t)(chunk * F), NULL);
    r.tproj = dev_floats(be, (size_t)(6 * D), small), r.mod = dev_floats(be, (size_t)(6 * D), NULL);
    const int npos[3] = { nf, nh, nw }, dims[3] = { 128 - 4 * 21, 42, 42 };
    for (int a = 0; a < 3; a++) {
        float *t = (float *)malloc((size_t)npos[a] * dims[a] * sizeof(float));
        for (int j = 0; j < dims[a] / 2; j++)
            for (int p = 0; p < npos[a]; p++) {
                const double ang = p * pow(10000.0, -2.0 * j / dims[a]);
                t[(p * (dims[a] / 2) + j) * 2] = (float)cos(ang), t[(p * (dims[a] / 2) + j) * 2 + 1] = (float)sin(ang);
            }
        r.tab[a] = dev_floats(be, (size_t)npos[a] * dims[a], t);
        free(t);
    }
    free(ones);
    free(small);
    die(be, "setup");

    const double gemm_flop = 2.0 * L * D * D * 6 + 2.0 * Lt * D * D * 2 + 2.0 * 2 * L * D * F;
    const double attn_flop = 4.0 * L * L * D + 4.0 * L * Lt * D;
    const double flop = (gemm_flop + attn_flop) * o->layers;
    const double mem0 = used_gib();
    timer tm = { be, 0, { 0 }, 0 };
    double best = 1e30;
    for (int rep = 0; rep <= o->reps; rep++) { /* rep 0 warms up (scratch, cuBLASLt heuristics) */
        const double t0 = now_s();
        for (int i = 0; i < o->layers; i++)
            block(be, &blocks[i], &r, L, Lt, nf, nh, nw, chunk, &tm);
        die(be, "transformer blocks");
        const double dt = now_s() - t0;
        if (rep > 0 && dt < best)
            best = dt;
    }
    printf("  total: %.1f ms per block, %.1f TFLOP/s, %.1f%% of the bf16 peak (%.0f TFLOP/s)", best * 1e3 / o->layers,
           flop / best * 1e-12, 100.0 * flop / best / peak, peak * 1e-12);
    if (o->datasheet > 0)
        printf(", %.1f%% of the datasheet's %.0f", 100.0 * flop / best * 1e-12 / o->datasheet, o->datasheet);
    printf("\n");
    printf("  device memory in use: %.2f GiB after setup (weights, activations), %.2f GiB after the run\n", mem0,
           used_gib());
    tm.on = 1;
    tm.last = now_s();
    for (int i = 0; i < o->layers; i++)
        block(be, &blocks[i], &r, L, Lt, nf, nh, nw, chunk, &tm);
    const char *names[T_N] = { "GEMMs", "attention", "other ops" };
    const double fl[T_N] = { gemm_flop * o->layers, attn_flop * o->layers, 0 };
    printf("  split (a second pass synchronised after every op):\n");
    for (int c = 0; c < T_N; c++) {
        printf("  %-10s %9.1f ms per block", names[c], tm.t[c] * 1e3 / o->layers);
        if (fl[c] > 0)
            printf(", %.1f TFLOP/s, %.1f%% of peak", fl[c] / tm.t[c] * 1e-12, 100.0 * fl[c] / tm.t[c] / peak);
        printf("\n");
    }
}

/* ---- VAE decode workload ------------------------------------------------------------------------------------ */

typedef struct vbufs { float *a, *b, *w, *bias, *gamma, *qkv, *o; } vbufs;

/* A causal 3x3x3 convolution (three taps: here the frame itself and its predecessor stand in for the cache) and its
 * norm + SiLU, over n frames [c][h][w]. Returns the FLOPs. */
static double res_conv(wan_backend *be, vbufs *v, int cin, int cout, int n, int h, int w)
{
    const wan_conv_geom g = wan_conv_geom_make(cin, cout, h, w, 3, 1, 1, 0);
    const size_t fi = (size_t)cin * h * w, fo = (size_t)cout * h * w;
    be->chan_rmsnorm(be, v->a, v->a, cin, (int64_t)h * w, n, v->gamma, 1);
    for (int t = 0; t < n; t++) {
        const float *taps[3] = { v->a + (t > 1 ? t - 2 : 0) * fi, v->a + (t > 0 ? t - 1 : 0) * fi, v->a + t * fi };
        be->conv2d_taps(be, &g, 3, v->w, v->bias, taps, v->b + t * fo);
    }
    float *s = v->a;
    v->a = v->b, v->b = s;
    return 2.0 * cout * cin * 27.0 * h * w * n;
}

static double decode_chunk(wan_backend *be, vbufs *v, int first, int H0, int W0)
{
    double fl = 0;
    int n = 1, h = H0, w = W0;
    const int dims[5] = { 384, 384, 384, 192, 96 };
    fl += res_conv(be, v, 16, 384, n, h, w);           /* conv_in */
    for (int j = 0; j < 4; j++)                          /* mid: 2 resnets */
        fl += res_conv(be, v, 384, 384, n, h, w);
    const int npix = h * w;
    {
        const wan_conv_geom g = wan_conv_geom_make(384, 3 * 384, h, w, 1, 1, 1, 0);
        const float *tap = v->a;
        be->conv2d_taps(be, &g, 1, v->w, v->bias, &tap, v->qkv);
        be->attention_frame(be, v->qkv, v->o, 384, npix);
        fl += 2.0 * 3 * 384 * 384 * npix + 4.0 * npix * (double)npix * 384;
    }
    for (int i = 0; i < 4; i++) {
        int cin = i == 0 ? dims[0] : dims[i] / 2;
        const int cout = dims[i + 1];
        for (int j = 0; j < 3; j++, cin = cout) {
            fl += res_conv(be, v, cin, cout, n, h, w);
            fl += res_conv(be, v, cout, cout, n, h, w);
        }
        if (i < 3) {
            if (i < 2 && !first) { /* time_conv C -> 2C, frames doubled */
                const wan_conv_geom g = wan_conv_geom_make(cout, 2 * cout, h, w, 1, 1, 1, 0);
                for (int t = 0; t < n; t++) {
                    const size_t fi = (size_t)cout * h * w;
                    const float *taps[3] = { v->a + t * fi, v->a + t * fi, v->a + t * fi };
                    be->conv2d_taps(be, &g, 3, v->w, v->bias, taps, v->b + 2 * t * fi);
                }
                fl += 2.0 * 2 * cout * cout * 3.0 * h * w * n;
                float *s = v->a;
                v->a = v->b, v->b = s;
                n *= 2;
            }
            const wan_conv_geom g = wan_conv_geom_make(cout, cout / 2, 2 * h, 2 * w, 3, 1, 1, 1);
            for (int t = 0; t < n; t++) {
                const float *tap = v->a + (size_t)t * cout * h * w;
                be->conv2d_taps(be, &g, 1, v->w, v->bias, &tap, v->b + (size_t)t * (cout / 2) * 4 * h * w);
            }
            h *= 2, w *= 2;
            fl += 2.0 * (cout / 2) * cout * 9.0 * h * w * n;
            float *s = v->a;
            v->a = v->b, v->b = s;
        }
    }
    fl += res_conv(be, v, 96, 3, n, h, w); /* head: norm, SiLU, conv_out */
    return fl;
}

static void bench_vae(wan_backend *be, const opts *o, double peak)
{
    const int lat_t = (o->frames - 1) / 4 + 1, H0 = o->height / 8, W0 = o->width / 8;
    printf("VAE decode workload (Wan2.1 decoder shape): %d frames at %dx%d from %d latent frames of %dx%d\n",
           o->frames, o->width, o->height, lat_t, W0, H0);
    const size_t big = (size_t)4 * 384 * (size_t)(2 * H0) * (2 * W0) > (size_t)4 * 192 * (8 * H0) * (8 * W0)
                           ? (size_t)4 * 384 * (2 * H0) * (2 * W0) : (size_t)4 * 192 * (8 * H0) * (8 * W0);
    vbufs v;
    float *hw = host_random((size_t)3 * 384 * 384 * 9, 0.02f, 3u);
    v.a = dev_floats(be, big, NULL), v.b = dev_floats(be, big, NULL);
    v.w = dev_floats(be, (size_t)3 * 384 * 384 * 9, hw);
    free(hw);
    v.bias = dev_floats(be, 3 * 384, NULL);
    float *g = host_random(768, 1.0f, 4u);
    v.gamma = dev_floats(be, 768, g);
    free(g);
    v.qkv = dev_floats(be, (size_t)3 * 384 * H0 * W0, NULL), v.o = dev_floats(be, (size_t)384 * H0 * W0, NULL);
    float *z = host_random((size_t)16 * H0 * W0, 1.0f, 8u);
    double fl = 0;
    const double mem0 = used_gib();
    const double t0 = now_s();
    for (int k = 0; k < lat_t; k++) {
        be->upload(be, v.a, z, (size_t)16 * H0 * W0 * sizeof(float));
        fl += decode_chunk(be, &v, k == 0, H0, W0);
    }
    die(be, "VAE decode");
    const double dt = now_s() - t0;
    free(z);
    printf("  %.0f ms (%.1f ms per output frame), %.1f TFLOP/s f32 (%.1f%% of the bf16 peak)\n", dt * 1e3,
           dt * 1e3 / o->frames, fl / dt * 1e-12, 100.0 * fl / dt / peak);
    printf("  device memory in use: %.2f GiB before the decode, %.2f GiB after (peak: the backend frees nothing)\n",
           mem0, used_gib());
}

int main(int argc, char **argv)
{
    opts o = { 0, 2, 512, 1, 1, 1, 81, 1280, 720, 75600, 0.0 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--device")) o.device = atoi(val), i++;
        else if (!strcmp(a, "--tokens")) o.tokens = atol(val), i++;
        else if (!strcmp(a, "--layers")) o.layers = atoi(val), i++;
        else if (!strcmp(a, "--text-len")) o.text_len = atoi(val), i++;
        else if (!strcmp(a, "--reps")) o.reps = atoi(val), i++;
        else if (!strcmp(a, "--frames")) o.frames = atoi(val), i++;
        else if (!strcmp(a, "--size") && sscanf(val, "%dx%d", &o.width, &o.height) == 2) i++;
        else if (!strcmp(a, "--no-dit")) o.dit = 0;
        else if (!strcmp(a, "--no-vae")) o.vae = 0;
        else {
            fprintf(stderr, "usage: %s [--device N] [--tokens L] [--layers N] [--text-len Lt] [--reps R] [--no-dit] "
                    "[--no-vae] [--frames F] [--size WxH]\n", argv[0]);
            return 2;
        }
    }
    if (o.tokens < 1 || o.layers < 1 || o.text_len < 1 || o.reps < 1 || o.frames < 1 || (o.frames - 1) % 4 ||
        o.width % 8 || o.height % 8) {
        fprintf(stderr, "bad sizes (frames must be 4k+1, width and height multiples of 8)\n");
        return 2;
    }
    char dev[32], name[256];
    snprintf(dev, sizeof dev, "cuda:%d", o.device);
    wan_backend *be = NULL;
    wan_error err = {};
    if (wan_backend_create(dev, 0, &be, &err) != WAN_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const double peak = bf16_peak(o.device, name, sizeof name);
    o.datasheet = datasheet_tflops(name);
    printf("device: %s (%s); dense bf16 peak taken as %.0f TFLOP/s (SMs x max clock x 4096)", be->device, name,
           peak * 1e-12);
    if (o.datasheet > 0)
        printf(", datasheet %.0f TFLOP/s", o.datasheet);
    printf("\n");
    if (o.dit)
        bench_dit(be, &o, peak);
    if (o.vae)
        bench_vae(be, &o, peak);
    wan_backend_free(be); /* device memory is released with the process */
    return 0;
}
