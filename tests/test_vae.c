/* test_vae.c — the video VAE against diffusers' AutoencoderKLWan on the tiny fixtures
 * (tools/ref/dump_vae.py): decode at every latent length, the per-chunk stages, tiled decode, encode,
 * original tensor names, half-precision weights, streaming, and bad requests. */
#define _POSIX_C_SOURCE 200809L
#include "test.h"

#include "cpu/conv3d.h"
#include "vae.h"

#include <stdlib.h>
#include <unistd.h>

/* f32 decoder vs the fp32 PyTorch reference: the independent re-implementation of the spec reached 1e-6;
 * 1e-4 leaves room for BLAS summation order over the deep conv stack (vae.md 9.2). */
#define VAE_TOL 1e-4

#define TINY21 "tiny-wan22-t2v/vae"
#define TINY22 "tiny-wan22-ti2v/vae"

static int close_abs(const char *name, const float *got, const float *ref, size_t n, double tol)
{
    double mx = 0, mref = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= mx))
            mx = isnan(d) ? INFINITY : d;
        mref = fabs(ref[i]) > mref ? fabs(ref[i]) : mref;
    }
    printf("    %s: max abs %.3g (max |ref| %.3g, tol %.1g)\n", name, mx, mref, tol);
    return mx <= tol;
}

static wan_model_t *load_path(const char *path)
{
    char err[512];
    wan_model_t *m = NULL;
    if (wan_model_load(path, NULL, &m, err, sizeof err) != WAN_OK)
        printf("    load %s: %s\n", path, err);
    return m;
}

static wan_model_t *load(const char *rel)
{
    return load_path(wan_test_fixture(rel));
}

static int read_ref(const char *file, const char *name, wan_host_tensor *t)
{
    char rel[128];
    snprintf(rel, sizeof rel, "vae/%s.safetensors", file);
    return wan_test_read(rel, name, WAN_DTYPE_F32, t);
}

/* Copies t[:, :, :n] (axis 2 of a 5-D tensor) into a new tensor. */
static wan_host_tensor prefix(const wan_host_tensor *t, int n)
{
    wan_host_tensor o = *t;
    o.shape[2] = n;
    size_t inner = (size_t)(t->shape[3] * t->shape[4]), outer = (size_t)(t->shape[0] * t->shape[1]);
    o.data = malloc(outer * n * inner * sizeof(float));
    for (size_t i = 0; i < outer; i++)
        memcpy((float *)o.data + i * n * inner, (const float *)t->data + i * t->shape[2] * inner,
               n * inner * sizeof(float));
    return o;
}

static int decode_cmp(wan_model_t *m, const char *file, const char *label)
{
    wan_host_tensor z = { 0 }, ref = { 0 };
    int ok = read_ref(file, "z", &z) && read_ref(file, "sample", &ref);
    for (int T = 1; ok && T <= 5; T++) {
        if (T == 4)
            continue;
        wan_host_tensor zt = prefix(&z, T), rt = prefix(&ref, 1 + 4 * (T - 1)), got = { 0 };
        char err[512] = "", name[64];
        wan_status rc = wan_vae_decode(m, &zt, NULL, &got, err, sizeof err);
        snprintf(name, sizeof name, "%s T=%d sample", label, T);
        if (rc != WAN_OK) {
            printf("    %s: %s\n", name, err);
            ok = 0;
        } else {
            ok = got.ndim == 5 && !memcmp(got.shape, rt.shape, sizeof got.shape) &&
                 close_abs(name, got.data, rt.data, (size_t)wan_host_tensor_numel(&rt), VAE_TOL);
        }
        wan_host_tensor_free(&got);
        free(zt.data);
        free(rt.data);
    }
    wan_host_tensor_free(&z);
    wan_host_tensor_free(&ref);
    return ok;
}

TEST(vae_decode_tiny21)
{
    wan_model_t *m = load(TINY21);
    CHECK(m);
    int ok = decode_cmp(m, "tiny21", "tiny21");
    wan_model_free(m);
    CHECK(ok);
}

TEST(vae_decode_tiny22)
{
    wan_model_t *m = load(TINY22);
    CHECK(m);
    int ok = decode_cmp(m, "tiny22", "tiny22");
    wan_model_free(m);
    CHECK(ok);
}

