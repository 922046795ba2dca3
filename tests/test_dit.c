/* test_dit.c — WanTransformer3DModel parity against diffusers (tests/fixtures/transformer/, made by
 * tools/ref/dump_transformer.py), original-layout loading, input errors and attention memory.
 *
 * Tolerance: max|ours − ref| <= 1e-4 · max|ref| per tensor. Both sides compute in f32 from the same weights
 * (the BF16 case: from the same BF16-rounded weights); what is left is f32 summation order in GEMMs and the
 * softmax, ~1e-6 relative per layer, plus one-ulp differences of torch's f32 exp in the sinusoid. */
#include "test.h"

#include "backend.h"
#include "core.h"
#include "cpu/gemm.h"
#include "dit.h"
#include "model_dir.h"

#include <stdlib.h>

#define DIT_TOL 1e-4

typedef struct dit_case {
    wan_host_tensor x, t, ctx, sample;
} dit_case;

static void case_free(dit_case *c)
{
    wan_host_tensor_free(&c->x);
    wan_host_tensor_free(&c->t);
    wan_host_tensor_free(&c->ctx);
    wan_host_tensor_free(&c->sample);
}

static wan_status case_load(const char *file, dit_case *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    const char *path = wan_test_fixture(file);
    wan_status rc;
    if ((rc = wan_safetensors_read(path, "hidden_states", WAN_DTYPE_F32, &c->x, err, errlen)) ||
        (rc = wan_safetensors_read(path, "timestep", WAN_DTYPE_I64, &c->t, err, errlen)) ||
        (rc = wan_safetensors_read(path, "encoder_hidden_states", WAN_DTYPE_F32, &c->ctx, err, errlen)) ||
        (rc = wan_safetensors_read(path, "sample", WAN_DTYPE_F32, &c->sample, err, errlen)))
        case_free(c);
    return rc;
}

/* Public API forward of a fixture case; compares `sample` within tol · max|ref|. Returns 1 when within it. */
static int api_case_tol(const char *model_dir, int expert, const char *file, const char *label, wan_host_tensor *keep,
                        double tol)
{
    char err[512] = "";
    wan_model_t *m = NULL;
    dit_case c;
    if (wan_model_load(wan_test_fixture(model_dir), NULL, &m, err, sizeof err) != WAN_OK ||
        case_load(file, &c, err, sizeof err) != WAN_OK) {
        printf("    %s: %s\n", label, err);
        wan_model_free(m);
        return 0;
    }
    wan_host_tensor out = { 0 };
    int ok = 0;
    wan_status rc = wan_transformer_forward(m, expert, &c.x, &c.t, &c.ctx, &out, 2, err, sizeof err);
    if (rc != WAN_OK) {
        printf("    %s: forward failed: %s\n", label, err);
    } else if (out.ndim != 5 || memcmp(out.shape, c.sample.shape, sizeof out.shape) || strcmp(out.name, "sample")) {
        printf("    %s: output shape/name mismatch\n", label);
    } else {
        char name[160];
        snprintf(name, sizeof name, "%s sample", label);
        ok = wan_test_compare(name, out.data, c.sample.data, (size_t)wan_host_tensor_numel(&out), tol);
    }
    if (keep && ok)
        *keep = out;
    else
        wan_host_tensor_free(&out);
    case_free(&c);
    wan_model_free(m);
    return ok;
}

static int api_case(const char *model_dir, int expert, const char *file, const char *label, wan_host_tensor *keep)
{
    return api_case_tol(model_dir, expert, file, label, keep, DIT_TOL);
}

/* ---- intermediates through the internal API, with a probe --------------------------------------- */

typedef struct probe_ctx {
    const char *file;
    const char *label;
    const int64_t *t;  /* the case's timesteps, to map distinct-t rows to token rows */
    int64_t nt;
    int failed, seen;
} probe_ctx;

