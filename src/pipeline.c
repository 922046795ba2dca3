/* pipeline.c — the WanPipeline: prompt encoding, the two-expert denoising loop with classifier-free
 * guidance, de-normalisation, VAE decoding and post-processing to uint8 frames. */
#define _POSIX_C_SOURCE 200809L
#include "core.h"
#include "backend.h"
#include "dit.h"
#include "lora.h"
#include "model_dir.h"
#include "sampler.h"
#include "vae.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct wan_ctx {
    const wan_model_t *model;
    volatile sig_atomic_t cancel;
    wan_error err;
};

/* The official recipe per model family (pipeline.md 3.7). */
typedef struct recipe {
    int width, height, frames, steps, fps;
    double cfg, cfg2;
} recipe;

static recipe model_recipe(const wan_model_t *m)
{
    if (m->comp[WAN_COMPONENT_TRANSFORMER_2].present) /* Wan2.2 T2V-A14B */
        return (recipe){ 1280, 720, 81, 40, 16, 4.0, 3.0 };
    if (m->pipe.expand_timesteps || (m->comp[WAN_COMPONENT_VAE].present && m->vae.z_dim == 48))
        return (recipe){ 1280, 704, 121, 50, 24, 5.0, 5.0 }; /* Wan2.2 TI2V-5B */
    return (recipe){ 832, 480, 81, 50, 16, 5.0, 5.0 };       /* Wan2.1 T2V */
}

wan_generate_params wan_generate_default_params(const wan_model_t *m)
{
    wan_generate_params p;
    memset(&p, 0, sizeof p);
    p.guidance_scale = -1.0;
    p.guidance_scale_2 = -1.0;
    p.sampler = -1;
    if (m) {
        recipe r = model_recipe(m);
        p.width = r.width, p.height = r.height, p.num_frames = r.frames, p.steps = r.steps;
        p.guidance_scale = r.cfg;
        p.guidance_scale_2 = m->comp[WAN_COMPONENT_TRANSFORMER_2].present ? r.cfg2 : -1.0;
    }
    return p;
}

wan_status wan_ctx_new(const wan_model_t *model, wan_ctx_t **out, char *errbuf, size_t errlen)
{
    wan_error err = { 0 };
    *out = NULL;
    wan_ctx_t *c = model ? wan_calloc(1, sizeof *c) : NULL;
    if (!c) {
        wan_err(&err, model ? WAN_ERR_NOMEM : WAN_ERR_INVALID_ARG, "wan_ctx_new: %s",
                model ? "out of memory" : "model is NULL");
        wan_err_copy(&err, errbuf, errlen);
        return err.code;
    }
    c->model = model;
    *out = c;
    return WAN_OK;
}

void wan_ctx_free(wan_ctx_t *ctx) { wan_free(ctx); }
const char *wan_ctx_errmsg(const wan_ctx_t *ctx) { return ctx ? ctx->err.msg : ""; }
void wan_ctx_cancel(wan_ctx_t *ctx)
{
    if (ctx)
        ctx->cancel = 1;
}

