/* test_device.c — the model code on the backend table (docs/CUDA.md "Wiring"): the transformer's reusable
 * workspace, the device selection of wan_generate and wan_transformer_forward_device, and the tiny fixtures run
 * with device "cuda" against the CPU. Without CUDA in the build, or without a device, the CUDA cases are
 * reported as skipped with the reason — never as passed.
 *
 * Tolerances of "cuda" against "cpu" (max|got - ref| <= tol · max|ref|), from docs/CUDA.md:
 * - F32 weights: cuBLAS sgemm in pedantic f32 and the f32 flash attention; what differs is the summation order,
 *   as between the CPU and torch, so the bound of the CPU parity tests holds: 1e-4 for a transformer forward
 *   (tests/test_dit.c) and 1e-4 for the latents after every step of a generation (tests/test_pipeline.c).
 * - BF16 weights: cuBLASLt multiplies bf16-rounded activations (relative error 2^-9 each): 1e-2.
 * - Frames: uint8 truncation of values within rounding of a boundary: ±1 (pipeline.md §7.5). */
#include "test.h"

#include "backend.h"
#include "core.h"
#include "dit.h"
#include "model_dir.h"

#include <stdlib.h>

#define TOL_F32 1e-4
#define TOL_BF16 1e-2
#define TOL_FRAMES 1

/* ---- the workspace -------------------------------------------------------------------------------------- */

typedef struct ws_case {
    int T, Hl, Wl, Lt, per_token;
} ws_case;

/* Random inputs of case c for the tiny expert d: x, ctx and t (host, owned by the caller). */
static void make_inputs(const wan_dit *d, const ws_case *c, uint32_t seed, float **x, float **ctx, float **t)
{
    const size_t nx = (size_t)d->cfg.in_channels * c->T * c->Hl * c->Wl;
    const size_t nc = (size_t)c->Lt * d->cfg.text_dim;
    const int64_t L = (int64_t)c->T / d->cfg.patch_size[0] * (c->Hl / d->cfg.patch_size[1]) *
                      (c->Wl / d->cfg.patch_size[2]);
    *x = malloc(nx * sizeof(float));
    *ctx = malloc(nc * sizeof(float));
    *t = malloc((size_t)L * sizeof(float));
    uint64_t s = seed;
    for (size_t i = 0; i < nx + nc; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        const float v = (float)(uint32_t)(s >> 33) / 2147483648.0f - 1.0f;
        if (i < nx)
            (*x)[i] = v;
        else
            (*ctx)[i - nx] = v;
    }
    for (int64_t l = 0; l < L; l++) /* per token: two distinct timesteps (the TI2V first-frame case) */
        (*t)[l] = c->per_token && l >= L / 2 ? 0.0f : 731.0f;
}

/* One forward with the shared workspace against wan_dit_forward (its own workspace): bit for bit. Reports
 * whether the workspace grew and how many bytes the call allocated beyond what it held before. */
static int ws_run(const wan_dit *d, wan_backend *be, wan_dit_ws *ws, const ws_case *c, int *grew, size_t *extra)
{
    float *x, *ctx, *t;
    make_inputs(d, c, 11u + (uint32_t)c->Lt, &x, &ctx, &t);
    const size_t no = (size_t)d->cfg.out_channels * c->T * c->Hl * c->Wl;
    float *a = malloc(no * sizeof(float)), *b = malloc(no * sizeof(float));
    wan_error e = { 0 };
    const int g0 = ws->grows;
    const size_t m0 = wan_mem_current();
    wan_mem_reset_peak();
    wan_status rc = wan_dit_forward_ws(d, be, ws, x, c->T, c->Hl, c->Wl, t, c->per_token, ctx, c->Lt, a, NULL, &e);
    *extra = wan_mem_peak() - m0;
    *grew = ws->grows != g0;
    if (rc == WAN_OK)
        rc = wan_dit_forward(d, x, c->T, c->Hl, c->Wl, t, c->per_token, ctx, c->Lt, b, 2, NULL, &e);
    const int same = rc == WAN_OK && !memcmp(a, b, no * sizeof(float));
    if (rc != WAN_OK)
        printf("    forward %dx%dx%d, %d text rows: %s\n", c->T, c->Hl, c->Wl, c->Lt, e.msg);
    free(x), free(ctx), free(t), free(a), free(b);
    return same;
}

/* A workspace grows for more tokens, text rows or distinct timesteps, and is then reused: a forward whose
 * shapes fit allocates nothing (library heap peak unchanged), and every result equals wan_dit_forward's. */
