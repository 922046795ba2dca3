/* test_lora.c — LoRA adapters (src/lora.c) against diffusers' WanPipeline with load_lora_weights
 * (tests/fixtures/lora, made by tools/ref/dump_lora.py from the tiny t2v experts): every key format, on the
 * high-noise expert, the low-noise one and both, merged and on the fly; the Lightning recipe; then the
 * low-rank kernel against a naive reference, merged-vs-runtime on BF16 weights, and bad adapters. */
#define _XOPEN_SOURCE 700
#include "test.h"

#include "core.h"
#include "lora.h"
#include "model_dir.h"
#include "safetensors.h"

#include <math.h>
#include <stdlib.h>
#include <unistd.h>

void wan_test_rm_tree(const char *dir); /* test_pth.c */

/* Latents: as test_pipeline.c (pipeline.md §7.7): other accumulation orders than torch, grown through the
 * steps and the guidance (scale 6): ≤ 1e-4 · max|ref| on CPU fp32. */
#define TOL_LATENTS 1e-4
/* Frames: uint8(x·255) truncates, so a value within float rounding of a boundary may land one off. */
#define TOL_FRAMES 1
/* The low-rank kernel against a double-precision reference: f32 sums of at most ~200 terms. */
#define TOL_KERNEL 1e-5
/* Merged into BF16 copies vs on the fly: W + ΔW is rounded once to bf16 (up to 2^-9 ≈ 2e-3 relative per
 * weight), and the output of the two-block net moves by about as much relative to its range. */
#define TOL_BF16_MERGE 5e-3
/* Merged in f32 vs on the fly: the same sums in another order. */
#define TOL_F32_MERGE 1e-5
#define MAX_STEPS 8

typedef struct lora_ref {
    const char *file;
    double scale;
    wan_lora_target target;
} lora_ref;

typedef struct lora_case {
    const char *name;
    lora_ref loras[2];
    int n_loras;
    int sampler;        /* wan_scheduler_kind */
    double shift;       /* <= 0: the config's */
    double cfg, cfg2;
} lora_case;

/* The cases of tools/ref/dump_lora.py (tests/fixtures/lora/meta.json). */
static const lora_case k_cases[] = {
    { "peft_high", { { "peft_high", 1.0, WAN_LORA_HIGH } }, 1, WAN_SCHEDULER_UNIPC, 0, 6.0, 2.0 },
    { "peft_low", { { "peft_low", 1.0, WAN_LORA_LOW } }, 1, WAN_SCHEDULER_UNIPC, 0, 6.0, 2.0 },
    { "orig_both", { { "orig_high", 0.8, WAN_LORA_HIGH }, { "orig_low", 1.25, WAN_LORA_LOW } }, 2,
      WAN_SCHEDULER_UNIPC, 0, 6.0, 2.0 },
    { "kohya_both", { { "kohya_high", 1.0, WAN_LORA_HIGH }, { "kohya_low", 1.0, WAN_LORA_LOW } }, 2,
      WAN_SCHEDULER_UNIPC, 0, 6.0, 2.0 },
    { "orig_same", { { "orig_high", 0.5, WAN_LORA_BOTH } }, 1, WAN_SCHEDULER_UNIPC, 0, 6.0, 2.0 },
    { "stack", { { "peft_high", 0.6, WAN_LORA_HIGH }, { "kohya_high", 0.9, WAN_LORA_HIGH } }, 2,
      WAN_SCHEDULER_UNIPC, 0, 6.0, 2.0 },
    { "diff_both", { { "diff", 1.0, WAN_LORA_BOTH } }, 1, WAN_SCHEDULER_UNIPC, 0, 6.0, 2.0 },
    { "lightning", { { "orig_high", 1.0, WAN_LORA_HIGH }, { "orig_low", 1.0, WAN_LORA_LOW } }, 2,
      WAN_SCHEDULER_EULER, 5.0, 1.0, 1.0 },
};

static const char *lora_path(const char *file)
{
    static char buf[4][1024];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, sizeof buf[0], "%s", wan_test_fixture("lora/"));
    snprintf(b + strlen(b), sizeof buf[0] - strlen(b), "%s.safetensors", file);
    return b;
}

typedef struct steps_rec {
    float *lat[MAX_STEPS];
    int n;
    int experts[MAX_STEPS];
    int n_experts;
} steps_rec;

