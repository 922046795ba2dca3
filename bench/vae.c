/* bench/vae.c — the Wan2.1 video VAE decoder at its real width (base_dim 96, z 16): wan.c beside PyTorch
 * (bench/vae_ref.py, diffusers AutoencoderKLWan) on the same machine, weights, latent and thread count,
 * untiled and tiled; then wan.c's peak memory for two clip lengths at one size, which must not grow with
 * the number of frames (the decoder streams chunk by chunk).
 *
 *   bench/vae [--size HxW] [--frames F] [--tile PX --tile-stride PX] [--rss-size HxW] [--rss-frames A,B]
 *             [--threads N] [--dtype f32|bf16] [--no-ref] [--python PATH] [--keep DIR]
 *
 * Weights are random (deterministic), generated in-process from the parameter table
 * tools/ref/vae_params_wan21.tsv (decoder + post_quant_conv only) and written with a config.json to a
 * temporary VAE folder that both sides load. Every measurement runs in its own process (this program
 * re-executes itself with --child), so each peak RSS is that run's own. Built on wan.h only.
 * Build and run: see bench/README.md. */
#define _POSIX_C_SOURCE 200809L
#include "wan.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

typedef struct opts {
    int h, w, frames, tile, stride, rss_h, rss_w, rss_f[2], rss_tile, rss_stride, threads, ref, bf16;
    const char *python, *keep;
} opts;

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
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

/* Deterministic uniform in [-1, 1). */
static float urand(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) * (2.0f / 16777216.0f) - 1.0f;
}

static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* ---- the VAE folder ------------------------------------------------------------------------------ */

static int write_vae(const char *dir, int bf16)
{
    FILE *f = fopen("tools/ref/vae_params_wan21.tsv", "r");
    if (!f) {
        fprintf(stderr, "bench/vae: run from the repository root (tools/ref/vae_params_wan21.tsv)\n");
        return 0;
    }
    wan_host_tensor *ts = calloc(256, sizeof *ts);
    int n = 0;
    char line[512];
    uint32_t seed = 12345;
    while (fgets(line, sizeof line, f) && n < 256) {
        char name[160], shape[64], orig[160];
        if (line[0] == '#' || sscanf(line, "%159s %63s %159s", name, shape, orig) != 3 ||
            (strncmp(name, "decoder.", 8) && strcmp(name, "post_quant_conv.weight") && strcmp(name, "post_quant_conv.bias")))
            continue;
        wan_host_tensor *t = &ts[n++];
        snprintf(t->name, sizeof t->name, "%s", name);
        t->dtype = bf16 ? WAN_DTYPE_BF16 : WAN_DTYPE_F32;
        for (char *s = shape; *s && t->ndim < WAN_HOST_MAX_DIMS; t->ndim++) {
            t->shape[t->ndim] = strtoll(s, &s, 10);
            if (*s == 'x')
                s++;
        }
        int64_t numel = wan_host_tensor_numel(t), fan_in = t->ndim >= 2 ? numel / t->shape[0] : 1;
        int gamma = strstr(name, ".gamma") != NULL;
        float amp = gamma ? 0.1f : t->ndim >= 2 ? 0.5f * sqrtf(3.0f / (float)fan_in) : 0.02f;
        t->data = malloc((size_t)numel * 4);
        for (int64_t i = 0; i < numel; i++) {
            float v = (gamma ? 1.0f : 0.0f) + amp * urand(&seed);
            if (bf16)
                ((uint16_t *)t->data)[i] = to_bf16(v);
            else
                ((float *)t->data)[i] = v;
        }
    }
    fclose(f);
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    int ok = n == 108 && wan_safetensors_write(path, ts, n, err, sizeof err) == WAN_OK;
    if (!ok)
        fprintf(stderr, "bench/vae: writing %d weight tensors failed: %s\n", n, n == 108 ? err : "expected 108");
    for (int i = 0; i < n; i++)
        free(ts[i].data);
    free(ts);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *c = fopen(path, "w");
    if (!c)
        return 0;
    fprintf(c, "{\"_class_name\": \"AutoencoderKLWan\", \"base_dim\": 96, \"z_dim\": 16, \"dim_mult\": [1, 2, 4, 4],\n"
               " \"num_res_blocks\": 2, \"attn_scales\": [], \"temperal_downsample\": [false, true, true],\n"
               " \"dropout\": 0.0}\n");
    fclose(c);
    return ok;
}