/* A batch of two decodes (and encodes) each item as on its own. */
TEST(vae_batch)
{
    wan_model_t *m = load(TINY21);
    wan_host_tensor z = { 0 }, x = { 0 };
    CHECK(m && read_ref("tiny21", "z", &z) && read_ref("tiny21", "x", &x));
    const size_t zi = (size_t)16 * 2 * 4 * 6;
    wan_host_tensor z2 = prefix(&z, 2), zb = z2, a = { 0 }, b = { 0 }, ab = { 0 };
    zb.shape[0] = 2;
    zb.data = malloc(2 * zi * sizeof(float));
    memcpy(zb.data, z2.data, zi * sizeof(float));
    for (size_t i = 0; i < zi; i++) /* item 1: another latent */
        ((float *)zb.data)[zi + i] = -0.5f * ((float *)z2.data)[zi - 1 - i];
    wan_host_tensor z1 = z2;
    z1.data = (float *)zb.data + zi;
    char err[512] = "";
    int ok = wan_vae_decode(m, &zb, NULL, &ab, err, sizeof err) == WAN_OK &&
             wan_vae_decode(m, &z2, NULL, &a, err, sizeof err) == WAN_OK &&
             wan_vae_decode(m, &z1, NULL, &b, err, sizeof err) == WAN_OK && ab.shape[0] == 2;
    size_t n = ok ? (size_t)wan_host_tensor_numel(&a) : 0;
    ok = ok && close_abs("batch item 0", ab.data, a.data, n, 0.0) &&
         close_abs("batch item 1", (float *)ab.data + n, b.data, n, 0.0);
    wan_host_tensor_free(&a), wan_host_tensor_free(&b), wan_host_tensor_free(&ab);
    wan_host_tensor x5 = prefix(&x, 5), xb = x5;
    const size_t xi = (size_t)wan_host_tensor_numel(&x5);
    xb.shape[0] = 2;
    xb.data = malloc(2 * xi * sizeof(float));
    memcpy(xb.data, x5.data, xi * sizeof(float));
    memcpy((float *)xb.data + xi, x5.data, xi * sizeof(float));
    ok = ok && wan_vae_encode(m, &xb, NULL, &ab, err, sizeof err) == WAN_OK &&
         wan_vae_encode(m, &x5, NULL, &a, err, sizeof err) == WAN_OK && ab.shape[0] == 2;
    n = ok ? (size_t)wan_host_tensor_numel(&a) : 0;
    ok = ok && close_abs("encode batch item 1", (float *)ab.data + n, a.data, n, 0.0);
    wan_host_tensor_free(&a), wan_host_tensor_free(&ab);
    free(zb.data), free(z2.data), free(xb.data), free(x5.data);
    wan_host_tensor_free(&z), wan_host_tensor_free(&x);
    wan_model_free(m);
    CHECK_MSG(ok, "%s", err);
}

/* ---- per-chunk stages -------------------------------------------------------------------------- */

typedef struct dbg_state {
    const char *file;
    int n_checked, ok;
} dbg_state;

static int on_frame_null(int b, int f, const float *rgb, int h, int w, void *user)
{
    (void)b, (void)f, (void)rgb, (void)h, (void)w, (void)user;
    return 0;
}

static void on_stage(const char *stage, int chunk, const float *x, int c, int n, int h, int w, void *user)
{
    dbg_state *s = user;
    char name[64], err[512], rel[64];
    snprintf(name, sizeof name, "dbg/%s/%d", stage, chunk);
    snprintf(rel, sizeof rel, "vae/%s.safetensors", s->file);
    wan_host_tensor ref = { 0 };
    if (wan_safetensors_read(wan_test_fixture(rel), name, WAN_DTYPE_F32, &ref, err, sizeof err) != WAN_OK)
        return; /* stage not dumped */
    s->n_checked++;
    if (ref.ndim != 5 || ref.shape[1] != c || ref.shape[2] != n || ref.shape[3] != h || ref.shape[4] != w) {
        printf("    %s: shape [1,%d,%d,%d,%d] vs reference [%lld,%lld,%lld,%lld,%lld]\n", name, c, n, h, w,
               (long long)ref.shape[0], (long long)ref.shape[1], (long long)ref.shape[2],
               (long long)ref.shape[3], (long long)ref.shape[4]);
        s->ok = 0;
    } else { /* reference [1, c, n, h, w] -> frame-major */
        size_t hw = (size_t)h * w;
        float *fm = malloc((size_t)c * n * hw * sizeof(float));
        for (int t = 0; t < n; t++)
            for (int ch = 0; ch < c; ch++)
                memcpy(fm + ((size_t)t * c + ch) * hw, (float *)ref.data + ((size_t)ch * n + t) * hw,
                       hw * sizeof(float));
        s->ok &= close_abs(name, x, fm, (size_t)c * n * hw, VAE_TOL);
        free(fm);
    }
    wan_host_tensor_free(&ref);
}