static void on_probe(const char *name, const float *data, int64_t rows, int64_t cols, void *user)
{
    probe_ctx *p = user;
    char err[512];
    wan_host_tensor ref = { 0 };
    if (wan_safetensors_read(wan_test_fixture(p->file), name, WAN_DTYPE_F32, &ref, err, sizeof err) != WAN_OK) {
        printf("    %s: no reference for %s: %s\n", p->label, name, err);
        p->failed = 1;
        return;
    }
    const int64_t ref_rows = wan_host_tensor_numel(&ref) / cols;
    float *cmp = (float *)data;
    float *ref_sel = ref.data;
    float *sel = NULL;
    if (ref_rows != rows) {
        /* per-token temb/timestep_proj: our row u is the u-th distinct t in token order */
        sel = malloc((size_t)(rows * cols) * sizeof(float));
        int64_t u = 0;
        for (int64_t l = 0; l < p->nt && u < rows; l++) {
            int first = 1;
            for (int64_t j = 0; j < l; j++)
                first &= p->t[j] != p->t[l];
            if (first)
                memcpy(sel + (u++) * cols, (float *)ref.data + l * cols, (size_t)cols * sizeof(float));
        }
        ref_sel = sel;
    }
    char label[160];
    snprintf(label, sizeof label, "%s %s", p->label, name);
    if (!wan_test_compare(label, cmp, ref_sel, (size_t)(rows * cols), DIT_TOL))
        p->failed = 1;
    p->seen++;
    free(sel);
    wan_host_tensor_free(&ref);
}

static int probe_case(const char *model_dir, int expert, const char *file, const char *label)
{
    char err[512] = "";
    wan_error e = { 0 };
    wan_model_t *m = NULL;
    dit_case c;
    if (wan_model_load(wan_test_fixture(model_dir), NULL, &m, err, sizeof err) != WAN_OK ||
        case_load(file, &c, err, sizeof err) != WAN_OK) {
        printf("    %s: %s\n", label, err);
        wan_model_free(m);
        return 0;
    }
    wan_dit dit;
    int ok = 0;
    const int64_t nt = wan_host_tensor_numel(&c.t);
    float *tf = malloc((size_t)nt * sizeof(float)), *out = malloc((size_t)wan_host_tensor_numel(&c.sample) * 4);
    for (int64_t i = 0; i < nt; i++)
        tf[i] = (float)((int64_t *)c.t.data)[i];
    probe_ctx pc = { file, label, c.t.data, nt, 0, 0 };
    wan_dit_probe pr = { on_probe, &pc };
    if (wan_dit_init(&dit, wan_model_weights(m, expert ? WAN_COMPONENT_TRANSFORMER_2 : WAN_COMPONENT_TRANSFORMER),
                     wan_model_transformer_config(m, expert), &e) != WAN_OK ||
        wan_dit_forward(&dit, c.x.data, (int)c.x.shape[2], (int)c.x.shape[3], (int)c.x.shape[4], tf, c.t.ndim == 2,
                        c.ctx.data, c.ctx.shape[1], out, 2, &pr, &e) != WAN_OK) {
        printf("    %s: %s\n", label, e.msg);
    } else {
        ok = !pc.failed && pc.seen == 5 + dit.cfg.num_layers; /* temb, proj, text, patch, blocks, out */
    }
    wan_dit_free(&dit);
    free(tf);
    free(out);
    case_free(&c);
    wan_model_free(m);
    return ok;
}

TEST(dit_parity_t2v_high)
{
    CHECK(probe_case("tiny-wan22-t2v", 0, "transformer/t2v_high.safetensors", "t2v high"));
    CHECK(api_case("tiny-wan22-t2v", 0, "transformer/t2v_high.safetensors", "t2v high (api)", NULL));
}

TEST(dit_parity_t2v_low)
{
    CHECK(probe_case("tiny-wan22-t2v", 1, "transformer/t2v_low.safetensors", "t2v low"));
    CHECK(api_case("tiny-wan22-t2v", 1, "transformer/t2v_low.safetensors", "t2v low (api)", NULL));
}

