/* test_backend.c — every op of the backend table (backend.h) on random shapes, ggml test-backend-ops style:
 * the "cpu" table against naive double-precision references written here, and the "cuda" table (when the build
 * has CUDA and a device is present) against the "cpu" table. Without a device the CUDA case is reported as
 * skipped, with the number of op checks not run — never as passed. Also: backend selection errors, and an
 * expert uploaded with wan_dit_upload giving the same forward as the weights used in place.
 *
 * Tolerances (max|got - ref| <= tol · max|ref|):
 * - CPU_TOL 1e-5: f32 kernels against double references; what differs is f32 summation order and the ulps
 *   of expf/tanhf/sqrtf (the same bound as tests/test_dit_ops.c).
 * - DEV_TOL 2e-5: f32 device ops against the CPU ops: both round in f32, in different orders (tree reductions,
 *   cuBLAS blocking), and CUDA's expf/rsqrtf differ from glibc's by an ulp or two.
 * - BF16_TOL 1e-2: cuBLASLt's bf16 GEMM rounds the activations to bf16 (relative error 2^-9 each) before
 *   multiplying, which the CPU does not; over K terms the error stays about 2^-9 of the result's scale. The CUDA
 *   attention of head dims 64 and 128 (the bf16 tensor-core kernel) likewise rounds q, k, v and the
 *   probabilities to bf16: same bound.
 * - exact (0): classifier-free guidance and the sampler updates are a few f32 operations per element in a fixed
 *   order, evaluated without FMA contraction on both sides, so they must agree bit for bit. */
#define _DEFAULT_SOURCE
#include "test.h"

#include "backend.h"
#include "core.h"
#include "cpu/gemm.h"
#include "cpu/ops.h"
#include "dit.h"
#include "model_dir.h"

#include <math.h>
#include <stdlib.h>

void wan_test_rm_tree(const char *dir); /* test_pth.c */

#define CPU_TOL 1e-5
#define DEV_TOL 2e-5
#define BF16_TOL 1e-2
#define REPEATS 4 /* random shapes per op */

/* ---- harness -------------------------------------------------------------------------------------------- */

typedef struct rng { uint64_t s; } rng;

static uint32_t next_u32(rng *r)
{
    r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(r->s >> 33);
}
static float urand(rng *r) { return (float)next_u32(r) / 2147483648.0f - 1.0f; } /* [-1, 1) */
static int irand(rng *r, int lo, int hi) { return lo + (int)(next_u32(r) % (uint32_t)(hi - lo + 1)); }

#define MAX_BUF 8

/* One op on one random shape: host buffers (inputs, and the output's initial content), the reference of
 * each output buffer, integer/float parameters and the call itself on a backend. */
typedef struct opcase {
    char name[96];
    int nbuf;
    void *buf[MAX_BUF];     /* host data                                   */
    size_t bytes[MAX_BUF];
    float *ref[MAX_BUF];    /* expected content after the op; NULL: not an output */
    int64_t i[16];          /* integer parameters (meaning per op)         */
    float f[4];
    wan_dtype dtype;        /* linear: weight dtype                        */
    wan_sampler_update upd; /* sampler_update                              */
    double tol_dev;         /* tolerance of another backend against the cpu one */
    void (*run)(wan_backend *be, void **p, const struct opcase *c);
} opcase;

typedef struct harness {
    wan_backend *cpu, *be; /* reference table, table under test (the same for the CPU run) */
    rng r;
    int dry;               /* count the checks only                                          */
    int checks, failures;
} harness;

static void *buf_new(opcase *c, size_t bytes)
{
    c->bytes[c->nbuf] = bytes;
    c->buf[c->nbuf] = wan_malloc(bytes ? bytes : 1);
    return c->buf[c->nbuf++];
}

static float *rnd(harness *h, opcase *c, size_t n)
{
    float *p = buf_new(c, n * sizeof(float));
    for (size_t k = 0; k < n; k++)
        p[k] = urand(&h->r);
    return p;
}

/* Reference of buffer b, starting as a copy of its initial content. */
static float *ref_of(opcase *c, int b)
{
    c->ref[b] = wan_malloc(c->bytes[b]);
    memcpy(c->ref[b], c->buf[b], c->bytes[b]);
    return c->ref[b];
}

/* Runs the op on be; fills out[b] (host, bytes[b]) for every output buffer. Returns 0 on a backend error. */
static int execute(const opcase *c, wan_backend *be, float **out)
{
    void *p[MAX_BUF] = { 0 };
    for (int b = 0; b < c->nbuf; b++) {
        p[b] = be->alloc(be, c->bytes[b]);
        if (p[b])
            be->upload(be, p[b], c->buf[b], c->bytes[b]);
    }
    c->run(be, p, c);
    wan_error err = { 0 };
    wan_status rc = be->sync(be, &err);
    for (int b = 0; b < c->nbuf && rc == WAN_OK; b++)
        if (c->ref[b])
            be->download(be, out[b], p[b], c->bytes[b]);
    if (rc == WAN_OK)
        rc = be->sync(be, &err);
    for (int b = 0; b < c->nbuf; b++)
        be->free(be, p[b]);
    if (rc != WAN_OK)
        printf("    %s on %s: %s\n", c->name, be->name, err.msg);
    return rc == WAN_OK;
}

/* CPU table against the references; the table under test (when not the CPU) against the CPU table. Frees the
 * case. */
static void finish(harness *h, opcase *c)
{
    float *cpu[MAX_BUF] = { 0 }, *dev[MAX_BUF] = { 0 };
    if (h->dry) {
        h->checks++;
        for (int b = 0; b < c->nbuf; b++) {
            wan_free(c->buf[b]);
            wan_free(c->ref[b]);
        }
        return;
    }
    for (int b = 0; b < c->nbuf; b++)
        if (c->ref[b]) {
            cpu[b] = wan_malloc(c->bytes[b]);
            dev[b] = wan_malloc(c->bytes[b]);
        }
    int ok = execute(c, h->cpu, cpu);
    for (int b = 0; b < c->nbuf && ok; b++)
        if (c->ref[b]) {
            char label[192];
            snprintf(label, sizeof label, "%s [cpu vs reference, buffer %d]", c->name, b);
            ok = wan_test_compare(label, cpu[b], c->ref[b], c->bytes[b] / sizeof(float), CPU_TOL);
        }
    if (ok && h->be != h->cpu) {
        ok = execute(c, h->be, dev);
        for (int b = 0; b < c->nbuf && ok; b++)
            if (c->ref[b]) {
                char label[192];
                snprintf(label, sizeof label, "%s [%s vs cpu, buffer %d]", c->name, h->be->name, b);
                ok = wan_test_compare(label, dev[b], cpu[b], c->bytes[b] / sizeof(float), c->tol_dev);
            }
    }
    h->checks++;
    h->failures += !ok;
    for (int b = 0; b < c->nbuf; b++) {
        wan_free(c->buf[b]);
        wan_free(c->ref[b]);
        wan_free(cpu[b]);
        wan_free(dev[b]);
    }
}

/* ---- transformer ops ------------------------------------------------------------------------------------ */