static int stages_cmp(const char *dir, const char *file, int want)
{
    wan_model_t *m = load(dir);
    wan_host_tensor z = { 0 };
    if (!m || !read_ref(file, "z", &z)) {
        wan_model_free(m);
        return 0;
    }
    wan_host_tensor z3 = prefix(&z, 3);
    dbg_state s = { .file = file, .ok = 1 };
    wan_error err = { 0 };
    wan_status rc = wan_vae_decode_debug(m, &z3, NULL, on_frame_null, NULL, on_stage, &s, &err);
    if (rc != WAN_OK)
        printf("    %s\n", err.msg);
    free(z3.data);
    wan_host_tensor_free(&z);
    wan_model_free(m);
    printf("    %d stages compared\n", s.n_checked);
    return rc == WAN_OK && s.ok && s.n_checked == want;
}

TEST(vae_stages_tiny21)
{
    CHECK(stages_cmp(TINY21, "tiny21", 3 * 4));
}

TEST(vae_stages_tiny22)
{
    CHECK(stages_cmp(TINY22, "tiny22", 3 * 3));
}

/* ---- tiled decode ------------------------------------------------------------------------------ */

static int tiled_cmp(const char *dir, const char *file, int s)
{
    wan_model_t *m = load(dir);
    wan_host_tensor z = { 0 }, ref = { 0 }, got = { 0 };
    int ok = m && read_ref(file, "tiled_z", &z) && read_ref(file, "tiled_sample", &ref);
    if (ok) {
        wan_vae_params p = wan_vae_default_params();
        p.tiled = 1;
        p.tile_sample_min_height = p.tile_sample_min_width = 4 * s; /* latent tile 4 */
        p.tile_sample_stride_height = p.tile_sample_stride_width = 3 * s; /* latent stride 3 */
        char err[512] = "";
        wan_status rc = wan_vae_decode(m, &z, &p, &got, err, sizeof err);
        if (rc != WAN_OK)
            printf("    %s\n", err);
        ok = rc == WAN_OK && !memcmp(got.shape, ref.shape, sizeof got.shape) &&
             close_abs("tiled sample", got.data, ref.data, (size_t)wan_host_tensor_numel(&ref), VAE_TOL);
    }
    wan_host_tensor_free(&z);
    wan_host_tensor_free(&ref);
    wan_host_tensor_free(&got);
    wan_model_free(m);
    return ok;
}

TEST(vae_tiled_tiny21)
{
    CHECK(tiled_cmp(TINY21, "tiny21", 8));
}

TEST(vae_tiled_tiny22)
{
    CHECK(tiled_cmp(TINY22, "tiny22", 16));
}

/* The tiled path through the frame callback gives the same frames as the tensor output. */
typedef struct frame_sink {
    float *buf;
    int F, n, order_ok;
} frame_sink;

static int on_frame_store(int b, int f, const float *rgb, int h, int w, void *user)
{
    frame_sink *s = user;
    size_t hw = (size_t)h * w;
    s->order_ok &= b == 0 && f == s->n;
    for (int c = 0; c < 3; c++)
        memcpy(s->buf + ((size_t)c * s->F + f) * hw, rgb + c * hw, hw * sizeof(float));
    s->n++;
    return 0;
}

