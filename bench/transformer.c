/* bench/transformer.c — one WanTransformer3DModel forward: wan.c beside PyTorch (bench/transformer_ref.py)
 * on the same machine, config, token count and thread count. Weights are random, generated in-process
 * (BF16 by default, as the released experts are used; q8_0 / q4_0: the block projections quantised as `wan convert
 * --quantize` does, the rest BF16). Prints both times, the ratio, GFLOP/s and peak RSS.
 *
 *   bench/transformer [--preset a14b|5b|tiny] [--dim D --heads H --ffn F --layers N --text-dim T]
 *                     [--grid F,H,W] [--text-len Lt] [--prompt-len P] [--threads N] [--dtype bf16|f32|q8_0|q4_0]
 *                     [--reps R] [--no-ref]   (context rows P..Lt-1 are zero, as the pipeline pads a prompt; default P = Lt)
 *                     [--linear auto|blas|packed|bf16]  (the path of wan_cpu_linear: AUTO, or one forced for
 *                                                        comparison; bf16: the opt-in bf16 products, AMX or
 *                                                        AVX512-BF16, where the CPU has them)
 *                     [--attention auto|generic|avx2|avx512|amx]  (the attention tile kernel, the CPU must have the
 *                                                        ISA; amx: the opt-in bf16 attention, where the CPU has AMX)
 *                     [--python PATH]
 * Build and run: see bench/README.md. */
#define _POSIX_C_SOURCE 200809L
#include "backend.h"
#include "core.h"
#include "cpu/attention.h"
#include "cpu/gemm.h"
#include "dit.h"
#include "quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct bench_opts {
    int dim, heads, ffn, layers, text_dim, in_ch;
    int grid[3];
    int text_len, prompt_len, threads, reps, ref;
    wan_dtype dtype;
    const char *python;
} bench_opts;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static long minor_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

static void preset(bench_opts *o, const char *name)
{
    if (!strcmp(name, "a14b")) { /* Wan2.2-T2V-A14B block width; 2 layers; 1 latent frame at 480p */
        o->dim = 5120, o->heads = 40, o->ffn = 13824, o->layers = 2, o->text_dim = 4096, o->in_ch = 16;
        o->grid[0] = 1, o->grid[1] = 30, o->grid[2] = 52; /* 1,560 tokens */
    } else if (!strcmp(name, "5b")) {
        o->dim = 3072, o->heads = 24, o->ffn = 14336, o->layers = 2, o->text_dim = 4096, o->in_ch = 48;
        o->grid[0] = 1, o->grid[1] = 30, o->grid[2] = 52;
    } else { /* tiny: the test fixtures' width */
        o->dim = 64, o->heads = 2, o->ffn = 128, o->layers = 2, o->text_dim = 64, o->in_ch = 16;
        o->grid[0] = 3, o->grid[1] = 4, o->grid[2] = 6;
    }
}

/* Deterministic uniform values in [-amp, amp) stored as dtype; each row block gets its own seed. */
static void *rand_weights(int64_t n, float amp, wan_dtype dt, uint32_t seed)
{
    const size_t es = dt == WAN_DTYPE_F32 ? 4 : 2;
    uint8_t *p = wan_malloc((size_t)n * es);
    if (!p)
        return NULL;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < (n + 4095) / 4096; b++) {
        uint32_t s = seed * 2654435761u + (uint32_t)b * 40503u + 1u;
        for (int64_t i = b * 4096; i < n && i < (b + 1) * 4096; i++) {
            s = s * 1664525u + 1013904223u;
            float v = amp * ((float)(s >> 8) * (2.0f / 16777216.0f) - 1.0f);
            if (dt == WAN_DTYPE_F32) {
                memcpy(p + 4 * i, &v, 4);
            } else {
                uint16_t h = dt == WAN_DTYPE_BF16 ? wan_f32_to_bf16(v) : wan_f32_to_f16(v);
                memcpy(p + 2 * i, &h, 2);
            }
        }
    }
    return p;
}

