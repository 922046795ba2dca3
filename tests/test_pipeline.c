/* test_pipeline.c — wan_generate against diffusers' WanPipeline.__call__ (tests/fixtures/pipeline, made by
 * tools/ref/dump_pipeline.py from the committed tiny folders): per-step latents, the timestep and sigma
 * tables, which expert ran each step, and the final uint8 frames; then cancellation and bad input. */
#define _XOPEN_SOURCE 700
#include "test.h"

#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

/* Latents: pipeline.md §7.7 — the C attention and GEMM accumulate in another order than torch, and the
 * difference grows through the steps and the guidance (scale up to 6); ≤ 1e-4 · max|ref| on CPU fp32. */
#define TOL_LATENTS 1e-4
/* Tables: the grids are built exactly as the reference does; only float32 rounding may differ. */
#define TOL_TABLES 1e-6
/* Frames: uint8(x·255) truncates, so a value within float rounding of a boundary may land one lower or
 * higher: ±1 (pipeline.md §7.5). */
#define TOL_FRAMES 1
#define MAX_STEPS 16

/* What wan_generate reports through its callbacks. */
typedef struct run_rec {
    float *initial;                 /* step -1 */
    float *lat[MAX_STEPS];          /* after step i */
    int n_lat;
    int64_t n;
    int experts[MAX_STEPS];         /* from the progress callback, per denoise step */
    int n_experts;
    int n_warn;                     /* warnings logged */
    char warn[512];                 /* the last one */
    int cancel_after;               /* progress: cancel after this denoise step (0: never) */
    int cancel_in_decode;           /* progress: cancel at the first decode report */
    wan_ctx_t *ctx_to_cancel;       /* progress: call wan_ctx_cancel on it instead of returning 1 */
} run_rec;

static void rec_step(int step, double timestep, double sigma, const float *latents, int64_t n, void *user)
{
    run_rec *r = user;
    (void)timestep, (void)sigma;
    float *copy = malloc(sizeof(float) * (size_t)n);
    if (!copy)
        return;
    memcpy(copy, latents, sizeof(float) * (size_t)n);
    r->n = n;
    if (step < 0) {
        free(r->initial);
        r->initial = copy;
    } else if (step == r->n_lat && step < MAX_STEPS) {
        r->lat[r->n_lat++] = copy;
    } else {
        free(copy);
    }
}

static int rec_progress(const wan_progress *p, void *user)
{
    run_rec *r = user;
    int stop = 0;
    if (p->stage == WAN_STAGE_DENOISE && r->n_experts < MAX_STEPS) {
        r->experts[r->n_experts++] = p->expert;
        stop = r->cancel_after > 0 && p->step == r->cancel_after;
    }
    if (p->stage == WAN_STAGE_DECODE && r->cancel_in_decode)
        stop = 1;
    if (stop && r->ctx_to_cancel) {
        wan_ctx_cancel(r->ctx_to_cancel);
        return 0;
    }
    return stop;
}

static void rec_log(wan_log_level level, const char *msg, void *user)
{
    run_rec *r = user;
    if (level == WAN_LOG_WARN) {
        r->n_warn++;
        snprintf(r->warn, sizeof r->warn, "%s", msg);
    }
}

static void rec_free(run_rec *r)
{
    free(r->initial);
    for (int i = 0; i < r->n_lat; i++)
        free(r->lat[i]);
    memset(r, 0, sizeof *r);
}

/* One reference case: its file, the model it runs on, the call's arguments and the shared embeddings. */
typedef struct ref_case {
    char path[1024];
    wan_model_t *model;
    wan_host_tensor latents, pe, ne, timesteps, sigmas, experts, frames;
    char *prompt, *negative;
    int steps;
    wan_generate_params p;
} ref_case;

