/* cmd_generate.c — `wan generate`: prompt in, video file out, with a progress bar on stderr. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char k_usage[] =
    "usage: wan generate --model DIR (--prompt TEXT | --prompt-file FILE | --prompt-embeds IN.safetensors)\n"
    "                    [--negative-prompt TEXT] [--size WxH] [--frames N] [--steps N] [--cfg X] [--cfg2 X]\n"
    "                    [--shift X] [--sampler unipc|euler|dpm++] [--seed N] [--fps N] [--crf N]\n"
    "                    [-o OUT] [--latents IN.safetensors] [--dump-steps OUT.safetensors] [--threads N]\n"
    "                    [--lora FILE[:STRENGTH][@high|@low|@both]]... [--lora-mode runtime|merge|merge-f32]\n"
    "                    [--device cpu|cuda|cuda:N] [--quiet]\n"
    "\n"
    "OUT by extension: .mp4 (H.264), .webm (VP9), .webp, .gif, .safetensors (`frames` U8 [F,H,W,3]),\n"
    "no extension: a folder of PNG frames. Default: out.mp4. A JSON sidecar OUT.json records the run.\n"
    "--negative-prompt \"\" gives an empty negative prompt (diffusers' default); without the flag the\n"
    "official Wan negative prompt is used. --cfg sets the high-noise expert's scale, --cfg2 the low-noise one.\n"
    "--lora adds an adapter (diffusers/PEFT, original/ComfyUI or kohya keys) at STRENGTH (default 1) to the\n"
    "high-noise expert (default, as diffusers' load_lora_weights), the low-noise one or both; repeatable.\n"
    "--lora-mode runtime (default) adds the low-rank terms on the fly; merge/merge-f32 merge them into copies\n"
    "of the weights. Lightning-style distilled LoRAs: --steps 4 --cfg 1 --sampler euler --shift 5.\n"
    "--device runs the transformer and the sampler on the CPU (default) or a GPU (a `make cuda` build; one\n"
    "expert resident at a time; LoRAs must be merged there); text encoding and decoding stay on the CPU.\n"
    "Environment: WAN_CPU_GEMM=bf16 runs the CPU's projections (and, with AMX, its attention) as bf16 products\n"
    "on a CPU with AMX or AVX512-BF16 (`wan info` says which): faster, ~3 significant digits; off by default.\n";

static wan_ctx_t *volatile g_ctx;
static volatile sig_atomic_t g_interrupted;

/* The first Ctrl-C asks the run to stop at the next step (exit 130, no output written); the handler is
 * installed with SA_RESETHAND, so a second one kills the process. */
static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
    if (g_ctx)
        wan_ctx_cancel(g_ctx);
}

static void catch_sigint(int on)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on ? on_sigint : SIG_DFL;
    sa.sa_flags = on ? SA_RESETHAND : 0;
    sigaction(SIGINT, &sa, NULL);
}

typedef struct bar_state {
    int quiet;
    int tty;
} bar_state;

static int progress_bar(const wan_progress *p, void *user)
{
    bar_state *b = user;
    if (b->quiet)
        return g_interrupted; /* also catches a Ctrl-C that came before wan_generate cleared its flag */
    static const char *stage[] = { "text", "denoise", "decode", "done" };
    char eta[32] = "?";
    if (p->eta_s >= 0)
        snprintf(eta, sizeof eta, "%dm%02ds", (int)p->eta_s / 60, (int)p->eta_s % 60);
    int width = 30, fill = p->n_steps ? p->step * width / p->n_steps : 0;
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "%s%-7s [%s] %d/%d  %.2f s/step  ETA %s%s%s", b->tty ? "\r" : "", stage[p->stage], bar,
            p->step, p->n_steps, p->step_s, eta,
            p->expert == 0 ? "  expert: high-noise" : p->expert == 1 ? "  expert: low-noise " : "",
            b->tty ? "" : "\n");
    if (b->tty && p->step == p->n_steps)
        fputc('\n', stderr);
    fflush(stderr);
    return g_interrupted;
}