/* The opt-in bf16 products (WAN_CPU_GEMM=bf16) on the fp32 fixture: every projection's operands rounded to bf16
 * (8 significant bits, 2^-9 relative), so the bound is that of a bf16 forward, not DIT_TOL. Skipped where the CPU
 * has neither AMX nor AVX512-BF16. */
#define DIT_BF16_TOL 3e-2

TEST(dit_bf16_products)
{
    const wan_gemm_ukr *u = wan_gemm_ukr_bf16();
    if (!u) {
        printf("    skipping: no AMX or AVX512-BF16 on this CPU\n");
        return;
    }
    printf("    bf16 products through %s\n", u->name);
    wan_cpu_linear_set_mode(WAN_LINEAR_BF16);
    const int ok = api_case_tol("tiny-wan22-t2v", 0, "transformer/t2v_high.safetensors", "t2v high, bf16 products",
                                NULL, DIT_BF16_TOL);
    wan_cpu_linear_set_mode(WAN_LINEAR_AUTO);
    CHECK(ok);
}

/* ComfyUI "fp8 scaled" checkpoints (tools/ref/dump_fp8.py): float8 linear weights with one f32 scale per tensor, in
 * both naming conventions (scale_weight with the model.diffusion_model. prefix; weight_scale + comfy_quant), E4M3
 * and E5M2, some without a scale. The reference is diffusers' float32 forward with the dequantised weights, so the
 * parity bound is DIT_TOL. */
static void fp8_case(const char *folder, const char *ref_name, int *failed_)
{
    char err[512] = "";
    wan_model_t *m = NULL;
    dit_case c;
    wan_host_tensor ref = { 0 }, out = { 0 };
    CHECK_RC(wan_model_load(wan_test_fixture(folder), NULL, &m, err, sizeof err), WAN_OK, err);
    CHECK_RC(case_load("transformer/t2v_high.safetensors", &c, err, sizeof err), WAN_OK, err);
    CHECK(wan_test_read("fp8/reference.safetensors", ref_name, WAN_DTYPE_F32, &ref));
    wan_component_info info;
    CHECK(wan_model_component_info(m, WAN_COMPONENT_TRANSFORMER, &info) == WAN_OK);
    printf("    %s: %lld bytes F8_E4M3, %lld F8_E5M2, %lld F32\n", folder,
           (long long)info.bytes_by_dtype[WAN_DTYPE_F8_E4M3], (long long)info.bytes_by_dtype[WAN_DTYPE_F8_E5M2],
           (long long)info.bytes_by_dtype[WAN_DTYPE_F32]);
    CHECK_RC(wan_transformer_forward(m, 0, &c.x, &c.t, &c.ctx, &out, 2, err, sizeof err), WAN_OK, err);
    char name[160];
    snprintf(name, sizeof name, "%s sample", folder);
    const int ok = wan_test_compare(name, out.data, ref.data, (size_t)wan_host_tensor_numel(&out), DIT_TOL);
    wan_host_tensor_free(&out);
    wan_host_tensor_free(&ref);
    case_free(&c);
    wan_model_free(m);
    CHECK(ok);
}

TEST(dit_fp8_comfy_scaled_e4m3) { fp8_case("fp8/comfy_scaled_e4m3", "sample_e4m3_scaled", failed_); }
TEST(dit_fp8_comfy_quant_e5m2) { fp8_case("fp8/comfy_quant_e5m2", "sample_e5m2", failed_); }

TEST(dit_parity_t2v_batch2)
{
    CHECK(api_case("tiny-wan22-t2v", 0, "transformer/t2v_high_b2.safetensors", "t2v batch 2", NULL));
}

TEST(dit_parity_ti2v_scalar)
{
    CHECK(probe_case("tiny-wan22-ti2v", 0, "transformer/ti2v_scalar.safetensors", "ti2v scalar t"));
    CHECK(api_case("tiny-wan22-ti2v", 0, "transformer/ti2v_scalar.safetensors", "ti2v scalar t (api)", NULL));
}

