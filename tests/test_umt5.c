/* test_umt5.c — the umT5 text encoder against transformers' UMT5EncoderModel and diffusers'
 * _get_t5_prompt_embeds (fixtures from tools/ref/dump_umt5.py), loading errors, memory release.
 *
 * Tolerance: max|got - ref| <= 1e-4 · max|ref|. Both sides compute in f32 from the same weights; only
 * the summation order of the GEMMs, norms and softmax differs (observed: a few 1e-7 relative). */
#include "test.h"

#include "core.h"
#include "model_dir.h"
#include "umt5.h"

#include <stdlib.h>
#include <unistd.h>

#define TOL 1e-4

static const char *const k_cases[] = { "s16", "s16full", "s128", "s512" };
enum { N_CASES = sizeof k_cases / sizeof *k_cases };

typedef struct ref_case {
    wan_host_tensor ids, mask, hidden, embeds;
    int S, L;
} ref_case;

static void ref_case_free(ref_case *c)
{
    wan_host_tensor_free(&c->ids);
    wan_host_tensor_free(&c->mask);
    wan_host_tensor_free(&c->hidden);
    wan_host_tensor_free(&c->embeds);
}

static wan_status read_as(const char *file, const char *cs, const char *what, wan_dtype dt, wan_host_tensor *t,
                          char *err, size_t errlen)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", cs, what);
    return wan_safetensors_read(wan_test_fixture(file), name, dt, t, err, errlen);
}

static wan_status ref_case_read(const char *file, const char *cs, ref_case *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    wan_status rc = read_as("umt5/cases_fp32.safetensors", cs, "input_ids", WAN_DTYPE_I64, &c->ids, err, errlen);
    if (rc == WAN_OK)
        rc = read_as("umt5/cases_fp32.safetensors", cs, "attention_mask", WAN_DTYPE_I64, &c->mask, err, errlen);
    if (rc == WAN_OK)
        rc = read_as(file, cs, "last_hidden_state", WAN_DTYPE_F32, &c->hidden, err, errlen);
    if (rc == WAN_OK)
        rc = read_as(file, cs, "prompt_embeds", WAN_DTYPE_F32, &c->embeds, err, errlen);
    if (rc != WAN_OK) {
        ref_case_free(c);
        return rc;
    }
    c->S = (int)c->ids.shape[1];
    const int64_t *m = c->mask.data;
    for (int i = 0; i < c->S; i++)
        c->L += m[i] != 0;
    return WAN_OK;
}

/* Encoder parity of one model against one reference file, every case: the raw encoder with the mask
 * (all rows), and the pipeline embedding (trimmed, zero-padded). */
static int check_model_cases(const wan_model_t *m, const char *ref_file, const char *tag)
{
    char err[512] = "";
    for (int k = 0; k < N_CASES; k++) {
        ref_case c;
        if (ref_case_read(ref_file, k_cases[k], &c, err, sizeof err) != WAN_OK) {
            printf("    %s\n", err);
            return 0;
        }
        size_t before = wan_mem_current();
        wan_host_tensor h = { 0 }, e = { 0 };
        wan_status rc = wan_text_encoder_forward(m, c.ids.data, c.mask.data, c.S, &h, 1, err, sizeof err);
        if (rc == WAN_OK)
            rc = wan_text_encode_ids(m, c.ids.data, c.L, c.S, &e, 0, err, sizeof err);
        int ok = rc == WAN_OK;
        if (!ok)
            printf("    %s %s: %s\n", tag, k_cases[k], err);
        char name[96];
        if (ok) {
            size_t out_bytes = (size_t)(wan_host_tensor_numel(&h) + wan_host_tensor_numel(&e)) * sizeof(float);
            ok &= wan_mem_current() == before + out_bytes;
            snprintf(name, sizeof name, "%s %s last_hidden_state", tag, k_cases[k]);
            ok &= wan_test_compare(name, h.data, c.hidden.data, (size_t)wan_host_tensor_numel(&h), TOL);
            snprintf(name, sizeof name, "%s %s prompt_embeds", tag, k_cases[k]);
            ok &= wan_test_compare(name, e.data, c.embeds.data, (size_t)wan_host_tensor_numel(&e), TOL);
            ok &= e.shape[0] == 1 && e.shape[1] == c.S && e.ndim == 3;
            const float *ep = e.data;
            for (int64_t i = (int64_t)c.L * e.shape[2]; i < wan_host_tensor_numel(&e); i++)
                if (ep[i] != 0.0f) {
                    printf("    %s %s: row %lld >= L = %d is not zero\n", tag, k_cases[k],
                           (long long)(i / e.shape[2]), c.L);
                    ok = 0;
                    break;
                }
        }
        wan_host_tensor_free(&h);
        wan_host_tensor_free(&e);
        if (ok && wan_mem_current() != before) {
            printf("    %s %s: %zd bytes not released\n", tag, k_cases[k], (ssize_t)(wan_mem_current() - before));
            ok = 0;
        }
        ref_case_free(&c);
        if (!ok)
            return 0;
    }
    return 1;
}