/* Steps dumped by --dump-steps. */
typedef struct dump_state {
    int n;
    wan_host_tensor *t;   /* initial_latents, then latents_step_{i} */
    double *timesteps, *sigmas;
    int cap;
    int failed;
} dump_state;

static void on_step(int step, double timestep, double sigma, const float *latents, int64_t n, void *user)
{
    dump_state *d = user;
    if (d->failed)
        return;
    if (d->n == d->cap) {
        int cap = d->cap ? 2 * d->cap : 16;
        wan_host_tensor *t = realloc(d->t, sizeof *t * (size_t)cap);
        double *ts = realloc(d->timesteps, sizeof *ts * (size_t)cap);
        double *sg = realloc(d->sigmas, sizeof *sg * (size_t)cap);
        if (t)
            d->t = t;
        if (ts)
            d->timesteps = ts;
        if (sg)
            d->sigmas = sg;
        if (!t || !ts || !sg) {
            d->failed = 1;
            return;
        }
        d->cap = cap;
    }
    wan_host_tensor *t = &d->t[d->n];
    memset(t, 0, sizeof *t);
    if (step < 0)
        snprintf(t->name, sizeof t->name, "initial_latents");
    else
        snprintf(t->name, sizeof t->name, "latents_step_%d", step);
    t->dtype = WAN_DTYPE_F32;
    t->ndim = 1;
    t->shape[0] = n;
    t->data = malloc(sizeof(float) * (size_t)n);
    if (!t->data) {
        d->failed = 1;
        return;
    }
    memcpy(t->data, latents, sizeof(float) * (size_t)n);
    d->timesteps[d->n] = timestep;
    d->sigmas[d->n] = sigma;
    d->n++;
}

static int parse_int(const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < -2147483647L || v > 2147483647L)
        return 0;
    *out = (int)v;
    return 1;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return !errno && !*end && end != s;
}

/* Reads a UTF-8 text file (the prompt); rejects invalid UTF-8 with the byte offset. */
static char *read_prompt_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    int c;
    while (buf && (c = fgetc(f)) != EOF) {
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
        buf[n++] = (char)c;
    }
    fclose(f);
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    buf[n] = 0;
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = 0;
    size_t bad = cli_utf8_invalid_at(buf, n);
    if (bad != (size_t)-1) {
        snprintf(err, errlen, "%s: not valid UTF-8 (byte %zu)", path, bad);
        free(buf);
        return NULL;
    }
    return buf;
}

typedef struct gen_args {
    const char *model, *prompt, *prompt_file, *negative, *out, *latents, *embeds, *dump;
    int have_negative, quiet, crf, fps, frames_given, steps_given;
    wan_generate_params p;
    cli_loras loras;
} gen_args;