static void run_linear(wan_backend *be, void **p, const opcase *c)
{
    const int64_t M = c->i[0], K = c->i[1], N = c->i[2], ldx = c->i[3], ldy = c->i[4], bias = c->i[5];
    wan_tensor w = wan_tensor_view(c->dtype, 2, (int64_t[]){ N, K }, p[1]);
    be->linear(be, p[0], M, ldx, &w, bias ? p[2] : NULL, p[3], ldy);
}

static float stored(const void *w, wan_dtype dt, int64_t k)
{
    if (dt == WAN_DTYPE_F32)
        return ((const float *)w)[k];
    const uint16_t v = ((const uint16_t *)w)[k];
    return dt == WAN_DTYPE_BF16 ? wan_bf16_to_f32(v) : wan_f16_to_f32(v);
}

static void case_linear(harness *h, int rep)
{
    static const wan_dtype dts[3] = { WAN_DTYPE_F32, WAN_DTYPE_BF16, WAN_DTYPE_F16 };
    opcase c = { .run = run_linear };
    const int big = rep == 3; /* large enough for the packed GEMM (and for several device tiles) */
    const int64_t M = big ? 300 : irand(&h->r, 1, 40), K = big ? 256 : irand(&h->r, 1, 70);
    const int64_t N = big ? 200 : irand(&h->r, 1, 50);
    const int64_t ldx = K + irand(&h->r, 0, 3), ldy = N + irand(&h->r, 0, 3), bias = irand(&h->r, 0, 1);
    c.dtype = dts[rep % 3];
    c.tol_dev = c.dtype == WAN_DTYPE_BF16 ? BF16_TOL : DEV_TOL;
    snprintf(c.name, sizeof c.name, "linear %s M%lld K%lld N%lld%s", wan_dtype_name(c.dtype), (long long)M,
             (long long)K, (long long)N, bias ? " +bias" : "");
    const float *x = rnd(h, &c, (size_t)(M * ldx));
    const size_t es = wan_dtype_size(c.dtype);
    uint8_t *w = buf_new(&c, (size_t)(N * K) * es);
    for (int64_t k = 0; k < N * K; k++) {
        const float v = urand(&h->r);
        if (c.dtype == WAN_DTYPE_F32) {
            memcpy(w + 4 * k, &v, 4);
        } else {
            const uint16_t s = c.dtype == WAN_DTYPE_BF16 ? wan_f32_to_bf16(v) : wan_f32_to_f16(v);
            memcpy(w + 2 * k, &s, 2);
        }
    }
    const float *b = rnd(h, &c, (size_t)N);
    rnd(h, &c, (size_t)(M * ldy));
    float *y = ref_of(&c, 3);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = bias ? b[n] : 0.0;
            for (int64_t k = 0; k < K; k++)
                s += (double)x[m * ldx + k] * stored(w, c.dtype, n * K + k);
            y[m * ldy + n] = (float)s;
        }
    memcpy(c.i, (int64_t[]){ M, K, N, ldx, ldy, bias }, 6 * sizeof(int64_t));
    finish(h, &c);
}

static void run_attention(wan_backend *be, void **p, const opcase *c)
{
    const int64_t Lq = c->i[0], Lk = c->i[1], H = c->i[2], hd = c->i[3], ld = c->i[4];
    be->attention(be, p[0], ld, p[1], ld, p[2], ld, p[3], ld, Lq, Lk, (int)H, (int)hd, c->f[0], c->f[1]);
}

/* One attention case, the last key of multiplicity w (1: plain). Head dims 64 and 128 take the CUDA backend's bf16
 * tensor-core kernel (BF16_TOL), the others its f32 kernel. */
static void attention_case(harness *h, int64_t Lq, int64_t Lk, int64_t H, int64_t hd, int w)
{
    opcase c = { .run = run_attention, .tol_dev = hd == 64 || hd == 128 ? BF16_TOL : DEV_TOL };
    const int64_t ld = H * hd + irand(&h->r, 0, 4);
    c.f[0] = (float)(1.0 / sqrt((double)hd));
    c.f[1] = (float)w;
    snprintf(c.name, sizeof c.name, "attention Lq%lld Lk%lld heads%lld hd%lld", (long long)Lq, (long long)Lk,
             (long long)H, (long long)hd);
    const size_t nl = strlen(c.name);
    if (w > 1)
        snprintf(c.name + nl, sizeof c.name - nl, ", last key x%d", w);
    const float *q = rnd(h, &c, (size_t)(Lq * ld)), *k = rnd(h, &c, (size_t)(Lk * ld));
    const float *v = rnd(h, &c, (size_t)(Lk * ld));
    rnd(h, &c, (size_t)(Lq * ld));
    float *o = ref_of(&c, 3);
    wan_test_naive_attention(q, ld, k, ld, v, ld, o, ld, Lq, Lk, (int)H, (int)hd, c.f[0], c.f[1]);
    memcpy(c.i, (int64_t[]){ Lq, Lk, H, hd, ld }, 5 * sizeof(int64_t));
    finish(h, &c);
}

/* Two cases per repeat: a head dim of the f32 kernel (32, 40, 8, 96) and one of the bf16 kernel (128, 64), whose
 * shapes cover its 128-query and 64-key tiles: several of each with ragged last ones (reps 0, 3), single partial
 * tiles (rep 1), and cross-attention over 512 text rows (rep 2). In reps 1 and 2 the f32 case's last key has a
 * multiplicity, and rep 2 adds a bf16 case of 20 keys, the last standing for 493 (a padded prompt's zero rows). */
static void case_attention(harness *h, int rep)
{
    static const int hds[4] = { 32, 40, 8, 96 };
    const int64_t Lq = irand(&h->r, 1, 70), Lk = rep == 1 ? irand(&h->r, 1, 12) : irand(&h->r, 1, 150);
    const int64_t H = irand(&h->r, 1, 3);
    attention_case(h, Lq, Lk, H, hds[rep], rep == 1 || rep == 2 ? irand(&h->r, 2, 500) : 1);
    switch (rep) {
    case 0: attention_case(h, irand(&h->r, 130, 190), irand(&h->r, 65, 127), 2, 128, 1); break;
    case 1: attention_case(h, irand(&h->r, 1, 20), irand(&h->r, 1, 12), irand(&h->r, 1, 3), 64, 1); break;
    case 2:
        attention_case(h, irand(&h->r, 1, 70), 512, irand(&h->r, 1, 3), 128, 1);
        attention_case(h, irand(&h->r, 1, 70), 20, irand(&h->r, 1, 3), 128, 493);
        break;
    default: attention_case(h, irand(&h->r, 129, 256), irand(&h->r, 129, 319), 2, 64, 1); break;
    }
}

static void run_layernorm(wan_backend *be, void **p, const opcase *c)
{
    const int64_t L = c->i[0], D = c->i[1], ld = c->i[2], affine = c->i[3], mod = c->i[4], tok = c->i[5];
    const int64_t mod_ld = c->i[6];
    const float *m = p[4];
    be->layernorm(be, p[0], p[1], L, D, ld, c->f[0], affine ? p[2] : NULL, affine ? p[3] : NULL,
                  mod ? m : NULL, mod ? m + D : NULL, tok ? p[5] : NULL, mod_ld);
}