TEST(umt5_buckets_match_transformers)
{
    char err[512] = "";
    wan_host_tensor rel = { 0 }, bk = { 0 };
    CHECK_RC(wan_safetensors_read(wan_test_fixture("umt5/buckets.safetensors"), "relative_position",
                                  WAN_DTYPE_I64, &rel, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_safetensors_read(wan_test_fixture("umt5/buckets.safetensors"), "bucket", WAN_DTYPE_I64, &bk, err,
                                  sizeof err), WAN_OK, err);
    const int64_t *d = rel.data, *b = bk.data;
    int64_t n = wan_host_tensor_numel(&rel), bad = 0, seen = 0;
    for (int64_t i = 0; i < n; i++) {
        int got = wan_umt5_bucket(d[i], 32, 128);
        if (got != b[i] && bad++ < 5)
            printf("    d = %lld: bucket %d, transformers %lld\n", (long long)d[i], got, (long long)b[i]);
        seen |= 1ll << got;
    }
    wan_host_tensor_free(&rel);
    wan_host_tensor_free(&bk);
    printf("    %lld relative positions, %lld mismatches\n", (long long)n, (long long)bad);
    CHECK(bad == 0);
    CHECK(seen == (0xffffffffll & ~(1ll << 16))); /* bucket 16 (d > 0 with |d| = 0) cannot occur */
    /* the float32 boundaries of text.md 6.3 */
    CHECK(wan_umt5_bucket(-15, 32, 128) == 9 && wan_umt5_bucket(-16, 32, 128) == 10);
    CHECK(wan_umt5_bucket(31, 32, 128) == 16 + 11 && wan_umt5_bucket(32, 32, 128) == 16 + 12);
    CHECK(wan_umt5_bucket(63, 32, 128) == 16 + 13 && wan_umt5_bucket(64, 32, 128) == 16 + 14);
    CHECK(wan_umt5_bucket(90, 32, 128) == 16 + 14 && wan_umt5_bucket(91, 32, 128) == 16 + 15);
}

TEST(umt5_rename_original)
{
    char buf[128];
    CHECK(wan_umt5_rename_original("token_embedding.weight", buf, sizeof buf, NULL) && !strcmp(buf, "shared.weight"));
    CHECK(wan_umt5_rename_original("norm.weight", buf, sizeof buf, NULL) &&
          !strcmp(buf, "encoder.final_layer_norm.weight"));
    CHECK(wan_umt5_rename_original("blocks.23.ffn.gate.0.weight", buf, sizeof buf, NULL) &&
          !strcmp(buf, "encoder.block.23.layer.1.DenseReluDense.wi_0.weight"));
    CHECK(wan_umt5_rename_original("blocks.7.pos_embedding.embedding.weight", buf, sizeof buf, NULL) &&
          !strcmp(buf, "encoder.block.7.layer.0.SelfAttention.relative_attention_bias.weight"));
    CHECK(wan_umt5_rename_original("blocks.0.attn.o.weight", buf, sizeof buf, NULL) &&
          !strcmp(buf, "encoder.block.0.layer.0.SelfAttention.o.weight"));
    CHECK(!wan_umt5_rename_original("blocks.0.self_attn.q.weight", buf, sizeof buf, NULL));
    CHECK(!wan_umt5_rename_original("blocks.x.attn.q.weight", buf, sizeof buf, NULL));
    CHECK(!wan_umt5_rename_original("shared.weight", buf, sizeof buf, NULL));
}

/* F32 weights, sharded diffusers folder. */
TEST(umt5_fp32_matches_transformers)
{
    char err[512] = "";
    wan_model_t *m = NULL;
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-t2v/text_encoder"), NULL, &m, err, sizeof err), WAN_OK, err);
    int ok = check_model_cases(m, "umt5/cases_fp32.safetensors", "fp32");
    wan_model_free(m);
    CHECK(ok);
}

/* Per-block outputs (debugging aid: the first block that differs points at the bug). */
TEST(umt5_layers_match_transformers)
{
    char err[512] = "";
    wan_model_t *m = NULL;
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-t2v/text_encoder"), NULL, &m, err, sizeof err), WAN_OK, err);
    const wan_text_encoder_config *c = wan_model_text_encoder_config(m);
    static const char *const cs[] = { "s16", "s128" };
    int ok = 1;
    for (int k = 0; ok && k < 2; k++) {
        ref_case rc;
        ok = ref_case_read("umt5/cases_fp32.safetensors", cs[k], &rc, err, sizeof err) == WAN_OK;
        if (!ok)
            break;
        size_t n = (size_t)rc.S * c->d_model;
        float *out = wan_malloc(n * sizeof(float)), *layers = wan_malloc(n * c->num_layers * sizeof(float));
        wan_error e = { 0 };
        ok = out && layers &&
             wan_umt5_forward(wan_model_weights(m, WAN_COMPONENT_TEXT_ENCODER), c, rc.ids.data, rc.mask.data, rc.S,
                              out, layers, 2, &e) == WAN_OK;
        for (int l = 0; ok && l < c->num_layers; l++) {
            char what[32], name[64];
            wan_host_tensor ref = { 0 };
            snprintf(what, sizeof what, "layer.%d", l);
            ok = read_as("umt5/cases_fp32.safetensors", cs[k], what, WAN_DTYPE_F32, &ref, err, sizeof err) == WAN_OK;
            snprintf(name, sizeof name, "%s %s", cs[k], what);
            ok = ok && wan_test_compare(name, layers + (size_t)l * n, ref.data, n, TOL);
            wan_host_tensor_free(&ref);
        }
        if (e.code)
            printf("    %s\n", e.msg);
        wan_free(out);
        wan_free(layers);
        ref_case_free(&rc);
    }
    wan_model_free(m);
    CHECK(ok);
}

/* BF16 weights under the original Wan T5 names, one file: against an fp32 run of the same bf16 values;
 * then (information only) how far a true bf16 run of transformers is. */
TEST(umt5_bf16_original_names)
{
    char err[512] = "";
    wan_model_t *m = NULL;
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-t2v-orig/models_t5_umt5-xxl-enc-bf16.safetensors"), NULL,
                            &m, err, sizeof err), WAN_OK, err);
    wan_component_info ci;
    CHECK(wan_model_component_info(m, WAN_COMPONENT_TEXT_ENCODER, &ci) == WAN_OK && ci.original_names);
    CHECK(ci.bytes_by_dtype[WAN_DTYPE_BF16] == ci.n_bytes);
    int ok = check_model_cases(m, "umt5/cases_bf16w.safetensors", "bf16w");
    wan_host_tensor ids = { 0 }, ref = { 0 }, got = { 0 };
    CHECK_RC(read_as("umt5/cases_fp32.safetensors", "s128", "input_ids", WAN_DTYPE_I64, &ids, err, sizeof err),
             WAN_OK, err);
    CHECK_RC(read_as("umt5/cases_bf16.safetensors", "s128", "prompt_embeds", WAN_DTYPE_F32, &ref, err, sizeof err),
             WAN_OK, err);
    CHECK_RC(wan_text_encode_ids(m, ids.data, 120, 128, &got, 0, err, sizeof err), WAN_OK, err);
    const float *a = got.data, *b = ref.data;
    int64_t d = got.shape[2];
    double min_cos = 1.0;
    for (int i = 0; i < 120; i++) {
        double ab = 0, aa = 0, bb = 0;
        for (int64_t k = 0; k < d; k++) {
            ab += (double)a[i * d + k] * b[i * d + k];
            aa += (double)a[i * d + k] * a[i * d + k];
            bb += (double)b[i * d + k] * b[i * d + k];
        }
        double cs = ab / sqrt(aa * bb);
        min_cos = cs < min_cos ? cs : min_cos;
    }
    wan_test_compare("bf16 run of transformers vs ours (information only)", a, b, (size_t)(120 * d), 1.0);
    printf("    per-token cosine vs the bf16 run: min %.6f\n", min_cos);
    wan_host_tensor_free(&ids);
    wan_host_tensor_free(&ref);
    wan_host_tensor_free(&got);
    wan_model_free(m);
    CHECK(ok);
    CHECK(min_cos >= 0.99);
}

