/* test_vae_backend.c — the video VAE through the backend table (wan_vae_decode_be / wan_vae_encode_be):
 * the "cpu" table posing as a device (host_memory 0: weights packed and uploaded once, chunks uploaded, frames
 * downloaded) must give exactly the public CPU decode and encode; the "cuda" table, when the build and the
 * machine have one, must match them within the f32 device tolerance; failing allocations are reported and
 * leave the caller's backend usable. */
#include "test.h"

#include "backend.h"
#include "vae.h"

#include <stdlib.h>

/* f32 device ops vs the CPU (docs/CUDA.md): summation order and expf ulps. */
#define CUDA_TOL 2e-5

typedef struct vae_case {
    const char *dir, *file, *z;
    int tile; /* tiled decode with latent tiles of 4, stride 3 (tile = the spatial factor); 0: untiled */
} vae_case;

static const vae_case CASES[] = {
    { "tiny-wan22-t2v/vae", "tiny21", "z", 0 },
    { "tiny-wan22-ti2v/vae", "tiny22", "z", 0 },
    { "tiny-wan22-t2v/vae", "tiny21", "tiled_z", 8 },
    { "tiny-wan22-ti2v/vae", "tiny22", "tiled_z", 16 },
};

/* Every frame of a decode, in order: [F][3][H][W]. */
typedef struct frames {
    float *buf;
    size_t fsz;
    int n, order_ok;
} frames;

static int collect(int b, int f, const float *rgb, int h, int w, void *user)
{
    frames *s = user;
    s->fsz = (size_t)3 * h * w;
    s->order_ok &= b == 0 && f == s->n;
    s->buf = realloc(s->buf, (size_t)(s->n + 1) * s->fsz * sizeof(float));
    memcpy(s->buf + (size_t)s->n * s->fsz, rgb, s->fsz * sizeof(float));
    s->n++;
    return 0;
}

static int read_fixture(const char *file, const char *name, wan_host_tensor *t)
{
    char rel[128];
    snprintf(rel, sizeof rel, "vae/%s.safetensors", file);
    return wan_test_read(rel, name, WAN_DTYPE_F32, t);
}

static wan_vae_params case_params(const vae_case *c)
{
    wan_vae_params p = wan_vae_default_params();
    if (c->tile) {
        p.tiled = 1;
        p.tile_sample_min_height = p.tile_sample_min_width = 4 * c->tile;
        p.tile_sample_stride_height = p.tile_sample_stride_width = 3 * c->tile;
    }
    return p;
}

/* Decodes case c on `be` and with the public CPU call; compares with tolerance tol (relative to max|ref|). */
static int decode_vs_cpu(wan_model_t *m, const vae_case *c, wan_backend *be, const char *label, double tol)
{
    wan_host_tensor z = { 0 };
    if (!read_fixture(c->file, c->z, &z))
        return 0;
    wan_vae_params p = case_params(c);
    frames got = { .order_ok = 1 }, ref = { .order_ok = 1 };
    wan_error e = { 0 };
    char err[512] = "", name[96];
    wan_status rc = wan_vae_decode_be(m, be, &z, &p, collect, &got, &e);
    wan_status rr = wan_vae_decode_frames(m, &z, &p, collect, &ref, err, sizeof err);
    snprintf(name, sizeof name, "%s %s %s%s decode", label, c->file, c->z, c->tile ? " tiled" : "");
    int ok = rc == WAN_OK && rr == WAN_OK && got.n == ref.n && got.n == 1 + 4 * ((int)z.shape[2] - 1) &&
             got.order_ok && got.fsz == ref.fsz && be->err.code == WAN_OK &&
             wan_test_compare(name, got.buf, ref.buf, (size_t)got.n * got.fsz, tol);
    if (!ok)
        printf("    %s: rc %d (%s), cpu rc %d (%s), %d vs %d frames\n", name, rc, e.msg, rr, err, got.n, ref.n);
    free(got.buf), free(ref.buf);
    wan_host_tensor_free(&z);
    return ok;
}