/* Every matrix of the model, so that they can be freed at the end. */
static void *g_mats[512];
static int g_nmats;
static uint32_t g_seed = 1;

static int make_linear(wan_dit_linear *l, int64_t N, int64_t K, wan_dtype dt, float **vec)
{
    const int quant = dt == WAN_DTYPE_I8 || dt == WAN_DTYPE_U8; /* q8_0 / q4_0: values, then the scales */
    const int64_t vbytes = dt == WAN_DTYPE_U8 ? N * K / 2 : N * K;
    void *w = rand_weights(N * K, 1.0f / sqrtf((float)K), quant ? WAN_DTYPE_F32 : dt, g_seed++);
    if (w && quant) {
        uint8_t *q = wan_malloc((size_t)vbytes + (size_t)(N * K / WAN_Q8_BLOCK) * 2);
        if (q) {
            uint16_t *qs = (uint16_t *)(void *)(q + vbytes);
#pragma omp parallel for schedule(static)
            for (int64_t n = 0; n < N; n++) {
                if (dt == WAN_DTYPE_I8)
                    wan_q8_quantize_row((const float *)w + n * K, K, (int8_t *)q + n * K, qs + n * (K / WAN_Q8_BLOCK));
                else
                    wan_q4_quantize_row((const float *)w + n * K, K, q + n * (K / 2), qs + n * (K / WAN_Q8_BLOCK));
            }
        }
        wan_free(w);
        w = q;
    }
    if (!w || g_nmats >= 512)
        return 0;
    g_mats[g_nmats++] = w;
    l->w = wan_tensor_view(dt, 2, (int64_t[]){ N, K }, w);
    if (quant)
        l->w.qscale = (const uint16_t *)(const void *)((uint8_t *)w + vbytes);
    for (int64_t i = 0; i < N; i++)
        (*vec)[i] = 0.01f * (float)((i * 37) % 11 - 5);
    l->b = *vec;
    *vec += N;
    return 1;
}

static const float *make_vec(float **vec, int64_t n, float base, float amp)
{
    float *v = *vec;
    for (int64_t i = 0; i < n; i++)
        v[i] = base + amp * (float)((i * 53) % 17 - 8) / 8.0f;
    *vec += n;
    return v;
}

static int build_model(wan_dit *d, const bench_opts *o, wan_error *err)
{
    wan_transformer_config c = {
        .patch_size = { 1, 2, 2 }, .num_attention_heads = o->heads, .attention_head_dim = o->dim / o->heads,
        .in_channels = o->in_ch, .out_channels = o->in_ch, .text_dim = o->text_dim, .freq_dim = 256,
        .ffn_dim = o->ffn, .num_layers = o->layers, .cross_attn_norm = 1, .eps = 1e-6, .rope_max_seq_len = 1024,
    };
    if (wan_dit_set_config(d, &c, err) != WAN_OK)
        return 0;
    const int64_t D = d->D, F = d->F;
    const int64_t nvec = 13 * D + d->Op + (int64_t)o->layers * (21 * D + F);
    float *v = d->vec = wan_malloc((size_t)nvec * sizeof(float));
    d->blocks = wan_calloc((size_t)o->layers, sizeof *d->blocks);
    if (!d->vec || !d->blocks)
        return 0;
    const wan_dtype dt = o->dtype, dtop = dt == WAN_DTYPE_I8 || dt == WAN_DTYPE_U8 ? WAN_DTYPE_BF16 : dt; /* the
                                                                                                 blocks only */
    int ok = make_linear(&d->patch, D, d->Kp, dtop, &v) && make_linear(&d->t1, D, 256, WAN_DTYPE_F32, &v) &&
             make_linear(&d->t2, D, D, WAN_DTYPE_F32, &v) && make_linear(&d->tproj, 6 * D, D, dtop, &v) &&
             make_linear(&d->c1, D, o->text_dim, dtop, &v) && make_linear(&d->c2, D, D, dtop, &v) &&
             make_linear(&d->out, d->Op, D, dtop, &v);
    d->sst_out = make_vec(&v, 2 * D, 0.0f, 0.05f);
    for (int i = 0; ok && i < o->layers; i++) {
        wan_dit_block *b = &d->blocks[i];
        b->sst = make_vec(&v, 6 * D, 0.0f, 0.05f);
        ok = make_linear(&b->q, D, D, dt, &v) && make_linear(&b->k, D, D, dt, &v) && make_linear(&b->v, D, D, dt, &v) &&
             make_linear(&b->o, D, D, dt, &v) && make_linear(&b->q2, D, D, dt, &v) &&
             make_linear(&b->k2, D, D, dt, &v) && make_linear(&b->v2, D, D, dt, &v) &&
             make_linear(&b->o2, D, D, dt, &v) && make_linear(&b->ff1, F, D, dt, &v) &&
             make_linear(&b->ff2, D, F, dt, &v);
        b->norm_q = make_vec(&v, D, 1.0f, 0.2f);
        b->norm_k = make_vec(&v, D, 1.0f, 0.2f);
        b->norm_q2 = make_vec(&v, D, 1.0f, 0.2f);
        b->norm_k2 = make_vec(&v, D, 1.0f, 0.2f);
        b->norm2_w = make_vec(&v, D, 1.0f, 0.2f);
        b->norm2_b = make_vec(&v, D, 0.0f, 0.1f);
    }
    return ok;
}