/* Random token -> row map over U rows (a host buffer of L int32). */
static int32_t *tok_rows(harness *h, opcase *c, int64_t L, int64_t U)
{
    int32_t *t = buf_new(c, (size_t)L * sizeof(int32_t));
    for (int64_t l = 0; l < L; l++)
        t[l] = (int32_t)irand(&h->r, 0, (int)U - 1);
    return t;
}

static void case_layernorm(harness *h, int rep)
{
    opcase c = { .run = run_layernorm, .tol_dev = DEV_TOL };
    const int64_t L = irand(&h->r, 1, 40), D = irand(&h->r, 1, 100), ld = D + irand(&h->r, 0, 3);
    const int64_t affine = rep & 1, mod = rep != 1, tok = mod && rep == 2, U = tok ? 3 : 1, mod_ld = 2 * D + 5;
    c.f[0] = 1e-6f;
    snprintf(c.name, sizeof c.name, "layernorm L%lld D%lld%s%s%s", (long long)L, (long long)D,
             affine ? " affine" : "", mod ? " modulated" : "", tok ? " per-token" : "");
    const float *x = rnd(h, &c, (size_t)(L * ld));
    rnd(h, &c, (size_t)(L * ld));
    const float *w = rnd(h, &c, (size_t)D), *b = rnd(h, &c, (size_t)D), *m = rnd(h, &c, (size_t)(U * mod_ld));
    const int32_t *tr = tok_rows(h, &c, L, U);
    float *y = ref_of(&c, 1);
    for (int64_t l = 0; l < L; l++) {
        double s = 0.0, s2 = 0.0;
        for (int64_t i = 0; i < D; i++)
            s += x[l * ld + i];
        const double mu = s / (double)D;
        for (int64_t i = 0; i < D; i++)
            s2 += (x[l * ld + i] - mu) * (x[l * ld + i] - mu);
        const double rstd = 1.0 / sqrt(s2 / (double)D + 1e-6);
        const float *row = m + (tok ? tr[l] : 0) * mod_ld;
        for (int64_t i = 0; i < D; i++) {
            double v = (x[l * ld + i] - mu) * rstd;
            if (affine)
                v = v * w[i] + b[i];
            if (mod)
                v = v * (1.0 + row[D + i]) + row[i];
            y[l * ld + i] = (float)v;
        }
    }
    memcpy(c.i, (int64_t[]){ L, D, ld, affine, mod, tok, mod_ld }, 7 * sizeof(int64_t));
    finish(h, &c);
}

static void run_rmsnorm(wan_backend *be, void **p, const opcase *c)
{
    be->rmsnorm(be, p[0], c->i[0], c->i[1], c->i[2], c->f[0], p[1]);
}

static void case_rmsnorm(harness *h, int rep)
{
    (void)rep;
    opcase c = { .run = run_rmsnorm, .tol_dev = DEV_TOL };
    const int64_t L = irand(&h->r, 1, 40), D = irand(&h->r, 1, 300), ld = D + irand(&h->r, 0, 3);
    c.f[0] = 1e-6f;
    snprintf(c.name, sizeof c.name, "rmsnorm L%lld D%lld", (long long)L, (long long)D);
    rnd(h, &c, (size_t)(L * ld));
    const float *w = rnd(h, &c, (size_t)D);
    float *x = ref_of(&c, 0);
    for (int64_t l = 0; l < L; l++) {
        double s2 = 0.0;
        for (int64_t i = 0; i < D; i++)
            s2 += (double)x[l * ld + i] * x[l * ld + i];
        const double r = 1.0 / sqrt(s2 / (double)D + 1e-6);
        for (int64_t i = 0; i < D; i++)
            x[l * ld + i] = (float)(x[l * ld + i] * r * w[i]);
    }
    memcpy(c.i, (int64_t[]){ L, D, ld }, 3 * sizeof(int64_t));
    finish(h, &c);
}

static void run_rope(wan_backend *be, void **p, const opcase *c)
{
    be->rope(be, p[0], c->i[0], (int)c->i[1], (int)c->i[2], (int)c->i[3], (int)c->i[4], (int)c->i[5], (int)c->i[6],
             (int)c->i[7], p[1], p[2], p[3]);
}

static void case_rope(harness *h, int rep)
{
    static const int hds[3] = { 32, 128, 12 };
    opcase c = { .run = run_rope, .tol_dev = DEV_TOL };
    const int nf = irand(&h->r, 1, 3), nh = irand(&h->r, 1, 4), nw = irand(&h->r, 1, 5), H = irand(&h->r, 1, 3);
    const int hd = hds[rep % 3], dh = 2 * (hd / 6), dt = hd - 2 * dh, L = nf * nh * nw;
    const int64_t ld = (int64_t)H * hd + irand(&h->r, 0, 3);
    snprintf(c.name, sizeof c.name, "rope grid %dx%dx%d heads%d hd%d", nf, nh, nw, H, hd);
    rnd(h, &c, (size_t)(L * ld));
    const int dims[3] = { dt, dh, dh }, npos[3] = { nf, nh, nw };
    const float *tab[3];
    for (int a = 0; a < 3; a++) {
        float *t = buf_new(&c, (size_t)npos[a] * (size_t)(dims[a] > 0 ? dims[a] : 1) * sizeof(float));
        wan_cpu_rope_table(t, npos[a], dims[a], 10000.0);
        tab[a] = t;
    }
    float *x = ref_of(&c, 0);
    for (int l = 0; l < L; l++) {
        const int pos[3] = { l / (nh * nw), l / nw % nh, l % nw };
        for (int n = 0; n < H; n++) {
            float *xh = x + l * ld + (int64_t)n * hd;
            for (int a = 0, ch = 0; a < 3; a++)
                for (int m = 0; m < dims[a] / 2; m++, ch += 2) {
                    const double cs = tab[a][(pos[a] * (dims[a] / 2) + m) * 2];
                    const double sn = tab[a][(pos[a] * (dims[a] / 2) + m) * 2 + 1];
                    const double u = xh[ch], v = xh[ch + 1];
                    xh[ch] = (float)(u * cs - v * sn);
                    xh[ch + 1] = (float)(u * sn + v * cs);
                }
        }
    }
    memcpy(c.i, (int64_t[]){ ld, nf, nh, nw, H, hd, dt, dh }, 8 * sizeof(int64_t));
    finish(h, &c);
}

static void run_gelu(wan_backend *be, void **p, const opcase *c) { be->gelu_tanh(be, p[0], c->i[0]); }
static void run_silu(wan_backend *be, void **p, const opcase *c) { be->silu(be, p[0], p[1], c->i[0]); }