static int encode_vs_cpu(wan_model_t *m, const char *file, wan_backend *be, const char *label, double tol)
{
    wan_host_tensor x = { 0 }, got = { 0 }, ref = { 0 };
    if (!read_fixture(file, "x", &x))
        return 0;
    wan_error e = { 0 };
    char err[512] = "", name[96];
    wan_status rc = wan_vae_encode_be(m, be, &x, NULL, &got, &e);
    wan_status rr = wan_vae_encode(m, &x, NULL, &ref, err, sizeof err);
    snprintf(name, sizeof name, "%s %s encode", label, file);
    int ok = rc == WAN_OK && rr == WAN_OK && !memcmp(got.shape, ref.shape, sizeof got.shape) &&
             be->err.code == WAN_OK &&
             wan_test_compare(name, got.data, ref.data, (size_t)wan_host_tensor_numel(&ref), tol);
    if (!ok)
        printf("    %s: rc %d (%s), cpu rc %d (%s)\n", name, rc, e.msg, rr, err);
    wan_host_tensor_free(&x), wan_host_tensor_free(&got), wan_host_tensor_free(&ref);
    return ok;
}

/* Every case on `be`: decodes (twice for the first, reusing the backend), then both encoders. */
static int all_cases(wan_backend *be, const char *label, double tol)
{
    int ok = 1;
    for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) {
        char err[512];
        wan_model_t *m = NULL;
        if (wan_model_load(wan_test_fixture(CASES[i].dir), NULL, &m, err, sizeof err) != WAN_OK) {
            printf("    %s: %s\n", CASES[i].dir, err);
            return 0;
        }
        ok &= decode_vs_cpu(m, &CASES[i], be, label, tol);
        if (i == 0)
            ok &= decode_vs_cpu(m, &CASES[i], be, label, tol);
        if (i < 2)
            ok &= encode_vs_cpu(m, CASES[i].file, be, label, tol);
        wan_model_free(m);
    }
    return ok;
}

/* The device code path (resident weights, uploads, downloads) on the CPU table: bit for bit the CPU decode. */
TEST(vae_backend_device_path)
{
    wan_error err = { 0 };
    wan_backend *be = NULL;
    size_t before = wan_mem_current();
    CHECK_RC(wan_backend_create("cpu", 2, &be, &err), WAN_OK, err.msg);
    be->host_memory = 0;
    int ok = all_cases(be, "cpu as device", 0.0);
    wan_backend_free(be);
    CHECK(ok);
    CHECK(wan_mem_current() == before);
}

/* A caller's "cpu" table (weights used in place or repacked per layer) gives the public call's results. */
TEST(vae_backend_cpu)
{
    wan_error err = { 0 };
    wan_backend *be = NULL;
    CHECK_RC(wan_backend_create("cpu", 1, &be, &err), WAN_OK, err.msg);
    int ok = all_cases(be, "cpu", 0.0);
    wan_backend_free(be);
    CHECK(ok);
}

TEST(vae_backend_cuda)
{
    wan_error err = { 0 };
    wan_backend *be = NULL;
    if (wan_backend_create("cuda", 0, &be, &err) != WAN_OK)
        SKIP("no CUDA: VAE decode/encode on the cuda backend not run (%s)", err.msg);
    printf("    device: %s\n", be->device);
    int ok = all_cases(be, "cuda", CUDA_TOL);
    wan_backend_free(be);
    CHECK(ok);
}

/* z[:, :, :T] of a fixture latent [1, C, T0, h, w] (malloc'ed data). */
static wan_host_tensor z_prefix(const wan_host_tensor *z, int T)
{
    wan_host_tensor o = *z;
    const size_t hw = (size_t)(z->shape[3] * z->shape[4]);
    o.shape[2] = T;
    o.data = malloc((size_t)z->shape[1] * T * hw * sizeof(float));
    for (int64_t c = 0; c < z->shape[1]; c++)
        memcpy((float *)o.data + (size_t)c * T * hw, (const float *)z->data + (size_t)c * z->shape[2] * hw,
               (size_t)T * hw * sizeof(float));
    return o;
}

/* Buffers are reused from chunk to chunk: decoding 5 latent frames makes exactly as many allocations as
 * decoding 2 (the second chunk is the largest), on the CPU and on the device path, for both VAEs (with a
 * backend whose scratch has already grown). */
