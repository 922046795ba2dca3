/* test_pth.c — the torch.save (.pth) reader: tensors equal to the safetensors copies bit for bit,
 * zip64, pickle protocol 4, float8, wrapped checkpoints; malicious, truncated and corrupt archives
 * rejected with a clear message; every prefix and every single-byte corruption of an archive handled;
 * allocation failures; the original release layout with .pth files. */
#define _DEFAULT_SOURCE
#define _XOPEN_SOURCE 700
#include "test.h"

#include "model_dir.h"
#include "pth.h"
#include "safetensors.h"

#include <ftw.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

/* Every tensor of `a` is in `b` with the same dtype, shape and bytes (and the other way round). */
static int same_tensors(const wan_st_file *a, const wan_st_file *b)
{
    if (a->n_tensors != b->n_tensors) {
        printf("    %s has %d tensors, %s has %d\n", a->path, a->n_tensors, b->path, b->n_tensors);
        return 0;
    }
    for (int i = 0; i < a->n_tensors; i++) {
        const wan_st_tensor *x = &a->tensors[i], *y = wan_st_find(b, x->name);
        size_t n = x->end - x->begin;
        if (!y || x->dtype != y->dtype || x->ndim != y->ndim || memcmp(x->shape, y->shape, sizeof x->shape) ||
            n != y->end - y->begin || (n && memcmp(x->data, y->data, n))) {
            printf("    tensor '%s' differs between %s and %s\n", x->name, a->path, b->path);
            return 0;
        }
    }
    return 1;
}

static int same_files(const char *pth, const char *st)
{
    wan_st_file *a = NULL, *b = NULL;
    wan_error err = { 0 };
    int ok = wan_st_open(wan_test_fixture(pth), &a, &err) == WAN_OK;
    if (!ok)
        printf("    %s\n", err.msg);
    ok = ok && wan_st_open(wan_test_fixture(st), &b, &err) == WAN_OK;
    ok = ok && same_tensors(a, b);
    if (ok)
        printf("    %s == %s: %d tensors, bit for bit\n", pth, st, a->n_tensors);
    wan_st_close(a);
    wan_st_close(b);
    return ok;
}

TEST(pth_tensors_equal_safetensors)
{
    size_t base = wan_mem_current();
    CHECK(same_files("pth/edge.pth", "pth/edge.safetensors"));
    CHECK(same_files("pth/proto4.pth", "pth/edge.safetensors"));
    CHECK(same_files("pth/zip64.pth", "pth/edge.safetensors"));
    CHECK(same_files("pth/f8.pth", "pth/f8.safetensors"));
    CHECK(same_files("tiny-wan22-t2v-pth/models_t5_umt5-xxl-enc-bf16.pth",
                     "tiny-wan22-t2v-orig/models_t5_umt5-xxl-enc-bf16.safetensors"));
    CHECK(same_files("tiny-wan22-t2v-pth/Wan2.1_VAE.pth", "tiny-wan22-t2v-orig/Wan2.1_VAE.safetensors"));
    /* the views share one storage: shared.row2 starts 10 floats into shared.full */
    wan_st_file *f = NULL;
    wan_error err = { 0 };
    CHECK_RC(wan_st_open(wan_test_fixture("pth/edge.pth"), &f, &err), WAN_OK, err.msg);
    const wan_st_tensor *full = wan_st_find(f, "shared.full"), *row = wan_st_find(f, "shared.row2");
    CHECK(full && row && row->data == full->data + 10 * 4 && row->begin == full->begin + 40);
    CHECK(f->header_len == 0 && wan_st_find(f, "scalar")->ndim == 0 && wan_st_find(f, "empty")->end ==
                                                                           wan_st_find(f, "empty")->begin);
    wan_st_close(f);
    CHECK(wan_mem_current() == base);
}