static wan_status read_scalar(const char *path, const char *name, double *v, char *err, size_t errlen)
{
    wan_host_tensor t = { 0 };
    wan_status rc = wan_safetensors_read(path, name, WAN_DTYPE_F32, &t, err, errlen);
    if (rc == WAN_OK)
        *v = ((const float *)t.data)[0];
    wan_host_tensor_free(&t);
    return rc;
}

static wan_status read_text(const char *path, const char *name, char **out, char *err, size_t errlen)
{
    wan_host_tensor t = { 0 };
    wan_status rc = wan_safetensors_read(path, name, WAN_DTYPE_U8, &t, err, errlen);
    if (rc != WAN_OK)
        return rc;
    int64_t n = wan_host_tensor_numel(&t);
    *out = calloc((size_t)n + 1, 1);
    if (*out && n)
        memcpy(*out, t.data, (size_t)n);
    wan_host_tensor_free(&t);
    return *out ? WAN_OK : WAN_ERR_NOMEM;
}

static void case_free(ref_case *c)
{
    wan_host_tensor *t[] = { &c->latents, &c->pe, &c->ne, &c->timesteps, &c->sigmas, &c->experts, &c->frames };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        wan_host_tensor_free(t[i]);
    free(c->prompt);
    free(c->negative);
    wan_model_free(c->model);
    memset(c, 0, sizeof *c);
}

/* Loads case `name` (tests/fixtures/pipeline/<name>.safetensors) and its model; fills c->p. */
static wan_status case_load(const char *name, ref_case *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    snprintf(c->path, sizeof c->path, "%s", wan_test_fixture("pipeline/"));
    snprintf(c->path + strlen(c->path), sizeof c->path - strlen(c->path), "%s.safetensors", name);
    const char *model = strncmp(name, "ti2v", 4) == 0 ? "tiny-wan22-ti2v" : "tiny-wan22-t2v";
    wan_status rc = wan_model_load(wan_test_fixture(model), NULL, &c->model, err, errlen);
    const char *names[] = { "p.height", "p.width", "p.num_frames", "p.steps", "p.guidance_scale",
                            "p.guidance_scale_2", "p.sampler", "p.shift", "p.seed" };
    double v[9];
    for (int i = 0; i < 9 && rc == WAN_OK; i++)
        rc = read_scalar(c->path, names[i], &v[i], err, errlen);
    wan_host_tensor *t[] = { &c->timesteps, &c->sigmas, &c->experts, &c->frames };
    const char *tn[] = { "timesteps", "sigmas", "experts", "frames" };
    const wan_dtype td[] = { WAN_DTYPE_F32, WAN_DTYPE_F32, WAN_DTYPE_I64, WAN_DTYPE_U8 };
    for (int i = 0; i < 4 && rc == WAN_OK; i++)
        rc = wan_safetensors_read(c->path, tn[i], td[i], t[i], err, errlen);
    if (rc != WAN_OK)
        return rc;
    c->p = wan_generate_default_params(c->model);
    c->p.height = (int)v[0], c->p.width = (int)v[1], c->p.num_frames = (int)v[2], c->p.steps = (int)v[3];
    c->p.guidance_scale = v[4];
    c->p.guidance_scale_2 = v[5]; /* -1: None, i.e. the same as guidance_scale */
    c->p.sampler = (int)v[6];
    c->p.shift = v[7];            /* -1: the config's */
    c->p.n_threads = 1;
    c->steps = (int)v[3];
    if (v[8] >= 0) {
        c->p.seed = (uint64_t)v[8];
    } else {
        if ((rc = wan_safetensors_read(c->path, "latents", WAN_DTYPE_F32, &c->latents, err, errlen)) != WAN_OK)
            return rc;
        c->p.latents = &c->latents;
    }
    if (read_text(c->path, "prompt", &c->prompt, err, errlen) == WAN_OK) {
        if ((rc = read_text(c->path, "negative_prompt", &c->negative, err, errlen)) != WAN_OK)
            return rc;
        c->p.prompt = c->prompt;
        c->p.negative_prompt = c->negative;
        return WAN_OK;
    }
    const char *emb = wan_test_fixture("pipeline/embeds.safetensors");
    if ((rc = wan_safetensors_read(emb, "prompt_embeds", WAN_DTYPE_F32, &c->pe, err, errlen)) != WAN_OK ||
        (rc = wan_safetensors_read(emb, "negative_prompt_embeds", WAN_DTYPE_F32, &c->ne, err, errlen)) != WAN_OK)
        return rc;
    c->p.prompt_embeds = &c->pe;
    c->p.negative_prompt_embeds = &c->ne;
    return WAN_OK;
}