TEST(vae_frames_callback)
{
    wan_model_t *m = load(TINY21);
    wan_host_tensor z = { 0 }, ref = { 0 };
    CHECK(m && read_ref("tiny21", "tiled_z", &z) && read_ref("tiny21", "tiled_sample", &ref));
    wan_vae_params p = wan_vae_default_params();
    p.tiled = 1;
    p.tile_sample_min_height = p.tile_sample_min_width = 32;
    p.tile_sample_stride_height = p.tile_sample_stride_width = 24;
    frame_sink s = { .buf = malloc((size_t)wan_host_tensor_numel(&ref) * sizeof(float)), .F = (int)ref.shape[2],
                     .order_ok = 1 };
    char err[512] = "";
    wan_status rc = wan_vae_decode_frames(m, &z, &p, on_frame_store, &s, err, sizeof err);
    int ok = rc == WAN_OK && s.n == s.F && s.order_ok &&
             close_abs("tiled frames", s.buf, ref.data, (size_t)wan_host_tensor_numel(&ref), VAE_TOL);
    free(s.buf);
    wan_host_tensor_free(&z);
    wan_host_tensor_free(&ref);
    wan_model_free(m);
    CHECK_MSG(ok, "rc %d, %d frames: %s", rc, s.n, err);
}

static int cancel_second(int b, int f, const float *rgb, int h, int w, void *user)
{
    (void)b, (void)rgb, (void)h, (void)w, (void)user;
    return f == 1;
}

static int progress_cancel(const wan_progress *p, void *user)
{
    int *seen = user;
    *seen += p->stage == WAN_STAGE_DECODE && p->step == *seen + 1 && p->n_steps == 5;
    return p->step == 2;
}

TEST(vae_cancel)
{
    wan_model_t *m = load(TINY21);
    wan_host_tensor z = { 0 };
    CHECK(m && read_ref("tiny21", "z", &z));
    size_t before = wan_mem_current();
    char err[512] = "";
    wan_status rc = wan_vae_decode_frames(m, &z, NULL, cancel_second, NULL, err, sizeof err);
    wan_host_tensor_free(&z);
    wan_model_free(m);
    CHECK_MSG(rc == WAN_ERR_CANCELLED && strstr(err, "cancel"), "rc %d: %s", rc, err);
    CHECK(wan_mem_current() <= before);
    m = load(TINY21);
    CHECK(m && read_ref("tiny21", "z", &z));
    wan_vae_params p = wan_vae_default_params();
    int seen = 0;
    p.progress = progress_cancel, p.progress_user = &seen;
    wan_host_tensor out = { 0 };
    rc = wan_vae_decode(m, &z, &p, &out, err, sizeof err);
    wan_host_tensor_free(&z);
    wan_model_free(m);
    CHECK_MSG(rc == WAN_ERR_CANCELLED && seen == 2 && !out.data, "rc %d, %d steps: %s", rc, seen, err);
    CHECK(wan_mem_current() <= before);
}

/* ---- encoder ----------------------------------------------------------------------------------- */

static int encode_cmp(const char *dir, const char *file)
{
    wan_model_t *m = load(dir);
    wan_host_tensor x = { 0 }, ref = { 0 };
    int ok = m && read_ref(file, "x", &x) && read_ref(file, "latent_mean", &ref);
    for (int F = 1; ok && F <= x.shape[2]; F += 4) { /* 1, 5 (, 9) frames: prefixes, the encoder is causal */
        wan_host_tensor xf = prefix(&x, F), rf = prefix(&ref, 1 + (F - 1) / 4), got = { 0 };
        char err[512] = "", name[64];
        wan_status rc = wan_vae_encode(m, &xf, NULL, &got, err, sizeof err);
        snprintf(name, sizeof name, "%s F=%d latent mean", file, F);
        if (rc != WAN_OK)
            printf("    %s: %s\n", name, err);
        ok = rc == WAN_OK && !memcmp(got.shape, rf.shape, sizeof got.shape) &&
             close_abs(name, got.data, rf.data, (size_t)wan_host_tensor_numel(&rf), VAE_TOL);
        wan_host_tensor_free(&got);
        free(xf.data);
        free(rf.data);
    }
    wan_host_tensor_free(&x);
    wan_host_tensor_free(&ref);
    wan_model_free(m);
    return ok;
}

TEST(vae_encode_tiny21)
{
    CHECK(encode_cmp(TINY21, "tiny21"));
}

TEST(vae_encode_tiny22)
{
    CHECK(encode_cmp(TINY22, "tiny22"));
}