static void case_activations(harness *h, int rep)
{
    const int64_t n = rep == 2 ? 40000 : irand(&h->r, 1, 3000);
    opcase g = { .run = run_gelu, .tol_dev = DEV_TOL };
    snprintf(g.name, sizeof g.name, "gelu_tanh n%lld", (long long)n);
    float *x = rnd(h, &g, (size_t)n);
    for (int64_t i = 0; i < n; i++)
        x[i] *= 6.0f;
    float *y = ref_of(&g, 0);
    for (int64_t i = 0; i < n; i++)
        y[i] = (float)(0.5 * x[i] * (1.0 + tanh(0.7978845608028654 * (x[i] + 0.044715 * (double)x[i] * x[i] * x[i]))));
    g.i[0] = n;
    finish(h, &g);

    opcase s = { .run = run_silu, .tol_dev = DEV_TOL };
    snprintf(s.name, sizeof s.name, "silu n%lld", (long long)n);
    x = rnd(h, &s, (size_t)n);
    rnd(h, &s, (size_t)n);
    y = ref_of(&s, 1);
    for (int64_t i = 0; i < n; i++)
        y[i] = (float)(x[i] / (1.0 + exp(-(double)x[i])));
    s.i[0] = n;
    finish(h, &s);
}

static void run_gated_add(wan_backend *be, void **p, const opcase *c)
{
    const int64_t L = c->i[0], D = c->i[1], ld = c->i[2], gate = c->i[3], tok = c->i[4], mod_ld = c->i[5];
    be->gated_add(be, p[0], ld, p[1], ld, L, D, gate ? p[2] : NULL, tok ? p[3] : NULL, mod_ld);
}

static void case_gated_add(harness *h, int rep)
{
    opcase c = { .run = run_gated_add, .tol_dev = DEV_TOL };
    const int64_t L = irand(&h->r, 1, 40), D = irand(&h->r, 1, 100), ld = D + irand(&h->r, 0, 3);
    const int64_t gate = rep != 0, tok = rep == 2, U = tok ? 4 : 1, mod_ld = D + 7;
    snprintf(c.name, sizeof c.name, "gated_add L%lld D%lld%s%s", (long long)L, (long long)D, gate ? " gate" : "",
             tok ? " per-token" : "");
    rnd(h, &c, (size_t)(L * ld));
    const float *y = rnd(h, &c, (size_t)(L * ld)), *g = rnd(h, &c, (size_t)(U * mod_ld));
    const int32_t *tr = tok_rows(h, &c, L, U);
    float *x = ref_of(&c, 0);
    for (int64_t l = 0; l < L; l++)
        for (int64_t i = 0; i < D; i++)
            x[l * ld + i] += gate ? y[l * ld + i] * g[(tok ? tr[l] : 0) * mod_ld + i] : y[l * ld + i];
    memcpy(c.i, (int64_t[]){ L, D, ld, gate, tok, mod_ld }, 6 * sizeof(int64_t));
    finish(h, &c);
}

static void run_add_rows(wan_backend *be, void **p, const opcase *c)
{
    be->add_rows(be, p[0], p[1], p[2], c->i[0], c->i[1], c->i[2], c->i[3]);
}

static void case_add_rows(harness *h, int rep)
{
    opcase c = { .run = run_add_rows, .tol_dev = 0.0 };
    const int64_t U = irand(&h->r, 1, 4), D = irand(&h->r, 1, 50);
    const int64_t n = rep == 1 ? 2 * D : 6 * D, xn = rep == 1 ? D : 6 * D, ldx = xn;
    snprintf(c.name, sizeof c.name, "add_rows U%lld n%lld xn%lld", (long long)U, (long long)n, (long long)xn);
    rnd(h, &c, (size_t)(U * n));
    const float *t = rnd(h, &c, (size_t)n), *x = rnd(h, &c, (size_t)(U * ldx));
    float *y = ref_of(&c, 0);
    for (int64_t u = 0; u < U; u++)
        for (int64_t i = 0; i < n; i++)
            y[u * n + i] = t[i] + x[u * ldx + i % xn];
    memcpy(c.i, (int64_t[]){ U, n, ldx, xn }, 4 * sizeof(int64_t));
    finish(h, &c);
}

static void run_patchify(wan_backend *be, void **p, const opcase *c)
{
    be->patchify(be, p[0], p[1], (int)c->i[0], (int)c->i[1], (int)c->i[2], (int)c->i[3], (int)c->i[4], (int)c->i[5],
                 (int)c->i[6]);
}

static void run_unpatchify(wan_backend *be, void **p, const opcase *c)
{
    be->unpatchify(be, p[0], p[1], (int)c->i[0], (int)c->i[1], (int)c->i[2], (int)c->i[3], (int)c->i[4],
                   (int)c->i[5], (int)c->i[6]);
}

static void case_patches(harness *h, int rep)
{
    const int C = irand(&h->r, 1, 5), pt = rep == 2 ? 2 : 1, ph = rep ? 2 : 1, pw = 2;
    const int T = pt * irand(&h->r, 1, 3), H = ph * irand(&h->r, 1, 4), W = pw * irand(&h->r, 1, 4);
    const int64_t n = (int64_t)C * T * H * W, K = (int64_t)C * pt * ph * pw;
    for (int inverse = 0; inverse < 2; inverse++) {
        opcase c = { .run = inverse ? run_unpatchify : run_patchify, .tol_dev = 0.0 };
        snprintf(c.name, sizeof c.name, "%s C%d T%d H%d W%d patch %dx%dx%d", inverse ? "unpatchify" : "patchify", C, T,
                 H, W, pt, ph, pw);
        const float *src = rnd(h, &c, (size_t)n);
        rnd(h, &c, (size_t)n);
        float *dst = ref_of(&c, 1);
        for (int ch = 0; ch < C; ch++)
            for (int t = 0; t < T; t++)
                for (int y = 0; y < H; y++)
                    for (int x = 0; x < W; x++) {
                        const int64_t l = ((int64_t)(t / pt) * (H / ph) + y / ph) * (W / pw) + x / pw;
                        const int64_t inner = ((int64_t)(t % pt) * ph + y % ph) * pw + x % pw;
                        const int64_t grid = (((int64_t)ch * T + t) * H + y) * W + x;
                        const int64_t patch = inverse ? l * K + inner * C + ch : l * K + ch * pt * ph * pw + inner;
                        if (inverse)
                            dst[grid] = src[patch];
                        else
                            dst[patch] = src[grid];
                    }
        memcpy(c.i, (int64_t[]){ C, T, H, W, pt, ph, pw }, 7 * sizeof(int64_t));
        finish(h, &c);
    }
}

/* ---- VAE ops -------------------------------------------------------------------------------------------- */

static void run_conv(wan_backend *be, void **p, const opcase *c)
{
    const int ntaps = (int)c->i[8];
    wan_conv_geom g = wan_conv_geom_make((int)c->i[0], (int)c->i[1], (int)c->i[2], (int)c->i[3], (int)c->i[4],
                                         (int)c->i[5], (int)c->i[6], (int)c->i[7]);
    const float *taps[3];
    for (int a = 0; a < ntaps; a++)
        taps[a] = (c->i[9] >> a) & 1 ? NULL : p[3 + a];
    be->conv2d_taps(be, &g, ntaps, p[0], p[1], taps, p[2]);
}

/* Geometries of the VAE: 3x3 "same" with 3 temporal taps (one of them the zero frame), 1x1, 3x3 after nearest
 * x2 upsampling, the downsampler's 3x3 stride 2 with right/bottom padding. */
