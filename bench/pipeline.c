/* bench/pipeline.c — one whole text-to-video generation on a tiny model: wan.c's wan_generate beside diffusers'
 * WanPipeline (bench/pipeline_ref.py, its own process), same model folder, prompt, size, frames, steps, guidance,
 * seed and threads. Prints each side's load and generation time (wall and CPU), peak RSS, the ratios, and the
 * largest difference between the two sets of frames (the seeds give the same initial noise on both sides).
 *
 *   build/bench/pipeline [--model DIR] [--size WxH] [--frames F] [--steps N] [--guidance G] [--seed S]
 *                        [--threads T] [--no-ref] [--python PATH]
 *
 * Defaults: tests/fixtures/tiny-wan22-t2v, 128x128, 17 frames, 4 steps, guidance 5 (two transformer passes a
 * step), seed 42, all OpenMP threads. Run from the repository root. */
#define _POSIX_C_SOURCE 200809L
#include "bench.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct opts {
    const char *model, *python, *prompt;
    int width, height, frames, steps, threads, seed, ref;
    double guidance;
} opts;

static int parse(opts *o, int argc, char **argv)
{
    *o = (opts){ "tests/fixtures/tiny-wan22-t2v", "tools/ref/.venv/bin/python",
                 "a red circle moves over the green grass", 128, 128, 17, 4, bench_max_threads(), 42, 1, 5.0 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-ref")) { o->ref = 0; continue; }
        if (!v) return 0;
        i++;
        if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--python")) o->python = v;
        else if (!strcmp(a, "--size")) { if (sscanf(v, "%dx%d", &o->width, &o->height) != 2) return 0; }
        else if (!strcmp(a, "--frames")) o->frames = atoi(v);
        else if (!strcmp(a, "--steps")) o->steps = atoi(v);
        else if (!strcmp(a, "--guidance")) o->guidance = atof(v);
        else if (!strcmp(a, "--seed")) o->seed = atoi(v);
        else if (!strcmp(a, "--threads")) o->threads = atoi(v);
        else return 0;
    }
    return o->threads > 0 && o->steps > 0 && o->frames > 0;
}

typedef struct ref_result { double load, secs, cpu, rss, total; } ref_result;

static int run_reference(const opts *o, const char *frames_path, ref_result *r)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s bench/pipeline_ref.py --model %s --height %d --width %d --frames %d --steps %d --guidance %g "
             "--seed %d --threads %d --frames-out %s 2>/dev/null",
             o->python, o->model, o->height, o->width, o->frames, o->steps, o->guidance, o->seed, o->threads,
             frames_path);
    printf("reference: %s\n", cmd);
    fflush(stdout);
    const double t0 = bench_now();
    FILE *p = popen(cmd, "r");
    if (!p)
        return 0;
    char line[512];
    int got = 0;
    while (fgets(line, sizeof line, p)) {
        fputs("  | ", stdout);
        fputs(line, stdout);
        got |= sscanf(line, "RESULT load_seconds %lf seconds %lf cpu_seconds %lf peak_rss_mb %lf", &r->load,
                      &r->secs, &r->cpu, &r->rss) == 4;
    }
    r->total = bench_now() - t0;
    return pclose(p) == 0 && got;
}

/* Largest |ours - ref| over the frames, or -1 when the reference file is missing or has another size. */
static int max_frame_diff(const wan_video *v, const char *path)
{
    const size_t n = (size_t)v->num_frames * v->height * v->width * 3;
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    uint8_t *buf = malloc(n + 1);
    const size_t got = buf ? fread(buf, 1, n + 1, f) : 0;
    fclose(f);
    int md = -1;
    if (got == n) {
        md = 0;
        for (size_t i = 0; i < n; i++) {
            const int d = abs((int)buf[i] - (int)v->frames[i]);
            md = d > md ? d : md;
        }
    }
    free(buf);
    return md;
}

int main(int argc, char **argv)
{
    opts o;
    if (!parse(&o, argc, argv)) {
        fprintf(stderr, "usage: see the comment at the top of bench/pipeline.c\n");
        return 2;
    }
    char err[512];
    const double t0 = bench_now(), c0 = bench_cpu();
    wan_model_params mp = wan_model_default_params();
    wan_model_t *model = NULL;
    wan_ctx_t *ctx = NULL;
    if (wan_model_load(o.model, &mp, &model, err, sizeof err) != WAN_OK ||
        wan_ctx_new(model, &ctx, err, sizeof err) != WAN_OK) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    const double load = bench_now() - t0, load_cpu = bench_cpu() - c0;
    wan_generate_params gp = wan_generate_default_params(model);
    gp.prompt = o.prompt;
    gp.negative_prompt = "";
    gp.width = o.width, gp.height = o.height, gp.num_frames = o.frames, gp.steps = o.steps;
    gp.guidance_scale = o.guidance;
    gp.seed = (uint64_t)o.seed;
    gp.n_threads = o.threads;
    wan_video v = { 0 };
    const double t1 = bench_now(), c1 = bench_cpu();
    if (wan_generate(ctx, &gp, &v) != WAN_OK) {
        fprintf(stderr, "bench: generate failed: %s\n", wan_ctx_errmsg(ctx));
        return 1;
    }
    const double secs = bench_now() - t1, cpu = bench_cpu() - c1, total = bench_now() - t0;
    const double rss = bench_rss_mb();
    printf("config: %s, %dx%d, %d frames, %d steps, guidance %g, seed %d, %d threads, kernels %s\n", o.model,
           v.width, v.height, v.num_frames, v.n_steps, o.guidance, o.seed, o.threads, wan_cpu_kernel_name());
    printf("wan.c : load %.3f s (%.2f CPU s); generate %.3f s (%.2f CPU s: text %.3f, denoise %.3f, decode %.3f "
           "s); peak RSS %.0f MiB (library heap peak %.1f MiB)\n", load, load_cpu, secs, cpu, v.seconds_text,
           v.seconds_denoise, v.seconds_decode, rss, v.peak_bytes / 1048576.0);
    fflush(stdout);
    if (o.ref) {
        char path[64];
        snprintf(path, sizeof path, "/tmp/wan_bench_frames_%d.raw", (int)getpid());
        ref_result r = { 0 };
        if (run_reference(&o, path, &r)) {
            printf("torch : load %.3f s; generate %.3f s (%.2f CPU s); peak RSS %.0f MiB; whole process %.2f s "
                   "(imports included)\n", r.load, r.secs, r.cpu, r.rss, r.total);
            printf("ratio : wan.c / diffusers = %.2f generate wall, %.2f generate CPU, %.2f load+generate wall, "
                   "%.2f whole process (wan.c %.2f s), %.2f peak RSS\n", secs / r.secs, cpu / r.cpu,
                   (load + secs) / (r.load + r.secs), total / r.total, total, rss / r.rss);
            printf("frames: max |wan.c - diffusers| = %d (of 255)\n", max_frame_diff(&v, path));
        } else {
            printf("torch : reference run failed\n");
        }
        remove(path);
    }
    wan_video_free(&v);
    wan_ctx_free(ctx);
    wan_model_free(model);
    return 0;
}