TEST(dit_parity_ti2v_per_token)
{
    CHECK(probe_case("tiny-wan22-ti2v", 0, "transformer/ti2v_tokens.safetensors", "ti2v per-token t"));
    CHECK(api_case("tiny-wan22-ti2v", 0, "transformer/ti2v_tokens.safetensors", "ti2v per-token t (api)", NULL));
}

TEST(dit_parity_bf16_weights)
{
    char err[512] = "";
    wan_model_t *m = NULL;
    CHECK_RC(wan_model_load(wan_test_fixture("transformer/bf16"), NULL, &m, err, sizeof err), WAN_OK, err);
    wan_component_info info;
    CHECK(wan_model_component_info(m, WAN_COMPONENT_TRANSFORMER, &info) == WAN_OK);
    printf("    bf16 copy: %lld bytes BF16, %lld bytes F32\n", (long long)info.bytes_by_dtype[WAN_DTYPE_BF16],
           (long long)info.bytes_by_dtype[WAN_DTYPE_F32]);
    wan_model_free(m);
    /* diffusers keeps the time MLP, the modulation tables and norm2 in f32 (_keep_in_fp32_modules) */
    CHECK(info.bytes_by_dtype[WAN_DTYPE_BF16] > 0 && info.bytes_by_dtype[WAN_DTYPE_F32] > 0);
    CHECK(probe_case("transformer/bf16", 0, "transformer/t2v_high_bf16.safetensors", "t2v high bf16 weights"));
    CHECK(api_case("transformer/bf16", 0, "transformer/t2v_high_bf16.safetensors", "bf16 weights (api)", NULL));
}

TEST(dit_original_layout)
{
    wan_host_tensor a = { 0 }, b = { 0 }, lo = { 0 };
    CHECK(api_case("tiny-wan22-t2v", 0, "transformer/t2v_high.safetensors", "diffusers transformer", &a));
    int ok = api_case("tiny-wan22-t2v-orig/high_noise_model", 0, "transformer/t2v_high.safetensors",
                      "original high_noise_model", &b) &&
             api_case("tiny-wan22-t2v-orig/low_noise_model", 0, "transformer/t2v_low.safetensors",
                      "original low_noise_model", &lo);
    /* same weights, same code: the outputs must be identical */
    if (ok)
        ok = wan_test_compare("original vs diffusers layout", b.data, a.data, (size_t)wan_host_tensor_numel(&a), 0.0);
    wan_host_tensor_free(&a);
    wan_host_tensor_free(&b);
    wan_host_tensor_free(&lo);
    CHECK(ok);
}

TEST(dit_per_token_uniform_equals_scalar)
{
    /* a [B, tokens] timestep whose values are all equal takes the per-token path with one distinct row */
    char err[512] = "";
    wan_model_t *m = NULL;
    dit_case c;
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-ti2v"), NULL, &m, err, sizeof err), WAN_OK, err);
    CHECK_RC(case_load("transformer/ti2v_scalar.safetensors", &c, err, sizeof err), WAN_OK, err);
    int64_t tt[72];
    for (int i = 0; i < 72; i++)
        tt[i] = ((int64_t *)c.t.data)[0];
    wan_host_tensor t2 = { .dtype = WAN_DTYPE_I64, .ndim = 2, .shape = { 1, 72 }, .data = tt };
    wan_host_tensor out = { 0 };
    wan_status rc = wan_transformer_forward(m, 0, &c.x, &t2, &c.ctx, &out, 2, err, sizeof err);
    int ok = rc == WAN_OK &&
             wan_test_compare("uniform per-token t", out.data, c.sample.data, (size_t)wan_host_tensor_numel(&out),
                              DIT_TOL);
    wan_host_tensor_free(&out);
    case_free(&c);
    wan_model_free(m);
    CHECK_MSG(ok, "%s", err);
}