TEST(device_dit_workspace_reuse)
{
    char err[512] = "";
    wan_model_t *m = NULL;
    wan_dit d;
    wan_backend *be = NULL;
    CHECK_MSG(wan_test_load_dit("tiny-wan22-t2v", &m, &d, &be, err, sizeof err), "%s", err);
    /* first use (grows), the same shape (reused), more text rows (grows), more tokens (grows), smaller
     * (reused), two distinct timesteps (grows), one again (reused) */
    const ws_case cases[] = { { 2, 4, 6, 5, 0 }, { 2, 4, 6, 5, 0 }, { 2, 4, 6, 9, 0 }, { 3, 8, 6, 9, 0 },
                              { 2, 4, 6, 3, 0 }, { 3, 8, 6, 9, 1 }, { 3, 8, 6, 9, 0 } };
    const int want_grow[] = { 1, 0, 1, 1, 0, 1, 0 };
    wan_dit_ws ws = { 0 };
    int ok = 1;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int grew = 0;
        size_t extra = 0;
        const int same = ws_run(&d, be, &ws, &cases[i], &grew, &extra);
        printf("    %zu: %dx%dx%d, %d text rows%s: %s, workspace %s (%zu KiB), %zu bytes allocated\n", i,
               cases[i].T, cases[i].Hl, cases[i].Wl, cases[i].Lt, cases[i].per_token ? ", per-token t" : "",
               same ? "same as wan_dit_forward" : "DIFFERS", grew ? "grew" : "reused", ws.cap >> 10, extra);
        ok &= same && grew == want_grow[i] && (grew || extra == 0);
    }
    wan_dit_ws_free(&ws);
    wan_backend_free(be);
    wan_dit_free(&d);
    wan_model_free(m);
    CHECK(ok);
}

/* ---- device selection ------------------------------------------------------------------------------------ */

/* A small generation of the tiny T2V model with the fixture's prompt embeddings (both experts, CFG). */
typedef struct gen_case {
    wan_model_t *model;
    wan_host_tensor pe, ne;
    wan_generate_params p;
} gen_case;

static wan_status gen_load(const char *model, gen_case *g, char *err, size_t errlen)
{
    memset(g, 0, sizeof *g);
    const char *emb = wan_test_fixture("pipeline/embeds.safetensors");
    wan_status rc = wan_model_load(wan_test_fixture(model), NULL, &g->model, err, errlen);
    if (rc == WAN_OK)
        rc = wan_safetensors_read(emb, "prompt_embeds", WAN_DTYPE_F32, &g->pe, err, errlen);
    if (rc == WAN_OK)
        rc = wan_safetensors_read(emb, "negative_prompt_embeds", WAN_DTYPE_F32, &g->ne, err, errlen);
    if (rc != WAN_OK)
        return rc;
    g->p = wan_generate_default_params(g->model);
    g->p.width = 48, g->p.height = 32, g->p.num_frames = 5, g->p.steps = 4, g->p.seed = 5, g->p.n_threads = 2;
    g->p.prompt_embeds = &g->pe, g->p.negative_prompt_embeds = &g->ne;
    return WAN_OK;
}

static void gen_free(gen_case *g)
{
    wan_host_tensor_free(&g->pe);
    wan_host_tensor_free(&g->ne);
    wan_model_free(g->model);
}

static wan_status gen_run(gen_case *g, const char *device, wan_video *v, char *err, size_t errlen)
{
    wan_ctx_t *ctx = NULL;
    wan_status rc = wan_ctx_new(g->model, &ctx, err, errlen);
    if (rc != WAN_OK)
        return rc;
    g->p.device = device;
    rc = wan_generate(ctx, &g->p, v);
    if (rc != WAN_OK)
        snprintf(err, errlen, "%s", wan_ctx_errmsg(ctx));
    wan_ctx_free(ctx);
    return rc;
}

/* "cpu" is the default: the same latents and frames, bit for bit, as no device at all. */
TEST(device_generate_cpu_is_default)
{
    char err[1024] = "";
    gen_case g;
    CHECK_RC(gen_load("tiny-wan22-t2v", &g, err, sizeof err), WAN_OK, err);
    wan_video a = { 0 }, b = { 0 };
    wan_status rc = gen_run(&g, NULL, &a, err, sizeof err);
    if (rc == WAN_OK)
        rc = gen_run(&g, "cpu", &b, err, sizeof err);
    const size_t nl = (size_t)(a.latents_shape[1] * a.latents_shape[2] * a.latents_shape[3] * a.latents_shape[4]);
    const int same = rc == WAN_OK && a.n_high_steps > 0 && a.n_high_steps < a.n_steps &&
                     !memcmp(a.latents, b.latents, nl * sizeof(float)) &&
                     !memcmp(a.frames, b.frames, (size_t)a.num_frames * a.height * a.width * 3);
    wan_video_free(&a);
    wan_video_free(&b);
    gen_free(&g);
    CHECK_RC(rc, WAN_OK, err);
    CHECK(same);
}

