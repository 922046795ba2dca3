/* test_convert.c — wan_model_convert: the diffusers <-> original round trip is bit-identical, the
 * inverse renames match the spec's name tables, dtype conversion rounds as torch does, the .pth release
 * converts to a folder that loads with the same tensors, and failed conversions leave nothing behind. */
#define _DEFAULT_SOURCE
#include "test.h"

#include "convert.h"
#include "model_dir.h"
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

static wan_status convert_to(const char *src, const char *dst, wan_convert_layout layout, int dtype, int64_t shard,
                             char *err, size_t errlen)
{
    wan_model_t *m = NULL;
    wan_status rc = wan_model_load(src, NULL, &m, err, errlen);
    if (rc != WAN_OK)
        return rc;
    wan_convert_params p = wan_convert_default_params();
    p.layout = layout;
    p.dtype = dtype;
    if (shard > 0)
        p.shard_bytes = shard;
    rc = wan_model_convert(m, dst, &p, err, errlen);
    wan_model_free(m);
    return rc;
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