static void on_step(int step, double timestep, double sigma, const float *latents, int64_t n, void *user)
{
    steps_rec *r = user;
    (void)timestep, (void)sigma;
    if (step < 0 || step != r->n || step >= MAX_STEPS)
        return;
    r->lat[r->n] = malloc(sizeof(float) * (size_t)n);
    if (r->lat[r->n])
        memcpy(r->lat[r->n++], latents, sizeof(float) * (size_t)n);
}

static int on_progress(const wan_progress *p, void *user)
{
    steps_rec *r = user;
    if (p->stage == WAN_STAGE_DENOISE && r->n_experts < MAX_STEPS)
        r->experts[r->n_experts++] = p->expert;
    return 0;
}

static int compare_frames(const uint8_t *got, const uint8_t *ref, size_t n)
{
    size_t bad = 0;
    int max = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)got[i] - (int)ref[i]);
        bad += d != 0;
        max = d > max ? d : max;
    }
    printf("    frames: %zu of %zu bytes differ, max difference %d (tol %d) %s\n", bad, n, max, TOL_FRAMES,
           max <= TOL_FRAMES ? "ok" : "EXCEEDED");
    return max <= TOL_FRAMES;
}

/* Runs one reference case with adapters applied in `mode`, some given as loaded handles and some as paths,
 * and compares the per-step latents, the experts and the frames with diffusers'. */
static void run_case(const lora_case *lc, wan_lora_mode mode, int *failed_)
{
    char err[2048] = "", ref_path[1024];
    snprintf(ref_path, sizeof ref_path, "%s", wan_test_fixture("lora/"));
    snprintf(ref_path + strlen(ref_path), sizeof ref_path - strlen(ref_path), "case_%s.safetensors", lc->name);
    const char *emb = wan_test_fixture("lora/embeds.safetensors");
    wan_model_t *m = NULL;
    wan_ctx_t *ctx = NULL;
    wan_host_tensor lat = { 0 }, pe = { 0 }, ne = { 0 }, frames = { 0 }, experts = { 0 };
    wan_lora_t *handle = NULL;
    steps_rec rec = { 0 };
    wan_video v = { 0 };
    printf("    %s, %s\n", lc->name, mode == WAN_LORA_RUNTIME ? "on the fly" : "merged");
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-t2v"), NULL, &m, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_safetensors_read(ref_path, "latents", WAN_DTYPE_F32, &lat, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_safetensors_read(ref_path, "frames", WAN_DTYPE_U8, &frames, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_safetensors_read(ref_path, "experts", WAN_DTYPE_I64, &experts, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_safetensors_read(emb, "prompt_embeds", WAN_DTYPE_F32, &pe, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_safetensors_read(emb, "negative_prompt_embeds", WAN_DTYPE_F32, &ne, err, sizeof err), WAN_OK, err);
    /* the first adapter as a loaded (shareable) handle, the others by path */
    CHECK_RC(wan_lora_load(lora_path(lc->loras[0].file), &handle, err, sizeof err), WAN_OK, err);
    wan_lora_use uses[2];
    for (int i = 0; i < lc->n_loras; i++)
        uses[i] = (wan_lora_use){ i ? NULL : handle, lora_path(lc->loras[i].file), lc->loras[i].scale,
                                  lc->loras[i].target };
    wan_generate_params p = wan_generate_default_params(m);
    p.width = 48, p.height = 32, p.num_frames = 9, p.steps = (int)wan_host_tensor_numel(&experts);
    p.guidance_scale = lc->cfg, p.guidance_scale_2 = lc->cfg2, p.sampler = lc->sampler, p.shift = lc->shift;
    p.latents = &lat, p.prompt_embeds = &pe, p.negative_prompt_embeds = &ne, p.n_threads = 2;
    p.on_step = on_step, p.step_user = &rec, p.progress = on_progress, p.progress_user = &rec;
    p.loras = uses, p.n_loras = lc->n_loras, p.lora_mode = mode;
    CHECK_RC(wan_ctx_new(m, &ctx, err, sizeof err), WAN_OK, err);
    wan_status rc = wan_generate(ctx, &p, &v);
    CHECK_MSG(rc == WAN_OK, "wan_generate: %s", wan_ctx_errmsg(ctx));
    CHECK(rec.n == p.steps && rec.n_experts == p.steps);
    for (int i = 0; i < rec.n; i++) {
        char name[64];
        wan_host_tensor ref = { 0 };
        snprintf(name, sizeof name, "latents_step.%d", i);
        CHECK_RC(wan_safetensors_read(ref_path, name, WAN_DTYPE_F32, &ref, err, sizeof err), WAN_OK, err);
        CHECK(wan_test_compare(name, rec.lat[i], ref.data, (size_t)wan_host_tensor_numel(&ref), TOL_LATENTS));
        CHECK_MSG(rec.experts[i] == (int)((int64_t *)experts.data)[i], "step %d ran expert %d, diffusers %lld", i,
                  rec.experts[i], (long long)((int64_t *)experts.data)[i]);
        wan_host_tensor_free(&ref);
    }
    CHECK(v.num_frames * v.height * v.width * 3 == wan_host_tensor_numel(&frames));
    CHECK(compare_frames(v.frames, frames.data, (size_t)wan_host_tensor_numel(&frames)));
    for (int i = 0; i < rec.n; i++)
        free(rec.lat[i]);
    wan_video_free(&v);
    wan_ctx_free(ctx);
    wan_lora_free(handle);
    wan_host_tensor *t[] = { &lat, &pe, &ne, &frames, &experts };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        wan_host_tensor_free(t[i]);
    wan_model_free(m);
}