/* z [1, 16, 1+(F-1)/4, H/8, W/8], roughly standard normal. */
static int write_z(const char *path, int frames, int h, int w)
{
    wan_host_tensor z = { .dtype = WAN_DTYPE_F32, .ndim = 5, .shape = { 1, 16, 1 + (frames - 1) / 4, h / 8, w / 8 } };
    snprintf(z.name, sizeof z.name, "z");
    int64_t n = wan_host_tensor_numel(&z);
    float *d = malloc((size_t)n * 4);
    uint32_t s = 777;
    for (int64_t i = 0; i < n; i++)
        d[i] = 0.866f * (urand(&s) + urand(&s) + urand(&s) + urand(&s));
    z.data = d;
    char err[512];
    int ok = wan_safetensors_write(path, &z, 1, err, sizeof err) == WAN_OK;
    free(d);
    return ok;
}

/* Nominal multiply-adds of one Wan2.1 decode (every tap of every conv, the mid attention), for GFLOP/s. */
static double decoder_macs(int T, int h, int w)
{
    const double S = (double)h * w, C = 384;
    double total = 0;
    for (int k = 0; k < T; k++) {
        int f2 = k ? 2 : 1, f4 = k ? 4 : 1;
        double m = 16 * C * 27 * S;                          /* conv_in            */
        m += 4 * C * C * 27 * S + 4 * C * C * S + 2 * S * S * C; /* mid: 4 convs, attn */
        m += 6 * C * C * 27 * S;                             /* up_blocks.0        */
        if (k)
            m += C * 2 * C * 3 * S;                          /* time_conv          */
        m += C * 192 * 9 * 4 * S * f2;                       /* resample -> 192    */
        m += (192 * C * 27 + C * C * 27 + 192 * C + 4 * C * C * 27) * 4 * S * f2; /* up_blocks.1 */
        if (k)
            m += C * 2 * C * 3 * 4 * S * 2;                 /* time_conv @4S, 2 f */
        m += C * 192 * 9 * 16 * S * f4;                      /* resample -> 192    */
        m += 6 * 192.0 * 192 * 27 * 16 * S * f4;             /* up_blocks.2        */
        m += 192 * 96 * 9 * 64 * S * f4;                     /* resample -> 96     */
        m += 6 * 96.0 * 96 * 27 * 64 * S * f4;               /* up_blocks.3        */
        m += 96 * 3 * 27 * 64 * S * f4;                      /* conv_out           */
        total += m;
    }
    return total;
}

/* ---- one measured run in a child process --------------------------------------------------------- */

typedef struct frame_check {
    const float *ref; /* [1, 3, F, H, W] or NULL */
    int F;
    double sum, max_diff;
    int n;
} frame_check;

static int on_frame(int b, int f, const float *rgb, int h, int w, void *user)
{
    frame_check *c = user;
    size_t hw = (size_t)h * w;
    (void)b;
    for (int ch = 0; ch < 3; ch++)
        for (size_t i = 0; i < hw; i++) {
            float v = rgb[ch * hw + i];
            c->sum += v;
            if (c->ref) {
                double d = fabs((double)v - c->ref[((size_t)ch * c->F + f) * hw + i]);
                c->max_diff = d > c->max_diff ? d : c->max_diff;
            }
        }
    c->n++;
    return 0;
}

static int child(const char *model, const char *zpath, const char *refpath, int tiled, int tile, int stride,
                 int threads)
{
    char err[1024];
    wan_model_t *m = NULL;
    wan_host_tensor z = { 0 }, ref = { 0 };
    if (wan_model_load(model, NULL, &m, err, sizeof err) != WAN_OK ||
        wan_safetensors_read(zpath, "z", WAN_DTYPE_F32, &z, err, sizeof err) != WAN_OK ||
        (refpath && wan_safetensors_read(refpath, "sample", WAN_DTYPE_F32, &ref, err, sizeof err) != WAN_OK)) {
        fprintf(stderr, "bench/vae child: %s\n", err);
        return 1;
    }
    wan_vae_params p = wan_vae_default_params();
    p.n_threads = threads, p.tiled = tiled;
    p.tile_sample_min_height = p.tile_sample_min_width = tile;
    p.tile_sample_stride_height = p.tile_sample_stride_width = stride;
    frame_check fc = { .ref = ref.data, .F = 1 + 4 * (int)(z.shape[2] - 1) };
    wan_mem_reset_peak();
    double t0 = now_s(), c0 = cpu_s();
    wan_status rc = wan_vae_decode_frames(m, &z, &p, on_frame, &fc, err, sizeof err);
    double dt = now_s() - t0, dc = cpu_s() - c0;
    if (rc != WAN_OK) {
        fprintf(stderr, "bench/vae child: %s\n", err);
        return 1;
    }
    printf("RESULT seconds %.3f cpu %.3f peak_rss_mb %.1f heap_peak_mb %.1f frames %d max_diff %.3g\n", dt, dc,
           peak_rss_mb(), wan_mem_peak() / 1048576.0, fc.n, refpath ? fc.max_diff : -1.0);
    wan_host_tensor_free(&z);
    wan_host_tensor_free(&ref);
    wan_model_free(m);
    return 0;
}