/* Compares the uint8 frames; prints how many differ and by how much. */
static int compare_frames(const char *name, const uint8_t *got, const uint8_t *ref, size_t n)
{
    size_t bad = 0;
    int max = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)got[i] - (int)ref[i]);
        bad += d != 0;
        max = d > max ? d : max;
    }
    printf("    %s: %zu of %zu bytes differ, max difference %d (tol %d) %s\n", name, bad, n, max, TOL_FRAMES,
           max <= TOL_FRAMES ? "ok" : "EXCEEDED");
    return max <= TOL_FRAMES;
}

/* Runs wan_generate on the case and compares everything with the reference. */
static void check_run(ref_case *c, run_rec *r, wan_video *v, int *failed_)
{
    char err[1024] = "";
    wan_ctx_t *ctx = NULL;
    CHECK_RC(wan_ctx_new(c->model, &ctx, err, sizeof err), WAN_OK, err);
    c->p.on_step = rec_step;
    c->p.step_user = r;
    c->p.progress = rec_progress;
    c->p.progress_user = r;
    wan_status rc = wan_generate(ctx, &c->p, v);
    snprintf(err, sizeof err, "%s", wan_ctx_errmsg(ctx));
    wan_ctx_free(ctx);
    CHECK_RC(rc, WAN_OK, err);

    int N = c->steps;
    CHECK_MSG(v->n_steps == N && r->n_lat == N && r->n_experts == N, "steps %d, reported %d/%d, want %d",
              v->n_steps, r->n_lat, r->n_experts, N);
    CHECK(wan_test_compare("timesteps", v->timesteps, c->timesteps.data, (size_t)N, TOL_TABLES));
    CHECK(wan_test_compare("sigmas", v->sigmas, c->sigmas.data, (size_t)N + 1, TOL_TABLES));

    const int64_t *want_expert = c->experts.data;
    int want_high = 0;
    for (int i = 0; i < N; i++) {
        CHECK_MSG(r->experts[i] == want_expert[i], "step %d ran expert %d, diffusers ran %d", i, r->experts[i],
                  (int)want_expert[i]);
        want_high += want_expert[i] == 0;
    }
    bool two = wan_model_transformer_config(c->model, 1) != NULL;
    printf("    experts: n_high_steps %d of %d; diffusers ran `transformer` %d times of %d\n", v->n_high_steps, N,
           want_high, N);
    CHECK(v->n_high_steps == (two ? want_high : 0));

    wan_host_tensor ref = { 0 };
    CHECK_RC(wan_safetensors_read(c->path, "latents", WAN_DTYPE_F32, &ref, err, sizeof err), WAN_OK, err);
    int ok = r->initial && r->n == wan_host_tensor_numel(&ref) &&
             wan_test_compare("initial latents", r->initial, ref.data, (size_t)r->n, TOL_LATENTS);
    wan_host_tensor_free(&ref);
    CHECK(ok);
    for (int i = 0; i < N; i++) {
        char name[64];
        snprintf(name, sizeof name, "latents_step.%d", i);
        CHECK_RC(wan_safetensors_read(c->path, name, WAN_DTYPE_F32, &ref, err, sizeof err), WAN_OK, err);
        ok = r->n == wan_host_tensor_numel(&ref) &&
             wan_test_compare(name, r->lat[i], ref.data, (size_t)r->n, TOL_LATENTS);
        if (ok && i == N - 1)
            ok = wan_test_compare("final latents", v->latents, ref.data, (size_t)r->n, TOL_LATENTS);
        wan_host_tensor_free(&ref);
        CHECK(ok);
    }
    const int64_t *fs = c->frames.shape;
    CHECK_MSG(v->num_frames == fs[0] && v->height == fs[1] && v->width == fs[2],
              "video %d frames %dx%d, diffusers %lld frames %lldx%lld", v->num_frames, v->width, v->height,
              (long long)fs[0], (long long)fs[2], (long long)fs[1]);
    CHECK(compare_frames("frames", v->frames, c->frames.data, (size_t)wan_host_tensor_numel(&c->frames)));
    /* rounding the frames or the size must be announced through the log */
    bool rounded = c->p.num_frames != v->num_frames || c->p.height != v->height || c->p.width != v->width;
    printf("    %d warning(s)%s%s\n", r->n_warn, r->n_warn ? ": " : "", r->warn);
    CHECK(rounded ? r->n_warn > 0 : r->n_warn == 0);
}