static void case_conv(harness *h, int rep)
{
    opcase c = { .run = run_conv, .tol_dev = DEV_TOL };
    const int kind = rep % 4, cin = irand(&h->r, 1, 12), cout = irand(&h->r, 1, 12);
    const int k = kind == 1 ? 1 : 3, stride = kind == 3 ? 2 : 1, same = kind != 3, up2 = kind == 2;
    const int ntaps = kind == 0 ? 3 : 1, null_mask = kind == 0 ? 1 : 0; /* tap 0: the zero frame */
    int hh = irand(&h->r, 1, 9), ww = irand(&h->r, 1, 9);
    if (up2)
        hh = 2 * irand(&h->r, 1, 5), ww = 2 * irand(&h->r, 1, 5);
    const wan_conv_geom g = wan_conv_geom_make(cin, cout, hh, ww, k, stride, same, up2);
    snprintf(c.name, sizeof c.name, "conv2d_taps %dx%d cin%d cout%d %dx%d stride%d%s taps%d", k, k, cin, cout, hh, ww,
             stride, up2 ? " up2" : "", ntaps);
    const int64_t K = (int64_t)cin * k * k, sh = up2 ? hh / 2 : hh, sw = up2 ? ww / 2 : ww;
    const float *w = rnd(h, &c, (size_t)(ntaps * cout * K)), *b = rnd(h, &c, (size_t)cout);
    rnd(h, &c, (size_t)cout * g.ho * g.wo);
    const float *in[3];
    for (int a = 0; a < ntaps; a++)
        in[a] = rnd(h, &c, (size_t)(cin * sh * sw));
    float *out = ref_of(&c, 2);
    for (int o = 0; o < cout; o++)
        for (int oy = 0; oy < g.ho; oy++)
            for (int ox = 0; ox < g.wo; ox++) {
                double s = b[o];
                for (int a = 0; a < ntaps; a++) {
                    if ((null_mask >> a) & 1)
                        continue;
                    for (int ci = 0; ci < cin; ci++)
                        for (int r = 0; r < k; r++)
                            for (int q = 0; q < k; q++) {
                                const int iy = oy * stride + r - g.pad, ix = ox * stride + q - g.pad;
                                if (iy < 0 || iy >= hh || ix < 0 || ix >= ww)
                                    continue;
                                const int64_t src = ((int64_t)ci * sh + (up2 ? iy / 2 : iy)) * sw + (up2 ? ix / 2 : ix);
                                s += (double)w[((int64_t)a * cout + o) * K + (ci * k + r) * k + q] * in[a][src];
                            }
                }
                out[((int64_t)o * g.ho + oy) * g.wo + ox] = (float)s;
            }
    memcpy(c.i, (int64_t[]){ cin, cout, hh, ww, k, stride, same, up2, ntaps, null_mask }, 10 * sizeof(int64_t));
    finish(h, &c);
}

static void run_chan_rmsnorm(wan_backend *be, void **p, const opcase *c)
{
    be->chan_rmsnorm(be, p[0], p[1], (int)c->i[0], c->i[1], (int)c->i[2], p[2], (int)c->i[3]);
}

static void case_chan_rmsnorm(harness *h, int rep)
{
    opcase c = { .run = run_chan_rmsnorm, .tol_dev = DEV_TOL };
    const int ch = irand(&h->r, 1, 40), n = irand(&h->r, 1, 3), silu = rep != 1;
    const int64_t hw = irand(&h->r, 1, 300);
    snprintf(c.name, sizeof c.name, "chan_rmsnorm c%d hw%lld frames%d%s", ch, (long long)hw, n, silu ? " +silu" : "");
    const float *x = rnd(h, &c, (size_t)(n * ch * hw));
    rnd(h, &c, (size_t)(n * ch * hw));
    const float *gm = rnd(h, &c, (size_t)ch);
    float *y = ref_of(&c, 1);
    for (int t = 0; t < n; t++)
        for (int64_t p = 0; p < hw; p++) {
            const float *xf = x + (int64_t)t * ch * hw;
            double ss = 0.0;
            for (int k = 0; k < ch; k++)
                ss += (double)xf[k * hw + p] * xf[k * hw + p];
            const double nrm = sqrt(ss) > 1e-12 ? sqrt(ss) : 1e-12;
            for (int k = 0; k < ch; k++) {
                const double v = xf[k * hw + p] / nrm * sqrt((double)ch) * gm[k];
                y[(int64_t)t * ch * hw + k * hw + p] = (float)(silu ? v / (1.0 + exp(-v)) : v);
            }
        }
    memcpy(c.i, (int64_t[]){ ch, hw, n, silu }, 4 * sizeof(int64_t));
    finish(h, &c);
}

static void run_attention_frame(wan_backend *be, void **p, const opcase *c)
{
    be->attention_frame(be, p[0], p[1], (int)c->i[0], (int)c->i[1]);
}

static void case_attention_frame(harness *h, int rep)
{
    (void)rep;
    opcase c = { .run = run_attention_frame, .tol_dev = DEV_TOL };
    const int ch = irand(&h->r, 1, 40), n = irand(&h->r, 1, 120);
    snprintf(c.name, sizeof c.name, "attention_frame c%d pixels%d", ch, n);
    const float *qkv = rnd(h, &c, (size_t)3 * ch * n);
    rnd(h, &c, (size_t)ch * n);
    float *o = ref_of(&c, 1);
    double *s = malloc((size_t)n * sizeof(double));
    for (int i = 0; i < n; i++) {
        double mx = -INFINITY, sum = 0.0;
        for (int j = 0; j < n; j++) {
            double d = 0.0;
            for (int k = 0; k < ch; k++)
                d += (double)qkv[(int64_t)k * n + i] * qkv[(int64_t)(ch + k) * n + j];
            s[j] = d / sqrt((double)ch);
            mx = s[j] > mx ? s[j] : mx;
        }
        for (int j = 0; j < n; j++)
            sum += s[j] = exp(s[j] - mx);
        for (int k = 0; k < ch; k++) {
            double a = 0.0;
            for (int j = 0; j < n; j++)
                a += s[j] * qkv[(int64_t)(2 * ch + k) * n + j];
            o[(int64_t)k * n + i] = (float)(a / sum);
        }
    }
    free(s);
    memcpy(c.i, (int64_t[]){ ch, n }, 2 * sizeof(int64_t));
    finish(h, &c);
}

static void run_add(wan_backend *be, void **p, const opcase *c) { be->add(be, p[0], p[1], c->i[0]); }

static void case_add(harness *h, int rep)
{
    opcase c = { .run = run_add, .tol_dev = 0.0 };
    const int64_t n = rep == 2 ? 100000 : irand(&h->r, 1, 5000);
    snprintf(c.name, sizeof c.name, "add n%lld", (long long)n);
    rnd(h, &c, (size_t)n);
    const float *y = rnd(h, &c, (size_t)n);
    float *x = ref_of(&c, 0);
    for (int64_t i = 0; i < n; i++)
        x[i] += y[i];
    c.i[0] = n;
    finish(h, &c);
}

static void run_dupup(wan_backend *be, void **p, const opcase *c)
{
    be->dupup_add(be, p[0], p[1], (int)c->i[0], (int)c->i[1], (int)c->i[2], (int)c->i[3], (int)c->i[4], (int)c->i[5],
                  (int)c->i[6], (int)c->i[7]);
}