TEST(vae_backend_no_alloc_per_chunk)
{
    for (int i = 0; i < 2; i++) {
        char msg[512];
        wan_model_t *m = NULL;
        CHECK_RC(wan_model_load(wan_test_fixture(CASES[i].dir), NULL, &m, msg, sizeof msg), WAN_OK, msg);
        wan_host_tensor z = { 0 };
        CHECK(read_fixture(CASES[i].file, "z", &z) && z.shape[2] == 5);
        for (int dev = 0; dev < 2; dev++) {
            wan_error e = { 0 };
            wan_backend *be = NULL;
            CHECK_RC(wan_backend_create("cpu", 1, &be, &e), WAN_OK, e.msg);
            be->host_memory = !dev;
            long allocs[3]; /* the first call also grows the backend's own scratch */
            for (int k = 0; k < 3; k++) {
                wan_host_tensor zt = z_prefix(&z, k == 2 ? 5 : 2);
                frames got = { .order_ok = 1 };
                wan_mem_fail_after(0);
                wan_status rc = wan_vae_decode_be(m, be, &zt, NULL, collect, &got, &e);
                allocs[k] = wan_mem_fail_after(0);
                free(got.buf), free(zt.data);
                CHECK_RC(rc, WAN_OK, e.msg);
            }
            wan_backend_free(be);
            printf("    %s%s: %ld allocations for 2 latent frames, %ld for 5\n", CASES[i].file,
                   dev ? " (device path)" : "", allocs[1], allocs[2]);
            CHECK(allocs[1] == allocs[2]);
        }
        wan_host_tensor_free(&z);
        wan_model_free(m);
    }
}

/* Each allocation of a decode may fail (the backend's own memory included): the call reports WAN_ERR_NOMEM,
 * leaks nothing, and the caller's backend carries no pending error into its next use. */
TEST(vae_backend_alloc_failures)
{
    char msg[512];
    wan_model_t *m = NULL;
    CHECK_RC(wan_model_load(wan_test_fixture(CASES[1].dir), NULL, &m, msg, sizeof msg), WAN_OK, msg);
    wan_host_tensor z = { 0 };
    CHECK(read_fixture(CASES[1].file, "z", &z));
    /* [1, 48, 1, 4, 6]: the first latent frame */
    float *z1 = malloc((size_t)48 * 4 * 6 * sizeof(float));
    for (int c = 0; c < 48; c++)
        memcpy(z1 + (size_t)c * 24, (float *)z.data + (size_t)c * 5 * 24, 24 * sizeof(float));
    wan_host_tensor_free(&z);
    z = (wan_host_tensor){ .dtype = WAN_DTYPE_F32, .ndim = 5, .shape = { 1, 48, 1, 4, 6 }, .data = z1 };
    int nomem = 0, done[2] = { 0, 0 };
    for (int mode = 0; mode < 2; mode++) { /* 0: the call's own cpu table, 1: a caller's table posing as a device */
        wan_error e = { 0 };
        wan_backend *be = NULL;
        size_t before = wan_mem_current();
        CHECK_RC(wan_backend_create("cpu", 1, &be, &e), WAN_OK, e.msg);
        be->host_memory = 0;
        for (long n = 1; n < 2000 && !done[mode]; n++) {
            frames got = { .order_ok = 1 };
            memset(&e, 0, sizeof e);
            wan_mem_fail_after(n);
            wan_status rc = wan_vae_decode_be(m, mode ? be : NULL, &z, NULL, collect, &got, &e);
            long made = wan_mem_fail_after(0);
            free(got.buf);
            if (rc != WAN_OK && rc != WAN_ERR_NOMEM)
                printf("    allocation %ld: %d %s\n", n, rc, e.msg);
            done[mode] = rc == WAN_OK && made < n;
            nomem += rc == WAN_ERR_NOMEM;
            if ((rc != WAN_OK && rc != WAN_ERR_NOMEM) || be->err.code != WAN_OK)
                break;
        }
        wan_backend_free(be);
        CHECK_MSG(done[mode] && wan_mem_current() == before, "mode %d: %zu bytes left", mode,
                  wan_mem_current() - before);
    }
    printf("    %d failing allocations reported as out of memory\n", nomem);
    free(z.data);
    wan_model_free(m);
    CHECK(nomem > 20);
}