/* One option of `wan generate` (cli_parse_opts): 1 taken, 0 bad value, -1 unknown. */
static int set_opt(const char *k, const char *v, void *user)
{
    gen_args *a = user;
    int ok = 1;
    if (!strcmp(k, "--model")) a->model = v;
    else if (!strcmp(k, "--prompt")) a->prompt = v;
    else if (!strcmp(k, "--prompt-file")) a->prompt_file = v;
    else if (!strcmp(k, "--negative-prompt")) a->negative = v, a->have_negative = 1;
    else if (!strcmp(k, "-o") || !strcmp(k, "--output")) a->out = v;
    else if (!strcmp(k, "--latents")) a->latents = v;
    else if (!strcmp(k, "--prompt-embeds")) a->embeds = v;
    else if (!strcmp(k, "--dump-steps")) a->dump = v;
    else if (!strcmp(k, "--size")) ok = sscanf(v, "%dx%d", &a->p.width, &a->p.height) == 2 && a->p.width > 0 && a->p.height > 0;
    else if (!strcmp(k, "--frames")) ok = parse_int(v, &a->p.num_frames), a->frames_given = 1;
    else if (!strcmp(k, "--steps")) ok = parse_int(v, &a->p.steps), a->steps_given = 1;
    else if (!strcmp(k, "--cfg")) ok = parse_double(v, &a->p.guidance_scale) && a->p.guidance_scale >= 0;
    else if (!strcmp(k, "--cfg2")) ok = parse_double(v, &a->p.guidance_scale_2) && a->p.guidance_scale_2 >= 0;
    else if (!strcmp(k, "--shift")) ok = parse_double(v, &a->p.shift) && a->p.shift > 0;
    else if (!strcmp(k, "--threads")) ok = parse_int(v, &a->p.n_threads) && a->p.n_threads >= 0;
    else if (!strcmp(k, "--fps")) ok = parse_int(v, &a->fps) && a->fps > 0;
    else if (!strcmp(k, "--crf")) ok = parse_int(v, &a->crf) && a->crf >= 0 && a->crf <= 51;
    else if (!strcmp(k, "--lora")) ok = cli_lora_add(&a->loras, v);
    else if (!strcmp(k, "--lora-mode")) ok = cli_lora_mode(v, &a->p.lora_mode);
    else if (!strcmp(k, "--device")) a->p.device = v, ok = *v != 0;
    else if (!strcmp(k, "--seed")) {
        char *end;
        errno = 0;
        a->p.seed = strtoull(v, &end, 10);
        ok = !errno && !*end && end != v && v[0] != '-';
    } else if (!strcmp(k, "--sampler")) {
        if (!strcmp(v, "unipc")) a->p.sampler = WAN_SCHEDULER_UNIPC;
        else if (!strcmp(v, "euler")) a->p.sampler = WAN_SCHEDULER_EULER;
        else if (!strcmp(v, "dpm++") || !strcmp(v, "dpmpp")) a->p.sampler = WAN_SCHEDULER_DPMPP;
        else ok = 0;
    } else
        return -1;
    return ok;
}

/* Parses argv into a; returns 0 on success, 1 after --help, 2 on bad usage (message printed). */
static int parse_args(int argc, char **argv, gen_args *a)
{
    const int r = cli_parse_opts(argc, argv, "wan generate", k_usage, &a->quiet, set_opt, a);
    if (r)
        return r;
    if (!a->model) {
        fprintf(stderr, "wan generate: --model is required\n\n%s", k_usage);
        return 2;
    }
    if (a->p.num_frames < 0 || (a->p.num_frames == 0 && a->frames_given)) {
        fprintf(stderr, "wan generate: --frames %d: at least 1 frame is needed\n", a->p.num_frames);
        return 2;
    }
    if (a->p.steps < 0 || (a->p.steps == 0 && a->steps_given)) {
        fprintf(stderr, "wan generate: --steps %d: at least 1 step is needed\n", a->p.steps);
        return 2;
    }
    if (!a->prompt && !a->prompt_file && !a->embeds) {
        fprintf(stderr, "wan generate: give --prompt, --prompt-file or --prompt-embeds\n");
        return 2;
    }
    if ((a->prompt != NULL) + (a->prompt_file != NULL) + (a->embeds != NULL) > 1) {
        fprintf(stderr, "wan generate: give only one of --prompt, --prompt-file and --prompt-embeds\n");
        return 2;
    }
    return 0;
}

/* Fails early (before minutes of compute) when the output cannot be written. */
static int output_writable(const char *out, char *err, size_t errlen)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", out);
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = 0;
    else
        snprintf(dir, sizeof dir, ".");
    if (access(dir, W_OK) != 0) {
        snprintf(err, errlen, "cannot write '%.1000s': folder '%.1000s': %s", out, dir, strerror(errno));
        return 0;
    }
    return 1;
}