/* Extra frames beyond 1 + 4k are dropped, as diffusers does. */
TEST(vae_encode_drops_frames)
{
    wan_model_t *m = load(TINY21);
    wan_host_tensor x = { 0 }, ref = { 0 }, got = { 0 };
    CHECK(m && read_ref("tiny21", "x", &x) && read_ref("tiny21", "latent_mean", &ref));
    wan_host_tensor x7 = prefix(&x, 7), r2 = prefix(&ref, 2);
    char err[512] = "";
    wan_status rc = wan_vae_encode(m, &x7, NULL, &got, err, sizeof err);
    int ok = rc == WAN_OK && got.shape[2] == 2 &&
             close_abs("F=7 latent mean", got.data, r2.data, (size_t)wan_host_tensor_numel(&r2), VAE_TOL);
    free(x7.data);
    free(r2.data);
    wan_host_tensor_free(&x);
    wan_host_tensor_free(&ref);
    wan_host_tensor_free(&got);
    wan_model_free(m);
    CHECK_MSG(ok, "%s", err);
}

/* ---- weights on disk --------------------------------------------------------------------------- */

/* Every original name of both released VAEs maps to its diffusers name: the spec's parameter tables, copied to
 * tools/ref/ (the tests run from the repository root). */
static int rename_tsv(const char *file)
{
    char path[128], line[512];
    snprintf(path, sizeof path, "tools/ref/%s", file);
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("    cannot open %s\n", path);
        return 0;
    }
    int n = 0, bad = 0, per_level = 4;
    while (fgets(line, sizeof line, f)) {
        char dn[160], shape[64], on[160], buf[160];
        if (line[0] == '#' || !strncmp(line, "diffusers_name", 14) || sscanf(line, "%159s %63s %159s", dn, shape, on) != 3)
            continue;
        n++;
        const char *got = wan_vae_rename_original(on, buf, sizeof buf, &per_level) ? buf : on;
        if (strcmp(got, dn)) {
            if (bad++ < 5)
                printf("    %s -> %s, expected %s\n", on, got, dn);
        }
    }
    fclose(f);
    printf("    %s: %d names, %d wrong\n", file, n, bad);
    return n > 150 && !bad;
}

TEST(vae_rename_tables)
{
    CHECK(rename_tsv("vae_params_wan21.tsv"));
    CHECK(rename_tsv("vae_params_wan22.tsv"));
}

static int decode_equal(wan_model_t *a, wan_model_t *b, const wan_host_tensor *z, double tol)
{
    wan_host_tensor ga = { 0 }, gb = { 0 };
    char err[512] = "";
    int ok = wan_vae_decode(a, z, NULL, &ga, err, sizeof err) == WAN_OK &&
             wan_vae_decode(b, z, NULL, &gb, err, sizeof err) == WAN_OK &&
             close_abs("decode a vs b", ga.data, gb.data, (size_t)wan_host_tensor_numel(&ga), tol);
    if (err[0])
        printf("    %s\n", err);
    wan_host_tensor_free(&ga);
    wan_host_tensor_free(&gb);
    return ok;
}

TEST(vae_original_names)
{
    wan_model_t *d = load(TINY21), *o = load("tiny-wan22-t2v-orig/Wan2.1_VAE.safetensors");
    wan_host_tensor z = { 0 };
    CHECK(d && o && read_ref("tiny21", "z", &z));
    const wan_vae_config *cd = wan_model_vae_config(d), *co = wan_model_vae_config(o);
    wan_component_info info;
    CHECK(wan_model_component_info(o, WAN_COMPONENT_VAE, &info) == WAN_OK && info.original_names);
    int same = co && cd->base_dim == co->base_dim && cd->decoder_base_dim == co->decoder_base_dim &&
               cd->z_dim == co->z_dim && cd->n_dim_mult == co->n_dim_mult &&
               !memcmp(cd->dim_mult, co->dim_mult, sizeof cd->dim_mult) && cd->num_res_blocks == co->num_res_blocks &&
               !memcmp(cd->temporal_downsample, co->temporal_downsample, sizeof cd->temporal_downsample) &&
               cd->is_residual == co->is_residual && cd->patch_size == co->patch_size &&
               cd->scale_factor_spatial == co->scale_factor_spatial && cd->in_channels == co->in_channels;
    wan_host_tensor z3 = prefix(&z, 3);
    int ok = same && decode_equal(d, o, &z3, 0.0);
    free(z3.data);
    wan_host_tensor_free(&z);
    wan_model_free(d);
    wan_model_free(o);
    CHECK_MSG(same, "inferred config differs from config.json");
    CHECK(ok);
    wan_model_t *orig = load("tiny-wan22-t2v-orig");
    CHECK(orig && wan_model_vae_config(orig) && wan_model_vae_config(orig)->z_dim == 16);
    wan_model_free(orig);
}