void wan_video_free(wan_video *v)
{
    if (!v)
        return;
    wan_free(v->frames);
    wan_free(v->latents);
    wan_free(v->timesteps);
    wan_free(v->sigmas);
    memset(v, 0, sizeof *v);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Everything one wan_generate call resolves before it runs. */
typedef struct plan {
    int width, height, frames, steps, fps;
    double cfg, cfg2, boundary; /* boundary < 0: one expert */
    int do_cfg, two_experts;
    int64_t shape[5];           /* latent [1, C, T, h, w] */
    int64_t n;                  /* latent elements */
    int64_t tokens;
    int n_threads;
} plan;

static wan_status make_plan(const wan_model_t *m, const wan_generate_params *p, plan *pl, wan_error *err)
{
    memset(pl, 0, sizeof *pl);
    if (!m->comp[WAN_COMPONENT_TRANSFORMER].present)
        return wan_err(err, WAN_ERR_NOT_FOUND, "%s: the model has no transformer, which generation needs", m->path);
    if (!m->comp[WAN_COMPONENT_VAE].present)
        return wan_err(err, WAN_ERR_NOT_FOUND, "%s: the model has no VAE, which generation needs", m->path);
    if (!m->comp[WAN_COMPONENT_SCHEDULER].present)
        return wan_err(err, WAN_ERR_NOT_FOUND, "%s: the model has no scheduler config", m->path);
    recipe r = model_recipe(m);
    const wan_transformer_config *tc = &m->tc[0];
    pl->width = p->width ? p->width : r.width;
    pl->height = p->height ? p->height : r.height;
    pl->frames = p->num_frames ? p->num_frames : r.frames;
    pl->steps = p->steps ? p->steps : r.steps;
    pl->fps = r.fps;
    if (pl->width < 0 || pl->height < 0)
        return wan_err(err, WAN_ERR_INVALID_ARG, "size %dx%d: width and height must be positive", pl->width,
                       pl->height);
    if (pl->frames <= 0)
        return wan_err(err, WAN_ERR_INVALID_ARG, "num_frames %d: at least 1 frame is needed", pl->frames);
    if (pl->steps < 1)
        return wan_err(err, WAN_ERR_INVALID_ARG, "steps %d: at least 1 step is needed", pl->steps);
    int st = m->vae.scale_factor_temporal, ss = m->vae.scale_factor_spatial;
    int mult = ss * tc->patch_size[1];
    if (pl->frames % st != 1) {
        int f = pl->frames / st * st + 1;
        wan_log_warn("num_frames %d is not 4k+1: using %d (as diffusers)", pl->frames, f);
        pl->frames = f;
    }
    if (pl->width % mult || pl->height % mult) {
        int w = pl->width / mult * mult, h = pl->height / mult * mult;
        if (w == 0 || h == 0)
            return wan_err(err, WAN_ERR_INVALID_ARG, "size %dx%d is smaller than one %dx%d patch of this model",
                           pl->width, pl->height, mult, mult);
        wan_log_warn("size %dx%d is not a multiple of %d: using %dx%d (as diffusers)", pl->width, pl->height, mult,
                     w, h);
        pl->width = w, pl->height = h;
    }
    pl->cfg = p->guidance_scale >= 0 ? p->guidance_scale : r.cfg;
    pl->two_experts = m->comp[WAN_COMPONENT_TRANSFORMER_2].present && m->pipe.boundary_ratio >= 0;
    /* diffusers compares the int64 (UniPC) or float32 (Euler) timestep with the Python float
     * boundary_ratio * num_train_timesteps after promoting both to float32 */
    pl->boundary = pl->two_experts ? (float)(m->pipe.boundary_ratio * m->sched.num_train_timesteps) : -1.0;
    /* guidance_scale_2 unset: guidance_scale (diffusers), or the recipe's pair when both are unset */
    pl->cfg2 = p->guidance_scale_2 >= 0 ? p->guidance_scale_2 : p->guidance_scale >= 0 ? pl->cfg : r.cfg2;
    if (!pl->two_experts && p->guidance_scale_2 >= 0 && p->guidance_scale_2 != pl->cfg)
        wan_log_warn("guidance_scale_2 %g is ignored: the model has one expert (diffusers rejects it)",
                     p->guidance_scale_2);
    pl->do_cfg = pl->cfg > 1.0; /* diffusers decides by guidance_scale alone */
    int64_t T = (pl->frames - 1) / st + 1, h = pl->height / ss, w = pl->width / ss;
    int64_t sh[5] = { 1, tc->in_channels, T, h, w };
    memcpy(pl->shape, sh, sizeof sh);
    pl->n = tc->in_channels * T * h * w;
    pl->tokens = (T / tc->patch_size[0]) * (h / tc->patch_size[1]) * (w / tc->patch_size[2]);
    pl->n_threads = p->n_threads;
    return WAN_OK;
}

/* Checks a caller's F32 tensor against an expected shape. */
static wan_status check_tensor(const wan_host_tensor *t, const char *what, int ndim, const int64_t *shape,
                               wan_error *err)
{
    bool ok = t->dtype == WAN_DTYPE_F32 && t->ndim == ndim && t->data;
    for (int i = 0; ok && i < ndim; i++)
        ok = shape[i] < 0 || t->shape[i] == shape[i];
    if (ok)
        return WAN_OK;
    char a[128], b[128] = "[";
    for (int i = 0; i < ndim; i++) { /* a negative size means "any": shown as L */
        char d[24] = "L";
        if (shape[i] >= 0)
            snprintf(d, sizeof d, "%lld", (long long)shape[i]);
        snprintf(b + strlen(b), sizeof b - strlen(b), "%s%s", i ? ", " : "", d);
    }
    snprintf(b + strlen(b), sizeof b - strlen(b), "]");
    return wan_err(err, WAN_ERR_SHAPE, "%s must be F32 %s, got %s %s", what, b, wan_dtype_name(t->dtype),
                   wan_shape_str(t->ndim, t->shape, a, sizeof a));
}

/* Prompt embeddings: the caller's, or the text encoder's (released afterwards). */
static wan_status get_embeds(wan_ctx_t *ctx, const wan_generate_params *p, const plan *pl, wan_host_tensor *pe,
                             wan_host_tensor *ne, bool *owned)
{
    const wan_model_t *m = ctx->model;
    wan_error *err = &ctx->err;
    int64_t want[3] = { 1, -1, m->tc[0].text_dim };
    if (p->prompt_embeds) {
        wan_status rc = check_tensor(p->prompt_embeds, "prompt_embeds", 3, want, err);
        if (rc != WAN_OK)
            return rc;
        *pe = *p->prompt_embeds;
        if (pl->do_cfg) {
            if (!p->negative_prompt_embeds)
                return wan_err(err, WAN_ERR_INVALID_ARG,
                               "guidance_scale %g > 1 needs negative_prompt_embeds along with prompt_embeds",
                               pl->cfg);
            if ((rc = check_tensor(p->negative_prompt_embeds, "negative_prompt_embeds", 3, want, err)) != WAN_OK)
                return rc;
            *ne = *p->negative_prompt_embeds;
        }
        *owned = false;
        return WAN_OK;
    }
    if (!p->prompt)
        return wan_err(err, WAN_ERR_INVALID_ARG, "give a prompt or prompt_embeds");
    const char *neg = p->negative_prompt ? p->negative_prompt : wan_default_negative_prompt();
    char msg[WAN_ERRMSG_MAX];
    wan_status rc = wan_encode_prompt(m, NULL, p->prompt, neg, 512, pe, pl->do_cfg ? ne : NULL, pl->n_threads,
                                      msg, sizeof msg);
    if (rc != WAN_OK)
        return wan_err(err, rc, "encoding the prompt: %s", msg);
    *owned = true;
    wan_model_release_component(m, WAN_COMPONENT_TEXT_ENCODER);
    return WAN_OK;
}

typedef struct loop_state {
    wan_ctx_t *ctx;
    const wan_generate_params *p;
    const plan *pl;
    double t0;
    wan_lora_request *lora; /* the request's LoRA adapters (NULL: none), bound to the running expert */
    wan_backend *be;        /* the transformer's and the sampler's compute backend (params.device)   */
    wan_dit_ws ws;          /* the transformer's activations, reused by every step                  */
    wan_dit own;            /* the running expert bound here (when no LoRA binding provides it)     */
    bool own_bound;
    wan_dit dev;            /* the running expert uploaded to a device backend                      */
    bool uploaded;
    const wan_dit *dit;     /* the running expert, in the backend's memory                          */
    /* backend memory: the latents (on "cpu" the host latents themselves), the model output of the
     * conditional and unconditional passes, and the prompt embeddings (on "cpu" the caller's) */
    float *x, *v, *u;
    const float *pe, *ne;
    float *pe_dev, *ne_dev;
    int64_t pe_rows, ne_rows;
    float *tbuf;            /* host: the timestep of every token                                    */
} loop_state;

static int report(loop_state *ls, wan_stage stage, int step, int n, int expert, double step_s, double eta_s)
{
    if (!ls->p->progress)
        return 0;
    wan_progress pr = { stage, step, n, expert, now_s() - ls->t0, step_s, eta_s };
    return ls->p->progress(&pr, ls->p->progress_user);
}

/* Creates the compute backend of params.device before any work, so that a bad or unavailable device fails
 * first. */
static wan_status open_backend(loop_state *ls)
{
    wan_ctx_t *ctx = ls->ctx;
    const wan_generate_params *p = ls->p;
    wan_status rc = wan_backend_for_device(p->device, ls->pl->n_threads, &ls->be, &ctx->err);
    if (rc != WAN_OK)
        return wan_err_wrap(&ctx->err, "device \"%s\": ", p->device && *p->device ? p->device : "cpu");
    if (!ls->be->host_memory && p->n_loras > 0 && p->lora_mode == WAN_LORA_RUNTIME)
        return wan_err(&ctx->err, WAN_ERR_UNSUPPORTED, "device \"%s\": on-the-fly LoRA (lora_mode runtime) runs "
                       "on the CPU only; merge the adapters (WAN_LORA_MERGE, --lora-mode merge)", p->device);
    if (!ls->be->host_memory)
        wan_log_info("transformer and sampler on %s (%s)", ls->be->name, ls->be->device);
    return WAN_OK;
}

/* The loop's buffers in backend memory: latents (uploaded from the host's x), the two model outputs and the
 * prompt embeddings (uploaded once). On a host backend x and the embeddings are used in place. */
static wan_status stage_inputs(loop_state *ls, float *x, const wan_host_tensor *pe, const wan_host_tensor *ne)
{
    wan_backend *be = ls->be;
    const plan *pl = ls->pl;
    const size_t nb = sizeof(float) * (size_t)pl->n;
    ls->pe_rows = pe->shape[1];
    ls->ne_rows = pl->do_cfg ? ne->shape[1] : 0;
    const size_t pb = sizeof(float) * (size_t)(ls->pe_rows * pe->shape[2]);
    const size_t qb = pl->do_cfg ? sizeof(float) * (size_t)(ls->ne_rows * ne->shape[2]) : 0;
    ls->tbuf = wan_malloc(sizeof(float) * (size_t)pl->tokens);
    if (!ls->tbuf)
        return wan_err(&ls->ctx->err, WAN_ERR_NOMEM, "out of memory for the timestep vector");
    ls->v = be->alloc(be, nb);
    ls->u = pl->do_cfg ? be->alloc(be, nb) : NULL;
    if (be->host_memory) {
        ls->x = x;
        ls->pe = pe->data;
        ls->ne = pl->do_cfg ? ne->data : NULL;
    } else {
        ls->x = be->alloc(be, nb);
        ls->pe = ls->pe_dev = be->alloc(be, pb);
        ls->ne = ls->ne_dev = pl->do_cfg ? be->alloc(be, qb) : NULL;
        if (be->err.code == WAN_OK) {
            be->upload(be, ls->x, x, nb);
            be->upload(be, ls->pe_dev, pe->data, pb);
            if (pl->do_cfg)
                be->upload(be, ls->ne_dev, ne->data, qb);
        }
    }
    wan_status rc = be->sync(be, &ls->ctx->err);
    return rc == WAN_OK ? WAN_OK : wan_err_wrap(&ls->ctx->err, "latents and prompt embeddings on %s: ", be->name);
}

/* Lets the running expert go: the device copy, then the host binding. */
static void drop_expert(loop_state *ls)
{
    if (ls->uploaded)
        wan_dit_release(ls->be, &ls->dev);
    if (ls->own_bound)
        wan_dit_free(&ls->own);
    ls->uploaded = ls->own_bound = false;
    ls->dit = NULL;
}

/* Makes `expert` the running one: binds the request's adapters for it (or the plain weights) and, on a device
 * backend, uploads it after releasing the previous one (one expert resident at a time). */
static wan_status use_expert(loop_state *ls, int expert)
{
    wan_ctx_t *ctx = ls->ctx;
    const wan_model_t *m = ctx->model;
    const wan_component c = expert ? WAN_COMPONENT_TRANSFORMER_2 : WAN_COMPONENT_TRANSFORMER;
    drop_expert(ls);
    wan_status rc = wan_lora_request_bind(ls->lora, expert, &ctx->err);
    if (rc != WAN_OK)
        return rc;
    const wan_dit *src = wan_lora_request_dit(ls->lora, expert);
    if (!src) {
        const wan_st_set *w = wan_model_weights(m, c);
        const wan_transformer_config *cfg = wan_model_transformer_config(m, expert);
        if (!w || !cfg)
            return wan_err(&ctx->err, WAN_ERR_NOT_FOUND, "%s: the model has no %s", m->path,
                           expert ? "transformer_2 (low-noise expert)" : "transformer");
        if ((rc = wan_dit_init(&ls->own, w, cfg, &ctx->err)) != WAN_OK)
            return wan_err_wrap(&ctx->err, "transformer%s: ", expert ? "_2" : "");
        ls->own_bound = true;
        src = &ls->own;
    }
    if (ls->be->host_memory) { /* the mapped weights in place */
        ls->dit = src;
        return WAN_OK;
    }
    rc = wan_dit_upload(src, ls->be, &ls->dev, &ctx->err);
    if (ls->own_bound) /* its vectors were copied to the device */
        wan_dit_free(&ls->own);
    ls->own_bound = false;
    if (rc != WAN_OK)
        return wan_err_wrap(&ctx->err, "transformer%s: ", expert ? "_2" : "");
    ls->uploaded = true;
    ls->dit = &ls->dev;
    wan_lora_request_release(ls->lora); /* merged copies, if any, live on the device now */
    wan_model_release_component(m, c);  /* the host pages were only read for the upload */
    return WAN_OK;
}

/* Frees the loop's buffers (the expert, the workspace, the latents and embeddings in backend memory) once the
 * loop is over, so that the decode does not run beside them; the backend stays. */
static void loop_buffers_free(loop_state *ls)
{
    drop_expert(ls);
    wan_free(ls->tbuf);
    ls->tbuf = NULL;
    if (!ls->be)
        return;
    wan_backend *be = ls->be;
    wan_dit_ws_free(&ls->ws);
    be->free(be, ls->v);
    be->free(be, ls->u);
    if (!be->host_memory)
        be->free(be, ls->x);
    be->free(be, ls->pe_dev);
    be->free(be, ls->ne_dev);
    ls->x = ls->v = ls->u = ls->pe_dev = ls->ne_dev = NULL;
    ls->pe = ls->ne = NULL;
}

/* Frees the loop's buffers, then the backend (the scheduler, whose history lives there too, is freed first). */
static void loop_free(loop_state *ls)
{
    loop_buffers_free(ls);
    wan_backend_free(ls->be);
    ls->be = NULL;
}

/* One model evaluation (cond, and uncond when the stage guides) for timestep t into ls->v. */
static wan_status predict(loop_state *ls, int expert, float t, float g)
{
    const plan *pl = ls->pl;
    wan_ctx_t *ctx = ls->ctx;
    const wan_model_t *m = ctx->model;
    /* expand_timesteps: one timestep per token (all equal for text-to-video), else one per sample */
    const int per_token = m->pipe.expand_timesteps;
    for (int64_t i = 0; i < (per_token ? pl->tokens : 1); i++)
        ls->tbuf[i] = t;
    const int T = (int)pl->shape[2], H = (int)pl->shape[3], W = (int)pl->shape[4];
    wan_status rc = wan_dit_forward_ws(ls->dit, ls->be, &ls->ws, ls->x, T, H, W, ls->tbuf, per_token, ls->pe,
                                       ls->pe_rows, ls->v, NULL, &ctx->err);
    if (rc != WAN_OK)
        return wan_err_wrap(&ctx->err, "transformer%s at t=%g: ", expert ? "_2" : "", t);
    if (!pl->do_cfg || g == 1.0f) /* a scale of exactly 1 makes the unconditional pass a no-op */
        return WAN_OK;
    if (ctx->cancel)
        return wan_err(&ctx->err, WAN_ERR_CANCELLED, "cancelled");
    rc = wan_dit_forward_ws(ls->dit, ls->be, &ls->ws, ls->x, T, H, W, ls->tbuf, per_token, ls->ne, ls->ne_rows,
                            ls->u, NULL, &ctx->err);
    if (rc != WAN_OK)
        return wan_err_wrap(&ctx->err, "transformer%s (unconditional) at t=%g: ", expert ? "_2" : "", t);
    /* guided = uncond + g * (cond - uncond): three float32 ops in this order (diffusers), no FMA */
    ls->be->guide(ls->be, ls->v, ls->u, g, pl->n);
    return WAN_OK;
}

/* The sampler loop over ls->x (in place); xh is the host latents, refreshed for the on_step callback. */
static wan_status denoise(loop_state *ls, wan_scheduler_t *s, float *xh, wan_video *out)
{
    wan_ctx_t *ctx = ls->ctx;
    const plan *pl = ls->pl;
    const wan_model_t *m = ctx->model;
    wan_backend *be = ls->be;
    int N = wan_scheduler_num_steps(s);
    const float *ts = wan_scheduler_timesteps(s), *sig = wan_scheduler_sigmas(s);
    wan_status rc = WAN_OK;
    int prev_expert = -1;
    double t_start = now_s();
    for (int i = 0; i < N && rc == WAN_OK; i++) {
        if (ctx->cancel) {
            rc = wan_err(&ctx->err, WAN_ERR_CANCELLED, "cancelled before step %d of %d", i + 1, N);
            break;
        }
        int expert = (pl->two_experts && ts[i] < (float)pl->boundary) ? 1 : 0;
        if (prev_expert == 0 && expert == 1) /* the high-noise expert is done: let its pages go */
            wan_model_release_component(m, WAN_COMPONENT_TRANSFORMER);
        if (expert != prev_expert && (rc = use_expert(ls, expert)) != WAN_OK)
            break;
        prev_expert = expert;
        out->n_high_steps += pl->two_experts && expert == 0;
        float g = (float)(expert ? pl->cfg2 : pl->cfg);
        if ((rc = predict(ls, expert, ts[i], g)) != WAN_OK)
            break;
        wan_error e = { 0 };
        if ((rc = wan_scheduler_step_be(s, be, ls->v, ls->x, ls->x, (size_t)pl->n, &e)) != WAN_OK) {
            wan_err(&ctx->err, rc, "sampler step %d: %s", i, e.msg);
            break;
        }
        if (ls->p->on_step) {
            if (!be->host_memory) {
                be->download(be, xh, ls->x, sizeof(float) * (size_t)pl->n);
                if ((rc = be->sync(be, &ctx->err)) != WAN_OK)
                    break;
            }
            ls->p->on_step(i, ts[i], sig[i + 1], xh, pl->n, ls->p->step_user);
        }
        double step_s = (now_s() - t_start) / (i + 1);
        if (report(ls, WAN_STAGE_DENOISE, i + 1, N, expert, step_s, step_s * (N - i - 1)))
            rc = wan_err(&ctx->err, WAN_ERR_CANCELLED, "cancelled by the progress callback after step %d", i + 1);
    }
    if (rc == WAN_OK && !be->host_memory) { /* the final latents come back for the decode */
        be->download(be, xh, ls->x, sizeof(float) * (size_t)pl->n);
        rc = be->sync(be, &ctx->err);
    }
    loop_buffers_free(ls);
    if (pl->two_experts)
        wan_model_release_component(m, WAN_COMPONENT_TRANSFORMER_2);
    wan_model_release_component(m, WAN_COMPONENT_TRANSFORMER);
    wan_lora_request_release(ls->lora);
    return rc;
}

typedef struct decode_state {
    loop_state *ls;
    wan_video *out;
    int64_t frame_bytes;
    wan_status rc;
} decode_state;

static int on_frame(int batch, int frame, const float *rgb, int height, int width, void *user)
{
    decode_state *d = user;
    (void)batch;
    char msg[256];
    if (frame >= d->out->num_frames || height != d->out->height || width != d->out->width) {
        d->rc = wan_err(&d->ls->ctx->err, WAN_ERR_INTERNAL, "VAE produced frame %d of %dx%d, expected %d of %dx%d",
                        frame, width, height, d->out->num_frames, d->out->width, d->out->height);
        return 1;
    }
    /* one frame [3, H, W] is the [3, 1, H, W] video of wan_video_postprocess */
    d->rc = wan_video_postprocess(rgb, 1, height, width, WAN_FRAMES_TRUNCATE,
                                  d->out->frames + (int64_t)frame * d->frame_bytes, msg, sizeof msg);
    return d->ls->ctx->cancel || d->rc != WAN_OK;
}

static int decode_progress(const wan_progress *p, void *user)
{
    loop_state *ls = user;
    double eta = p->step ? (p->elapsed_s / p->step) * (p->n_steps - p->step) : -1.0;
    return report(ls, WAN_STAGE_DECODE, p->step, p->n_steps, -1, p->step ? p->elapsed_s / p->step : 0, eta) ||
           ls->ctx->cancel;
}

/* De-normalise (x / (1/std) + mean, as the pipeline) and decode into out->frames. */
static wan_status decode(loop_state *ls, const float *x, wan_video *out)
{
    wan_ctx_t *ctx = ls->ctx;
    const plan *pl = ls->pl;
    const wan_vae_config *vc = &ctx->model->vae;
    if (pl->shape[1] != vc->z_dim)
        return wan_err(&ctx->err, WAN_ERR_SHAPE, "the transformer makes %lld latent channels, the VAE takes %d",
                       (long long)pl->shape[1], vc->z_dim);
    float *z = wan_malloc(sizeof(float) * (size_t)pl->n);
    out->frames = wan_malloc((size_t)pl->frames * pl->height * pl->width * 3);
    if (!z || !out->frames) {
        wan_free(z);
        return wan_err(&ctx->err, WAN_ERR_NOMEM, "out of memory for %d frames of %dx%d", pl->frames, pl->width,
                       pl->height);
    }
    int64_t per = pl->n / pl->shape[1];
    for (int64_t c = 0; c < pl->shape[1]; c++) {
        float inv = 1.0f / vc->latents_std[c], mean = vc->latents_mean[c];
        for (int64_t i = 0; i < per; i++)
            z[c * per + i] = x[c * per + i] / inv + mean;
    }
    wan_host_tensor zt = { .name = "z", .dtype = WAN_DTYPE_F32, .ndim = 5, .data = z };
    memcpy(zt.shape, pl->shape, sizeof pl->shape);
    out->num_frames = pl->frames, out->height = pl->height, out->width = pl->width;
    decode_state d = { ls, out, (int64_t)pl->height * pl->width * 3, WAN_OK };
    wan_vae_params vp = wan_vae_default_params();
    vp.n_threads = pl->n_threads;
    vp.progress = decode_progress;
    vp.progress_user = ls;
    wan_error verr = { 0 };
    /* the generation's backend: the VAE runs where the transformer ran (the CPU table on "cpu") */
    wan_status rc = wan_vae_decode_be(ctx->model, ls->be, &zt, &vp, on_frame, &d, &verr);
    wan_free(z);
    if (d.rc != WAN_OK)
        return d.rc;
    if (rc == WAN_ERR_CANCELLED)
        return wan_err(&ctx->err, rc, "cancelled while decoding");
    if (rc != WAN_OK)
        return wan_err(&ctx->err, rc, "VAE decode: %s", verr.msg);
    wan_model_release_component(ctx->model, WAN_COMPONENT_VAE);
    return WAN_OK;
}

/* Initial latents: the caller's, or torch-compatible noise from the seed. */
static wan_status initial_latents(wan_ctx_t *ctx, const wan_generate_params *p, const plan *pl, float *x)
{
    if (p->latents) {
        wan_status rc = check_tensor(p->latents, "latents", 5, pl->shape, &ctx->err);
        if (rc == WAN_OK)
            memcpy(x, p->latents->data, sizeof(float) * (size_t)pl->n);
        return rc;
    }
    wan_status rc = wan_randn(p->seed, (size_t)pl->n, x);
    return rc == WAN_OK ? WAN_OK : wan_err(&ctx->err, rc, "initial noise: wan_randn failed");
}

static wan_status make_scheduler(wan_ctx_t *ctx, const wan_generate_params *p, const plan *pl, wan_scheduler_t **s)
{
    wan_scheduler_config sc = ctx->model->sched;
    if (p->sampler >= 0) {
        if (p->sampler > WAN_SCHEDULER_DPMPP)
            return wan_err(&ctx->err, WAN_ERR_INVALID_ARG, "unknown sampler %d", p->sampler);
        sc.kind = (wan_scheduler_kind)p->sampler;
    }
    wan_scheduler_params sp = wan_scheduler_default_params();
    sp.shift = p->shift;
    char msg[WAN_ERRMSG_MAX];
    wan_status rc = wan_scheduler_create(&sc, pl->steps, &sp, s, msg, sizeof msg);
    return rc == WAN_OK ? WAN_OK : wan_err(&ctx->err, rc, "sampler: %s", msg);
}

static wan_status copy_tables(wan_scheduler_t *s, wan_video *out, wan_error *err)
{
    int N = wan_scheduler_num_steps(s);
    out->n_steps = N;
    out->timesteps = wan_malloc(sizeof(float) * (size_t)N);
    out->sigmas = wan_malloc(sizeof(float) * (size_t)(N + 1));
    if (!out->timesteps || !out->sigmas)
        return wan_err(err, WAN_ERR_NOMEM, "out of memory");
    memcpy(out->timesteps, wan_scheduler_timesteps(s), sizeof(float) * (size_t)N);
    memcpy(out->sigmas, wan_scheduler_sigmas(s), sizeof(float) * (size_t)(N + 1));
    return WAN_OK;
}

wan_status wan_generate(wan_ctx_t *ctx, const wan_generate_params *p, wan_video *out)
{
    if (!ctx || !p || !out)
        return WAN_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    memset(&ctx->err, 0, sizeof ctx->err);
    ctx->cancel = 0;
    wan_mem_reset_peak();
    plan pl;
    wan_status rc = make_plan(ctx->model, p, &pl, &ctx->err);
    if (rc != WAN_OK)
        return rc;
    loop_state ls = { .ctx = ctx, .p = p, .pl = &pl, .t0 = now_s() };
    wan_host_tensor pe = { 0 }, ne = { 0 };
    bool owned = false;
    wan_scheduler_t *s = NULL;
    float *x = NULL; /* the host latents */
    if ((rc = open_backend(&ls)) != WAN_OK)
        goto done;
    if (!(x = wan_malloc(sizeof(float) * (size_t)pl.n))) {
        rc = wan_err(&ctx->err, WAN_ERR_NOMEM, "out of memory for the latents");
        goto done;
    }
    if ((rc = wan_lora_request_new(ctx->model, p->loras, p->n_loras, p->lora_mode, &ls.lora, &ctx->err)) != WAN_OK ||
        (rc = make_scheduler(ctx, p, &pl, &s)) != WAN_OK || (rc = copy_tables(s, out, &ctx->err)) != WAN_OK ||
        (rc = initial_latents(ctx, p, &pl, x)) != WAN_OK)
        goto done;
    wan_log_info("generating %dx%d, %d frames, %d steps (shift %g), cfg %g/%g%s", pl.width, pl.height, pl.frames,
                 pl.steps, wan_scheduler_shift(s), pl.cfg, pl.cfg2, pl.do_cfg ? "" : " (no CFG)");
    if (p->on_step)
        p->on_step(-1, 0.0, out->sigmas[0], x, pl.n, p->step_user);
    double t = now_s();
    report(&ls, WAN_STAGE_TEXT, 0, 1, -1, 0, -1);
    if ((rc = get_embeds(ctx, p, &pl, &pe, &ne, &owned)) != WAN_OK)
        goto done;
    out->seconds_text = now_s() - t;
    if (report(&ls, WAN_STAGE_TEXT, 1, 1, -1, out->seconds_text, -1)) {
        rc = wan_err(&ctx->err, WAN_ERR_CANCELLED, "cancelled after text encoding");
        goto done;
    }
    t = now_s();
    if ((rc = stage_inputs(&ls, x, &pe, &ne)) != WAN_OK || (rc = denoise(&ls, s, x, out)) != WAN_OK)
        goto done;
    out->seconds_denoise = now_s() - t;
    t = now_s();
    /* The VAE decodes on the generation's backend from the host latents x (denoise downloaded them from a
     * device backend and freed the loop's device buffers, so the decode has the device memory to itself). */
    if ((rc = decode(&ls, x, out)) != WAN_OK)
        goto done;
    out->seconds_decode = now_s() - t;
    out->fps = pl.fps;
    out->guidance_scale = pl.cfg;
    out->guidance_scale_2 = pl.two_experts ? pl.cfg2 : pl.cfg;
    out->shift = wan_scheduler_shift(s);
    out->sampler = p->sampler >= 0 ? p->sampler : (int)ctx->model->sched.kind;
    out->seed = p->seed;
    out->latents = x;
    memcpy(out->latents_shape, pl.shape, sizeof pl.shape);
    x = NULL;
    report(&ls, WAN_STAGE_DONE, 1, 1, -1, 0, 0);
done:
    if (owned) {
        wan_host_tensor_free(&pe);
        wan_host_tensor_free(&ne);
    }
    wan_scheduler_free(s); /* before the backend: the sampler's history lives in its memory */
    loop_free(&ls);
    wan_lora_request_free(ls.lora);
    wan_free(x);
    out->peak_bytes = wan_mem_peak();
    if (rc != WAN_OK) {
        wan_log(WAN_LOG_ERROR, "%s", ctx->err.msg);
        wan_video_free(out);
    }
    return rc;
}