static void run_named(const char *name, wan_lora_mode mode, int *failed_)
{
    for (size_t i = 0; i < sizeof k_cases / sizeof *k_cases; i++)
        if (strcmp(k_cases[i].name, name) == 0) {
            run_case(&k_cases[i], mode, failed_);
            return;
        }
    CHECK_MSG(0, "no case %s", name);
}

TEST(lora_peft_high_runtime) { run_named("peft_high", WAN_LORA_RUNTIME, failed_); }
TEST(lora_peft_high_merge) { run_named("peft_high", WAN_LORA_MERGE, failed_); }
TEST(lora_peft_low_runtime) { run_named("peft_low", WAN_LORA_RUNTIME, failed_); }
TEST(lora_peft_low_merge) { run_named("peft_low", WAN_LORA_MERGE, failed_); }
TEST(lora_orig_both_runtime) { run_named("orig_both", WAN_LORA_RUNTIME, failed_); }
TEST(lora_orig_both_merge) { run_named("orig_both", WAN_LORA_MERGE, failed_); }
TEST(lora_kohya_both_runtime) { run_named("kohya_both", WAN_LORA_RUNTIME, failed_); }
TEST(lora_kohya_both_merge) { run_named("kohya_both", WAN_LORA_MERGE_F32, failed_); }
TEST(lora_orig_same_runtime) { run_named("orig_same", WAN_LORA_RUNTIME, failed_); }
TEST(lora_stack_runtime) { run_named("stack", WAN_LORA_RUNTIME, failed_); }
TEST(lora_stack_merge) { run_named("stack", WAN_LORA_MERGE, failed_); }
TEST(lora_diff_both_runtime) { run_named("diff_both", WAN_LORA_RUNTIME, failed_); }
TEST(lora_lightning_runtime) { run_named("lightning", WAN_LORA_RUNTIME, failed_); }
TEST(lora_lightning_merge) { run_named("lightning", WAN_LORA_MERGE, failed_); }

/* ---- adapters without a model ----------------------------------------------------------------- */

TEST(lora_info_formats)
{
    static const struct { const char *file, *format; int n_lowrank, n_delta, rmin, rmax; } want[] = {
        { "peft_high", "diffusers", 23, 0, 2, 4 },   /* 2 blocks x 10 + time_proj, proj_out, text linear_1 */
        { "peft_low", "diffusers", 23, 23, 4, 4 },   /* lora_bias: one lora_B.bias per pair                */
        { "orig_high", "original", 23, 23, 4, 4 },   /* a .diff_b on every linear                          */
        { "kohya_low", "kohya", 20, 0, 4, 4 },
        { "diff", "original", 0, 9, 0, 0 },
    };
    char err[1024];
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        wan_lora_t *l = NULL;
        wan_lora_info info;
        CHECK_RC(wan_lora_load(lora_path(want[i].file), &l, err, sizeof err), WAN_OK, err);
        CHECK_RC(wan_lora_get_info(l, &info), WAN_OK, "info");
        printf("    %s: %s, %d pairs (rank %d-%d), %d deltas, %d unknown\n", want[i].file, info.format,
               info.n_lowrank, info.rank_min, info.rank_max, info.n_delta, info.n_unknown);
        CHECK(strcmp(info.format, want[i].format) == 0);
        CHECK(info.n_lowrank == want[i].n_lowrank && info.n_delta == want[i].n_delta);
        CHECK(info.rank_min == want[i].rmin && info.rank_max == want[i].rmax && info.n_unknown == 0);
        wan_lora_free(l);
    }
}