static void run_avgdown(wan_backend *be, void **p, const opcase *c)
{
    be->avgdown_add(be, p[0], p[1], (int)c->i[0], (int)c->i[1], (int)c->i[2], (int)c->i[3], (int)c->i[4],
                    (int)c->i[5], (int)c->i[6]);
}

/* DupUp3D: the input viewed as [n, cout, ft, fs, fs, h, w] after repeating each channel `rep` times, permuted
 * to [n, cout, ft, h, fs, w, fs]; AvgDown3D: the mean over g consecutive channels of the space-to-depth view. */
static void case_dupup_avgdown(harness *h, int rep)
{
    const int ft = rep == 0 ? 1 : 2, fs = 2, f3 = ft * fs * fs, n_in = irand(&h->r, 1, 3);
    const int hh = irand(&h->r, 1, 4), ww = irand(&h->r, 1, 4), cout = irand(&h->r, 1, 4);
    const int divs[3] = { 1, 2, 4 }, cin = cout * f3 / divs[irand(&h->r, 0, 2)], trim = rep == 2 ? ft - 1 : 0;
    opcase c = { .run = run_dupup, .tol_dev = 0.0 };
    snprintf(c.name, sizeof c.name, "dupup_add cin%d cout%d frames%d %dx%d ft%d fs%d trim%d", cin, cout, n_in, hh, ww,
             ft, fs, trim);
    const int n_out = n_in * ft - trim, rp = cout * f3 / cin;
    rnd(h, &c, (size_t)n_out * cout * hh * fs * ww * fs);
    const float *x = rnd(h, &c, (size_t)n_in * cin * hh * ww);
    float *y = ref_of(&c, 0);
    for (int t = 0; t < n_in; t++)
        for (int j = 0; j < cout * f3; j++) {
            const int o = j / f3, a = j % f3 / (fs * fs), b = j % (fs * fs) / fs, d = j % fs, tt = t * ft + a - trim;
            if (tt < 0)
                continue;
            for (int yy = 0; yy < hh; yy++)
                for (int xx = 0; xx < ww; xx++)
                    y[(((int64_t)tt * cout + o) * hh * fs + yy * fs + b) * ww * fs + xx * fs + d] +=
                        x[(((int64_t)t * cin + j / rp) * hh + yy) * ww + xx];
        }
    memcpy(c.i, (int64_t[]){ cin, cout, n_in, hh, ww, ft, fs, trim }, 8 * sizeof(int64_t));
    finish(h, &c);

    /* AvgDown3D with input [n_in][cin][hh·fs][ww·fs] and cout = cin·f3/g */
    const int acin = irand(&h->r, 1, 4), g = divs[irand(&h->r, 0, 2)], acout = acin * f3 / g;
    const int H = hh * fs, W = ww * fs, pad = (ft - n_in % ft) % ft, nd = (n_in + pad) / ft;
    opcase e = { .run = run_avgdown, .tol_dev = DEV_TOL };
    snprintf(e.name, sizeof e.name, "avgdown_add cin%d cout%d frames%d %dx%d ft%d fs%d", acin, acout, n_in, H, W, ft,
             fs);
    rnd(h, &e, (size_t)nd * acout * hh * ww);
    const float *xa = rnd(h, &e, (size_t)n_in * acin * H * W);
    float *ya = ref_of(&e, 0);
    for (int t = 0; t < nd; t++)
        for (int o = 0; o < acout; o++)
            for (int yy = 0; yy < hh; yy++)
                for (int xx = 0; xx < ww; xx++) {
                    double s = 0.0;
                    for (int q = 0; q < g; q++) {
                        const int j = o * g + q, ci = j / f3, a = j % f3 / (fs * fs), b = j % (fs * fs) / fs;
                        const int d = j % fs, ti = t * ft + a - pad;
                        if (ti >= 0)
                            s += xa[(((int64_t)ti * acin + ci) * H + yy * fs + b) * W + xx * fs + d];
                    }
                    ya[(((int64_t)t * acout + o) * hh + yy) * ww + xx] += (float)(s / g);
                }
    memcpy(e.i, (int64_t[]){ acin, acout, n_in, H, W, ft, fs }, 7 * sizeof(int64_t));
    finish(h, &e);
}

/* ---- sampler -------------------------------------------------------------------------------------------- */

static void run_guide(wan_backend *be, void **p, const opcase *c) { be->guide(be, p[0], p[1], c->f[0], c->i[0]); }

static void run_update(wan_backend *be, void **p, const opcase *c)
{
    be->sampler_update(be, &c->upd, p[0], p[1], p[2], p[3], p[4], p[5], c->i[0]);
}

/* A random update of each kind and order; coefficient magnitudes like those of a 40-step schedule. */
static wan_sampler_update random_update(harness *h, int kind)
{
    wan_sampler_update u = { .kind = (wan_update_kind)kind };
    u.sigma = 0.2f + 0.7f * (urand(&h->r) + 1.0f) / 2.0f;
    u.dt = -0.05f * (urand(&h->r) + 1.0f);
    u.order = irand(&h->r, 1, 2);
    u.to_zero = irand(&h->r, 0, 4) == 0;
    u.cx = 0.9f + 0.05f * urand(&h->r), u.cm = -0.1f + 0.02f * urand(&h->r), u.cb = -0.1f + 0.02f * urand(&h->r);
    u.rk = 0.8f + 0.1f * urand(&h->r), u.cd = 0.5f * u.cm, u.inv_r0 = 1.0f / (0.8f + 0.1f * urand(&h->r));
    u.corr = irand(&h->r, 0, 1), u.last_order = irand(&h->r, 1, 2);
    u.ccx = 0.9f + 0.05f * urand(&h->r), u.ccm = -0.1f + 0.02f * urand(&h->r), u.ccb = -0.1f + 0.02f * urand(&h->r);
    u.crk = 0.8f + 0.1f * urand(&h->r), u.rho0 = 0.5f + 0.1f * urand(&h->r), u.rho1 = 0.5f + 0.1f * urand(&h->r);
    return u;
}