typedef struct result {
    double seconds, cpu, rss, heap, diff;
    int ok;
} result;

static result run_cmd(const char *cmd)
{
    result r = { 0 };
    FILE *p = popen(cmd, "r");
    char line[512];
    while (p && fgets(line, sizeof line, p)) {
        int frames;
        if (sscanf(line, "RESULT seconds %lf cpu %lf peak_rss_mb %lf heap_peak_mb %lf frames %d max_diff %lf",
                   &r.seconds, &r.cpu, &r.rss, &r.heap, &frames, &r.diff) >= 3)
            r.ok = 1;
        else
            fputs(line, stdout);
    }
    if (!p || pclose(p) != 0)
        r.ok = 0;
    if (!r.ok)
        fprintf(stderr, "bench/vae: failed: %s\n", cmd);
    return r;
}

static result run_ours(const char *self, const char *dir, const char *z, const char *ref, int tiled, int tile,
                       int stride, const opts *o)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' --child --model '%s' --z '%s'%s%s%s --tiled %d --tile %d --tile-stride %d --threads %d",
             self, dir, z, ref ? " --ref '" : "", ref ? ref : "", ref ? "'" : "", tiled, tile, stride, o->threads);
    return run_cmd(cmd);
}

static result run_torch(const char *dir, const char *z, const char *out, int tiled, const opts *o)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' bench/vae_ref.py --model '%s' --z '%s' --threads %d%s --tile %d --tile-stride %d%s%s%s",
             o->python, dir, z, o->threads, tiled ? " --tiled" : "", o->tile, o->stride, out ? " --out '" : "",
             out ? out : "", out ? "'" : "");
    return run_cmd(cmd);
}

static void parse_size(const char *s, int *h, int *w)
{
    if (sscanf(s, "%dx%d", h, w) != 2)
        *h = *w = atoi(s);
}

static int parse_opts(int argc, char **argv, opts *o)
{
    *o = (opts){ .h = 256, .w = 256, .frames = 5, .tile = 128, .stride = 96, .rss_h = 64, .rss_w = 64,
                 .rss_f = { 17, 33 }, .rss_tile = 32, .rss_stride = 24, .threads = 2, .ref = 1,
                 .python = "tools/ref/.venv/bin/python" };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--no-ref")) { o->ref = 0; continue; }
        if (!strcmp(a, "--size")) parse_size(v, &o->h, &o->w);
        else if (!strcmp(a, "--frames")) o->frames = atoi(v);
        else if (!strcmp(a, "--tile")) o->tile = atoi(v);
        else if (!strcmp(a, "--tile-stride")) o->stride = atoi(v);
        else if (!strcmp(a, "--rss-size")) parse_size(v, &o->rss_h, &o->rss_w);
        else if (!strcmp(a, "--rss-frames")) sscanf(v, "%d,%d", &o->rss_f[0], &o->rss_f[1]);
        else if (!strcmp(a, "--rss-tile")) o->rss_tile = atoi(v);
        else if (!strcmp(a, "--rss-tile-stride")) o->rss_stride = atoi(v);
        else if (!strcmp(a, "--threads")) o->threads = atoi(v);
        else if (!strcmp(a, "--dtype")) o->bf16 = !strcmp(v, "bf16");
        else if (!strcmp(a, "--python")) o->python = v;
        else if (!strcmp(a, "--keep")) o->keep = v;
        else {
            fprintf(stderr, "usage: bench/vae [--size HxW] [--frames F] [--tile PX] [--tile-stride PX] [--rss-size HxW]\n"
                            "                 [--rss-frames A,B] [--rss-tile PX] [--rss-tile-stride PX] [--threads N]\n"
                            "                 [--dtype f32|bf16] [--no-ref] [--python PATH] [--keep DIR]\n");
            return 0;
        }
        i++;
    }
    o->frames = 1 + 4 * ((o->frames - 1) / 4);
    return o->h % 8 == 0 && o->w % 8 == 0 && o->rss_h % 8 == 0 && o->rss_w % 8 == 0 && o->frames >= 1;
}

