/* test_convert.c — wan_model_convert: the diffusers <-> original round trip is bit-identical, the
 * inverse renames match the spec's name tables, dtype conversion rounds as torch does, the .pth release
 * converts to a folder that loads with the same tensors, and failed conversions leave nothing behind. */
#define _DEFAULT_SOURCE
#include "test.h"

#include "convert.h"
#include "model_dir.h"
#include "quant.h"
#include "safetensors.h"
#include "vae.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

void wan_test_rm_tree(const char *dir);                /* test_pth.c */
int wan_test_pth_release(char *out, size_t len);       /* test_pth.c */

static const wan_component k_all[] = { WAN_COMPONENT_TRANSFORMER, WAN_COMPONENT_TRANSFORMER_2,
                                       WAN_COMPONENT_TEXT_ENCODER, WAN_COMPONENT_VAE };

/* Every weighted component of a is in b with the same tensor names, dtypes, shapes and bytes. */
static int same_weights(const wan_model_t *a, const wan_model_t *b)
{
    int total = 0;
    for (size_t k = 0; k < sizeof k_all / sizeof *k_all; k++) {
        const wan_st_set *x = wan_model_weights(a, k_all[k]), *y = wan_model_weights(b, k_all[k]);
        if (!x != !y) {
            printf("    %s present in only one model\n", wan_component_name(k_all[k]));
            return 0;
        }
        if (!x)
            continue;
        if (x->n != y->n) {
            printf("    %s: %d vs %d tensors\n", wan_component_name(k_all[k]), x->n, y->n);
            return 0;
        }
        for (int i = 0; i < x->n; i++) {
            const wan_st_tensor *s = x->entries[i].t;
            const wan_st_entry *e = wan_st_set_find(y, x->entries[i].name);
            size_t n = s->end - s->begin;
            if (!e || e->t->dtype != s->dtype || e->t->ndim != s->ndim ||
                memcmp(e->t->shape, s->shape, sizeof s->shape) || e->t->end - e->t->begin != n ||
                memcmp(e->t->data, s->data, n)) {
                printf("    %s: tensor '%s' differs\n", wan_component_name(k_all[k]), x->entries[i].name);
                return 0;
            }
        }
        total += x->n;
    }
    printf("    %d tensors bit-identical\n", total);
    return 1;
}

/* Loads src and converts it to dst with p. */
static wan_status convert_with(const char *src, const char *dst, const wan_convert_params *p, char *err, size_t errlen)
{
    wan_model_t *m = NULL;
    wan_status rc = wan_model_load(src, NULL, &m, err, errlen);
    if (rc != WAN_OK)
        return rc;
    rc = wan_model_convert(m, dst, p, err, errlen);
    wan_model_free(m);
    return rc;
}

static wan_status convert_to(const char *src, const char *dst, wan_convert_layout layout, int dtype, int64_t shard,
                             char *err, size_t errlen)
{
    wan_convert_params p = wan_convert_default_params();
    p.layout = layout;
    p.dtype = dtype;
    if (shard > 0)
        p.shard_bytes = shard;
    return convert_with(src, dst, &p, err, errlen);
}

static int same_scheduler(const wan_scheduler_config *a, const wan_scheduler_config *b)
{
    return a->kind == b->kind && a->num_train_timesteps == b->num_train_timesteps && a->flow_shift == b->flow_shift &&
           a->solver_order == b->solver_order && a->use_flow_sigmas == b->use_flow_sigmas &&
           a->lower_order_final == b->lower_order_final && a->predict_x0 == b->predict_x0 &&
           !strcmp(a->prediction_type, b->prediction_type) && !strcmp(a->solver_type, b->solver_type) &&
           !strcmp(a->final_sigmas_type, b->final_sigmas_type);
}

static int configs_equal(const wan_model_t *a, const wan_model_t *b)
{
    for (int e = 0; e < 2; e++) {
        const wan_transformer_config *x = wan_model_transformer_config(a, e), *y = wan_model_transformer_config(b, e);
        if (!x != !y || (x && memcmp(x, y, sizeof *x)))
            return 0;
    }
    const wan_vae_config *va = wan_model_vae_config(a), *vb = wan_model_vae_config(b);
    const wan_text_encoder_config *ta = wan_model_text_encoder_config(a), *tb = wan_model_text_encoder_config(b);
    return !memcmp(va, vb, sizeof *va) && ta->d_model == tb->d_model && ta->num_layers == tb->num_layers &&
           ta->num_heads == tb->num_heads && ta->d_kv == tb->d_kv && ta->d_ff == tb->d_ff &&
           ta->vocab_size == tb->vocab_size &&
           same_scheduler(wan_model_scheduler_config(a), wan_model_scheduler_config(b)) &&
           wan_model_pipeline_config(a)->boundary_ratio == wan_model_pipeline_config(b)->boundary_ratio &&
           wan_model_pipeline_config(a)->expand_timesteps == wan_model_pipeline_config(b)->expand_timesteps;
}