static uint32_t g_lcg = 777u;
static float frand(void) /* uniform in [-1, 1) */
{
    g_lcg = g_lcg * 1664525u + 1013904223u;
    return (float)((g_lcg >> 8) * (1.0 / 8388608.0)) - 1.0f;
}

TEST(lora_kernel_vs_naive)
{
    const int64_t M = 600, in = 48, out = 40, r = 6, ldx = in + 3, ldy = out + 5; /* 3 row chunks, strided */
    float *x = malloc(sizeof(float) * (size_t)(M * ldx)), *y = malloc(sizeof(float) * (size_t)(M * ldy));
    float *ref = malloc(sizeof(float) * (size_t)(M * out)), *got = malloc(sizeof(float) * (size_t)(M * out));
    float *A = malloc(sizeof(float) * (size_t)(r * in)), *B = malloc(sizeof(float) * (size_t)(out * r));
    float *scratch = malloc(sizeof(float) * (size_t)wan_lora_lin_scratch(r, 2));
    CHECK(x && y && ref && got && A && B && scratch);
    for (int64_t i = 0; i < M * ldx; i++)
        x[i] = frand();
    for (int64_t i = 0; i < M * ldy; i++)
        y[i] = frand();
    for (int64_t i = 0; i < r * in; i++)
        A[i] = frand();
    for (int64_t i = 0; i < out * r; i++)
        B[i] = frand();
    for (int64_t m = 0; m < M; m++)
        for (int64_t o = 0; o < out; o++) {
            double s = y[m * ldy + o];
            for (int64_t j = 0; j < r; j++) {
                double t = 0;
                for (int64_t k = 0; k < in; k++)
                    t += (double)x[m * ldx + k] * A[j * in + k];
                s += t * B[o * r + j];
            }
            ref[m * out + o] = (float)s;
        }
    wan_lora_lin l = { .r = r, .in = in, .out = out, .A = A, .B = B };
    wan_lora_lin_apply(&l, x, M, ldx, y, ldy, scratch, 2);
    for (int64_t m = 0; m < M; m++)
        memcpy(got + m * out, y + m * ldy, sizeof(float) * (size_t)out);
    CHECK(wan_test_compare("y + (x·Aᵀ)·Bᵀ", got, ref, (size_t)(M * out), TOL_KERNEL));
    free(x), free(y), free(ref), free(got), free(A), free(B), free(scratch);
}

/* One DiT forward of the BF16 expert (tests/fixtures/transformer/bf16) with kohya_high in each mode. */
static void forward_mode(const wan_model_t *m, int mode, const wan_host_tensor *hs, const wan_host_tensor *ts,
                         const wan_host_tensor *ehs, wan_host_tensor *out, int *failed_)
{
    wan_error err = { 0 };
    char msg[1024] = "";
    wan_lora_use use = { NULL, lora_path("kohya_high"), 1.0, WAN_LORA_HIGH };
    wan_lora_request *q = NULL;
    CHECK_RC(wan_lora_request_new(m, &use, 1, mode, &q, &err), WAN_OK, err.msg);
    CHECK_RC(wan_lora_request_bind(q, 0, &err), WAN_OK, err.msg);
    CHECK_RC(wan_lora_forward(q, m, 0, hs, ts, ehs, out, 2, msg, sizeof msg), WAN_OK, msg);
    wan_lora_request_free(q);
}