static void run_case(const char *name, int *failed_)
{
    ref_case c;
    run_rec r = { 0 };
    wan_video v = { 0 };
    char err[1024] = "";
    wan_status rc = case_load(name, &c, err, sizeof err);
    if (rc == WAN_OK) {
        wan_log_set(rec_log, &r, WAN_LOG_WARN);
        check_run(&c, &r, &v, failed_);
        wan_log_set(NULL, NULL, WAN_LOG_WARN);
    }
    wan_video_free(&v);
    rec_free(&r);
    case_free(&c);
    CHECK_RC(rc, WAN_OK, err);
}

/* UniPC (the folder's scheduler, shift 3), N = 4: t = 999, 900 (high) 750, 500 (low), CFG 6 / 2 */
TEST(pipeline_t2v_unipc) { run_case("t2v_unipc", failed_); }
TEST(pipeline_t2v_unipc_nocfg) { run_case("t2v_unipc_nocfg", failed_); }
TEST(pipeline_t2v_unipc_n1) { run_case("t2v_unipc_n1", failed_); }
TEST(pipeline_t2v_unipc_n2) { run_case("t2v_unipc_n2", failed_); }
TEST(pipeline_t2v_unipc_n6) { run_case("t2v_unipc_n6", failed_); }
/* FlowMatchEulerDiscreteScheduler, shift 7 */
TEST(pipeline_t2v_euler) { run_case("t2v_euler", failed_); }
TEST(pipeline_t2v_euler_nocfg) { run_case("t2v_euler_nocfg", failed_); }
/* 32 wide, 64 tall; guidance_scale_2 unset (= guidance_scale) */
TEST(pipeline_t2v_tall) { run_case("t2v_tall", failed_); }
/* num_frames 10 -> 9 and 12 -> 13, with a warning */
TEST(pipeline_t2v_frames10) { run_case("t2v_frames10", failed_); }
TEST(pipeline_t2v_frames12) { run_case("t2v_frames12", failed_); }
/* no latents: the noise comes from the seed, as torch.Generator("cpu").manual_seed(42) */
TEST(pipeline_t2v_seed) { run_case("t2v_seed", failed_); }
/* a text prompt and negative prompt "" through the tokenizer and umT5 */
TEST(pipeline_t2v_prompt) { run_case("t2v_prompt", failed_); }
/* TI2V: one expert, per-token timesteps, the z48 VAE */
TEST(pipeline_ti2v_unipc) { run_case("ti2v_unipc", failed_); }
TEST(pipeline_ti2v_unipc_nocfg) { run_case("ti2v_unipc_nocfg", failed_); }
TEST(pipeline_ti2v_euler) { run_case("ti2v_euler", failed_); }
TEST(pipeline_ti2v_euler_nocfg) { run_case("ti2v_euler_nocfg", failed_); }
/* 80x112 -> 64x96 (multiples of 32), with a warning */
TEST(pipeline_ti2v_round) { run_case("ti2v_round", failed_); }