/* The original release folder finds models_t5_umt5-xxl-enc-bf16.safetensors at its root. */
TEST(umt5_original_release_folder)
{
    char err[1024] = "";
    wan_model_t *m = NULL;
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-t2v-orig"), NULL, &m, err, sizeof err), WAN_OK, err);
    wan_component_info ci;
    CHECK(wan_model_component_info(m, WAN_COMPONENT_TEXT_ENCODER, &ci) == WAN_OK);
    int ok = ci.present && ci.original_names && ci.n_tensors == 32 && wan_model_text_encoder_config(m)->num_layers == 3;
    ref_case c;
    memset(&c, 0, sizeof c);
    ok = ok && ref_case_read("umt5/cases_bf16w.safetensors", "s16", &c, err, sizeof err) == WAN_OK;
    wan_host_tensor e = { 0 };
    ok = ok && wan_text_encode_ids(m, c.ids.data, c.L, c.S, &e, 0, err, sizeof err) == WAN_OK;
    ok = ok && wan_test_compare("original folder s16 prompt_embeds", e.data, c.embeds.data,
                                (size_t)wan_host_tensor_numel(&e), TOL);
    wan_host_tensor_free(&e);
    ref_case_free(&c);
    wan_model_free(m);
    CHECK_MSG(ok, "%s", err);
}