/* The config inferred from the Wan2.2 tensors matches config.json (single-file case). */
TEST(vae_infer_config_tiny22)
{
    wan_model_t *d = load(TINY22), *s = load(TINY22 "/diffusion_pytorch_model.safetensors");
    CHECK(d && s);
    const wan_vae_config *a = wan_model_vae_config(d), *b = wan_model_vae_config(s);
    int same = a->base_dim == b->base_dim && a->decoder_base_dim == b->decoder_base_dim && a->z_dim == b->z_dim &&
               !memcmp(a->dim_mult, b->dim_mult, sizeof a->dim_mult) && a->num_res_blocks == b->num_res_blocks &&
               !memcmp(a->temporal_downsample, b->temporal_downsample, sizeof a->temporal_downsample) &&
               a->is_residual == b->is_residual && a->patch_size == b->patch_size &&
               a->scale_factor_spatial == b->scale_factor_spatial && a->in_channels == b->in_channels &&
               a->out_channels == b->out_channels && !memcmp(a->latents_std, b->latents_std, sizeof a->latents_std);
    wan_model_free(d);
    wan_model_free(s);
    CHECK(same);
}

/* Writes every tensor of a VAE file (F32, BF16 or F16) as `dt` (rounded) into path; with dt F32 the values are first rounded
 * through `round_as` so that the F32 copy holds exactly what the half-precision copy holds. */
static int write_copy(const char *src, const char *path, wan_dtype dt, wan_dtype round_as)
{
    wan_st_file *f = NULL;
    wan_error e = { 0 };
    if (wan_st_open(src, &f, &e) != WAN_OK)
        return 0;
    wan_host_tensor *ts = calloc((size_t)f->n_tensors, sizeof *ts);
    for (int i = 0; i < f->n_tensors; i++) {
        const wan_st_tensor *t = &f->tensors[i];
        wan_host_tensor *h = &ts[i];
        snprintf(h->name, sizeof h->name, "%s", t->name);
        h->dtype = dt, h->ndim = t->ndim;
        memcpy(h->shape, t->shape, sizeof t->shape[0] * (size_t)t->ndim);
        int64_t n = wan_host_tensor_numel(h);
        h->data = malloc((size_t)n * 4 + 4);
        for (int64_t k = 0; k < n; k++) {
            float v;
            uint16_t sv;
            if (t->dtype == WAN_DTYPE_F32) {
                memcpy(&v, t->data + 4 * k, 4);
            } else { /* the ti2v fixture's VAE is stored in bf16 */
                memcpy(&sv, t->data + 2 * k, 2);
                v = t->dtype == WAN_DTYPE_BF16 ? wan_bf16_to_f32(sv) : wan_f16_to_f32(sv);
            }
            uint16_t hv = round_as == WAN_DTYPE_BF16 ? wan_f32_to_bf16(v) : wan_f32_to_f16(v);
            float r = round_as == WAN_DTYPE_BF16 ? wan_bf16_to_f32(hv) : wan_f16_to_f32(hv);
            if (dt == WAN_DTYPE_F32)
                ((float *)h->data)[k] = r;
            else
                ((uint16_t *)h->data)[k] = hv;
        }
    }
    char err[256];
    int ok = wan_safetensors_write(path, ts, f->n_tensors, err, sizeof err) == WAN_OK;
    for (int i = 0; i < f->n_tensors; i++)
        free(ts[i].data);
    free(ts);
    wan_st_close(f);
    return ok;
}