/* FLOPs of one forward (2 per multiply-add): GEMMs, attention (QKᵀ and PV) and the embeddings, over Lt text rows.
 * main() prints the nominal count (all Lt rows, what torch computes; the GFLOP/s of both sides use it) and the
 * count wan.c executes (Lt = P + 1 when rows P.. are zero padding: they are computed once, see dit.h). */
static double forward_flops(const wan_dit *d, int64_t L, int64_t Lt)
{
    const double D = (double)d->D, F = (double)d->F;
    double blk = 8 * L * D * D + 4 * L * D * D + 4 * Lt * D * D + 4 * L * D * F + 4.0 * L * L * D + 4.0 * L * Lt * D;
    double top = 2 * Lt * (d->cfg.text_dim * D + D * D) + 2 * 6 * D * D + 2 * (256 * D + D * D) +
                 2 * L * (double)d->Kp * D + 2 * L * D * (double)d->Op;
    return d->cfg.num_layers * blk + top;
}

static int parse(bench_opts *o, int argc, char **argv)
{
    preset(o, "a14b");
    o->text_len = 512, o->prompt_len = -1, o->threads = 0, o->reps = 1, o->ref = 1, o->dtype = WAN_DTYPE_BF16;
    o->python = "tools/ref/.venv/bin/python";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-ref")) { o->ref = 0; continue; }
        if (!v) return 0;
        i++;
        if (!strcmp(a, "--preset")) preset(o, v);
        else if (!strcmp(a, "--dim")) o->dim = atoi(v);
        else if (!strcmp(a, "--heads")) o->heads = atoi(v);
        else if (!strcmp(a, "--ffn")) o->ffn = atoi(v);
        else if (!strcmp(a, "--layers")) o->layers = atoi(v);
        else if (!strcmp(a, "--text-dim")) o->text_dim = atoi(v);
        else if (!strcmp(a, "--text-len")) o->text_len = atoi(v);
        else if (!strcmp(a, "--prompt-len")) o->prompt_len = atoi(v);
        else if (!strcmp(a, "--threads")) o->threads = atoi(v);
        else if (!strcmp(a, "--reps")) o->reps = atoi(v);
        else if (!strcmp(a, "--python")) o->python = v;
        else if (!strcmp(a, "--dtype"))
            o->dtype = !strcmp(v, "f32")    ? WAN_DTYPE_F32
                       : !strcmp(v, "q8_0") ? WAN_DTYPE_I8
                       : !strcmp(v, "q4_0") ? WAN_DTYPE_U8
                                            : WAN_DTYPE_BF16;
        else if (!strcmp(a, "--linear")) {
            if (!strcmp(v, "auto")) wan_cpu_linear_set_mode(WAN_LINEAR_AUTO);
            else if (!strcmp(v, "blas")) wan_cpu_linear_set_mode(WAN_LINEAR_BLAS);
            else if (!strcmp(v, "packed")) wan_cpu_linear_set_mode(WAN_LINEAR_PACKED);
            else if (!strcmp(v, "bf16")) wan_cpu_linear_set_mode(WAN_LINEAR_BF16);
            else return 0;
        } else if (!strcmp(a, "--attention")) {
            if (!strcmp(v, "auto")) wan_cpu_attention_force_tile(NULL);
            else if (!strcmp(v, "generic")) wan_cpu_attention_force_tile(wan_att_tile_generic);
            else if (!strcmp(v, "avx2")) wan_cpu_attention_force_tile(wan_att_tile_avx2);
            else if (!strcmp(v, "avx512")) wan_cpu_attention_force_tile(wan_att_tile_avx512);
            else if (!strcmp(v, "amx")) wan_cpu_attention_set_bf16(1);
            else return 0;
        } else if (!strcmp(a, "--grid")) {
            if (sscanf(v, "%d,%d,%d", &o->grid[0], &o->grid[1], &o->grid[2]) != 3) return 0;
        } else return 0;
    }
    if (o->prompt_len < 0)
        o->prompt_len = o->text_len;
    return o->dim > 0 && o->heads > 0 && o->dim % o->heads == 0 && o->reps > 0 && o->text_len > 0 &&
           o->prompt_len <= o->text_len;
}