/* ---- a context's trailing run of equal rows (the prompt's zero padding) is computed once ------------------ */

/* The shared rows change the order of the arithmetic only: the GEMMs run on fewer rows, and the softmax weighs one
 * key by m instead of adding m equal terms. */
#define SHARED_TOL 1e-5

/* One forward of d on ctx [Lt, text_dim] with the shared trailing rows and one with every row computed (a fresh
 * workspace each); compares them within tol and reports both workspace sizes. */
static int shared_vs_all_rows(const wan_dit *d, wan_backend *be, const char *label, const float *ctx, int64_t Lt,
                              double tol, size_t *cap_shared, size_t *cap_all)
{
    const int T = 3, Hl = 8, Wl = 6;
    const size_t nx = (size_t)d->cfg.in_channels * T * Hl * Wl, no = (size_t)d->cfg.out_channels * T * Hl * Wl;
    float *x = malloc(nx * sizeof(float)), *a = malloc(no * sizeof(float)), *b = malloc(no * sizeof(float));
    for (size_t i = 0; i < nx; i++)
        x[i] = (float)((i * 7919) % 2001) / 1000.0f - 1.0f;
    const float t = 731.0f;
    wan_error e = { 0 };
    wan_dit_ws shared = { 0 }, all = { .all_ctx_rows = 1 };
    wan_status rc = wan_dit_forward_ws(d, be, &shared, x, T, Hl, Wl, &t, 0, ctx, Lt, a, NULL, &e);
    if (rc == WAN_OK)
        rc = wan_dit_forward_ws(d, be, &all, x, T, Hl, Wl, &t, 0, ctx, Lt, b, NULL, &e);
    *cap_shared = shared.cap;
    *cap_all = all.cap;
    const int ok = rc == WAN_OK && wan_test_compare(label, a, b, no, tol);
    if (rc != WAN_OK)
        printf("    %s: %s\n", label, e.msg);
    wan_dit_ws_free(&shared);
    wan_dit_ws_free(&all);
    free(x), free(a), free(b);
    return ok;
}

int wan_test_load_dit(const char *fixture, wan_model_t **m, struct wan_dit *d, struct wan_backend **be, char *err,
                      size_t errlen)
{
    wan_error e = { 0 };
    *m = NULL, *be = NULL;
    if (wan_model_load(wan_test_fixture(fixture), NULL, m, err, errlen) != WAN_OK)
        return 0;
    wan_status rc = wan_dit_init(d, wan_model_weights(*m, WAN_COMPONENT_TRANSFORMER),
                                 wan_model_transformer_config(*m, 0), &e);
    if (rc == WAN_OK && (rc = wan_backend_create("cpu", 2, be, &e)) != WAN_OK)
        wan_dit_free(d);
    if (rc == WAN_OK)
        return 1;
    snprintf(err, errlen, "%s", e.msg);
    wan_model_free(*m);
    *m = NULL;
    return 0;
}