static int write_dump(const char *path, dump_state *d, const wan_video *v, char *err, size_t errlen)
{
    if (d->failed) {
        snprintf(err, errlen, "out of memory collecting the steps");
        return 0;
    }
    wan_host_tensor *t = calloc((size_t)d->n + 2, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return 0;
    }
    for (int i = 0; i < d->n; i++) {
        t[i] = d->t[i];
        t[i].ndim = 5;
        memcpy(t[i].shape, v->latents_shape, sizeof v->latents_shape);
    }
    t[d->n] = (wan_host_tensor){ .name = "timesteps", .dtype = WAN_DTYPE_F32, .ndim = 1,
                                 .shape = { v->n_steps }, .data = v->timesteps };
    t[d->n + 1] = (wan_host_tensor){ .name = "sigmas", .dtype = WAN_DTYPE_F32, .ndim = 1,
                                     .shape = { v->n_steps + 1 }, .data = v->sigmas };
    wan_status rc = wan_safetensors_write(path, t, d->n + 2, err, errlen);
    free(t);
    return rc == WAN_OK;
}

static const char *const k_samplers[] = { "unipc", "euler", "dpm++" };

static char *sidecar_json(const gen_args *a, const wan_video *v, const char *prompt)
{
    char buf[8192];
    char *esc_p = cli_json_escape(prompt ? prompt : "");
    char *esc_n = cli_json_escape(a->have_negative ? a->negative : wan_default_negative_prompt());
    char *esc_m = cli_json_escape(a->model);
    snprintf(buf, sizeof buf,
             "{\n  \"wan_version\": \"%s\",\n  \"model\": \"%s\",\n  \"prompt\": \"%s\",\n  \"negative_prompt\": \"%s\",\n"
             "  \"prompt_embeds\": %s%s%s,\n  \"latents\": %s%s%s,\n"
             "  \"width\": %d,\n  \"height\": %d,\n  \"num_frames\": %d,\n  \"fps\": %d,\n  \"steps\": %d,\n"
             "  \"high_noise_steps\": %d,\n  \"guidance_scale\": %g,\n  \"guidance_scale_2\": %g,\n"
             "  \"shift\": %g,\n  \"sampler\": \"%s\",\n  \"seed\": %llu,\n  \"timings\": {\"text_s\": %.3f, "
             "\"denoise_s\": %.3f, \"decode_s\": %.3f},\n  \"peak_bytes\": %zu\n}\n",
             wan_version(), esc_m ? esc_m : "", esc_p ? esc_p : "", esc_n ? esc_n : "",
             a->embeds ? "\"" : "", a->embeds ? a->embeds : "null", a->embeds ? "\"" : "",
             a->latents ? "\"" : "", a->latents ? a->latents : "null", a->latents ? "\"" : "", v->width, v->height,
             v->num_frames, a->fps ? a->fps : v->fps, v->n_steps, v->n_high_steps, v->guidance_scale,
             v->guidance_scale_2, v->shift, k_samplers[v->sampler], (unsigned long long)v->seed, v->seconds_text,
             v->seconds_denoise, v->seconds_decode, v->peak_bytes);
    free(esc_p);
    free(esc_n);
    free(esc_m);
    return strdup(buf);
}