/* Unknown names fail as bad arguments and "cuda" without CUDA (or a device) as unsupported, before any work
 * (no progress reported), with the reason in the message; wan_device_check and
 * wan_transformer_forward_device say the same. */
static int g_progress_calls;
static int count_progress(const wan_progress *p, void *user)
{
    (void)p, (void)user;
    g_progress_calls++;
    return 0;
}

TEST(device_selection_errors)
{
    char err[1024] = "", desc[160] = "";
    gen_case g;
    CHECK_RC(gen_load("tiny-wan22-t2v", &g, err, sizeof err), WAN_OK, err);
    g.p.progress = count_progress;
    wan_video v = { 0 };
    g_progress_calls = 0;
    wan_status rc = gen_run(&g, "tpu", &v, err, sizeof err);
    const int tpu_ok = rc == WAN_ERR_INVALID_ARG && strstr(err, "tpu") && !v.frames && g_progress_calls == 0;
    printf("    device tpu: %s: %s\n", wan_status_str(rc), err);
    wan_status crc = wan_device_check("cuda", desc, sizeof desc, err, sizeof err);
    printf("    wan_device_check(cuda): %s: %s\n", wan_status_str(crc), crc == WAN_OK ? desc : err);
    int cuda_ok = 1;
    if (crc != WAN_OK) { /* this build or machine has no CUDA: wan_generate must say so first */
        char gerr[1024] = "";
        rc = gen_run(&g, "cuda", &v, gerr, sizeof gerr);
        printf("    device cuda: %s: %s\n", wan_status_str(rc), gerr);
        const char *why = strstr(err, "cuda backend"), *gwhy = strstr(gerr, "cuda backend");
        cuda_ok = crc == WAN_ERR_UNSUPPORTED && rc == WAN_ERR_UNSUPPORTED && why && gwhy && !strcmp(why, gwhy) &&
                  g_progress_calls == 0;
        wan_host_tensor x = { 0 }, t = { 0 }, c = { 0 }, out = { 0 };
        const char *in = wan_test_fixture("transformer/t2v_high.safetensors");
        if (wan_safetensors_read(in, "hidden_states", WAN_DTYPE_F32, &x, gerr, sizeof gerr) == WAN_OK &&
            wan_safetensors_read(in, "timestep", WAN_DTYPE_I64, &t, gerr, sizeof gerr) == WAN_OK &&
            wan_safetensors_read(in, "encoder_hidden_states", WAN_DTYPE_F32, &c, gerr, sizeof gerr) == WAN_OK)
            rc = wan_transformer_forward_device("cuda", g.model, 0, &x, &t, &c, &out, 1, gerr, sizeof gerr);
        else
            rc = WAN_ERR_IO;
        printf("    wan_transformer_forward_device(cuda): %s: %s\n", wan_status_str(rc), gerr);
        cuda_ok &= rc == WAN_ERR_UNSUPPORTED && out.data == NULL;
        wan_host_tensor_free(&x), wan_host_tensor_free(&t), wan_host_tensor_free(&c);
    }
    CHECK_RC(wan_device_check(NULL, desc, sizeof desc, err, sizeof err), WAN_OK, err);
    CHECK(strstr(desc, "CPU") != NULL);
    CHECK_RC(wan_device_check("cuda:x", NULL, 0, err, sizeof err), WAN_ERR_INVALID_ARG, err);
    wan_video_free(&v);
    gen_free(&g);
    CHECK(tpu_ok);
    CHECK(cuda_ok);
}

/* ---- the tiny fixtures on "cuda" ------------------------------------------------------------------------- */

/* Skips the case (with the reason) unless device "cuda" can be used here. */
#define NEED_CUDA()                                                                                               \
    do {                                                                                                          \
        char why_[1024] = "";                                                                                     \
        if (wan_device_check("cuda", NULL, 0, why_, sizeof why_) != WAN_OK)                                       \
            SKIP("no CUDA device: the tiny fixtures were not run on cuda (%s)", why_);                            \
    } while (0)

/* wan_transformer_forward_device on "cuda" against "cpu" for one fixture input. */
static int forward_pair(const char *model_dir, int expert, const char *file, double tol)
{
    char err[1024] = "";
    wan_model_t *m = NULL;
    wan_host_tensor x = { 0 }, t = { 0 }, c = { 0 }, a = { 0 }, b = { 0 };
    const char *in = wan_test_fixture(file);
    wan_status rc = wan_model_load(wan_test_fixture(model_dir), NULL, &m, err, sizeof err);
    if (rc == WAN_OK && (rc = wan_safetensors_read(in, "hidden_states", WAN_DTYPE_F32, &x, err, sizeof err)) == WAN_OK &&
        (rc = wan_safetensors_read(in, "timestep", WAN_DTYPE_I64, &t, err, sizeof err)) == WAN_OK &&
        (rc = wan_safetensors_read(in, "encoder_hidden_states", WAN_DTYPE_F32, &c, err, sizeof err)) == WAN_OK &&
        (rc = wan_transformer_forward_device("cpu", m, expert, &x, &t, &c, &a, 2, err, sizeof err)) == WAN_OK)
        rc = wan_transformer_forward_device("cuda", m, expert, &x, &t, &c, &b, 2, err, sizeof err);
    int ok = rc == WAN_OK && wan_test_compare(file, b.data, a.data, (size_t)wan_host_tensor_numel(&a), tol);
    if (rc != WAN_OK)
        printf("    %s: %s\n", file, err);
    wan_host_tensor *all[] = { &x, &t, &c, &a, &b };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        wan_host_tensor_free(all[i]);
    wan_model_free(m);
    return ok;
}