TEST(dit_shared_pad_rows)
{
    char err[512] = "";
    wan_model_t *m = NULL;
    wan_dit d;
    wan_backend *be = NULL;
    CHECK_MSG(wan_test_load_dit("tiny-wan22-t2v", &m, &d, &be, err, sizeof err), "%s", err);
    const int64_t Lt = 32, C = d.cfg.text_dim;
    float *ctx = malloc((size_t)(Lt * C) * sizeof(float));
    size_t cs[3], ca[3];
    int ok = 1;
    /* 7 prompt rows, then 25 zero rows: 8 rows computed, the last one of multiplicity 25 */
    for (int64_t i = 0; i < Lt * C; i++)
        ctx[i] = i < 7 * C ? (float)((i * 31) % 17) / 8.0f - 1.0f : 0.0f;
    ok &= shared_vs_all_rows(&d, be, "7 rows + 25 zero rows", ctx, Lt, SHARED_TOL, &cs[0], &ca[0]);
    /* every row equal (a non-zero one): 1 row of multiplicity 32 */
    for (int64_t i = 0; i < Lt * C; i++)
        ctx[i] = (float)((i % C) * 13 % 11) / 5.0f - 1.0f;
    ok &= shared_vs_all_rows(&d, be, "32 equal rows", ctx, Lt, SHARED_TOL, &cs[1], &ca[1]);
    /* zero rows in the middle, a different last row: no trailing run, both paths are the same computation */
    for (int64_t i = 0; i < Lt * C; i++)
        ctx[i] = i < 7 * C || i >= (Lt - 1) * C ? (float)((i * 29) % 23) / 11.0f - 1.0f : 0.0f;
    ok &= shared_vs_all_rows(&d, be, "no trailing run", ctx, Lt, 0.0, &cs[2], &ca[2]);
    printf("    workspace bytes shared / all rows: %zu / %zu, %zu / %zu, %zu / %zu\n", cs[0], ca[0], cs[1], ca[1],
           cs[2], ca[2]);
    free(ctx);
    wan_backend_free(be);
    wan_dit_free(&d);
    wan_model_free(m);
    CHECK(ok);
    /* fewer text rows computed is fewer rows of text embedding and cross K/V in the workspace */
    CHECK(cs[0] < ca[0] && cs[1] < cs[0] && cs[2] == ca[2]);
}

/* Expects `rc` with a message that contains `needle`. */
static int expect_error(wan_status rc, wan_status want, const char *err, const char *needle)
{
    printf("    -> %s: %s\n", wan_status_str(rc), err);
    return rc == want && strstr(err, needle) != NULL;
}

TEST(dit_input_errors)
{
    char err[512] = "";
    wan_model_t *m = NULL;
    dit_case c;
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-t2v"), NULL, &m, err, sizeof err), WAN_OK, err);
    CHECK_RC(case_load("transformer/t2v_high.safetensors", &c, err, sizeof err), WAN_OK, err);
    const size_t mem0 = wan_mem_current();
    wan_host_tensor out = { 0 }, x = c.x, t = c.t, ctx = c.ctx;
    int ok = 1;
    x.shape[1] = 15; /* wrong channel count (data is large enough) */
    ok &= expect_error(wan_transformer_forward(m, 0, &x, &t, &ctx, &out, 1, err, sizeof err), WAN_ERR_SHAPE, err,
                       "in_channels 16");
    x = c.x;
    x.shape[3] = 7, x.shape[4] = 13; /* height not a multiple of the patch (less data than before: fine) */
    ok &= expect_error(wan_transformer_forward(m, 0, &x, &t, &ctx, &out, 1, err, sizeof err), WAN_ERR_SHAPE, err,
                       "height 7");
    x = c.x;
    ctx.shape[2] = 32, ctx.shape[1] = 32; /* text_dim mismatch */
    ok &= expect_error(wan_transformer_forward(m, 0, &x, &t, &ctx, &out, 1, err, sizeof err), WAN_ERR_SHAPE, err,
                       "text_dim 64");
    ctx = c.ctx;
    int64_t tv[72] = { 0 };
    wan_host_tensor tb = { .dtype = WAN_DTYPE_I64, .ndim = 2, .shape = { 1, 71 }, .data = tv };
    ok &= expect_error(wan_transformer_forward(m, 0, &x, &tb, &ctx, &out, 1, err, sizeof err), WAN_ERR_SHAPE, err,
                       "timestep");
    tb.ndim = 1, tb.shape[0] = 2;
    ok &= expect_error(wan_transformer_forward(m, 0, &x, &tb, &ctx, &out, 1, err, sizeof err), WAN_ERR_SHAPE, err,
                       "timestep");
    x.dtype = WAN_DTYPE_BF16;
    ok &= expect_error(wan_transformer_forward(m, 0, &x, &t, &ctx, &out, 1, err, sizeof err), WAN_ERR_INVALID_ARG,
                       err, "F32");
    x = c.x;
    double nan_t = NAN;
    wan_host_tensor tn = { .dtype = WAN_DTYPE_F64, .ndim = 1, .shape = { 1 }, .data = &nan_t };
    ok &= expect_error(wan_transformer_forward(m, 0, &x, &tn, &ctx, &out, 1, err, sizeof err), WAN_ERR_INVALID_ARG,
                       err, "not finite");
    ok &= expect_error(wan_transformer_forward(m, 2, &x, &t, &ctx, &out, 1, err, sizeof err), WAN_ERR_INVALID_ARG,
                       err, "expert");
    ok &= out.data == NULL && wan_mem_current() == mem0;
    case_free(&c);
    wan_model_free(m);
    CHECK(ok);
    /* a single-expert model has no transformer_2 */
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-ti2v"), NULL, &m, err, sizeof err), WAN_OK, err);
    CHECK_RC(case_load("transformer/ti2v_scalar.safetensors", &c, err, sizeof err), WAN_OK, err);
    ok = expect_error(wan_transformer_forward(m, 1, &c.x, &c.t, &c.ctx, &out, 1, err, sizeof err), WAN_ERR_NOT_FOUND,
                      err, "transformer_2");
    case_free(&c);
    wan_model_free(m);
    CHECK(ok);
}