TEST(pth_wrapped_checkpoint)
{
    wan_st_file *w = NULL, *e = NULL;
    wan_error err = { 0 };
    CHECK_RC(wan_st_open(wan_test_fixture("pth/wrapped.pth"), &w, &err), WAN_OK, err.msg);
    CHECK_RC(wan_st_open(wan_test_fixture("pth/edge.pth"), &e, &err), WAN_OK, err.msg);
    CHECK(w->n_tensors == 2);
    for (int i = 0; i < w->n_tensors; i++) {
        const wan_st_tensor *x = &w->tensors[i], *y = wan_st_find(e, x->name);
        CHECK(y && x->end - x->begin == y->end - y->begin && !memcmp(x->data, y->data, x->end - x->begin));
    }
    wan_st_close(w);
    wan_st_close(e);
}

/* Opens a fixture and expects `want` with `needle` in the message. */
static int expect_reject(const char *rel, wan_status want, const char *needle)
{
    wan_st_file *f = NULL;
    wan_error err = { 0 };
    wan_status rc = wan_st_open(wan_test_fixture(rel), &f, &err);
    wan_st_close(f);
    printf("    %s -> %s: %s\n", rel, wan_status_str(rc), err.msg);
    return rc == want && f == NULL && strstr(err.msg, needle) != NULL;
}

TEST(pth_rejects_malicious_and_corrupt)
{
    size_t base = wan_mem_current();
    CHECK(expect_reject("pth/bad_global.pth", WAN_ERR_UNSUPPORTED, "system' is not allowed"));
    CHECK(expect_reject("pth/bad_global.pth", WAN_ERR_UNSUPPORTED, "bad_global/data.pkl byte 13: global"));
    CHECK(expect_reject("pth/bad_builtins.pth", WAN_ERR_UNSUPPORTED, "global 'builtins.eval' is not allowed"));
    CHECK(expect_reject("pth/bad_reduce.pth", WAN_ERR_UNSUPPORTED, "REDUCE on 'torch.FloatStorage' is not allowed"));
    CHECK(expect_reject("pth/bad_inst.pth", WAN_ERR_UNSUPPORTED, "opcode 0x69 (INST) is not allowed"));
    CHECK(expect_reject("pth/bad_noncontig.pth", WAN_ERR_UNSUPPORTED, "tensor 't' is not contiguous"));
    CHECK(expect_reject("pth/bad_truncated.pth", WAN_ERR_FORMAT, "no zip end-of-central-directory record"));
    CHECK(expect_reject("pth/bad_entry_oob.pth", WAN_ERR_FORMAT, "run past the central directory"));
    CHECK(expect_reject("pth/bad_offset_oob.pth", WAN_ERR_FORMAT, "tensor 'x' (shape [3], F32, storage offset "
                                                                  "1000000) lies outside its storage of 12 bytes"));
    CHECK(expect_reject("pth/bad_numel.pth", WAN_ERR_FORMAT, "has 1000 elements of 4 bytes but its entry"));
    CHECK(expect_reject("pth/bad_compressed.pth", WAN_ERR_UNSUPPORTED, "is compressed (method 8)"));
    CHECK(expect_reject("pth/bad_nostop.pth", WAN_ERR_FORMAT, "ends without STOP"));
    CHECK(expect_reject("pth/bad_legacy.pth", WAN_ERR_UNSUPPORTED, "a legacy (torch < 1.6) torch.save file"));
    CHECK(wan_mem_current() == base);
}

/* Every prefix of an archive, and every archive with one byte changed, is parsed without a crash or a
 * leak (ASan checks the reads: each copy is a buffer of exactly its size). */