static int run_generate(gen_args *a, wan_model_t *m, char *prompt_text)
{
    char err[2048] = "";
    wan_host_tensor lat = { 0 }, pe = { 0 }, ne = { 0 };
    dump_state dump = { 0 };
    bar_state bar = { a->quiet, isatty(2) };
    wan_video v = { 0 };
    wan_ctx_t *ctx = NULL;
    int code = 1;
    wan_status rc = WAN_OK;
    if (a->latents && (rc = wan_safetensors_read(a->latents, "latents", WAN_DTYPE_F32, &lat, err, sizeof err)))
        goto fail;
    if (a->embeds) {
        if ((rc = wan_safetensors_read(a->embeds, "prompt_embeds", WAN_DTYPE_F32, &pe, err, sizeof err)))
            goto fail;
        if (wan_safetensors_read(a->embeds, "negative_prompt_embeds", WAN_DTYPE_F32, &ne, err, sizeof err) == WAN_OK)
            a->p.negative_prompt_embeds = &ne;
        a->p.prompt_embeds = &pe;
    }
    if (a->latents)
        a->p.latents = &lat;
    a->p.prompt = prompt_text;
    a->p.loras = a->loras.use;
    a->p.n_loras = a->loras.n;
    a->p.negative_prompt = a->have_negative ? a->negative : NULL;
    a->p.progress = progress_bar;
    a->p.progress_user = &bar;
    if (a->dump) {
        a->p.on_step = on_step;
        a->p.step_user = &dump;
    }
    if ((rc = wan_ctx_new(m, &ctx, err, sizeof err)) != WAN_OK)
        goto fail;
    g_ctx = ctx;
    catch_sigint(1);
    rc = wan_generate(ctx, &a->p, &v);
    g_ctx = NULL;
    if (rc == WAN_OK && g_interrupted) /* Ctrl-C after the last check inside the library */
        rc = WAN_ERR_CANCELLED;
    if (rc != WAN_OK) {
        snprintf(err, sizeof err, "%s", wan_ctx_errmsg(ctx));
        code = rc == WAN_ERR_CANCELLED ? 130 : cli_exit_code(rc);
        goto fail;
    }
    if (a->dump && !write_dump(a->dump, &dump, &v, err, sizeof err)) {
        rc = WAN_ERR_IO;
        goto fail;
    }
    wan_video_options vo = wan_video_default_options();
    if (a->crf >= 0)
        vo.crf = a->crf;
    if ((rc = wan_video_write(a->out, v.frames, v.num_frames, v.height, v.width, a->fps ? a->fps : v.fps, &vo, err,
                              sizeof err)) != WAN_OK)
        goto fail;
    char *json = cli_lora_sidecar(&a->loras, sidecar_json(a, &v, prompt_text));
    if (json && (rc = wan_video_write_sidecar(a->out, json, err, sizeof err)) != WAN_OK) {
        free(json);
        goto fail;
    }
    free(json);
    fprintf(stderr, "wrote %s: %d frames %dx%d at %d fps (text %.2f s, denoise %.2f s, decode %.2f s, peak %.1f MiB)\n",
            a->out, v.num_frames, v.width, v.height, a->fps ? a->fps : v.fps, v.seconds_text, v.seconds_denoise,
            v.seconds_decode, (double)v.peak_bytes / 1048576.0);
    code = 0;
fail:
    catch_sigint(0);
    if (code)
        fprintf(stderr, "wan generate: %s\n", err[0] ? err : wan_status_str(rc));
    for (int i = 0; i < dump.n; i++)
        free(dump.t[i].data);
    free(dump.t);
    free(dump.timesteps);
    free(dump.sigmas);
    wan_video_free(&v);
    wan_ctx_free(ctx);
    wan_host_tensor_free(&lat);
    wan_host_tensor_free(&pe);
    wan_host_tensor_free(&ne);
    return code;
}

int cmd_generate(int argc, char **argv)
{
    gen_args a = { 0 };
    a.p = wan_generate_default_params(NULL);
    a.crf = -1;
    a.out = "out.mp4";
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc == 1 ? 0 : rc;
    char err[2048];
    if (!output_writable(a.out, err, sizeof err)) {
        fprintf(stderr, "wan generate: %s\n", err);
        return 1;
    }
    char *prompt = NULL;
    if (a.prompt_file && !(prompt = read_prompt_file(a.prompt_file, err, sizeof err))) {
        fprintf(stderr, "wan generate: %s\n", err);
        return 2;
    }
    if (a.prompt) {
        size_t bad = cli_utf8_invalid_at(a.prompt, strlen(a.prompt));
        if (bad != (size_t)-1) {
            fprintf(stderr, "wan generate: --prompt is not valid UTF-8 (byte %zu)\n", bad);
            return 2;
        }
        prompt = strdup(a.prompt);
    }
    wan_model_t *m = NULL;
    wan_status st = wan_model_load(a.model, NULL, &m, err, sizeof err);
    if (st != WAN_OK) {
        fprintf(stderr, "wan generate: %s\n", err);
        free(prompt);
        return cli_exit_code(st);
    }
    int code = run_generate(&a, m, prompt);
    wan_model_free(m);
    free(prompt);
    return code;
}