static void case_sampler(harness *h, int rep)
{
    const int64_t n = rep == 2 ? 70000 : irand(&h->r, 1, 4000);
    opcase g = { .run = run_guide, .tol_dev = 0.0 };
    snprintf(g.name, sizeof g.name, "guide n%lld", (long long)n);
    rnd(h, &g, (size_t)n);
    const float *un = rnd(h, &g, (size_t)n);
    float *cd = ref_of(&g, 0);
    g.f[0] = 3.0f + urand(&h->r);
    for (int64_t i = 0; i < n; i++) {
        const float d = cd[i] - un[i], s = g.f[0] * d;
        cd[i] = un[i] + s;
    }
    g.i[0] = n;
    finish(h, &g);

    for (int kind = 0; kind < 3; kind++) {
        opcase c = { .run = run_update, .tol_dev = 0.0 };
        c.upd = random_update(h, kind);
        const wan_sampler_update k = c.upd;
        snprintf(c.name, sizeof c.name, "sampler_update %s order%d%s%s n%lld",
                 (const char *[]){ "euler", "dpm", "unipc" }[kind], k.order, k.to_zero ? " to-zero" : "",
                 kind == 2 && k.corr ? " corrector" : "", (long long)n);
        const float *v = rnd(h, &c, (size_t)n), *x = rnd(h, &c, (size_t)n);
        rnd(h, &c, (size_t)n);
        rnd(h, &c, (size_t)n);
        rnd(h, &c, (size_t)n);
        rnd(h, &c, (size_t)n);
        float *out = ref_of(&c, 2), *m1 = ref_of(&c, 3), *m2 = ref_of(&c, 4), *xl = ref_of(&c, 5);
        for (int64_t i = 0; i < n; i++) {
            if (kind == WAN_UPDATE_EULER) {
                const float s = k.dt * v[i];
                out[i] = x[i] + s;
                continue;
            }
            const float sv = k.sigma * v[i], m = x[i] - sv;
            float xc = x[i], p;
            if (kind == WAN_UPDATE_UNIPC && k.corr) {
                const float a1 = k.ccx * xl[i], a2 = k.ccm * m1[i], base = a1 - a2, d1 = m - m1[i];
                float res = k.rho1 * d1;
                if (k.last_order == 2) {
                    const float q = (m2[i] - m1[i]) / k.crk, r0 = k.rho0 * q;
                    res = r0 + res;
                }
                const float cr = k.ccb * res;
                xc = base - cr;
            }
            if (k.to_zero) {
                p = m;
            } else {
                const float a1 = k.cx * (kind == WAN_UPDATE_UNIPC ? xc : x[i]), a2 = k.cm * m;
                p = a1 - a2;
                if (k.order == 2 && kind == WAN_UPDATE_UNIPC) {
                    const float q = (m1[i] - m) / k.rk, hq = 0.5f * q, t = k.cb * hq;
                    p = p - t;
                } else if (k.order == 2) {
                    const float q = k.inv_r0 * (m - m1[i]), t = k.cd * q;
                    p = p - t;
                }
            }
            m2[i] = m1[i];
            m1[i] = m;
            if (kind == WAN_UPDATE_UNIPC)
                xl[i] = xc;
            out[i] = p;
        }
        c.i[0] = n;
        finish(h, &c);
    }
}

/* ---- drivers -------------------------------------------------------------------------------------------- */

typedef void (*case_fn)(harness *h, int rep);
static const case_fn k_cases[] = { case_linear,  case_attention,     case_layernorm,      case_rmsnorm,
                                   case_rope,    case_activations,   case_gated_add,      case_add_rows,
                                   case_patches, case_conv,          case_chan_rmsnorm,   case_attention_frame,
                                   case_add,     case_dupup_avgdown, case_sampler };

static void run_all(harness *h)
{
    for (size_t i = 0; i < sizeof k_cases / sizeof *k_cases; i++)
        for (int rep = 0; rep < REPEATS; rep++)
            k_cases[i](h, rep);
}

/* Op checks one run makes (each op on each random shape), for the skip message. */
static int count_checks(void)
{
    harness h = { .r = { 20240601 }, .dry = 1 };
    run_all(&h);
    return h.checks;
}

TEST(backend_cpu_ops)
{
    wan_error err = { 0 };
    wan_backend *cpu = NULL;
    CHECK_RC(wan_backend_create("cpu", 2, &cpu, &err), WAN_OK, err.msg);
    harness h = { .cpu = cpu, .be = cpu, .r = { 20240601 } };
    run_all(&h);
    wan_backend_free(cpu);
    printf("    %d op checks on the cpu table, %d failed\n", h.checks, h.failures);
    CHECK(h.checks > 0 && h.failures == 0);
}

TEST(backend_cuda_ops)
{
    wan_error err = { 0 };
    wan_backend *cuda = NULL, *cpu = NULL;
    if (wan_backend_create("cuda", 0, &cuda, &err) != WAN_OK) {
        CHECK_MSG(err.code == WAN_ERR_UNSUPPORTED && err.msg[0], "unexpected error %d: %s", err.code, err.msg);
        SKIP("no CUDA device: %d CUDA op tests not run (%s)", count_checks(), err.msg);
    }
    printf("    device: %s\n", cuda->device);
    CHECK_RC(wan_backend_create("cpu", 2, &cpu, &err), WAN_OK, err.msg);
    harness h = { .cpu = cpu, .be = cuda, .r = { 20240601 } };
    run_all(&h);
    wan_backend_free(cuda);
    wan_backend_free(cpu);
    printf("    %d op checks on the cuda table, %d failed\n", h.checks, h.failures);
    CHECK(h.checks > 0 && h.failures == 0);
}

TEST(backend_select)
{
    wan_error err = { 0 };
    wan_backend *be = NULL;
    CHECK_RC(wan_backend_create("tpu", 1, &be, &err), WAN_ERR_INVALID_ARG, err.msg);
    CHECK(be == NULL && strstr(err.msg, "tpu"));
    CHECK_RC(wan_backend_create("cuda:x", 1, &be, &err), WAN_ERR_INVALID_ARG, err.msg);
    wan_status rc = wan_backend_create("cuda", 1, &be, &err);
    CHECK_MSG(rc == WAN_OK || (rc == WAN_ERR_UNSUPPORTED && be == NULL && strstr(err.msg, "cuda")),
              "cuda: %d %s", rc, err.msg);
    printf("    cuda: %s\n", rc == WAN_OK ? be->device : err.msg);
    wan_backend_free(be);
    CHECK_RC(wan_backend_create("cpu", 1, &be, &err), WAN_OK, err.msg);
    CHECK(be->host_memory && !strcmp(be->name, "cpu"));
    /* the sticky error: a failed allocation makes later ops no-ops and sync reports it once */
    wan_mem_fail_after(1);
    void *p = be->alloc(be, 64);
    wan_mem_fail_after(0);
    CHECK(p == NULL);
    float x = 1.0f, y = 2.0f;
    be->add(be, &x, &y, 1);
    CHECK(x == 1.0f);
    CHECK_RC(be->sync(be, &err), WAN_ERR_NOMEM, err.msg);
    CHECK(strstr(err.msg, "cpu backend"));
    CHECK_RC(be->sync(be, &err), WAN_OK, err.msg);
    be->add(be, &x, &y, 1);
    CHECK(x == 3.0f);
    wan_backend_free(be);
}

/* Forwards of two bindings of one expert (in place, uploaded) on the same random inputs (2 frames of 4 x 6 latents,
 * 5 text rows, t = 637) into *o1 and *o2 (nout floats each, wan_malloc'd; free with wan_free). */