TEST(pth_truncations_and_corruptions)
{
    char *text = NULL;
    size_t len = 0;
    wan_error err = { 0 };
    CHECK_RC(wan_read_file(wan_test_fixture("pth/edge.pth"), &text, &len, &err), WAN_OK, err.msg);
    size_t base = wan_mem_current();
    int ok_prefix = 0, ok_flip = 0;
    for (size_t n = 0; n < len; n++) {
        uint8_t *b = malloc(n ? n : 1);
        memcpy(b, text, n);
        wan_st_file f;
        if (wan_pth_parse("prefix", b, n, &f, &err) == WAN_OK) {
            ok_prefix++;
            wan_st_file_clear(&f);
        }
        free(b);
    }
    for (size_t i = 0; i < len; i++) {
        uint8_t *b = malloc(len);
        memcpy(b, text, len);
        b[i] ^= (uint8_t)(0x5a + i);
        wan_st_file f;
        if (wan_pth_parse("flip", b, len, &f, &err) == WAN_OK) {
            volatile uint8_t sink = 0;
            for (int t = 0; t < f.n_tensors; t++)
                if (f.tensors[t].end > f.tensors[t].begin)
                    sink ^= f.tensors[t].data[f.tensors[t].end - f.tensors[t].begin - 1];
            (void)sink;
            ok_flip++;
            wan_st_file_clear(&f);
        }
        free(b);
    }
    printf("    %zu prefixes: %d parse; %zu one-byte corruptions: %d still parse (data bytes)\n", len, ok_prefix,
           len, ok_flip);
    CHECK(ok_prefix == 0);
    CHECK(wan_mem_current() == base);
    wan_free(text);
}

TEST(pth_allocation_failures)
{
    char *text = NULL;
    size_t len = 0;
    wan_error err = { 0 };
    CHECK_RC(wan_read_file(wan_test_fixture("pth/edge.pth"), &text, &len, &err), WAN_OK, err.msg);
    size_t base = wan_mem_current();
    int n_fail = 0;
    for (long k = 1;; k++) {
        wan_mem_fail_after(k);
        wan_st_file f;
        wan_status rc = wan_pth_parse("edge.pth", (const uint8_t *)text, len, &f, &err);
        wan_mem_fail_after(0);
        if (rc == WAN_OK) {
            wan_st_file_clear(&f);
            break;
        }
        CHECK_MSG(rc == WAN_ERR_NOMEM, "allocation %ld: %s", k, err.msg);
        CHECK(wan_mem_current() == base);
        n_fail++;
    }
    printf("    %d allocation failures, each reported as out of memory without a leak\n", n_fail);
    CHECK(n_fail > 3);
    wan_free(text);
}

/* ---- the original release with .pth files --------------------------------------------------- */

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

void wan_test_rm_tree(const char *dir);
void wan_test_rm_tree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Assembles a complete original release in a new temporary folder (written to out): the experts of
 * tiny-wan22-t2v-orig and the .pth files + google/ of tiny-wan22-t2v-pth, as symbolic links. */
int wan_test_pth_release(char *out, size_t len);
int wan_test_pth_release(char *out, size_t len)
{
    snprintf(out, len, "/tmp/wan-pth-release-XXXXXX");
    if (!mkdtemp(out))
        return 0;
    static const char *const parts[][2] = {
        { "tiny-wan22-t2v-orig/high_noise_model", "high_noise_model" },
        { "tiny-wan22-t2v-orig/low_noise_model", "low_noise_model" },
        { "tiny-wan22-t2v-pth/Wan2.1_VAE.pth", "Wan2.1_VAE.pth" },
        { "tiny-wan22-t2v-pth/models_t5_umt5-xxl-enc-bf16.pth", "models_t5_umt5-xxl-enc-bf16.pth" },
        { "tiny-wan22-t2v-pth/google", "google" },
    };
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        char target[PATH_MAX], link[PATH_MAX + 64];
        if (!realpath(wan_test_fixture(parts[i][0]), target))
            return 0;
        snprintf(link, sizeof link, "%s/%s", out, parts[i][1]);
        if (symlink(target, link) != 0)
            return 0;
    }
    return 1;
}