/* ---- cancellation ----------------------------------------------------------------------------- */

/* Runs the t2v_unipc case with r's cancel settings; expects WAN_ERR_CANCELLED, an empty video and the
 * library's memory back where it was before the model was loaded. */
static void run_cancelled(run_rec *r, bool via_ctx, const char *want_msg, int *failed_)
{
    size_t mem0 = wan_mem_current();
    ref_case c;
    wan_video v = { 0 };
    wan_ctx_t *ctx = NULL;
    char err[1024] = "", msg[1024] = "";
    wan_status rc = case_load("t2v_unipc", &c, err, sizeof err);
    if (rc == WAN_OK)
        rc = wan_ctx_new(c.model, &ctx, err, sizeof err);
    wan_status grc = WAN_OK;
    if (rc == WAN_OK) {
        r->ctx_to_cancel = via_ctx ? ctx : NULL;
        c.p.progress = rec_progress;
        c.p.progress_user = r;
        grc = wan_generate(ctx, &c.p, &v);
        snprintf(msg, sizeof msg, "%s", wan_ctx_errmsg(ctx));
    }
    bool empty = !v.frames && !v.latents && !v.timesteps && !v.sigmas && v.num_frames == 0;
    wan_video_free(&v);
    wan_ctx_free(ctx);
    case_free(&c);
    size_t mem1 = wan_mem_current();
    CHECK_RC(rc, WAN_OK, err);
    printf("    wan_generate: %s: %s; library memory %zu -> %zu bytes\n", wan_status_str(grc), msg, mem0, mem1);
    CHECK_RC(grc, WAN_ERR_CANCELLED, msg);
    CHECK(strstr(msg, want_msg) != NULL);
    CHECK(empty);
    CHECK(mem1 == mem0);
}

TEST(pipeline_cancel_from_progress)
{
    run_rec r = { .cancel_after = 2 };
    run_cancelled(&r, false, "after step 2", failed_);
    CHECK(r.n_experts == 2);
}

TEST(pipeline_cancel_in_decode)
{
    run_rec r = { .cancel_in_decode = 1 };
    run_cancelled(&r, false, "decoding", failed_);
    CHECK(r.n_experts == 4);
}

TEST(pipeline_cancel_via_ctx)
{
    run_rec r = { .cancel_after = 1 };
    run_cancelled(&r, true, "cancelled", failed_);
    CHECK(r.n_experts == 1);
}

/* ---- bad input -------------------------------------------------------------------------------- */

/* Runs one short generation of t2v_unipc with `edit` applied to its parameters; returns the status and the
 * message in msg. */
typedef void (*param_edit)(wan_generate_params *p, ref_case *c);

static wan_status run_edited(param_edit edit, run_rec *r, char *msg, size_t msglen)
{
    ref_case c;
    wan_video v = { 0 };
    wan_ctx_t *ctx = NULL;
    wan_status rc = case_load("t2v_unipc", &c, msg, msglen);
    if (rc == WAN_OK)
        rc = wan_ctx_new(c.model, &ctx, msg, msglen);
    if (rc == WAN_OK) {
        c.p.steps = 1;
        edit(&c.p, &c);
        wan_log_set(rec_log, r, WAN_LOG_WARN);
        rc = wan_generate(ctx, &c.p, &v);
        wan_log_set(NULL, NULL, WAN_LOG_WARN);
        snprintf(msg, msglen, "%s", wan_ctx_errmsg(ctx));
        if (rc == WAN_OK)
            snprintf(msg, msglen, "%d frames %dx%d, cfg %g/%g", v.num_frames, v.width, v.height, v.guidance_scale,
                     v.guidance_scale_2);
    }
    wan_video_free(&v);
    wan_ctx_free(ctx);
    case_free(&c);
    return rc;
}