/* ---- copies of the tiny encoder with changes, for the F16 path and the error paths ------------------ */

typedef enum { COPY_F16, COPY_DROP, COPY_RESHAPE } copy_kind;

/* Writes the original-names bf16 encoder to `path` as F16 (COPY_F16) or as F32 without (COPY_DROP) or with a
 * transposed (COPY_RESHAPE) `victim`. For F16 also reports the largest change of a weight (bf16 -> f16). */
static wan_status write_copy(const char *path, copy_kind kind, const char *victim, double *max_change, char *err,
                             size_t errlen)
{
    static const char *const per_block[] = { "attn.q", "attn.k", "attn.v", "attn.o", "pos_embedding.embedding",
                                             "norm1", "norm2", "ffn.gate.0", "ffn.fc1", "ffn.fc2" };
    const char *src = wan_test_fixture("tiny-wan22-t2v-orig/models_t5_umt5-xxl-enc-bf16.safetensors");
    enum { N = 2 + 3 * 10 };
    wan_host_tensor t[N];
    memset(t, 0, sizeof t);
    char names[N][64];
    snprintf(names[0], 64, "token_embedding.weight");
    snprintf(names[1], 64, "norm.weight");
    for (int l = 0; l < 3; l++)
        for (int i = 0; i < 10; i++)
            snprintf(names[2 + l * 10 + i], 64, "blocks.%d.%s.weight", l, per_block[i]);
    int n = 0;
    wan_status rc = WAN_OK;
    for (int i = 0; rc == WAN_OK && i < N; i++) {
        if (kind == COPY_DROP && !strcmp(names[i], victim))
            continue;
        rc = wan_safetensors_read(src, names[i], WAN_DTYPE_F32, &t[n], err, errlen);
        if (rc != WAN_OK)
            break;
        int64_t cnt = wan_host_tensor_numel(&t[n]);
        if (kind == COPY_RESHAPE && !strcmp(names[i], victim)) {
            int64_t r = t[n].shape[0];
            t[n].shape[0] = t[n].shape[1];
            t[n].shape[1] = r;
        }
        if (kind == COPY_F16) {
            float *f = t[n].data;
            uint16_t *h = t[n].data; /* in place: element i is read before element i is written */
            for (int64_t k = 0; k < cnt; k++) {
                float v = f[k];
                h[k] = wan_f32_to_f16(v);
                double ch = fabs((double)wan_f16_to_f32(h[k]) - v);
                *max_change = ch > *max_change ? ch : *max_change;
            }
            t[n].dtype = WAN_DTYPE_F16;
        }
        n++;
    }
    if (rc == WAN_OK)
        rc = wan_safetensors_write(path, t, n, err, errlen);
    for (int i = 0; i < N; i++)
        wan_host_tensor_free(&t[i]);
    return rc;
}