TEST(pth_original_release_layout)
{
    char dir[256], err[1024] = "";
    CHECK(wan_test_pth_release(dir, sizeof dir));
    wan_model_t *p = NULL, *o = NULL;
    CHECK_RC(wan_model_load(dir, NULL, &p, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-t2v-orig"), NULL, &o, err, sizeof err), WAN_OK, err);
    CHECK(wan_model_layout(p) == WAN_LAYOUT_ORIGINAL);
    for (int c = 0; c < WAN_COMPONENT_COUNT; c++) {
        wan_component_info ci;
        CHECK(wan_model_component_info(p, (wan_component)c, &ci) == WAN_OK);
        CHECK_MSG(ci.present, "component %s missing", wan_component_name((wan_component)c));
    }
    const wan_scheduler_config *sc = wan_model_scheduler_config(p);
    CHECK(sc->kind == WAN_SCHEDULER_UNIPC && sc->flow_shift == 3.0 && sc->use_flow_sigmas &&
          !strcmp(sc->prediction_type, "flow_prediction"));
    static const wan_component comps[] = { WAN_COMPONENT_TEXT_ENCODER, WAN_COMPONENT_VAE };
    for (size_t k = 0; k < 2; k++) {
        const wan_st_set *a = wan_model_weights(p, comps[k]), *b = wan_model_weights(o, comps[k]);
        wan_component_info ci;
        wan_model_component_info(p, comps[k], &ci);
        CHECK(ci.original_names && strstr(ci.path, ".pth"));
        CHECK(a->n == b->n);
        for (int i = 0; i < a->n; i++) {
            const wan_st_entry *x = &a->entries[i], *y = wan_st_set_find(b, x->name);
            CHECK_MSG(y && !strcmp(x->t->name, y->t->name) && x->t->dtype == y->t->dtype &&
                          x->t->end - x->t->begin == y->t->end - y->t->begin &&
                          !memcmp(x->t->data, y->t->data, x->t->end - x->t->begin),
                      "%s differs", x->name);
        }
        printf("    %s: %d tensors from %s equal the safetensors copy\n", wan_component_name(comps[k]), a->n,
               ci.path);
    }
    CHECK(wan_model_text_encoder_config(p)->d_model == 64 && wan_model_vae_config(p)->z_dim == 16);
    wan_model_free(p);
    wan_model_free(o);
    wan_test_rm_tree(dir);
    /* the .pth files alone: single files with configs inferred from their shapes */
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-t2v-pth/models_t5_umt5-xxl-enc-bf16.pth"), NULL, &p, err,
                            sizeof err), WAN_OK, err);
    CHECK(wan_model_text_encoder_config(p)->num_layers == 3 && wan_model_text_encoder_config(p)->d_ff == 96);
    wan_model_free(p);
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-t2v-pth/Wan2.1_VAE.pth"), NULL, &p, err, sizeof err),
             WAN_OK, err);
    CHECK(wan_model_vae_config(p)->z_dim == 16 && wan_model_vae_config(p)->base_dim == 8);
    wan_model_free(p);
}

/* A ComfyUI-style single DiT file (prefix model.diffusion_model., original names), made here with zero
 * weights at head_dim 128 so that shape inference applies: its config comes out of the shapes. */