/* diffusers -> original -> diffusers: the same tensors, bit for bit, and the same configs. */
static void round_trip(const char *fixture, int *failed_)
{
    char tmp[] = "/tmp/wan-convert-XXXXXX", err[1024] = "";
    CHECK(mkdtemp(tmp));
    char orig[300], back[300];
    snprintf(orig, sizeof orig, "%s/orig", tmp);
    snprintf(back, sizeof back, "%s/back", tmp);
    CHECK_RC(convert_to(wan_test_fixture(fixture), orig, WAN_CONVERT_ORIGINAL, -1, 100000, err, sizeof err), WAN_OK,
             err);
    CHECK_RC(convert_to(orig, back, WAN_CONVERT_DIFFUSERS, -1, 0, err, sizeof err), WAN_OK, err);
    wan_model_t *a = NULL, *o = NULL, *b = NULL;
    CHECK_RC(wan_model_load(wan_test_fixture(fixture), NULL, &a, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_model_load(orig, NULL, &o, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_model_load(back, NULL, &b, err, sizeof err), WAN_OK, err);
    CHECK(wan_model_layout(o) == WAN_LAYOUT_ORIGINAL && wan_model_layout(b) == WAN_LAYOUT_DIFFUSERS_PIPELINE);
    wan_component_info ci;
    wan_model_component_info(o, WAN_COMPONENT_VAE, &ci);
    CHECK(ci.original_names);
    CHECK(same_weights(a, o));
    CHECK(same_weights(a, b));
    CHECK(configs_equal(a, b));
    wan_model_free(a);
    wan_model_free(o);
    wan_model_free(b);
    wan_test_rm_tree(tmp);
}

TEST(convert_round_trip_t2v) { round_trip("tiny-wan22-t2v", failed_); }
TEST(convert_round_trip_ti2v) { round_trip("tiny-wan22-ti2v", failed_); }

/* The original files written from the diffusers fixture equal the committed original-layout fixture, which
 * tools/ref/make_fixtures.py checked with diffusers' own converters: the experts and the VAE bit for bit,
 * and the umT5 encoder with --dtype bf16 (torch's round-to-nearest-even) too. */
TEST(convert_to_original_matches_fixture)
{
    char tmp[] = "/tmp/wan-convert-XXXXXX", err[1024] = "", dst[300];
    CHECK(mkdtemp(tmp));
    snprintf(dst, sizeof dst, "%s/o", tmp);
    CHECK_RC(convert_to(wan_test_fixture("tiny-wan22-t2v"), dst, WAN_CONVERT_ORIGINAL, -1, 0, err, sizeof err), WAN_OK,
             err);
    static const char *const files[][2] = {
        { "high_noise_model/diffusion_pytorch_model.safetensors", "tiny-wan22-t2v-orig/high_noise_model" },
        { "low_noise_model/diffusion_pytorch_model.safetensors", "tiny-wan22-t2v-orig/low_noise_model" },
        { "Wan2.1_VAE.safetensors", "tiny-wan22-t2v-orig/Wan2.1_VAE.safetensors" },
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[400];
        snprintf(path, sizeof path, "%s/%s", dst, files[i][0]);
        wan_error e = { 0 };
        wan_st_set *x = NULL, *y = NULL;
        const char *ref = wan_test_fixture(files[i][1]);
        CHECK_RC(wan_st_set_open_file(path, &x, &e), WAN_OK, e.msg);
        CHECK_RC(wan_path_is_dir(ref) ? wan_st_set_open_dir(ref, &y, &e) : wan_st_set_open_file(ref, &y, &e), WAN_OK,
                 e.msg);
        CHECK(x->n == y->n);
        for (int k = 0; k < x->n; k++) {
            const wan_st_entry *a = &x->entries[k], *b = wan_st_set_find(y, a->name);
            CHECK_MSG(b && a->t->end - a->t->begin == b->t->end - b->t->begin &&
                          !memcmp(a->t->data, b->t->data, a->t->end - a->t->begin),
                      "%s: '%s' differs from the fixture", files[i][0], a->name);
        }
        printf("    %s: %d tensors with the fixture's original names and bytes\n", files[i][0], x->n);
        wan_st_set_free(x);
        wan_st_set_free(y);
    }
    wan_test_rm_tree(tmp);
    snprintf(tmp, sizeof tmp, "/tmp/wan-convert-XXXXXX");
    CHECK(mkdtemp(tmp));
    snprintf(dst, sizeof dst, "%s/o", tmp);
    CHECK_RC(convert_to(wan_test_fixture("tiny-wan22-t2v"), dst, WAN_CONVERT_ORIGINAL, WAN_DTYPE_BF16, 0, err,
                        sizeof err), WAN_OK, err);
    char path[400];
    snprintf(path, sizeof path, "%s/models_t5_umt5-xxl-enc-bf16.safetensors", dst);
    wan_st_file *x = NULL, *y = NULL;
    wan_error e = { 0 };
    CHECK_RC(wan_st_open(path, &x, &e), WAN_OK, e.msg);
    CHECK_RC(wan_st_open(wan_test_fixture("tiny-wan22-t2v-orig/models_t5_umt5-xxl-enc-bf16.safetensors"), &y, &e),
             WAN_OK, e.msg);
    CHECK(x->n_tensors == y->n_tensors);
    for (int k = 0; k < x->n_tensors; k++) {
        const wan_st_tensor *a = &x->tensors[k], *b = wan_st_find(y, a->name);
        CHECK_MSG(b && a->dtype == WAN_DTYPE_BF16 && a->end - a->begin == b->end - b->begin &&
                      !memcmp(a->data, b->data, a->end - a->begin),
                  "umT5 '%s' differs from torch's bf16 rounding", a->name);
    }
    printf("    umT5 f32 -> bf16: %d tensors equal torch's .to(bfloat16)\n", x->n_tensors);
    wan_st_close(x);
    wan_st_close(y);
    wan_test_rm_tree(tmp);
}

/* The inverse VAE renames against the spec's tables (tools/ref/vae_params_wan2x.tsv: diffusers name,
 * shape, original name), and the forward rename back. */
static int check_tsv(const char *path, int residual)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[512];
    int n = 0, bad = 0;
    wan_vae_names names = { residual, 2 };
    int per_level = 4;
    while (fgets(line, sizeof line, f)) {
        char d[200], s[64], o[200];
        if (line[0] == '#' || sscanf(line, "%199s %63s %199s", d, s, o) != 3 || !strcmp(d, "diffusers_name"))
            continue;
        char inv[256] = "", fwd[256] = "";
        if (!wan_vae_rename_to_original(d, inv, sizeof inv, &names) || strcmp(inv, o) ||
            !wan_vae_rename_original(o, fwd, sizeof fwd, &per_level) || strcmp(fwd, d)) {
            if (bad++ < 5)
                printf("    %s: %s -> '%s' (want %s), back '%s'\n", path, d, inv, o, fwd);
        }
        n++;
    }
    fclose(f);
    printf("    %s: %d names, %d mismatches\n", path, n, bad);
    return n > 100 && bad == 0;
}

TEST(convert_vae_names_match_spec_tables)
{
    CHECK(check_tsv("tools/ref/vae_params_wan21.tsv", 0));
    CHECK(check_tsv("tools/ref/vae_params_wan22.tsv", 1));
}

TEST(convert_dit_names_invert)
{
    char err[1024] = "";
    wan_model_t *m = NULL;
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-t2v"), NULL, &m, err, sizeof err), WAN_OK, err);
    const wan_st_set *w = wan_model_weights(m, WAN_COMPONENT_TRANSFORMER);
    for (int i = 0; i < w->n; i++) {
        char o[256] = "", d[256] = "";
        const char *name = w->entries[i].name;
        int renamed = wan_dit_rename_to_original(name, o, sizeof o, NULL);
        CHECK_MSG(renamed || !strncmp(name, "patch_embedding.", 16), "no original name for %s", name);
        if (renamed) {
            CHECK(wan_dit_rename_original(o, d, sizeof d, NULL) && !strcmp(d, name));
            snprintf(d, sizeof d, "model.diffusion_model.%s", o); /* ComfyUI prefix */
            char e[256] = "";
            CHECK(wan_dit_rename_original(d, e, sizeof e, NULL) && !strcmp(e, name));
        }
    }
    wan_model_free(m);
}

/* The .pth release converts to a diffusers folder with the same tensors; --dtype f16 rounds every float. */
TEST(convert_pth_release)
{
    char rel[256], tmp[] = "/tmp/wan-convert-XXXXXX", err[1024] = "", dst[300], dst16[300];
    CHECK(wan_test_pth_release(rel, sizeof rel));
    CHECK(mkdtemp(tmp));
    snprintf(dst, sizeof dst, "%s/d", tmp);
    snprintf(dst16, sizeof dst16, "%s/d16", tmp);
    CHECK_RC(convert_to(rel, dst, WAN_CONVERT_DIFFUSERS, -1, 0, err, sizeof err), WAN_OK, err);
    CHECK_RC(convert_to(rel, dst16, WAN_CONVERT_DIFFUSERS, WAN_DTYPE_F16, 0, err, sizeof err), WAN_OK, err);
    wan_model_t *a = NULL, *b = NULL, *h = NULL;
    CHECK_RC(wan_model_load(rel, NULL, &a, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_model_load(dst, NULL, &b, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_model_load(dst16, NULL, &h, err, sizeof err), WAN_OK, err);
    CHECK(same_weights(a, b) && configs_equal(a, b));
    wan_component_info ti;
    CHECK(wan_model_component_info(b, WAN_COMPONENT_TOKENIZER, &ti) == WAN_OK && ti.present);
    int64_t n = 0;
    for (size_t k = 0; k < sizeof k_all / sizeof *k_all; k++) {
        const wan_st_set *x = wan_model_weights(a, k_all[k]), *y = wan_model_weights(h, k_all[k]);
        for (int i = 0; i < x->n; i++) {
            const wan_st_tensor *s = x->entries[i].t, *t = wan_st_set_find(y, x->entries[i].name)->t;
            CHECK(t->dtype == WAN_DTYPE_F16);
            size_t es = wan_dtype_size(s->dtype), ne = (s->end - s->begin) / es;
            for (size_t j = 0; j < ne; j++, n++) {
                float f;
                if (s->dtype == WAN_DTYPE_F32)
                    memcpy(&f, s->data + 4 * j, 4);
                else
                    f = wan_bf16_to_f32((uint16_t)(s->data[2 * j] | s->data[2 * j + 1] << 8));
                uint16_t want = wan_f32_to_f16(f), got = (uint16_t)(t->data[2 * j] | t->data[2 * j + 1] << 8);
                CHECK_MSG(got == want, "%s[%zu]", x->entries[i].name, j);
            }
        }
    }
    printf("    --dtype f16: %lld values rounded to nearest even\n", (long long)n);
    wan_model_free(a);
    wan_model_free(b);
    wan_model_free(h);
    wan_test_rm_tree(tmp);
    wan_test_rm_tree(rel);
}

/* Nothing named dst, and no dst.tmp-* folder, exists. */
static int nothing_left(const char *parent, const char *base)
{
    DIR *d = opendir(parent);
    if (!d)
        return 0;
    int clean = 1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, base, strlen(base))) {
            printf("    left behind: %s/%s\n", parent, e->d_name);
            clean = 0;
        }
    closedir(d);
    return clean;
}

TEST(convert_failures_leave_nothing)
{
    char tmp[] = "/tmp/wan-convert-XXXXXX", err[1024] = "", dst[300];
    CHECK(mkdtemp(tmp));
    snprintf(dst, sizeof dst, "%s/out", tmp);
    wan_model_t *m = NULL;
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-t2v"), NULL, &m, err, sizeof err), WAN_OK, err);
    size_t base = wan_mem_current();
    /* allocations 1..16, then every ~1.5x further, fail in turn (each try fsyncs what it wrote, so not all
     * ~400 of the whole pipeline: tests/test_pth.c fails every allocation of the reader) */
    int n_fail = 0;
    for (long k = 1;; k = k < 16 ? k + 1 : k * 3 / 2) {
        wan_mem_fail_after(k);
        wan_status rc = wan_model_convert(m, dst, NULL, err, sizeof err);
        wan_mem_fail_after(0);
        if (rc == WAN_OK)
            break;
        CHECK_MSG(rc == WAN_ERR_NOMEM, "allocation %ld: %s", k, err);
        CHECK_MSG(nothing_left(tmp, "out"), "after failing allocation %ld", k);
        CHECK(wan_mem_current() == base);
        n_fail++;
    }
    printf("    %d conversions stopped by a failed allocation: none left an output folder\n", n_fail);
    CHECK(n_fail > 10);
    /* the destination exists now: refused, and it is left as it was */
    CHECK_RC(wan_model_convert(m, dst, NULL, err, sizeof err), WAN_ERR_IO, err);
    CHECK(strstr(err, "already exists"));
    /* unwritable places */
    CHECK_RC(wan_model_convert(m, "/proc/wan-convert-test", NULL, err, sizeof err), WAN_ERR_IO, err);
    printf("    %s\n", err);
    CHECK_RC(wan_model_convert(m, "/dev/null/out", NULL, err, sizeof err), WAN_ERR_IO, err);
    wan_convert_params p = wan_convert_default_params();
    p.dtype = WAN_DTYPE_I64;
    CHECK_RC(wan_model_convert(m, "/tmp/never", &p, err, sizeof err), WAN_ERR_INVALID_ARG, err);
    wan_model_free(m);
    wan_test_rm_tree(tmp);
}

/* ---- q8_0 ------------------------------------------------------------------------------------- */

/* Bound for a q8_0 forward against the fp32 reference: each weight is off by up to half a step of its block (1/254
 * of the block's largest value), a coarser rounding than bf16's 2^-9 of the value itself, so the bound is that of the
 * bf16-products case (test_dit.c DIT_BF16_TOL), not a parity bound. */
#define Q8_REF_TOL 3e-2
/* q8_0 weights against the same values stored as F32 (the dequantised copy): the kernels multiply the same f32
 * numbers (q · scale is exact in f32), in the same order. */
#define Q8_SAME_TOL 1e-7

static wan_status convert_q(const char *src, const char *dst, wan_convert_layout layout, int dtype, wan_quant q,
                            char *err, size_t errlen)
{
    wan_convert_params p = wan_convert_default_params();
    p.layout = layout;
    p.dtype = dtype;
    p.quantize = q;
    return convert_with(src, dst, &p, err, errlen);
}

/* The expert-0 forward of the fixture case t2v_high on model m into *out. */
static int dit_forward(const wan_model_t *m, wan_host_tensor *out, wan_host_tensor *ref)
{
    char err[512] = "";
    const char *f = wan_test_fixture("transformer/t2v_high.safetensors");
    wan_host_tensor x = { 0 }, t = { 0 }, ctx = { 0 };
    int ok = wan_safetensors_read(f, "hidden_states", WAN_DTYPE_F32, &x, err, sizeof err) == WAN_OK &&
             wan_safetensors_read(f, "timestep", WAN_DTYPE_I64, &t, err, sizeof err) == WAN_OK &&
             wan_safetensors_read(f, "encoder_hidden_states", WAN_DTYPE_F32, &ctx, err, sizeof err) == WAN_OK &&
             (!ref || wan_safetensors_read(f, "sample", WAN_DTYPE_F32, ref, err, sizeof err) == WAN_OK) &&
             wan_transformer_forward(m, 0, &x, &t, &ctx, out, 2, err, sizeof err) == WAN_OK;
    if (!ok)
        printf("    transformer forward: %s\n", err);
    wan_host_tensor_free(&x);
    wan_host_tensor_free(&t);
    wan_host_tensor_free(&ctx);
    return ok;
}

/* The umT5 forward of the fixture case s128 on model m into *out (and the transformers reference into *ref). */
static int te_forward(const wan_model_t *m, wan_host_tensor *out, wan_host_tensor *ref)
{
    char err[512] = "";
    const char *f = wan_test_fixture("umt5/cases_fp32.safetensors");
    wan_host_tensor ids = { 0 }, mask = { 0 };
    int ok = wan_safetensors_read(f, "s128.input_ids", WAN_DTYPE_I64, &ids, err, sizeof err) == WAN_OK &&
             wan_safetensors_read(f, "s128.attention_mask", WAN_DTYPE_I64, &mask, err, sizeof err) == WAN_OK &&
             (!ref || wan_safetensors_read(f, "s128.last_hidden_state", WAN_DTYPE_F32, ref, err, sizeof err) == WAN_OK) &&
             wan_text_encoder_forward(m, ids.data, mask.data, (int)ids.shape[1], out, 2, err, sizeof err) == WAN_OK;
    if (!ok)
        printf("    text encoder forward: %s\n", err);
    wan_host_tensor_free(&ids);
    wan_host_tensor_free(&mask);
    return ok;
}

/* The DiT and umT5 forwards of quantised model q equal those of its f32 copy d, and stay within ref_tol of the fp32
 * references. */
static void quant_forwards(const wan_model_t *q, const wan_model_t *d, const char *fmt, double ref_tol, int *failed_)
{
    wan_host_tensor oq = { 0 }, od = { 0 }, ref = { 0 };
    char what[96];
    for (int net = 0; net < 2; net++) {
        CHECK(net ? te_forward(q, &oq, &ref) && te_forward(d, &od, NULL)
                  : dit_forward(q, &oq, &ref) && dit_forward(d, &od, NULL));
        const size_t n = (size_t)wan_host_tensor_numel(&oq);
        snprintf(what, sizeof what, "%s %s vs its f32 copy", fmt, net ? "umT5" : "transformer");
        CHECK(wan_test_compare(what, oq.data, od.data, n, Q8_SAME_TOL));
        snprintf(what, sizeof what, "%s %s vs fp32 reference", fmt, net ? "umT5" : "transformer");
        CHECK(wan_test_compare(what, oq.data, ref.data, n, ref_tol));
        wan_host_tensor_free(&oq), wan_host_tensor_free(&od), wan_host_tensor_free(&ref);
    }
}

/* --quantize q8_0: the block linears of both experts and of umT5 become I8 + F16 scales (the rest is kept), the values
 * are those of wan_q8_quantize_row, the original-layout round trip keeps every tensor bit for bit (scales renamed with
 * their weights), --dtype f32 writes the values back as floats, and the forwards of the q8_0 model equal those of its
 * float copy and stay within a q8_0 bound of the fp32 reference. */
TEST(convert_q8_0)
{
    char tmp[] = "/tmp/wan-convert-XXXXXX", err[1024] = "", q8[300], orig[300], back[300], deq[300];
    CHECK(mkdtemp(tmp));
    snprintf(q8, sizeof q8, "%s/q8", tmp);
    snprintf(orig, sizeof orig, "%s/orig", tmp);
    snprintf(back, sizeof back, "%s/back", tmp);
    snprintf(deq, sizeof deq, "%s/deq", tmp);
    const char *src = wan_test_fixture("tiny-wan22-t2v");
    CHECK_RC(convert_q(src, q8, WAN_CONVERT_DIFFUSERS, -1, WAN_QUANT_Q8_0, err, sizeof err), WAN_OK, err);
    CHECK_RC(convert_q(q8, orig, WAN_CONVERT_ORIGINAL, -1, WAN_QUANT_NONE, err, sizeof err), WAN_OK, err);
    CHECK_RC(convert_q(orig, back, WAN_CONVERT_DIFFUSERS, -1, WAN_QUANT_Q8_0, err, sizeof err), WAN_OK, err);
    CHECK_RC(convert_q(q8, deq, WAN_CONVERT_DIFFUSERS, WAN_DTYPE_F32, WAN_QUANT_NONE, err, sizeof err), WAN_OK, err);
    wan_model_t *a = NULL, *q = NULL, *b = NULL, *d = NULL;
    CHECK_RC(wan_model_load(src, NULL, &a, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_model_load(q8, NULL, &q, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_model_load(back, NULL, &b, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_model_load(deq, NULL, &d, err, sizeof err), WAN_OK, err);
    CHECK(same_weights(q, b));
    int n_q8 = 0;
    for (size_t k = 0; k < sizeof k_all / sizeof *k_all; k++) {
        const wan_st_set *x = wan_model_weights(a, k_all[k]), *y = wan_model_weights(q, k_all[k]),
                         *z = wan_model_weights(d, k_all[k]);
        CHECK(z->n == x->n);
        for (int i = 0; i < x->n; i++) {
            const char *name = x->entries[i].name;
            const wan_st_tensor *s = x->entries[i].t, *t = wan_st_set_find(y, name)->t;
            const wan_st_tensor *u = wan_st_set_find(z, name)->t;
            CHECK_MSG(u->dtype == WAN_DTYPE_F32, "%s", name);
            if (t->dtype != WAN_DTYPE_I8) { /* kept: bit for bit, and so is its f32 copy */
                CHECK_MSG(t->dtype == s->dtype && !memcmp(t->data, s->data, s->end - s->begin), "%s", name);
                continue;
            }
            n_q8++;
            CHECK_MSG(k_all[k] != WAN_COMPONENT_VAE && s->ndim == 2 && s->dtype == WAN_DTYPE_F32, "%s", name);
            char sname[300];
            snprintf(sname, sizeof sname, "%s_scale", name);
            const wan_st_entry *se = wan_st_set_find(y, sname);
            CHECK_MSG(se && se->t->dtype == WAN_DTYPE_F16, "%s", sname);
            const int64_t K = s->shape[1];
            float row[512], back_row[512];
            int8_t qv[512];
            uint16_t sc[16];
            CHECK(K <= 512);
            for (int64_t r = 0; r < s->shape[0]; r++) {
                memcpy(row, s->data + (size_t)(r * K) * 4, (size_t)K * 4);
                wan_q8_quantize_row(row, K, qv, sc);
                CHECK_MSG(!memcmp(qv, t->data + r * K, (size_t)K) &&
                              !memcmp(sc, se->t->data + (size_t)(r * (K / WAN_Q8_BLOCK)) * 2, (size_t)(K / 16)),
                          "%s row %lld", name, (long long)r);
                memcpy(back_row, u->data + (size_t)(r * K) * 4, (size_t)K * 4);
                for (int64_t j = 0; j < K; j++) /* the float copy holds q · scale; within half a step of w */
                    CHECK_MSG(back_row[j] == (float)qv[j] * wan_f16_to_f32(sc[j / WAN_Q8_BLOCK]) &&
                                  fabsf(back_row[j] - row[j]) <= 0.5f * wan_f16_to_f32(sc[j / WAN_Q8_BLOCK]) +
                                                                     1e-3f * fabsf(row[j]),
                              "%s[%lld, %lld]", name, (long long)r, (long long)j);
            }
        }
        if (k_all[k] != WAN_COMPONENT_VAE)
            CHECK(y->n > x->n); /* the scales */
    }
    printf("    %d linear weights as q8_0\n", n_q8);
    CHECK(n_q8 == 2 * 2 * 10 + 3 * 7); /* 2 experts x 2 blocks x 10 projections, 3 umT5 blocks x 7 */
    quant_forwards(q, d, "q8_0", Q8_REF_TOL, failed_);
    wan_model_free(a);
    wan_model_free(q);
    wan_model_free(b);
    wan_model_free(d);
    wan_test_rm_tree(tmp);
}

/* ComfyUI float8 checkpoints (tests/fixtures/fp8): copied as they are (float8 with their scales, markers and
 * comfy_quant, renamed to diffusers names) they load and give the same forward; --dtype f32 writes the values the
 * kernels see (float8 · scale, the scale tensors dropped), so that copy's forward is the same too; --quantize q8_0
 * quantises those values (within the q8_0 bound of the float8 model's reference). */
TEST(convert_float8)
{
    static const char *const src[2] = { "fp8/comfy_scaled_e4m3", "fp8/comfy_quant_e5m2" };
    static const char *const ref_name[2] = { "sample_e4m3_scaled", "sample_e5m2" };
    for (int f = 0; f < 2; f++) {
        char tmp[] = "/tmp/wan-convert-XXXXXX", err[1024] = "", keep[300], f32[300], q8[300];
        CHECK(mkdtemp(tmp));
        snprintf(keep, sizeof keep, "%s/keep", tmp);
        snprintf(f32, sizeof f32, "%s/f32", tmp);
        snprintf(q8, sizeof q8, "%s/q8", tmp);
        const char *s = wan_test_fixture(src[f]);
        CHECK_RC(convert_q(s, keep, WAN_CONVERT_DIFFUSERS, -1, WAN_QUANT_NONE, err, sizeof err), WAN_OK, err);
        CHECK_RC(convert_q(s, f32, WAN_CONVERT_DIFFUSERS, WAN_DTYPE_F32, WAN_QUANT_NONE, err, sizeof err), WAN_OK, err);
        CHECK_RC(convert_q(s, q8, WAN_CONVERT_DIFFUSERS, -1, WAN_QUANT_Q8_0, err, sizeof err), WAN_OK, err);
        wan_model_t *a = NULL, *k = NULL, *d = NULL, *q = NULL;
        CHECK_RC(wan_model_load(s, NULL, &a, err, sizeof err), WAN_OK, err);
        CHECK_RC(wan_model_load(keep, NULL, &k, err, sizeof err), WAN_OK, err);
        CHECK_RC(wan_model_load(f32, NULL, &d, err, sizeof err), WAN_OK, err);
        CHECK_RC(wan_model_load(q8, NULL, &q, err, sizeof err), WAN_OK, err);
        const wan_st_set *sa = wan_model_weights(a, WAN_COMPONENT_TRANSFORMER),
                         *sk = wan_model_weights(k, WAN_COMPONENT_TRANSFORMER),
                         *sd = wan_model_weights(d, WAN_COMPONENT_TRANSFORMER),
                         *sq = wan_model_weights(q, WAN_COMPONENT_TRANSFORMER);
        CHECK(sk->n == sa->n); /* every tensor, the scales and markers too */
        for (int i = 0; i < sa->n; i++) {
            const wan_st_entry *e = wan_st_set_find(sk, sa->entries[i].name);
            CHECK_MSG(e && e->t->dtype == sa->entries[i].t->dtype &&
                          !memcmp(e->t->data, sa->entries[i].t->data, sa->entries[i].t->end - sa->entries[i].t->begin),
                      "%s", sa->entries[i].name);
        }
        int n8 = 0, nq = 0;
        for (int i = 0; i < sd->n; i++) {
            const char *nm = sd->entries[i].name;
            CHECK_MSG(sd->entries[i].t->dtype == WAN_DTYPE_F32 && !strstr(nm, "scale_weight") &&
                          !strstr(nm, "comfy_quant") && !strstr(nm, "scaled_fp8") && !strstr(nm, "weight_scale"),
                      "%s", nm);
            const wan_st_entry *e8 = wan_st_set_find(sa, nm);
            n8 += e8 && wan_dtype_is_f8(e8->t->dtype);
        }
        for (int i = 0; i < sq->n; i++)
            nq += sq->entries[i].t->dtype == WAN_DTYPE_I8;
        printf("    %s: %d float8 weights; f32 copy of %d tensors; %d of them q8_0 in the quantised copy\n", src[f],
               n8, sd->n, nq);
        CHECK(n8 == 2 * 10 + 6 && nq == 2 * 10); /* the blocks' 10 projections, and 6 linears outside them */
        wan_host_tensor oa = { 0 }, ok = { 0 }, od = { 0 }, oq = { 0 }, ref = { 0 };
        CHECK(dit_forward(a, &oa, NULL) && dit_forward(k, &ok, NULL) && dit_forward(d, &od, NULL) &&
              dit_forward(q, &oq, NULL));
        CHECK(wan_test_read("fp8/reference.safetensors", ref_name[f], WAN_DTYPE_F32, &ref));
        const size_t nv = (size_t)wan_host_tensor_numel(&oa);
        CHECK(wan_test_compare("float8 kept vs float8 source", ok.data, oa.data, nv, Q8_SAME_TOL));
        CHECK(wan_test_compare("f32 copy vs float8 source", od.data, oa.data, nv, Q8_SAME_TOL));
        CHECK(wan_test_compare("q8_0 of float8 vs reference", oq.data, ref.data, nv, Q8_REF_TOL));
        wan_host_tensor *t[] = { &oa, &ok, &od, &oq, &ref };
        for (size_t i = 0; i < sizeof t / sizeof *t; i++)
            wan_host_tensor_free(t[i]);
        wan_model_free(a);
        wan_model_free(k);
        wan_model_free(d);
        wan_model_free(q);
        wan_test_rm_tree(tmp);
    }
}

/* --quantize q4_0: the same 61 linear weights as U8 [N, K/2] + F16 scales, bit for bit what wan_q4_quantize_row gives;
 * the forwards equal those of the f32 copy (q · scale is exact in f32), and stay within Q4_REF_TOL of the reference:
 * a step of 1/8 of the block's largest value instead of 1/127, so 16 times Q8_REF_TOL. */
#define Q4_REF_TOL (16 * Q8_REF_TOL)

TEST(convert_q4_0)
{
    char tmp[] = "/tmp/wan-convert-XXXXXX", err[1024] = "", q4[300], deq[300];
    CHECK(mkdtemp(tmp));
    snprintf(q4, sizeof q4, "%s/q4", tmp);
    snprintf(deq, sizeof deq, "%s/deq", tmp);
    const char *src = wan_test_fixture("tiny-wan22-t2v");
    CHECK_RC(convert_q(src, q4, WAN_CONVERT_DIFFUSERS, -1, WAN_QUANT_Q4_0, err, sizeof err), WAN_OK, err);
    CHECK_RC(convert_q(q4, deq, WAN_CONVERT_DIFFUSERS, WAN_DTYPE_F32, WAN_QUANT_NONE, err, sizeof err), WAN_OK, err);
    wan_model_t *a = NULL, *q = NULL, *d = NULL;
    CHECK_RC(wan_model_load(src, NULL, &a, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_model_load(q4, NULL, &q, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_model_load(deq, NULL, &d, err, sizeof err), WAN_OK, err);
    int n_q4 = 0;
    for (size_t k = 0; k < sizeof k_all / sizeof *k_all; k++) {
        const wan_st_set *x = wan_model_weights(a, k_all[k]), *y = wan_model_weights(q, k_all[k]);
        for (int i = 0; i < x->n; i++) {
            const wan_st_tensor *s = x->entries[i].t, *t = wan_st_set_find(y, x->entries[i].name)->t;
            if (t->dtype != WAN_DTYPE_U8)
                continue;
            n_q4++;
            char sname[300];
            snprintf(sname, sizeof sname, "%s_scale", x->entries[i].name);
            const wan_st_tensor *st = wan_st_set_find(y, sname)->t;
            const int64_t K = s->shape[1];
            CHECK(t->shape[1] == K / 2 && st->shape[1] == K / WAN_Q8_BLOCK && K <= 512);
            float row[512];
            uint8_t qv[256];
            uint16_t sc[16];
            for (int64_t r = 0; r < s->shape[0]; r++) {
                memcpy(row, s->data + (size_t)(r * K) * 4, (size_t)K * 4);
                wan_q4_quantize_row(row, K, qv, sc);
                CHECK_MSG(!memcmp(qv, t->data + r * (K / 2), (size_t)(K / 2)) &&
                              !memcmp(sc, st->data + (size_t)(r * (K / WAN_Q8_BLOCK)) * 2, (size_t)(K / 16)),
                          "%s row %lld", x->entries[i].name, (long long)r);
            }
        }
    }
    printf("    %d linear weights as q4_0\n", n_q4);
    CHECK(n_q4 == 2 * 2 * 10 + 3 * 7);
    quant_forwards(q, d, "q4_0", Q4_REF_TOL, failed_);
    wan_model_free(a);
    wan_model_free(q);
    wan_model_free(d);
    wan_test_rm_tree(tmp);
}