static void tmp_path(char *buf, size_t len, const char *tag)
{
    snprintf(buf, len, "/tmp/wan_test_umt5_%ld_%s.safetensors", (long)getpid(), tag);
}

/* F16 weights: the bf16 values converted to f16 (exact except a few tiny ones) against the bf16 reference. */
TEST(umt5_f16_weights)
{
    char err[512] = "", path[256];
    double change = 0.0;
    tmp_path(path, sizeof path, "f16");
    CHECK_RC(write_copy(path, COPY_F16, NULL, &change, err, sizeof err), WAN_OK, err);
    printf("    largest weight change bf16 -> f16: %.3g\n", change);
    wan_model_t *m = NULL;
    wan_status rc = wan_model_load(path, NULL, &m, err, sizeof err);
    int ok = rc == WAN_OK && check_model_cases(m, "umt5/cases_bf16w.safetensors", "f16");
    wan_component_info ci;
    ok = ok && wan_model_component_info(m, WAN_COMPONENT_TEXT_ENCODER, &ci) == WAN_OK &&
         ci.bytes_by_dtype[WAN_DTYPE_F16] == ci.n_bytes;
    wan_model_free(m);
    unlink(path);
    CHECK_MSG(rc == WAN_OK, "%s", err);
    CHECK(change < 1e-7); /* otherwise the bf16 reference would not apply */
    CHECK(ok);
}

TEST(umt5_missing_and_misshapen_tensors)
{
    char err[512] = "", path[256];
    double change = 0.0;
    wan_model_params p = wan_model_default_params();
    int64_t ids[4] = { 7, 300, 5, 1 };
    wan_host_tensor out = { 0 };
    wan_model_t *m = NULL;

    tmp_path(path, sizeof path, "drop");
    CHECK_RC(write_copy(path, COPY_DROP, "blocks.1.ffn.fc2.weight", &change, err, sizeof err), WAN_OK, err);
    p.validate_shapes = 0; /* let the encoder find it */
    wan_status rc = wan_model_load(path, &p, &m, err, sizeof err);
    size_t before = wan_mem_current();
    if (rc == WAN_OK)
        rc = wan_text_encode_ids(m, ids, 4, 16, &out, 1, err, sizeof err);
    size_t after = wan_mem_current();
    wan_model_free(m);
    m = NULL;
    char errl[512] = "";
    p.validate_shapes = 1;
    wan_status rcl = wan_model_load(path, &p, &m, errl, sizeof errl);
    p.validate_shapes = 0;
    unlink(path);
    printf("    missing: %s\n    missing, load: %s\n", err, errl);
    CHECK(rcl == WAN_ERR_NOT_FOUND && m == NULL && strstr(errl, "DenseReluDense.wo.weight") != NULL);
    CHECK(rc == WAN_ERR_NOT_FOUND);
    CHECK(strstr(err, "encoder.block.1.layer.1.DenseReluDense.wo.weight") != NULL);
    CHECK(out.data == NULL && after == before);

    tmp_path(path, sizeof path, "shape");
    CHECK_RC(write_copy(path, COPY_RESHAPE, "blocks.2.attn.o.weight", &change, err, sizeof err), WAN_OK, err);
    rc = wan_model_load(path, &p, &m, err, sizeof err);
    if (rc == WAN_OK)
        rc = wan_text_encode_ids(m, ids, 4, 16, &out, 1, err, sizeof err);
    wan_model_free(m);
    m = NULL;
    char err2[512] = "";
    p.validate_shapes = 1; /* the loader's own check says so too */
    wan_status rc2 = wan_model_load(path, &p, &m, err2, sizeof err2);
    unlink(path);
    printf("    misshapen: %s\n    misshapen, load: %s\n", err, err2);
    CHECK(rc == WAN_ERR_SHAPE);
    CHECK(strstr(err, "blocks.2.attn.o.weight") != NULL); /* the name in the file */
    CHECK(strstr(err, "[64, 96]") != NULL);
    CHECK(rc2 == WAN_ERR_SHAPE && m == NULL);
}