static int half_weights(wan_dtype dt)
{
    char dir[] = "/tmp/wan_vae_XXXXXX", a[64], b[64];
    if (!mkdtemp(dir))
        return 0;
    snprintf(a, sizeof a, "%s/half.safetensors", dir);
    snprintf(b, sizeof b, "%s/f32.safetensors", dir);
    const char *src = wan_test_fixture("tiny-wan22-ti2v/vae/diffusion_pytorch_model.safetensors");
    int ok = write_copy(src, a, dt, dt) && write_copy(src, b, WAN_DTYPE_F32, dt);
    wan_model_t *ma = ok ? load_path(a) : NULL, *mb = ok ? load_path(b) : NULL;
    wan_host_tensor z = { 0 };
    if (ma && mb && read_ref("tiny22", "z", &z)) {
        wan_host_tensor z2 = prefix(&z, 2);
        ok = decode_equal(ma, mb, &z2, 0.0); /* conversion is exact: identical outputs */
        free(z2.data);
    } else {
        ok = 0;
    }
    wan_host_tensor_free(&z);
    wan_model_free(ma);
    wan_model_free(mb);
    unlink(a);
    unlink(b);
    rmdir(dir);
    return ok;
}

TEST(vae_bf16_weights)
{
    CHECK(half_weights(WAN_DTYPE_BF16));
}

TEST(vae_f16_weights)
{
    CHECK(half_weights(WAN_DTYPE_F16));
}

/* ---- bad requests ------------------------------------------------------------------------------ */

TEST(vae_errors)
{
    wan_model_t *m = load(TINY21);
    CHECK(m);
    char err[512] = "";
    float buf[16 * 2 * 4 * 6] = { 0 };
    wan_host_tensor z = { .dtype = WAN_DTYPE_F32, .ndim = 5, .shape = { 1, 8, 2, 4, 6 }, .data = buf }, out = { 0 };
    CHECK_RC(wan_vae_decode(m, &z, NULL, &out, err, sizeof err), WAN_ERR_INVALID_ARG, err);
    CHECK_MSG(strstr(err, "8 channels") && strstr(err, "16"), "%s", err);
    z.shape[1] = 16, z.ndim = 4;
    CHECK_RC(wan_vae_decode(m, &z, NULL, &out, err, sizeof err), WAN_ERR_INVALID_ARG, err);
    CHECK_MSG(strstr(err, "5-D"), "%s", err);
    z.ndim = 5, z.dtype = WAN_DTYPE_F16;
    CHECK_RC(wan_vae_decode(m, &z, NULL, &out, err, sizeof err), WAN_ERR_INVALID_ARG, err);
    z.dtype = WAN_DTYPE_F32;
    wan_vae_params p = wan_vae_default_params();
    p.tiled = 1, p.tile_sample_stride_height = 4;
    CHECK_RC(wan_vae_decode(m, &z, &p, &out, err, sizeof err), WAN_ERR_INVALID_ARG, err);
    wan_host_tensor x = { .dtype = WAN_DTYPE_F32, .ndim = 5, .shape = { 1, 3, 1, 4, 6 }, .data = buf };
    CHECK_RC(wan_vae_encode(m, &x, NULL, &out, err, sizeof err), WAN_ERR_INVALID_ARG, err);
    CHECK_MSG(strstr(err, "multiples of 8"), "%s", err);
    CHECK(out.data == NULL);
    CHECK_RC(wan_vae_decode(m, NULL, NULL, &out, err, sizeof err), WAN_ERR_INVALID_ARG, err);
    wan_model_free(m);
    wan_model_t *t = load("tiny-wan22-t2v/transformer");
    CHECK(t);
    z.shape[1] = 16;
    CHECK_RC(wan_vae_decode(t, &z, NULL, &out, err, sizeof err), WAN_ERR_NOT_FOUND, err);
    wan_model_free(t);
}