static void edit_frames(wan_generate_params *p, ref_case *c) { (void)c, p->num_frames = -1; }
static void edit_steps(wan_generate_params *p, ref_case *c) { (void)c, p->steps = -3; }
static void edit_size(wan_generate_params *p, ref_case *c)
{
    (void)c;
    p->width = 40, p->height = 36;
    p->latents = NULL; /* noise from the seed, in the rounded shape */
}
static void edit_tiny(wan_generate_params *p, ref_case *c) { (void)c, p->width = 8, p->height = 32; }
static void edit_no_neg(wan_generate_params *p, ref_case *c) { (void)c, p->negative_prompt_embeds = NULL; }
static void edit_no_neg_nocfg(wan_generate_params *p, ref_case *c)
{
    (void)c;
    p->negative_prompt_embeds = NULL;
    p->guidance_scale = 1.0;
}
static void edit_no_prompt(wan_generate_params *p, ref_case *c) { (void)c, p->prompt_embeds = NULL; }
static void edit_latents(wan_generate_params *p, ref_case *c)
{
    (void)p;
    c->latents.shape[4] = 5; /* [1,16,3,4,5] for a [1,16,3,4,6] video */
}
static void edit_embeds(wan_generate_params *p, ref_case *c)
{
    (void)p;
    c->pe.shape[2] = 32, c->pe.shape[1] = 1024; /* the same bytes as [1,1024,32]: text_dim is 64 */
}
static void edit_sampler(wan_generate_params *p, ref_case *c) { (void)c, p->sampler = 9; }

TEST(pipeline_bad_input)
{
    static const struct {
        const char *what;
        param_edit edit;
        wan_status want;
        const char *msg;
    } k[] = {
        { "num_frames -1", edit_frames, WAN_ERR_INVALID_ARG, "num_frames -1" },
        { "steps -3", edit_steps, WAN_ERR_INVALID_ARG, "steps -3" },
        { "8x32 (below one patch)", edit_tiny, WAN_ERR_INVALID_ARG, "smaller than" },
        { "no negative embeds, CFG on", edit_no_neg, WAN_ERR_INVALID_ARG, "negative_prompt_embeds" },
        { "no prompt, no embeds", edit_no_prompt, WAN_ERR_INVALID_ARG, "prompt" },
        { "latents [1,16,3,4,5]", edit_latents, WAN_ERR_SHAPE, "latents must be F32 [1, 16, 3, 4, 6]" },
        { "prompt_embeds [1,1024,32]", edit_embeds, WAN_ERR_SHAPE, "prompt_embeds" },
        { "sampler 9", edit_sampler, WAN_ERR_INVALID_ARG, "sampler" },
        { "no negative embeds, CFG off", edit_no_neg_nocfg, WAN_OK, "9 frames 48x32" },
    };
    for (size_t i = 0; i < sizeof k / sizeof *k; i++) {
        run_rec r = { 0 };
        char msg[1024] = "";
        wan_status rc = run_edited(k[i].edit, &r, msg, sizeof msg);
        printf("    %s: %s: %s\n", k[i].what, wan_status_str(rc), msg);
        CHECK_RC(rc, k[i].want, msg);
        CHECK_MSG(strstr(msg, k[i].msg) != NULL, "'%s' lacks '%s'", msg, k[i].msg);
    }
}

/* diffusers rounds a size to the VAE·patch multiple with a warning (and check_inputs rejects sizes that are not
 * multiples of 16; wan.c rounds those too) */
TEST(pipeline_size_rounded_with_warning)
{
    run_rec r = { 0 };
    char msg[1024] = "";
    CHECK_RC(run_edited(edit_size, &r, msg, sizeof msg), WAN_OK, msg);
    printf("    40x36: %s; warning: %s\n", msg, r.warn);
    CHECK(strncmp(msg, "9 frames 32x32,", 15) == 0);
    CHECK(r.n_warn == 1 && strstr(r.warn, "40x36") && strstr(r.warn, "32x32"));
}