TEST(umt5_bad_requests)
{
    char err[512] = "";
    wan_model_t *m = NULL, *dit = NULL;
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-t2v/text_encoder"), NULL, &m, err, sizeof err), WAN_OK, err);
    int64_t ids[4] = { 7, 640, 5, 1 }; /* 640 = vocab_size: one past the last row */
    wan_host_tensor out = { 0 };
    size_t before = wan_mem_current();
    wan_status rc = wan_text_encode_ids(m, ids, 4, 16, &out, 1, err, sizeof err);
    printf("    %s\n", err);
    int bad_id = rc == WAN_ERR_INVALID_ARG && strstr(err, "640") && out.data == NULL;
    ids[1] = 300;
    int too_long = wan_text_encode_ids(m, ids, 4, 3, &out, 1, err, sizeof err) == WAN_ERR_INVALID_ARG;
    int empty = wan_text_encode_ids(m, ids, 0, 16, &out, 1, err, sizeof err) == WAN_ERR_INVALID_ARG;
    int null_model = wan_text_encode_ids(NULL, ids, 4, 16, &out, 1, err, sizeof err) == WAN_ERR_INVALID_ARG;
    size_t after = wan_mem_current();
    rc = wan_model_load(wan_test_fixture("tiny-wan22-t2v/transformer"), NULL, &dit, err, sizeof err);
    int no_te = rc == WAN_OK && wan_text_encode_ids(dit, ids, 4, 16, &out, 1, err, sizeof err) == WAN_ERR_NOT_FOUND;
    printf("    %s\n", err);
    wan_model_free(dit);
    wan_model_free(m);
    CHECK(bad_id);
    CHECK(too_long && empty && null_model);
    CHECK(no_te);
    CHECK(out.data == NULL && after == before);
}

/* Every allocation of an encode failing in turn: a clean WAN_ERR_NOMEM and nothing left allocated. */
TEST(umt5_allocation_failures)
{
    char err[512] = "";
    wan_model_t *m = NULL;
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-t2v/text_encoder"), NULL, &m, err, sizeof err), WAN_OK, err);
    int64_t ids[4] = { 7, 300, 5, 1 };
    int ok = 1, n;
    for (n = 1; ok && n < 100; n++) {
        wan_host_tensor out = { 0 };
        size_t before = wan_mem_current();
        wan_mem_fail_after(n);
        wan_status rc = wan_text_encode_ids(m, ids, 4, 16, &out, 1, err, sizeof err);
        wan_mem_fail_after(0);
        wan_host_tensor_free(&out);
        ok = (rc == WAN_OK || rc == WAN_ERR_NOMEM) && wan_mem_current() == before;
        if (rc == WAN_OK)
            break;
    }
    wan_model_free(m);
    printf("    %d allocations failed in turn\n", n - 1);
    CHECK(ok);
    CHECK(n > 1 && n < 100);
}

/* ---- end to end: WanPipeline.encode_prompt of the real pipeline object --------------------------- */

/* The prompt's text (stored as UTF-8 bytes) as a NUL-terminated string; free with free(). */
static char *prompt_text(const char *name, char *err, size_t errlen)
{
    char key[64];
    wan_host_tensor t = { 0 };
    snprintf(key, sizeof key, "%s.text", name);
    if (wan_safetensors_read(wan_test_fixture("umt5/prompts.safetensors"), key, WAN_DTYPE_U8, &t, err, errlen))
        return NULL;
    size_t n = (size_t)wan_host_tensor_numel(&t);
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, t.data, n);
        s[n] = 0;
    }
    wan_host_tensor_free(&t);
    return s;
}