static wan_status both_forwards(const wan_dit *a, const wan_dit *b, uint32_t seed, float **o1, float **o2,
                                size_t *nout, wan_error *e)
{
    const int C = a->cfg.in_channels, T = 2, Hl = 4, Wl = 6, Lt = 5;
    const size_t nx = (size_t)C * T * Hl * Wl;
    *nout = (size_t)a->cfg.out_channels * T * Hl * Wl;
    float *x = wan_malloc(nx * sizeof(float)), *ctx = wan_malloc((size_t)Lt * a->cfg.text_dim * sizeof(float));
    *o1 = wan_malloc(*nout * sizeof(float));
    *o2 = wan_malloc(*nout * sizeof(float));
    wan_status rc = x && ctx && *o1 && *o2 ? WAN_OK : wan_err(e, WAN_ERR_NOMEM, "out of memory");
    rng r = { seed };
    for (size_t i = 0; rc == WAN_OK && i < nx; i++)
        x[i] = urand(&r);
    for (int i = 0; rc == WAN_OK && i < Lt * a->cfg.text_dim; i++)
        ctx[i] = urand(&r);
    const float t = 637.0f;
    if (rc == WAN_OK)
        rc = wan_dit_forward(a, x, T, Hl, Wl, &t, 0, ctx, Lt, *o1, 2, NULL, e);
    if (rc == WAN_OK)
        rc = wan_dit_forward(b, x, T, Hl, Wl, &t, 0, ctx, Lt, *o2, 2, NULL, e);
    wan_free(x);
    wan_free(ctx);
    return rc;
}

/* The tiny expert uploaded into backend memory gives the same forward, bit for bit, as the weights in place. */
TEST(backend_dit_upload)
{
    char err[512] = "";
    wan_error e = { 0 };
    wan_model_t *m = NULL;
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-t2v"), NULL, &m, err, sizeof err), WAN_OK, err);
    wan_dit dit, dev;
    wan_backend *be = NULL;
    wan_status rc = wan_dit_init(&dit, wan_model_weights(m, WAN_COMPONENT_TRANSFORMER),
                                 wan_model_transformer_config(m, 0), &e);
    if (rc == WAN_OK)
        rc = wan_backend_create("cpu", 2, &be, &e);
    if (rc == WAN_OK)
        rc = wan_dit_upload(&dit, be, &dev, &e);
    if (rc != WAN_OK) {
        wan_backend_free(be);
        wan_model_free(m);
        CHECK_MSG(0, "%s", e.msg);
    }
    const size_t bytes = wan_dit_upload_bytes(&dit);
    printf("    tiny expert: %zu KiB uploaded\n", bytes >> 10);
    float *o1 = NULL, *o2 = NULL;
    size_t nout = 0;
    rc = both_forwards(&dit, &dev, 7, &o1, &o2, &nout, &e);
    const int same = rc == WAN_OK && !memcmp(o1, o2, nout * sizeof(float));
    const int moved = dev.blocks != dit.blocks && dev.blocks[0].q.w.data != dit.blocks[0].q.w.data &&
                      dev.blocks[0].sst != dit.blocks[0].sst && dev.out.b != dit.out.b;
    wan_free(o1);
    wan_free(o2);
    wan_dit_release(be, &dev);
    wan_dit_free(&dit);
    wan_backend_free(be);
    wan_model_free(m);
    CHECK_MSG(rc == WAN_OK, "%s", e.msg);
    CHECK(moved);
    CHECK(same);
    CHECK(bytes > 0);
}

/* q8_0 and float8 experts go to backend memory as BF16: every uploaded weight is the round-to-nearest-even of the
 * f32 value the CPU kernels use, the rest is uploaded as it is, and the forward stays within bf16 rounding of the
 * in-place one. */
TEST(backend_dit_upload_quantised)
{
    char tmp[] = "/tmp/wan-upload-XXXXXX", err[1024] = "", q8[300], q4[300];
    CHECK(mkdtemp(tmp));
    snprintf(q8, sizeof q8, "%s/q8", tmp);
    snprintf(q4, sizeof q4, "%s/q4", tmp);
    wan_model_t *m = NULL;
    wan_convert_params p = wan_convert_default_params();
    p.quantize = WAN_QUANT_Q8_0;
    CHECK_RC(wan_model_load(wan_test_fixture("tiny-wan22-t2v"), NULL, &m, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_model_convert(m, q8, &p, err, sizeof err), WAN_OK, err);
    p.quantize = WAN_QUANT_Q4_0;
    CHECK_RC(wan_model_convert(m, q4, &p, err, sizeof err), WAN_OK, err);
    wan_model_free(m);
    const char *const srcs[3] = { q8, q4, wan_test_fixture("fp8/comfy_scaled_e4m3") };
    static const char *const what[3] = { "q8_0", "q4_0", "float8" };
    for (int k = 0; k < 3; k++) {
        wan_error e = { 0 };
        m = NULL;
        CHECK_RC(wan_model_load(srcs[k], NULL, &m, err, sizeof err), WAN_OK, err);
        wan_dit dit, dev;
        wan_backend *be = NULL;
        CHECK_RC(wan_dit_init(&dit, wan_model_weights(m, WAN_COMPONENT_TRANSFORMER), wan_model_transformer_config(m, 0),
                              &e), WAN_OK, e.msg);
        CHECK_RC(wan_backend_create("cpu", 2, &be, &e), WAN_OK, e.msg);
        CHECK_RC(wan_dit_upload(&dit, be, &dev, &e), WAN_OK, e.msg);
        const wan_dit_linear *pairs[][2] = { { &dit.blocks[0].q, &dev.blocks[0].q }, { &dit.blocks[1].ff2, &dev.blocks[1].ff2 },
                                             { &dit.blocks[0].k2, &dev.blocks[0].k2 }, { &dit.patch, &dev.patch } };
        int n_expanded = 0;
        for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
            const wan_tensor *sw = &pairs[i][0]->w, *dw = &pairs[i][1]->w;
            const int quant = sw->qscale || wan_dtype_is_f8(sw->dtype);
            CHECK(dw->dtype == (quant ? WAN_DTYPE_BF16 : sw->dtype) && !dw->qscale);
            n_expanded += quant;
            const int64_t N = sw->ne[0], K = wan_tensor_numel(sw) / N;
            float *row = wan_malloc(sizeof(float) * (size_t)K);
            for (int64_t r = 0; quant && r < N; r++) {
                wan_cpu_weight_row_to_f32(sw, K, r, 0, K, row);
                for (int64_t c = 0; c < K; c++)
                    CHECK_MSG(((const uint16_t *)dw->data)[r * K + c] == wan_f32_to_bf16(row[c]), "%s [%lld, %lld]",
                              what[k], (long long)r, (long long)c);
            }
            wan_free(row);
        }
        CHECK(n_expanded == 3);
        float *o1 = NULL, *o2 = NULL;
        size_t nout = 0;
        CHECK_RC(both_forwards(&dit, &dev, 11, &o1, &o2, &nout, &e), WAN_OK, e.msg);
        double d = 0, top = 0;
        for (size_t i = 0; i < nout; i++)
            d = fmax(d, fabs((double)o1[i] - o2[i])), top = fmax(top, fabs((double)o1[i]));
        printf("    %s uploaded as BF16 (%zu KiB): forward within %.2g of max|out| of the weights in place\n", what[k],
               wan_dit_upload_bytes(&dit) >> 10, d / top);
        CHECK(d > 0 && d < 1e-2 * top);
        wan_free(o1), wan_free(o2);
        wan_dit_release(be, &dev);
        wan_backend_free(be);
        wan_dit_free(&dit);
        wan_model_free(m);
    }
    wan_test_rm_tree(tmp);
}