TEST(device_cuda_transformer_fixtures)
{
    NEED_CUDA();
    int ok = forward_pair("tiny-wan22-t2v", 0, "transformer/t2v_high.safetensors", TOL_F32);
    ok &= forward_pair("tiny-wan22-t2v", 1, "transformer/t2v_low.safetensors", TOL_F32);
    ok &= forward_pair("tiny-wan22-t2v", 0, "transformer/t2v_high_b2.safetensors", TOL_F32);
    ok &= forward_pair("tiny-wan22-ti2v", 0, "transformer/ti2v_tokens.safetensors", TOL_F32);
    ok &= forward_pair("transformer/bf16", 0, "transformer/t2v_high_bf16.safetensors", TOL_BF16);
    CHECK(ok);
}

/* Per-step latents of a generation (recorded through on_step, which downloads them from the device). */
typedef struct steps_rec {
    int n;
    float *lat[8];
} steps_rec;

static void rec_step(int step, double timestep, double sigma, const float *latents, int64_t n, void *user)
{
    steps_rec *r = user;
    (void)timestep, (void)sigma;
    if (step >= 0 && r->n < 8 && (r->lat[r->n] = malloc((size_t)n * sizeof(float))))
        memcpy(r->lat[r->n++], latents, (size_t)n * sizeof(float));
}

static int generate_pair(const char *model, int sampler)
{
    char err[1024] = "";
    gen_case g;
    steps_rec ra = { 0 }, rb = { 0 };
    wan_video a = { 0 }, b = { 0 };
    wan_status rc = gen_load(model, &g, err, sizeof err);
    if (rc == WAN_OK && !strcmp(model, "tiny-wan22-ti2v")) /* sizes are multiples of 32 there */
        g.p.width = 64, g.p.height = 64;
    g.p.sampler = sampler;
    g.p.on_step = rec_step;
    if (rc == WAN_OK) {
        g.p.step_user = &ra;
        rc = gen_run(&g, "cpu", &a, err, sizeof err);
    }
    if (rc == WAN_OK) {
        g.p.step_user = &rb;
        rc = gen_run(&g, "cuda", &b, err, sizeof err);
    }
    int ok = rc == WAN_OK && ra.n == rb.n && ra.n == a.n_steps && a.n_high_steps == b.n_high_steps;
    if (rc != WAN_OK)
        printf("    %s: %s\n", model, err);
    const int64_t nl = a.latents_shape[1] * a.latents_shape[2] * a.latents_shape[3] * a.latents_shape[4];
    for (int i = 0; ok && i < ra.n; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s step %d latents", model, i);
        ok &= wan_test_compare(name, rb.lat[i], ra.lat[i], (size_t)nl, TOL_F32);
    }
    if (ok) {
        const size_t nf = (size_t)a.num_frames * a.height * a.width * 3;
        int maxd = 0;
        for (size_t i = 0; i < nf; i++) {
            const int d = abs((int)a.frames[i] - (int)b.frames[i]);
            maxd = d > maxd ? d : maxd;
        }
        printf("    %s frames: max difference %d (tol %d)\n", model, maxd, TOL_FRAMES);
        ok &= maxd <= TOL_FRAMES;
    }
    for (int i = 0; i < ra.n; i++)
        free(ra.lat[i]);
    for (int i = 0; i < rb.n; i++)
        free(rb.lat[i]);
    wan_video_free(&a);
    wan_video_free(&b);
    gen_free(&g);
    return ok;
}

TEST(device_cuda_generate_fixtures)
{
    NEED_CUDA();
    int ok = generate_pair("tiny-wan22-t2v", WAN_SCHEDULER_UNIPC);
    ok &= generate_pair("tiny-wan22-t2v", WAN_SCHEDULER_DPMPP);
    ok &= generate_pair("tiny-wan22-t2v", WAN_SCHEDULER_EULER);
    ok &= generate_pair("tiny-wan22-ti2v", WAN_SCHEDULER_UNIPC);
    CHECK(ok);
}