/* A missing tensor is reported by name before any work starts. */
TEST(vae_missing_tensor)
{
    char dir[] = "/tmp/wan_vae_XXXXXX", path[64];
    CHECK(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/vae.safetensors", dir);
    wan_st_file *f = NULL;
    wan_error e = { 0 };
    CHECK(wan_st_open(wan_test_fixture(TINY21 "/diffusion_pytorch_model.safetensors"), &f, &e) == WAN_OK);
    wan_host_tensor *ts = calloc((size_t)f->n_tensors, sizeof *ts);
    int n = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        const wan_st_tensor *t = &f->tensors[i];
        if (!strcmp(t->name, "decoder.up_blocks.1.resnets.2.norm2.gamma"))
            continue;
        snprintf(ts[n].name, sizeof ts[n].name, "%s", t->name);
        ts[n].dtype = t->dtype, ts[n].ndim = t->ndim, ts[n].data = (void *)t->data;
        memcpy(ts[n].shape, t->shape, sizeof t->shape[0] * (size_t)t->ndim);
        n++;
    }
    char err[512] = "";
    CHECK(wan_safetensors_write(path, ts, n, err, sizeof err) == WAN_OK);
    free(ts);
    wan_st_close(f);
    wan_model_t *m = NULL;
    CHECK_RC(wan_model_load(path, NULL, &m, err, sizeof err), WAN_OK, err);
    float buf[16 * 4 * 6] = { 0 };
    wan_host_tensor z = { .dtype = WAN_DTYPE_F32, .ndim = 5, .shape = { 1, 16, 1, 4, 6 }, .data = buf }, out = { 0 };
    wan_status rc = wan_vae_decode(m, &z, NULL, &out, err, sizeof err);
    wan_model_free(m);
    unlink(path);
    rmdir(dir);
    CHECK_RC(rc, WAN_ERR_NOT_FOUND, err);
    CHECK_MSG(strstr(err, "decoder.up_blocks.1.resnets.2.norm2.gamma"), "%s", err);
}

/* ---- kernels ----------------------------------------------------------------------------------- */

/* The im2col + GEMM convolution against a naive loop: stride 1 and 2, both paddings, x2 upsampling,
 * small scratch (row blocks of one row), a missing temporal tap, one and two threads. */
TEST(vae_conv_kernel)
{
    const int cin = 3, cout = 5, h = 6, w = 7;
    struct { int k, stride, same, up2; } cases[] = { { 3, 1, 1, 0 }, { 3, 2, 0, 0 }, { 3, 1, 1, 1 }, { 1, 1, 1, 0 } };
    srand(7);
    float in[2][3 * 12 * 14], wt[2 * 5 * 3 * 9], b[5], out[5 * 12 * 14], ref[5 * 12 * 14], scratch[4096];
    for (size_t i = 0; i < sizeof in / sizeof in[0][0]; i++)
        in[i / (3 * 12 * 14)][i % (3 * 12 * 14)] = (float)rand() / RAND_MAX - 0.5f;
    for (size_t i = 0; i < sizeof wt / sizeof *wt; i++)
        wt[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int i = 0; i < cout; i++)
        b[i] = 0.1f * i;
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int H = cases[c].up2 ? 2 * h : h, W = cases[c].up2 ? 2 * w : w, k = cases[c].k;
        wan_conv_geom g = wan_conv_geom_make(cin, cout, H, W, k, cases[c].stride, cases[c].same, cases[c].up2);
        const float *taps[2] = { NULL, in[1] };
        size_t sc = wan_conv_scratch_min(&g);
        int nt = 1 + (int)(c % 2); /* one and two threads (row bands) */
        wan_conv_taps(&g, 2, wt, b, taps, out, scratch, sc ? nt * sc : 1, nt);
        int pad = g.pad, K = cin * k * k;
        for (int o = 0; o < cout; o++)
            for (int y = 0; y < g.ho; y++)
                for (int x = 0; x < g.wo; x++) {
                    double s = b[o];
                    for (int i = 0; i < cin; i++)
                        for (int r = 0; r < k; r++)
                            for (int q = 0; q < k; q++) {
                                int iy = y * cases[c].stride + r - pad, ix = x * cases[c].stride + q - pad;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                                    continue;
                                float v = cases[c].up2 ? in[1][(i * h + iy / 2) * w + ix / 2] : in[1][(i * H + iy) * W + ix];
                                s += wt[(size_t)cout * K + (size_t)o * K + (i * k + r) * k + q] * v;
                            }
                    ref[(o * g.ho + y) * g.wo + x] = (float)s;
                }
        char name[32];
        snprintf(name, sizeof name, "conv case %zu", c);
        CHECK(close_abs(name, out, ref, (size_t)cout * g.ho * g.wo, 1e-5));
    }
}