TEST(pth_comfyui_single_file_dit)
{
    enum { D = 128, F = 32, TD = 16, FD = 32, CIN = 4 };
    static const struct {
        const char *name;
        int nd;
        int64_t s[5];
    } spec[] = {
        { "patch_embedding.weight", 5, { D, CIN, 1, 2, 2 } }, { "patch_embedding.bias", 1, { D } },
        { "time_embedding.0.weight", 2, { D, FD } },          { "time_embedding.0.bias", 1, { D } },
        { "time_embedding.2.weight", 2, { D, D } },           { "time_embedding.2.bias", 1, { D } },
        { "time_projection.1.weight", 2, { 6 * D, D } },      { "time_projection.1.bias", 1, { 6 * D } },
        { "text_embedding.0.weight", 2, { D, TD } },          { "text_embedding.0.bias", 1, { D } },
        { "text_embedding.2.weight", 2, { D, D } },           { "text_embedding.2.bias", 1, { D } },
        { "head.head.weight", 2, { CIN * 4, D } },            { "head.head.bias", 1, { CIN * 4 } },
        { "head.modulation", 3, { 1, 2, D } },                { "blocks.0.modulation", 3, { 1, 6, D } },
        { "blocks.0.self_attn.q.weight", 2, { D, D } },       { "blocks.0.self_attn.q.bias", 1, { D } },
        { "blocks.0.self_attn.k.weight", 2, { D, D } },       { "blocks.0.self_attn.k.bias", 1, { D } },
        { "blocks.0.self_attn.v.weight", 2, { D, D } },       { "blocks.0.self_attn.v.bias", 1, { D } },
        { "blocks.0.self_attn.o.weight", 2, { D, D } },       { "blocks.0.self_attn.o.bias", 1, { D } },
        { "blocks.0.self_attn.norm_q.weight", 1, { D } },     { "blocks.0.self_attn.norm_k.weight", 1, { D } },
        { "blocks.0.cross_attn.q.weight", 2, { D, D } },      { "blocks.0.cross_attn.q.bias", 1, { D } },
        { "blocks.0.cross_attn.k.weight", 2, { D, D } },      { "blocks.0.cross_attn.k.bias", 1, { D } },
        { "blocks.0.cross_attn.v.weight", 2, { D, D } },      { "blocks.0.cross_attn.v.bias", 1, { D } },
        { "blocks.0.cross_attn.o.weight", 2, { D, D } },      { "blocks.0.cross_attn.o.bias", 1, { D } },
        { "blocks.0.cross_attn.norm_q.weight", 1, { D } },    { "blocks.0.cross_attn.norm_k.weight", 1, { D } },
        { "blocks.0.norm3.weight", 1, { D } },                { "blocks.0.norm3.bias", 1, { D } },
        { "blocks.0.ffn.0.weight", 2, { F, D } },             { "blocks.0.ffn.0.bias", 1, { F } },
        { "blocks.0.ffn.2.weight", 2, { D, F } },             { "blocks.0.ffn.2.bias", 1, { D } },
    };
    enum { N = sizeof spec / sizeof *spec };
    static uint16_t zeros[6 * D * D];
    wan_host_tensor t[N];
    for (int i = 0; i < N; i++) {
        memset(&t[i], 0, sizeof t[i]);
        snprintf(t[i].name, sizeof t[i].name, "model.diffusion_model.%s", spec[i].name);
        t[i].dtype = WAN_DTYPE_BF16;
        t[i].ndim = spec[i].nd;
        memcpy(t[i].shape, spec[i].s, sizeof spec[i].s);
        t[i].data = zeros;
    }
    char path[] = "/tmp/wan-comfy-XXXXXX.safetensors", err[1024] = "";
    int fd = mkstemps(path, 12);
    CHECK(fd >= 0);
    close(fd);
    CHECK_RC(wan_safetensors_write(path, t, N, err, sizeof err), WAN_OK, err);
    wan_model_t *m = NULL;
    wan_status rc = wan_model_load(path, NULL, &m, err, sizeof err);
    remove(path);
    CHECK_RC(rc, WAN_OK, err);
    const wan_transformer_config *c = wan_model_transformer_config(m, 0);
    CHECK(c->num_attention_heads == 1 && c->attention_head_dim == 128 && c->num_layers == 1 && c->ffn_dim == F &&
          c->text_dim == TD && c->freq_dim == FD && c->in_channels == CIN && c->out_channels == CIN);
    wan_component_info ci;
    wan_model_component_info(m, WAN_COMPONENT_TRANSFORMER, &ci);
    CHECK(ci.original_names && ci.n_tensors == N);
    CHECK(wan_st_set_find(wan_model_weights(m, WAN_COMPONENT_TRANSFORMER), "blocks.0.norm2.weight"));
    wan_model_free(m);
}