/* Runs bench/transformer_ref.py with the same settings; returns its seconds per forward (or < 0). */
static double run_reference(const bench_opts *o, int threads, double *cpu, double *rss_mb)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s bench/transformer_ref.py --dim %d --heads %d --ffn %d --layers %d --text-dim %d --in-channels %d "
             "--grid %d,%d,%d --text-len %d --prompt-len %d --threads %d --reps %d",
             o->python, o->dim, o->heads, o->ffn, o->layers, o->text_dim, o->in_ch, o->grid[0], o->grid[1],
             o->grid[2], o->text_len, o->prompt_len, threads, o->reps);
    printf("reference: %s\n", cmd);
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1.0;
    char line[512];
    double secs = -1.0;
    while (fgets(line, sizeof line, p)) {
        fputs("  | ", stdout);
        fputs(line, stdout);
        sscanf(line, "RESULT seconds %lf cpu_seconds %lf peak_rss_mb %lf", &secs, cpu, rss_mb);
    }
    pclose(p);
    return secs;
}

int main(int argc, char **argv)
{
    bench_opts o;
    if (!parse(&o, argc, argv)) {
        fprintf(stderr, "usage: see the comment at the top of bench/transformer.c\n");
        return 2;
    }
#ifdef _OPENMP
    const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();
#else
    const int threads = 1;
#endif
    wan_error err = { 0 };
    wan_dit d;
    double t0 = now_s();
    if (!build_model(&d, &o, &err)) {
        fprintf(stderr, "bench: cannot build the model: %s\n", err.msg);
        return 1;
    }
    const int T = o.grid[0], Hl = 2 * o.grid[1], Wl = 2 * o.grid[2];
    const int64_t L = (int64_t)o.grid[0] * o.grid[1] * o.grid[2];
    const int64_t nx = (int64_t)o.in_ch * T * Hl * Wl, nc = (int64_t)o.text_len * o.text_dim;
    float *x = rand_weights(nx, 1.0f, WAN_DTYPE_F32, 9001), *ctx = rand_weights(nc, 1.0f, WAN_DTYPE_F32, 9002);
    float *out = wan_malloc((size_t)nx * sizeof(float));
    memset(ctx + (int64_t)o.prompt_len * o.text_dim, 0, (size_t)(o.text_len - o.prompt_len) * o.text_dim * 4);
    const float tstep = 875.0f;
    printf("config: dim %d, heads %d x %lld, ffn %d, layers %d, text %d x %d (prompt rows %d), tokens %lld "
           "(%d x %d x %d), weights %s, threads %d\n", o.dim, o.heads, (long long)d.hd, o.ffn, o.layers, o.text_len,
           o.text_dim, o.prompt_len, (long long)L, o.grid[0], o.grid[1], o.grid[2],
           o.dtype == WAN_DTYPE_I8   ? "q8_0 (blocks), BF16"
           : o.dtype == WAN_DTYPE_U8 ? "q4_0 (blocks), BF16"
                                     : wan_dtype_name(o.dtype),
           threads);
    printf("random weights generated in %.2f s\n", now_s() - t0);
    /* the forwards share one workspace, as the sampling loop does: the first one allocates and faults in
     * the activations, the later ones reuse them */
    wan_backend *be = NULL;
    if (wan_backend_create("cpu", threads, &be, &err) != WAN_OK) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    wan_dit_ws ws = { 0 };
    double best = INFINITY, best_cpu = 0.0;
    for (int r = 0; r < o.reps; r++) {
        t0 = now_s();
        const double c0 = cpu_s();
        const long f0 = minor_faults();
        if (wan_dit_forward_ws(&d, be, &ws, x, T, Hl, Wl, &tstep, 0, ctx, o.text_len, out, NULL, &err) != WAN_OK) {
            fprintf(stderr, "bench: forward failed: %s\n", err.msg);
            return 1;
        }
        const double dt = now_s() - t0, dc = cpu_s() - c0;
        printf("forward %d: %.3f s (%.2f CPU s), %ld minor page faults\n", r + 1, dt, dc, minor_faults() - f0);
        if (dt < best)
            best = dt, best_cpu = dc;
    }
    wan_dit_ws_free(&ws);
    wan_backend_free(be);
    double checksum = 0.0;
    for (int64_t i = 0; i < nx; i++)
        checksum += fabs(out[i]);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    const double flops = forward_flops(&d, L, o.text_len);
    const double flops_run = forward_flops(&d, L, o.prompt_len < o.text_len ? o.prompt_len + 1 : o.text_len);
    const double rss_ours = ru.ru_maxrss / 1024.0;
    printf("wan.c : %.3f s per forward (%.2f CPU s), %.1f GFLOP/s (%.1f GFLOP nominal, %.1f executed), peak RSS "
           "%.0f MiB (library heap peak %.0f MiB), mean|out| %.4g\n", best, best_cpu, flops / best * 1e-9,
           flops * 1e-9, flops_run * 1e-9, rss_ours, wan_mem_peak() / 1048576.0, checksum / (double)nx);
    fflush(stdout);
    for (int i = 0; i < g_nmats; i++)
        wan_free(g_mats[i]);
    wan_free(d.vec);
    wan_free(d.blocks);
    wan_free(x);
    wan_free(ctx);
    wan_free(out);
    if (o.ref) {
        double rss_ref = 0.0, cpu_ref = 0.0;
        double ref = run_reference(&o, threads, &cpu_ref, &rss_ref);
        if (ref > 0)
            printf("torch : %.3f s per forward (%.2f CPU s), %.1f GFLOP/s, peak RSS %.0f MiB\n"
                   "ratio : wan.c / torch = %.2f in wall time, %.2f in CPU time (%s)\n", ref, cpu_ref,
                   flops / ref * 1e-9, rss_ref, best / ref, cpu_ref > 0 ? best_cpu / cpu_ref : 0.0,
                   best < ref ? "wan.c faster" : "torch faster");
        else
            printf("torch : reference run failed\n");
    }
    return 0;
}