static int child_main(int argc, char **argv)
{
    const char *model = NULL, *z = NULL, *ref = NULL;
    int tiled = 0, tile = 256, stride = 192, threads = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--z")) z = argv[i + 1];
        else if (!strcmp(argv[i], "--ref")) ref = argv[i + 1];
        else if (!strcmp(argv[i], "--tiled")) tiled = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--tile")) tile = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--tile-stride")) stride = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
    }
    return model && z ? child(model, z, ref, tiled, tile, stride, threads) : 2;
}

static void row(const char *what, result ours, result ref, double gflop)
{
    printf("%s\n  wan.c %8.2f s wall, %8.2f s CPU", what, ours.seconds, ours.cpu);
    if (gflop > 0)
        printf(" (%5.1f GFLOP/s)", gflop / ours.seconds);
    printf("  peak RSS %7.1f MB (library heap %6.1f MB)\n", ours.rss, ours.heap);
    if (ref.ok)
        printf("  torch %8.2f s wall, %8.2f s CPU%s  peak RSS %7.1f MB\n  ratio wan.c/torch: wall %.2fx, CPU %.2fx;"
               " max |wan.c - torch| %.2g\n", ref.seconds, ref.cpu, gflop > 0 ? "                  " : "", ref.rss,
               ours.seconds / ref.seconds, ours.cpu / ref.cpu, ours.diff);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--child"))
        return child_main(argc, argv);
    opts o;
    if (!parse_opts(argc, argv, &o))
        return 2;
    char dir[256] = "/tmp/wan_bench_vae_XXXXXX", z[300], zr[2][300], ref[300], ref_t[300];
    if (o.keep)
        snprintf(dir, sizeof dir, "%s", o.keep);
    else if (!mkdtemp(dir))
        return 1;
    printf("wan.c %s, %d threads, %s weights; Wan2.1 VAE decoder (base_dim 96, z 16), random weights in %s\n",
           wan_version(), o.threads, o.bf16 ? "BF16" : "F32", dir);
    if (!write_vae(dir, o.bf16))
        return 1;
    snprintf(z, sizeof z, "%s/z.safetensors", dir);
    snprintf(ref, sizeof ref, "%s/torch_sample.safetensors", dir);
    snprintf(ref_t, sizeof ref_t, "%s/torch_sample_tiled.safetensors", dir);
    if (!write_z(z, o.frames, o.h, o.w))
        return 1;
    const int T = 1 + (o.frames - 1) / 4;
    const double gflop = 2e-9 * decoder_macs(T, o.h / 8, o.w / 8);
    printf("clip %d frames %dx%d (latent %dx%dx%d), %.0f GFLOP nominal; tiles %d px, stride %d px\n", o.frames,
           o.h, o.w, T, o.h / 8, o.w / 8, gflop, o.tile, o.stride);
    result none = { 0 };
    result tu = o.ref ? run_torch(dir, z, ref, 0, &o) : none;
    result tt = o.ref ? run_torch(dir, z, ref_t, 1, &o) : none;
    result ou = run_ours(argv[0], dir, z, tu.ok ? ref : NULL, 0, o.tile, o.stride, &o);
    result ot = run_ours(argv[0], dir, z, tt.ok ? ref_t : NULL, 1, o.tile, o.stride, &o);
    row("decode, untiled", ou, tu, gflop);
    row("decode, tiled", ot, tt, 0);
    printf("peak memory vs clip length at %dx%d, wan.c streaming frames out (tiled: %d px tiles, stride %d px):\n",
           o.rss_h, o.rss_w, o.rss_tile, o.rss_stride);
    for (int k = 0; k < 2; k++) {
        snprintf(zr[k], sizeof zr[k], "%s/z_rss%d.safetensors", dir, k);
        if (!write_z(zr[k], o.rss_f[k], o.rss_h, o.rss_w))
            return 1;
    }
    for (int tiled = 0; tiled < 2; tiled++)
        for (int k = 0; k < 2; k++) {
            result r = run_ours(argv[0], dir, zr[k], NULL, tiled, o.rss_tile, o.rss_stride, &o);
            char what[64];
            snprintf(what, sizeof what, "%d frames%s", o.rss_f[k], tiled ? ", tiled" : "");
            printf("  %-18s %8.2f s  peak RSS %7.1f MB  library heap peak %7.1f MB\n", what, r.seconds, r.rss,
                   r.heap);
        }
    if (!o.keep) {
        const char *files[] = { "diffusion_pytorch_model.safetensors", "config.json", "z.safetensors",
                                "torch_sample.safetensors", "torch_sample_tiled.safetensors",
                                "z_rss0.safetensors", "z_rss1.safetensors" };
        char p[512];
        for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
            snprintf(p, sizeof p, "%s/%s", dir, files[i]);
            unlink(p);
        }
        rmdir(dir);
    }
    return 0;
}