/* A model folder without its VAE does not load; a folder that loads without one cannot generate. */
TEST(pipeline_missing_component)
{
    char dir[] = "/tmp/wan_test_pipeline_XXXXXX", err[1024] = "", path[1200], target[1200];
    CHECK(mkdtemp(dir) != NULL);
    static const char *keep[] = { "model_index.json", "scheduler", "text_encoder", "tokenizer", "transformer",
                                  "transformer_2" };
    char cwd[1024];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    int ok = 1;
    for (size_t i = 0; i < sizeof keep / sizeof *keep; i++) {
        const char *src = wan_test_fixture("tiny-wan22-t2v");
        if (src[0] == '/')
            snprintf(target, sizeof target, "%s/%s", src, keep[i]);
        else
            snprintf(target, sizeof target, "%s/%s/%s", cwd, src, keep[i]);
        snprintf(path, sizeof path, "%s/%s", dir, keep[i]);
        ok &= symlink(target, path) == 0;
    }
    wan_model_t *m = NULL;
    wan_status rc = ok ? wan_model_load(dir, NULL, &m, err, sizeof err) : WAN_ERR_IO;
    for (size_t i = 0; i < sizeof keep / sizeof *keep; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, keep[i]);
        unlink(path);
    }
    rmdir(dir);
    wan_model_free(m);
    printf("    without vae/: %s: %s\n", wan_status_str(rc), err);
    CHECK(ok);
    CHECK(rc != WAN_OK && strstr(err, "vae") != NULL);

    /* the transformer folder alone loads (a component folder) but has no VAE */
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-t2v/transformer"), NULL, &m, err, sizeof err), WAN_OK, err);
    wan_ctx_t *ctx = NULL;
    wan_generate_params p = wan_generate_default_params(m);
    wan_host_tensor pe = { 0 };
    wan_video v = { 0 };
    rc = wan_safetensors_read(wan_test_fixture("pipeline/embeds.safetensors"), "prompt_embeds", WAN_DTYPE_F32, &pe,
                              err, sizeof err);
    if (rc == WAN_OK)
        rc = wan_ctx_new(m, &ctx, err, sizeof err);
    if (rc == WAN_OK) {
        p.prompt_embeds = &pe;
        p.guidance_scale = 1.0;
        p.width = 48, p.height = 32, p.num_frames = 5, p.steps = 1, p.n_threads = 1;
        rc = wan_generate(ctx, &p, &v);
        snprintf(err, sizeof err, "%s", wan_ctx_errmsg(ctx));
    }
    wan_video_free(&v);
    wan_ctx_free(ctx);
    wan_host_tensor_free(&pe);
    wan_model_free(m);
    printf("    transformer folder only: %s: %s\n", wan_status_str(rc), err);
    CHECK_RC(rc, WAN_ERR_NOT_FOUND, err);
    CHECK(strstr(err, "VAE") != NULL);
}

/* Defaults: with both scales unset the official A14B pair (4.0 high, 3.0 low); with guidance_scale alone the
 * low-noise expert uses the same scale (diffusers). */
static void edit_defaults(wan_generate_params *p, ref_case *c)
{
    (void)c;
    p->guidance_scale = -1, p->guidance_scale_2 = -1;
}
static void edit_cfg_only(wan_generate_params *p, ref_case *c)
{
    (void)c;
    p->guidance_scale = 5, p->guidance_scale_2 = -1;
}

TEST(pipeline_guidance_defaults)
{
    static const struct {
        param_edit edit;
        const char *want;
    } k[] = { { edit_defaults, "cfg 4/3" }, { edit_cfg_only, "cfg 5/5" } };
    for (size_t i = 0; i < sizeof k / sizeof *k; i++) {
        run_rec r = { 0 };
        char msg[1024] = "";
        CHECK_RC(run_edited(k[i].edit, &r, msg, sizeof msg), WAN_OK, msg);
        printf("    %s (want %s)\n", msg, k[i].want);
        CHECK(strstr(msg, k[i].want) != NULL);
    }
}