/* Token ids first (so that a tokenizer difference is not reported as an encoder one), then embeddings. */
static int check_prompt(const wan_model_t *m, const wan_tokenizer_t *tok, const char *name, char *err,
                        size_t errlen)
{
    char *text = prompt_text(name, err, errlen);
    wan_host_tensor ids = { 0 }, ref = { 0 }, pe = { 0 }, ne = { 0 };
    wan_tokens t = { 0 };
    int ok = text && !read_as("umt5/prompts.safetensors", name, "input_ids", WAN_DTYPE_I64, &ids, err, errlen) &&
             !read_as("umt5/prompts.safetensors", name, "prompt_embeds", WAN_DTYPE_F32, &ref, err, errlen) &&
             !wan_tokenizer_encode(tok, text, WAN_STRLEN, NULL, &t, err, errlen);
    for (int i = 0; ok && i < t.n; i++)
        if (t.ids[i] != ((const int64_t *)ids.data)[i]) {
            printf("    %s: token %d is %d, the pipeline's is %lld\n", name, i, t.ids[i],
                   (long long)((const int64_t *)ids.data)[i]);
            ok = 0;
        }
    size_t before = wan_mem_current();
    /* tok NULL: the model's tokenizer is loaded for the call and released again */
    ok = ok && wan_encode_prompt(m, NULL, text, "", 512, &pe, &ne, 1, err, errlen) == WAN_OK;
    ok = ok && wan_mem_current() == before + (size_t)(wan_host_tensor_numel(&pe) + wan_host_tensor_numel(&ne)) * 4;
    char label[64];
    snprintf(label, sizeof label, "prompt %s (%d tokens)", name, t.n_real);
    ok = ok && wan_test_compare(label, pe.data, ref.data, (size_t)wan_host_tensor_numel(&ref), TOL);
    wan_host_tensor_free(&ref);
    ok = ok && !read_as("umt5/prompts.safetensors", "empty", "prompt_embeds", WAN_DTYPE_F32, &ref, err, errlen);
    ok = ok && wan_test_compare("negative prompt \"\"", ne.data, ref.data, (size_t)wan_host_tensor_numel(&ref), TOL);
    free(text);
    wan_tokens_free(&t);
    wan_host_tensor_free(&ids);
    wan_host_tensor_free(&ref);
    wan_host_tensor_free(&pe);
    wan_host_tensor_free(&ne);
    return ok;
}

TEST(umt5_encode_prompt_matches_pipeline)
{
    char err[512] = "";
    wan_model_t *m = NULL;
    wan_tokenizer_t *tok = NULL;
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-t2v"), NULL, &m, err, sizeof err), WAN_OK, err);
    wan_status rc = wan_tokenizer_load(wan_test_fixture("tiny-wan22-t2v"), &tok, err, sizeof err);
    static const char *const names[] = { "en", "zh", "html", "neg" };
    int ok = rc == WAN_OK;
    for (int i = 0; ok && i < 4; i++)
        ok = check_prompt(m, tok, names[i], err, sizeof err);
    if (!ok)
        printf("    %s\n", err);
    wan_tokenizer_free(tok);
    wan_model_free(m);
    CHECK(ok);
}

TEST(umt5_encode_prompt_without_tokenizer)
{
    char err[512] = "";
    wan_model_t *m = NULL;
    wan_host_tensor pe = { 0 };
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-t2v/text_encoder"), NULL, &m, err, sizeof err), WAN_OK, err);
    wan_status rc = wan_encode_prompt(m, NULL, "a cat", NULL, 512, &pe, NULL, 1, err, sizeof err);
    printf("    %s\n", err);
    wan_model_free(m);
    CHECK(rc == WAN_ERR_NOT_FOUND && pe.data == NULL);
    CHECK(strstr(err, "no tokenizer") != NULL);
}

/* A ComfyUI-style float8 umT5 file (tools/ref/dump_fp8.py: transformers names, float8_e4m3fn linear weights and token
 * embedding with per-tensor scale_weight, a scaled_fp8 marker), opened as a single file: the encoder equals
 * transformers' fp32 forward with the dequantised weights within TOL. */
TEST(umt5_float8_scaled_file)
{
    char err[512] = "";
    wan_model_t *m = NULL;
    CHECK_RC(wan_model_load(wan_test_fixture("fp8/umt5_scaled_e4m3.safetensors"), NULL, &m, err, sizeof err), WAN_OK,
             err);
    wan_host_tensor ids = { 0 }, mask = { 0 }, ref = { 0 }, h = { 0 };
    CHECK(wan_test_read("umt5/cases_fp32.safetensors", "s128.input_ids", WAN_DTYPE_I64, &ids));
    CHECK(wan_test_read("umt5/cases_fp32.safetensors", "s128.attention_mask", WAN_DTYPE_I64, &mask));
    CHECK(wan_test_read("fp8/reference.safetensors", "umt5_e4m3_scaled", WAN_DTYPE_F32, &ref));
    CHECK_RC(wan_text_encoder_forward(m, ids.data, mask.data, (int)ids.shape[1], &h, 2, err, sizeof err), WAN_OK, err);
    CHECK(wan_test_compare("float8 umT5 s128 last_hidden_state", h.data, ref.data, (size_t)wan_host_tensor_numel(&h),
                           TOL));
    wan_host_tensor_free(&ids);
    wan_host_tensor_free(&mask);
    wan_host_tensor_free(&ref);
    wan_host_tensor_free(&h);
    wan_model_free(m);
}