TEST(lora_merge_bf16_vs_runtime)
{
    char err[1024];
    wan_model_t *m = NULL;
    const char *inputs = wan_test_fixture("transformer/t2v_high.safetensors");
    wan_host_tensor hs = { 0 }, ts = { 0 }, ehs = { 0 }, rt = { 0 }, mg = { 0 }, mf = { 0 }, base = { 0 };
    CHECK_RC(wan_model_load(wan_test_fixture("transformer/bf16"), NULL, &m, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_safetensors_read(inputs, "hidden_states", WAN_DTYPE_F32, &hs, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_safetensors_read(inputs, "timestep", WAN_DTYPE_I64, &ts, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_safetensors_read(inputs, "encoder_hidden_states", WAN_DTYPE_F32, &ehs, err, sizeof err), WAN_OK,
             err);
    CHECK_RC(wan_transformer_forward(m, 0, &hs, &ts, &ehs, &base, 2, err, sizeof err), WAN_OK, err);
    forward_mode(m, WAN_LORA_RUNTIME, &hs, &ts, &ehs, &rt, failed_);
    forward_mode(m, WAN_LORA_MERGE, &hs, &ts, &ehs, &mg, failed_);
    forward_mode(m, WAN_LORA_MERGE_F32, &hs, &ts, &ehs, &mf, failed_);
    const size_t n = (size_t)wan_host_tensor_numel(&rt);
    double moved = 0, top = 0;
    for (size_t i = 0; i < n; i++) {
        moved = fmax(moved, fabs(((float *)rt.data)[i] - ((float *)base.data)[i]));
        top = fmax(top, fabs(((float *)base.data)[i]));
    }
    printf("    the LoRA moves the output by %.3g of its range\n", moved / top);
    CHECK(moved > 0.05 * top);
    CHECK(wan_test_compare("merged f32 vs on the fly", mf.data, rt.data, n, TOL_F32_MERGE));
    CHECK(wan_test_compare("merged bf16 vs on the fly", mg.data, rt.data, n, TOL_BF16_MERGE));
    wan_host_tensor *t[] = { &hs, &ts, &ehs, &rt, &mg, &mf, &base };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        wan_host_tensor_free(t[i]);
    wan_model_free(m);
}

/* A q8_0 expert (the BF16 one converted with --quantize q8_0): on the fly the adapter adds to the q8_0 product; merged
 * in f32 it is added to the f32 values the q8_0 weights stand for (so both agree within TOL_F32_MERGE); merged in the
 * stored dtype the sum is quantised again (within TOL_Q8_MERGE of the others). Then the q4_0 copy, and a float8 expert,
 * whose merge in the stored dtype is a BF16 copy. */
#define TOL_Q8_MERGE 3e-2
#define TOL_Q4_MERGE (16 * TOL_Q8_MERGE) /* a step 16 times coarser */

/* Writes the fixture model `fixture` quantised as qt to dst. */
static wan_status quantised_copy(const char *fixture, wan_quant qt, const char *dst, char *err, size_t errlen)
{
    wan_model_t *m = NULL;
    wan_status rc = wan_model_load(wan_test_fixture(fixture), NULL, &m, err, errlen);
    wan_convert_params p = wan_convert_default_params();
    p.quantize = qt;
    if (rc == WAN_OK)
        rc = wan_model_convert(m, dst, &p, err, errlen);
    wan_model_free(m);
    return rc;
}

TEST(lora_q8_0)
{
    char err[1024], tmp[] = "/tmp/wan-lora-q8-XXXXXX", dst[300];
    CHECK(mkdtemp(tmp));
    snprintf(dst, sizeof dst, "%s/q8", tmp);
    char dst4[320];
    snprintf(dst4, sizeof dst4, "%s/q4", tmp);
    CHECK_RC(quantised_copy("transformer/bf16", WAN_QUANT_Q8_0, dst, err, sizeof err), WAN_OK, err);
    CHECK_RC(quantised_copy("transformer/bf16", WAN_QUANT_Q4_0, dst4, err, sizeof err), WAN_OK, err);
    wan_model_t *m = NULL;
    CHECK_RC(wan_model_load(dst, NULL, &m, err, sizeof err), WAN_OK, err);
    CHECK(wan_st_set_find(wan_model_weights(m, WAN_COMPONENT_TRANSFORMER), "blocks.0.attn1.to_q.weight")->t->dtype ==
          WAN_DTYPE_I8);
    const char *inputs = wan_test_fixture("transformer/t2v_high.safetensors");
    wan_host_tensor hs = { 0 }, ts = { 0 }, ehs = { 0 }, rt = { 0 }, mg = { 0 }, mf = { 0 };
    CHECK_RC(wan_safetensors_read(inputs, "hidden_states", WAN_DTYPE_F32, &hs, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_safetensors_read(inputs, "timestep", WAN_DTYPE_I64, &ts, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_safetensors_read(inputs, "encoder_hidden_states", WAN_DTYPE_F32, &ehs, err, sizeof err), WAN_OK,
             err);
    forward_mode(m, WAN_LORA_RUNTIME, &hs, &ts, &ehs, &rt, failed_);
    forward_mode(m, WAN_LORA_MERGE, &hs, &ts, &ehs, &mg, failed_);
    forward_mode(m, WAN_LORA_MERGE_F32, &hs, &ts, &ehs, &mf, failed_);
    const size_t n = (size_t)wan_host_tensor_numel(&rt);
    CHECK(wan_test_compare("q8_0, merged f32 vs on the fly", mf.data, rt.data, n, TOL_F32_MERGE));
    CHECK(wan_test_compare("q8_0, merged q8_0 vs on the fly", mg.data, rt.data, n, TOL_Q8_MERGE));
    wan_host_tensor *t[] = { &rt, &mg, &mf };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        wan_host_tensor_free(t[i]);
    wan_model_free(m);
    /* q4_0 likewise, merged in the stored dtype quantised again at 4 bits */
    m = NULL;
    CHECK_RC(wan_model_load(dst4, NULL, &m, err, sizeof err), WAN_OK, err);
    forward_mode(m, WAN_LORA_RUNTIME, &hs, &ts, &ehs, &rt, failed_);
    forward_mode(m, WAN_LORA_MERGE, &hs, &ts, &ehs, &mg, failed_);
    forward_mode(m, WAN_LORA_MERGE_F32, &hs, &ts, &ehs, &mf, failed_);
    CHECK(wan_test_compare("q4_0, merged f32 vs on the fly", mf.data, rt.data, n, TOL_F32_MERGE));
    CHECK(wan_test_compare("q4_0, merged q4_0 vs on the fly", mg.data, rt.data, n, TOL_Q4_MERGE));
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        wan_host_tensor_free(t[i]);
    wan_model_free(m);
    wan_test_rm_tree(tmp);
    /* a float8 expert (ComfyUI fp8 scaled): merged in the stored dtype means into BF16 copies */
    m = NULL;
    CHECK_RC(wan_model_load(wan_test_fixture("fp8/comfy_scaled_e4m3"), NULL, &m, err, sizeof err), WAN_OK, err);
    forward_mode(m, WAN_LORA_RUNTIME, &hs, &ts, &ehs, &rt, failed_);
    forward_mode(m, WAN_LORA_MERGE, &hs, &ts, &ehs, &mg, failed_);
    forward_mode(m, WAN_LORA_MERGE_F32, &hs, &ts, &ehs, &mf, failed_);
    CHECK(wan_test_compare("float8, merged f32 vs on the fly", mf.data, rt.data, n, TOL_F32_MERGE));
    CHECK(wan_test_compare("float8, merged bf16 vs on the fly", mg.data, rt.data, n, TOL_BF16_MERGE));
    wan_host_tensor *u[] = { &hs, &ts, &ehs, &rt, &mg, &mf };
    for (size_t i = 0; i < sizeof u / sizeof *u; i++)
        wan_host_tensor_free(u[i]);
    wan_model_free(m);
}

/* ---- bad adapters ----------------------------------------------------------------------------- */

/* Writes a small adapter to a temporary file; returns its path (static). */
static const char *write_lora(const char *tag, const char *const *names, const int64_t (*shapes)[2], int n)
{
    static char path[256];
    snprintf(path, sizeof path, "/tmp/wan_test_lora_%s_%d.safetensors", tag, (int)getpid());
    wan_host_tensor t[8];
    static float data[8][64 * 64];
    for (int i = 0; i < n; i++) {
        memset(&t[i], 0, sizeof t[i]);
        snprintf(t[i].name, sizeof t[i].name, "%s", names[i]);
        t[i].dtype = WAN_DTYPE_F32;
        t[i].ndim = shapes[i][1] ? 2 : 1;
        t[i].shape[0] = shapes[i][0];
        t[i].shape[1] = shapes[i][1];
        for (int k = 0; k < 64 * 64; k++)
            data[i][k] = 0.01f * frand();
        t[i].data = data[i];
    }
    char err[512];
    return wan_safetensors_write(path, t, n, err, sizeof err) == WAN_OK ? path : NULL;
}

/* Loads `path` and checks it against the tiny t2v model; expects rc and every `needles` in the message. */
static void expect_error(const char *path, wan_status want, const char *needle, const char *needle2, int *failed_)
{
    char err[2048] = "";
    wan_model_t *m = NULL;
    wan_lora_t *l = NULL;
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-t2v"), NULL, &m, err, sizeof err), WAN_OK, err);
    wan_status rc = wan_lora_load(path, &l, err, sizeof err);
    if (rc == WAN_OK)
        rc = wan_lora_check(m, l, WAN_LORA_BOTH, err, sizeof err);
    printf("    -> %s: %s\n", wan_status_str(rc), err);
    CHECK_MSG(rc == want, "got %s, want %s", wan_status_str(rc), wan_status_str(want));
    CHECK_MSG(strstr(err, needle) != NULL, "'%s' not in the message", needle);
    CHECK_MSG(!needle2 || strstr(err, needle2) != NULL, "'%s' not in the message", needle2);
    wan_lora_free(l);
    wan_model_free(m);
}

TEST(lora_bad_shape)
{
    const char *names[] = { "diffusion_model.blocks.0.self_attn.q.lora_down.weight",
                            "diffusion_model.blocks.0.self_attn.q.lora_up.weight" };
    const int64_t shapes[][2] = { { 4, 32 }, { 64, 4 } }; /* the model's to_q is [64, 64] */
    const char *p = write_lora("shape", names, shapes, 2);
    CHECK(p != NULL);
    expect_error(p, WAN_ERR_SHAPE, "blocks.0.self_attn.q.lora_down.weight", "[4, 32]", failed_);
    unlink(p);
    const char *n2[] = { "diffusion_model.blocks.1.norm3.diff" };
    const int64_t s2[][2] = { { 32, 0 } };
    p = write_lora("shape2", n2, s2, 1);
    expect_error(p, WAN_ERR_SHAPE, "blocks.1.norm3.diff", "blocks.1.norm2.weight", failed_);
    unlink(p);
}

TEST(lora_no_matching_key)
{
    const char *names[] = { "diffusion_model.blocks.7.self_attn.q.lora_down.weight",
                            "diffusion_model.blocks.7.self_attn.q.lora_up.weight" };
    const int64_t shapes[][2] = { { 4, 64 }, { 64, 4 } }; /* the model has 2 blocks */
    const char *p = write_lora("nomatch", names, shapes, 2);
    expect_error(p, WAN_ERR_NOT_FOUND, "blocks.7.self_attn.q.lora_down.weight", "none of its keys", failed_);
    unlink(p);
    const char *n2[] = { "model.layers.0.mlp.weight", "something_else" };
    const int64_t s2[][2] = { { 4, 4 }, { 4, 0 } };
    p = write_lora("unknown", n2, s2, 2);
    expect_error(p, WAN_ERR_NOT_FOUND, "known LoRA format", "model.layers.0.mlp.weight", failed_);
    unlink(p);
}

TEST(lora_bad_pairs)
{
    const char *names[] = { "transformer.blocks.0.attn1.to_q.lora_A.weight",
                            "transformer.blocks.0.attn1.to_q.lora_B.weight" };
    const int64_t rank[][2] = { { 4, 64 }, { 64, 3 } };
    const char *p = write_lora("rank", names, rank, 2);
    expect_error(p, WAN_ERR_FORMAT, "transformer.blocks.0.attn1.to_q.lora_B.weight", "[64, 3]", failed_);
    unlink(p);
    p = write_lora("single", names, rank, 1);
    expect_error(p, WAN_ERR_FORMAT, "transformer.blocks.0.attn1.to_q.lora_A.weight", "no matching", failed_);
    unlink(p);
}

TEST(lora_corrupt_file)
{
    char path[256], err[1024];
    snprintf(path, sizeof path, "/tmp/wan_test_lora_trunc_%d.safetensors", (int)getpid());
    FILE *in = fopen(lora_path("kohya_high"), "rb"), *out = fopen(path, "wb");
    CHECK(in && out);
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, in); /* the header and the start of the data only */
    CHECK(fwrite(buf, 1, n, out) == n);
    fclose(in);
    fclose(out);
    expect_error(path, WAN_ERR_FORMAT, path, NULL, failed_);
    unlink(path);
    expect_error("/nonexistent/lora.safetensors", WAN_ERR_NOT_FOUND, "/nonexistent/lora.safetensors", NULL,
                 failed_);
    wan_model_t *m = NULL;
    wan_lora_t *l = NULL;
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-ti2v"), NULL, &m, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_lora_load(lora_path("kohya_low"), &l, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_lora_check(m, l, WAN_LORA_LOW, err, sizeof err), WAN_ERR_INVALID_ARG, err);
    printf("    -> %s\n", err);
    wan_lora_free(l);
    wan_model_free(m);
}

/* A bad adapter makes wan_generate fail before any step, with the key in the context's message. */
TEST(lora_generate_error)
{
    char err[1024];
    wan_model_t *m = NULL;
    wan_ctx_t *ctx = NULL;
    wan_host_tensor pe = { 0 };
    wan_video v = { 0 };
    const char *names[] = { "lora_unet_blocks_0_ffn_0.lora_down.weight", "lora_unet_blocks_0_ffn_0.lora_up.weight" };
    const int64_t shapes[][2] = { { 4, 64 }, { 64, 4 } }; /* ffn.0 is [128, 64] */
    const char *p = write_lora("gen", names, shapes, 2);
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-t2v"), NULL, &m, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_safetensors_read(wan_test_fixture("lora/embeds.safetensors"), "prompt_embeds", WAN_DTYPE_F32, &pe,
                                  err, sizeof err), WAN_OK, err);
    wan_lora_use use = { NULL, p, 1.0, WAN_LORA_BOTH };
    wan_generate_params gp = wan_generate_default_params(m);
    gp.width = 48, gp.height = 32, gp.num_frames = 5, gp.steps = 2, gp.guidance_scale = 1.0;
    gp.guidance_scale_2 = 1.0, gp.prompt_embeds = &pe, gp.loras = &use, gp.n_loras = 1;
    CHECK_RC(wan_ctx_new(m, &ctx, err, sizeof err), WAN_OK, err);
    CHECK(wan_generate(ctx, &gp, &v) == WAN_ERR_SHAPE);
    printf("    -> %s\n", wan_ctx_errmsg(ctx));
    CHECK(strstr(wan_ctx_errmsg(ctx), "lora_unet_blocks_0_ffn_0.lora_up.weight") != NULL);
    CHECK(v.frames == NULL);
    wan_ctx_free(ctx);
    wan_host_tensor_free(&pe);
    wan_model_free(m);
    unlink(p);
}

/* Every allocation of loading, checking and binding (both modes) may fail: the call then reports
 * WAN_ERR_NOMEM and leaks nothing (ASan), and a later call succeeds. */
TEST(lora_alloc_failures)
{
    char err[1024];
    wan_model_t *m = NULL;
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-t2v"), NULL, &m, err, sizeof err), WAN_OK, err);
    int nomem = 0, ok = 0;
    for (int mode = WAN_LORA_RUNTIME; mode <= WAN_LORA_MERGE; mode++)
        for (long n = 1; n < 400; n++) {
            wan_error e = { 0 };
            wan_lora_use uses[2] = { { NULL, lora_path("orig_high"), 1.0, WAN_LORA_BOTH },
                                     { NULL, lora_path("diff"), 0.5, WAN_LORA_LOW } };
            wan_lora_request *q = NULL;
            wan_mem_fail_after(n);
            wan_status rc = wan_lora_request_new(m, uses, 2, mode, &q, &e);
            if (rc == WAN_OK && (rc = wan_lora_request_bind(q, 0, &e)) == WAN_OK)
                rc = wan_lora_request_bind(q, 1, &e);
            long made = wan_mem_fail_after(0);
            wan_lora_request_free(q);
            CHECK_MSG(rc == WAN_OK || rc == WAN_ERR_NOMEM, "allocation %ld: %s", n, e.msg);
            nomem += rc == WAN_ERR_NOMEM;
            if (rc == WAN_OK && made < n) { /* every allocation ran before the failure point */
                ok = 1;
                break;
            }
        }
    printf("    %d failing allocations reported as out of memory\n", nomem);
    CHECK(ok && nomem > 20);
    wan_model_free(m);
}

/* Full deltas (.diff, diff.safetensors) on a q4_0 model: checked against the weights' shape in values (the stored U8
 * tensor has half the columns), then merged (quantised again) and applied on the fly, without error. */
TEST(lora_diff_on_q4_0)
{
    char err[1024] = "", tmp[] = "/tmp/wan-lora-q4-XXXXXX", dst[300];
    CHECK(mkdtemp(tmp));
    snprintf(dst, sizeof dst, "%s/q4", tmp);
    CHECK_RC(quantised_copy("tiny-wan22-t2v", WAN_QUANT_Q4_0, dst, err, sizeof err), WAN_OK, err);
    wan_model_t *m = NULL;
    CHECK_RC(wan_model_load(dst, NULL, &m, err, sizeof err), WAN_OK, err);
    wan_lora_t *l = NULL;
    CHECK_RC(wan_lora_load(lora_path("diff"), &l, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_lora_check(m, l, WAN_LORA_BOTH, err, sizeof err), WAN_OK, err);
    wan_lora_free(l);
    for (int mode = WAN_LORA_RUNTIME; mode <= WAN_LORA_MERGE; mode++) {
        wan_error e = { 0 };
        wan_lora_use use = { NULL, lora_path("diff"), 1.0, WAN_LORA_BOTH };
        wan_lora_request *q = NULL;
        CHECK_RC(wan_lora_request_new(m, &use, 1, mode, &q, &e), WAN_OK, e.msg);
        CHECK_RC(wan_lora_request_bind(q, 0, &e), WAN_OK, e.msg);
        CHECK_RC(wan_lora_request_bind(q, 1, &e), WAN_OK, e.msg);
        wan_lora_request_free(q);
    }
    wan_model_free(m);
    wan_test_rm_tree(tmp);
}