/* Peak library memory of one forward of the tiny t2v expert at F x 64 x 64 latents (F·1024 tokens). */
static size_t forward_peak(wan_model_t *m, int frames, char *err, size_t errlen, int *ok)
{
    const int64_t n = 16LL * frames * 64 * 64;
    float *x = wan_malloc((size_t)n * 4), *ctx = wan_malloc(16 * 64 * 4);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)((i * 7919) % 2001) / 1000.0f - 1.0f;
    for (int i = 0; i < 16 * 64; i++)
        ctx[i] = (float)((i * 31) % 17) / 8.0f - 1.0f;
    int64_t tv = 500;
    wan_host_tensor hx = { .dtype = WAN_DTYPE_F32, .ndim = 5, .shape = { 1, 16, frames, 64, 64 }, .data = x };
    wan_host_tensor ht = { .dtype = WAN_DTYPE_I64, .ndim = 1, .shape = { 1 }, .data = &tv };
    wan_host_tensor hc = { .dtype = WAN_DTYPE_F32, .ndim = 3, .shape = { 1, 16, 64 }, .data = ctx };
    wan_host_tensor out = { 0 };
    const size_t base = wan_mem_current();
    wan_mem_reset_peak();
    *ok = wan_transformer_forward(m, 0, &hx, &ht, &hc, &out, 2, err, errlen) == WAN_OK;
    const size_t peak = wan_mem_peak() - base;
    for (int64_t i = 0; *ok && i < wan_host_tensor_numel(&out); i++)
        *ok = isfinite(((float *)out.data)[i]);
    wan_host_tensor_free(&out);
    wan_free(x);
    wan_free(ctx);
    return peak;
}

TEST(dit_attention_memory_linear)
{
    char err[512] = "";
    wan_model_t *m = NULL;
    int ok1 = 0, ok2 = 0;
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-t2v"), NULL, &m, err, sizeof err), WAN_OK, err);
    size_t p4 = forward_peak(m, 4, err, sizeof err, &ok1);   /* 4,096 tokens */
    size_t p8 = forward_peak(m, 8, err, sizeof err, &ok2);   /* 8,192 tokens */
    wan_model_free(m);
    CHECK_MSG(ok1 && ok2, "%s", err);
    const double ratio = (double)p8 / (double)p4;
    /* a 8192² f32 score matrix alone would be 256 MiB per head */
    printf("    peak memory: 4096 tokens %.2f MiB, 8192 tokens %.2f MiB, ratio %.3f\n", p4 / 1048576.0,
           p8 / 1048576.0, ratio);
    CHECK(ratio > 1.5 && ratio < 2.2);
}
