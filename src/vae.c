/* vae.c — AutoencoderKLWan (vae.md): the causal video VAE of Wan2.1 (z16) and Wan2.2 (z48) in f32.
 *
 * The network is described once as a plan (a list of ops built from the config, vae.md 3 and 5.4) that a
 * small interpreter runs on one chunk at a time: a decoder chunk is one latent frame, an encoder chunk is
 * frame 0, then 4 frames at a time. Activations are frame-major ([n][C][H][W], a frame is contiguous), so
 * a causal 3x3x3 convolution takes its three temporal taps as frame pointers into the cache and the chunk
 * without copying, and the upsampler's time_conv output [2C] per frame is already the doubled sequence
 * (channels [0,C) = the earlier frame). Buffers grow to the largest chunk on first use and are reused. */
#include "vae.h"
#include "cpu/conv3d.h"
#include "cpu/gemm.h"
#include "model_dir.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

/* ---- plan ------------------------------------------------------------------------------------- */

typedef enum {
    OP_CONV_IN,  /* causal 3x3x3 conv                                         (1 cache slot)  */
    OP_RES,      /* residual block: RMS, SiLU, conv1, RMS, SiLU, conv2 + skip (2 cache slots) */
    OP_ATTN,     /* per-frame single-head attention                                           */
    OP_UP,       /* upsample2d / upsample3d (time_conv: 1 cache slot)                         */
    OP_DOWN,     /* downsample2d / downsample3d (time_conv: 1 cache slot)                     */
    OP_SAVE,     /* keeps the block input for the Wan2.2 shortcuts                            */
    OP_DUPUP,    /* += DupUp3D(saved input)                                                   */
    OP_AVGDOWN,  /* += AvgDown3D(saved input)                                                 */
    OP_HEAD      /* RMS, SiLU, causal conv_out                                 (1 cache slot) */
} op_kind;

typedef struct vae_op {
    op_kind kind;
    char name[64];  /* tensor prefix */
    int cin, cout;
    int temporal;   /* OP_UP / OP_DOWN: the 3d mode with time_conv */
    int ft, fs;     /* OP_DUPUP / OP_AVGDOWN factors */
    int slot;       /* first cache slot */
    char dbg[24];   /* stage reported to the debug hook after this op ("" none) */
} vae_op;

#define VAE_MAX_OPS 128

typedef struct vae_plan {
    vae_op ops[VAE_MAX_OPS];
    int n, n_slots;
} vae_plan;

static vae_op *add_op(vae_plan *p, op_kind k, int cin, int cout, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static vae_op *add_op(vae_plan *p, op_kind k, int cin, int cout, const char *fmt, ...)
{
    if (p->n >= VAE_MAX_OPS)
        return NULL;
    vae_op *op = &p->ops[p->n++];
    memset(op, 0, sizeof *op);
    op->kind = k, op->cin = cin, op->cout = cout, op->slot = p->n_slots;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(op->name, sizeof op->name, fmt, ap);
    va_end(ap);
    p->n_slots += k == OP_RES ? 2 : (k == OP_CONV_IN || k == OP_HEAD) ? 1 : 0;
    return op;
}

/* OP_UP/OP_DOWN take a slot only in their temporal mode. */
static void set_temporal(vae_plan *p, vae_op *op, int temporal)
{
    op->temporal = temporal;
    p->n_slots += temporal;
}

static void add_mid(vae_plan *p, const char *coder, int d)
{
    add_op(p, OP_RES, d, d, "%s.mid_block.resnets.0", coder);
    add_op(p, OP_ATTN, d, d, "%s.mid_block.attentions.0", coder);
    vae_op *op = add_op(p, OP_RES, d, d, "%s.mid_block.resnets.1", coder);
    if (op)
        snprintf(op->dbg, sizeof op->dbg, "mid_block");
}

/* WanDecoder3d (vae.md 3.1 / 3.2). */
static wan_status plan_decoder(const wan_vae_config *c, vae_plan *p, wan_error *err)
{
    memset(p, 0, sizeof *p);
    const int L = c->n_dim_mult, base = c->decoder_base_dim;
    int dims[9];
    dims[0] = base * c->dim_mult[L - 1];
    for (int i = 0; i < L; i++)
        dims[i + 1] = base * c->dim_mult[L - 1 - i];
    vae_op *op = add_op(p, OP_CONV_IN, c->z_dim, dims[0], "decoder");
    if (op)
        snprintf(op->dbg, sizeof op->dbg, "conv_in");
    add_mid(p, "decoder", dims[0]);
    for (int i = 0; i < L; i++) {
        int in = dims[i], out = dims[i + 1], up = i != L - 1;
        int temporal = up && c->temporal_downsample[L - 2 - i];
        if (i > 0 && !c->is_residual)
            in /= 2; /* the Wan2.1 upsampler halved the channels */
        if (c->is_residual)
            add_op(p, OP_SAVE, in, in, "decoder.up_blocks.%d", i);
        int cur = in;
        for (int j = 0; j <= c->num_res_blocks; j++, cur = out)
            add_op(p, OP_RES, cur, out, "decoder.up_blocks.%d.resnets.%d", i, j);
        if (up) {
            op = add_op(p, OP_UP, out, c->is_residual ? out : out / 2,
                        c->is_residual ? "decoder.up_blocks.%d.upsampler" : "decoder.up_blocks.%d.upsamplers.0", i);
            if (op)
                set_temporal(p, op, temporal);
            if (c->is_residual && (op = add_op(p, OP_DUPUP, in, out, "decoder.up_blocks.%d", i))) {
                op->ft = temporal ? 2 : 1;
                op->fs = 2;
            }
        }
        if (p->n > 0)
            snprintf(p->ops[p->n - 1].dbg, sizeof op->dbg, "up_blocks.%d", i);
    }
    op = add_op(p, OP_HEAD, dims[L], c->out_channels, "decoder");
    if (!op)
        return wan_err(err, WAN_ERR_UNSUPPORTED, "VAE decoder config too large (%d levels, %d resnets)", L,
                       c->num_res_blocks);
    snprintf(op->dbg, sizeof op->dbg, "conv_out");
    return WAN_OK;
}

/* WanEncoder3d (vae.md 5.4, 6.2). */
static wan_status plan_encoder(const wan_vae_config *c, vae_plan *p, wan_error *err)
{
    memset(p, 0, sizeof *p);
    const int L = c->n_dim_mult, base = c->base_dim;
    add_op(p, OP_CONV_IN, c->in_channels, base, "encoder");
    int flat = 0, in = base, out = base;
    for (int i = 0; i < L; i++, in = out) {
        out = base * c->dim_mult[i];
        int down = i != L - 1, temporal = down && c->temporal_downsample[i];
        vae_op *op;
        if (c->is_residual) {
            add_op(p, OP_SAVE, in, in, "encoder.down_blocks.%d", i);
            for (int j = 0, cur = in; j < c->num_res_blocks; j++, cur = out)
                add_op(p, OP_RES, cur, out, "encoder.down_blocks.%d.resnets.%d", i, j);
            if (down && (op = add_op(p, OP_DOWN, out, out, "encoder.down_blocks.%d.downsampler", i)))
                set_temporal(p, op, temporal);
            if ((op = add_op(p, OP_AVGDOWN, in, out, "encoder.down_blocks.%d", i))) {
                op->ft = temporal ? 2 : 1;
                op->fs = down ? 2 : 1;
            }
        } else {
            for (int j = 0, cur = in; j < c->num_res_blocks; j++, cur = out)
                add_op(p, OP_RES, cur, out, "encoder.down_blocks.%d", flat++);
            if (down && (op = add_op(p, OP_DOWN, out, out, "encoder.down_blocks.%d", flat++)))
                set_temporal(p, op, temporal);
        }
    }
    add_mid(p, "encoder", out);
    if (!add_op(p, OP_HEAD, out, 2 * c->z_dim, "encoder"))
        return wan_err(err, WAN_ERR_UNSUPPORTED, "VAE encoder config too large (%d levels, %d resnets)", L,
                       c->num_res_blocks);
    return WAN_OK;
}

/* ---- run state -------------------------------------------------------------------------------- */

typedef struct vbuf {
    float *d;
    size_t cap; /* floats */
} vbuf;

/* The cache of one causal conv: up to 2 frames of its input (vae.md 4.2). */
typedef struct vae_slot {
    vbuf f;
    int m;      /* frames held */
    int state;  /* upsample3d / downsample3d: 0 first call, 1 after it ("Rep"), 2 cached data */
} vae_slot;

/* An activation: frame-major [n][c][h][w] in one of the three work buffers. */
typedef struct vae_act {
    int c, n, h, w;
    int bi;
} vae_act;

typedef struct vae_run {
    const wan_st_set *ws;
    const vae_plan *plan;
    vae_slot *slots;
    vbuf bufs[3], save, scratch, w, b, w2, b2, gamma, ss, attn;
    vae_act saved;
    int dry;        /* check tensors only */
    int nt;         /* threads for large work */
    wan_vae_debug_fn dbg;
    void *dbg_user;
    int chunk;
    wan_error *err;
} vae_run;

static float *ensure(vae_run *r, vbuf *v, size_t n)
{
    if (n <= v->cap)
        return v->d;
    wan_free(v->d);
    v->d = wan_malloc((n ? n : 1) * sizeof(float));
    v->cap = v->d ? n : 0;
    if (!v->d)
        wan_err(r->err, WAN_ERR_NOMEM, "VAE: out of memory allocating %zu MiB of activations",
                n * sizeof(float) >> 20);
    return v->d;
}

static void run_free(vae_run *r)
{
    for (int i = 0; r->slots && i < r->plan->n_slots; i++)
        wan_free(r->slots[i].f.d);
    wan_free(r->slots);
    vbuf *all[] = { &r->bufs[0], &r->bufs[1], &r->bufs[2], &r->save, &r->scratch, &r->w, &r->b,
                    &r->w2, &r->b2, &r->gamma, &r->ss, &r->attn };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        wan_free(all[i]->d);
}

static wan_status run_init(vae_run *r, const wan_st_set *ws, const vae_plan *plan, wan_error *err)
{
    memset(r, 0, sizeof *r);
    r->ws = ws, r->plan = plan, r->err = err;
    r->slots = wan_calloc((size_t)(plan->n_slots ? plan->n_slots : 1), sizeof *r->slots);
    if (!r->slots)
        return wan_err(err, WAN_ERR_NOMEM, "VAE: out of memory");
    return WAN_OK;
}

static void run_reset_cache(vae_run *r)
{
    for (int i = 0; i < r->plan->n_slots; i++)
        r->slots[i].m = r->slots[i].state = 0;
}

static inline float *act_data(vae_run *r, const vae_act *a)
{
    return r->bufs[a->bi].d;
}

static inline size_t act_fsize(const vae_act *a)
{
    return (size_t)a->c * a->h * a->w;
}

/* ---- weights ---------------------------------------------------------------------------------- */

static wan_status get_tensor(vae_run *r, const char *prefix, const char *suffix, int ndim, const int64_t *shape,
                             wan_tensor *t)
{
    char name[128];
    snprintf(name, sizeof name, "%s%s%s", prefix, prefix[0] ? "." : "", suffix);
    return wan_st_set_get(r->ws, name, ndim, shape, t, r->err);
}

static void tensor_to_f32(const wan_tensor *t, size_t n, float *dst)
{
    wan_cpu_to_f32(t->data, t->dtype, dst, (int64_t)n);
}

/* `<prefix>.<stem>.weight` [cout, cin, kt, kh, kw] (ndim 5) or [cout, cin, kh, kw] (ndim 4, kt = 1) and its
 * bias, repacked as [kt][cout][cin*kh*kw] into w / b. */
static wan_status load_conv(vae_run *r, vbuf *w, vbuf *b, const char *prefix, const char *stem, int cout,
                            int cin, int kt, int k, int ndim)
{
    int64_t shape5[5] = { cout, cin, kt, k, k }, shape4[4] = { cout, cin, k, k };
    char suffix[48];
    wan_tensor tw, tb;
    snprintf(suffix, sizeof suffix, "%s.weight", stem);
    wan_status rc = get_tensor(r, prefix, suffix, ndim, ndim == 5 ? shape5 : shape4, &tw);
    snprintf(suffix, sizeof suffix, "%s.bias", stem);
    if (rc == WAN_OK)
        rc = get_tensor(r, prefix, suffix, 1, (int64_t[]){ cout }, &tb);
    if (rc != WAN_OK || r->dry)
        return rc;
    const size_t kk = (size_t)k * k, per_o = (size_t)cin * kt * kk, n = (size_t)cout * per_o;
    float *wd = ensure(r, w, n), *bd = ensure(r, b, (size_t)cout);
    if (!wd || !bd)
        return r->err->code;
    tensor_to_f32(&tb, (size_t)cout, bd);
    const uint8_t *src = tw.data;
    const size_t esz = wan_dtype_size(tw.dtype);
#pragma omp parallel for schedule(static) if (n >= WAN_PAR_MIN)
    for (int o = 0; o < cout; o++)
        for (int i = 0; i < cin; i++)
            for (int a = 0; a < kt; a++)
                wan_cpu_to_f32(src + ((size_t)o * per_o + ((size_t)i * kt + a) * kk) * esz, tw.dtype,
                               wd + ((size_t)a * cout + o) * cin * kk + (size_t)i * kk, (int64_t)kk);
    return WAN_OK;
}

/* `<prefix>.<stem>.gamma` [c, 1, 1, 1] (ndim 4) or [c, 1, 1] (ndim 3) into r->gamma. */
static wan_status load_gamma(vae_run *r, const char *prefix, const char *stem, int c, int ndim)
{
    char suffix[48];
    snprintf(suffix, sizeof suffix, "%s.gamma", stem);
    wan_tensor t;
    wan_status rc = get_tensor(r, prefix, suffix, ndim, (int64_t[]){ c, 1, 1, 1 }, &t);
    if (rc != WAN_OK || r->dry)
        return rc;
    float *g = ensure(r, &r->gamma, (size_t)c);
    if (!g)
        return r->err->code;
    tensor_to_f32(&t, (size_t)c, g);
    return WAN_OK;
}

/* ---- building blocks -------------------------------------------------------------------------- */

/* Below this many multiply-adds a convolution runs on one thread: a fork/join costs more. */
#define SMALL_MACS 1e8
/* im2col floats per thread and row block (4 MiB): B panels of a few hundred columns or more. */
#define SCRATCH_PER_THREAD ((size_t)1 << 20)

static wan_status conv_run(vae_run *r, const wan_conv_geom *g, int ntaps, const float *w, const float *b,
                           const float *const *taps, float *out)
{
    double macs = (double)g->cout * g->cin * g->kh * g->kw * g->ho * g->wo * ntaps;
    int nt = macs < SMALL_MACS ? 1 : r->nt;
    size_t need = wan_conv_scratch_min(g);
    if (need && !ensure(r, &r->scratch, (size_t)nt * (need > SCRATCH_PER_THREAD ? need : SCRATCH_PER_THREAD)))
        return r->err->code;
    wan_conv_taps(g, ntaps, w, b, taps, out, r->scratch.d, r->scratch.cap, nt);
    return WAN_OK;
}

/* RMS norm (+ SiLU) of every frame of x into y (may be x). */
static wan_status norm_frames(vae_run *r, const vae_act *x, float *src, float *dst, int silu)
{
    size_t hw = (size_t)x->h * x->w, fs = act_fsize(x);
    if (!ensure(r, &r->ss, hw))
        return r->err->code;
    for (int t = 0; t < x->n; t++)
        wan_rms_norm_silu(src + t * fs, dst + t * fs, x->c, hw, r->gamma.d, silu, r->ss.d);
    return WAN_OK;
}

/* Frame e of (cache ++ chunk): e < 0 is a zero frame (NULL). */
static const float *ext_frame(const vae_slot *s, int m, const float *x, size_t fs, int e)
{
    if (e < 0)
        return NULL;
    return e < m ? s->f.d + (size_t)e * fs : x + (size_t)(e - m) * fs;
}

/* New cache after a chunk of n frames x: the last two frames of (cache ++ x). */
static wan_status slot_update(vae_run *r, vae_slot *s, const float *x, int n, size_t fs)
{
    if (s->f.cap < 2 * fs) {
        if (s->m == 1 && n == 1) { /* keep the one cached frame while growing */
            float *old = s->f.d;
            s->f.d = NULL, s->f.cap = 0;
            if (!ensure(r, &s->f, 2 * fs)) {
                wan_free(old);
                return r->err->code;
            }
            memcpy(s->f.d, old, fs * sizeof(float));
            wan_free(old);
        } else if (!ensure(r, &s->f, 2 * fs)) {
            return r->err->code;
        }
    }
    if (n >= 2) {
        memcpy(s->f.d, x + (size_t)(n - 2) * fs, 2 * fs * sizeof(float));
        s->m = 2;
    } else if (s->m >= 1) {
        if (s->m == 2)
            memmove(s->f.d, s->f.d + fs, fs * sizeof(float));
        memcpy(s->f.d + fs, x, fs * sizeof(float));
        s->m = 2;
    } else {
        memcpy(s->f.d, x, fs * sizeof(float));
        s->m = 1;
    }
    return WAN_OK;
}

/* Causal 3x3x3 conv `<prefix>.<stem>` of the chunk x ([n][cin][h][w]) with cache slot s into y
 * ([n][cout][h][w]); the cache then holds the last two input frames (vae.md 2.1, 4.2). */
static wan_status causal_conv(vae_run *r, const char *prefix, const char *stem, int cin, int cout, vae_slot *s,
                              const float *x, int n, int h, int w, float *y)
{
    wan_status rc = load_conv(r, &r->w, &r->b, prefix, stem, cout, cin, 3, 3, 5);
    if (rc != WAN_OK || r->dry)
        return rc;
    wan_conv_geom g = wan_conv_geom_make(cin, cout, h, w, 3, 1, 1, 0);
    size_t fs = (size_t)cin * h * w, os = (size_t)cout * h * w;
    for (int t = 0; t < n && rc == WAN_OK; t++) {
        const float *taps[3];
        for (int a = 0; a < 3; a++)
            taps[a] = ext_frame(s, s->m, x, fs, t + a - 2 + s->m);
        rc = conv_run(r, &g, 3, r->w.d, r->b.d, taps, y + t * os);
    }
    return rc == WAN_OK ? slot_update(r, s, x, n, fs) : rc;
}

/* 1x1(x1) conv of every frame: `<prefix>.<stem>` [cout, cin, 1, 1, 1] (ndim 5) or [cout, cin, 1, 1]. */
static wan_status pointwise(vae_run *r, const char *prefix, const char *stem, int cin, int cout, int ndim,
                            const float *x, int n, int h, int w, float *y)
{
    wan_status rc = load_conv(r, &r->w, &r->b, prefix, stem, cout, cin, 1, 1, ndim);
    if (rc != WAN_OK || r->dry)
        return rc;
    wan_conv_geom g = wan_conv_geom_make(cin, cout, h, w, 1, 1, 1, 0);
    size_t fs = (size_t)cin * h * w, os = (size_t)cout * h * w;
    for (int t = 0; t < n && rc == WAN_OK; t++) {
        const float *tap = x + t * fs;
        rc = conv_run(r, &g, 1, r->w.d, r->b.d, &tap, y + t * os);
    }
    return rc;
}

static void swap_to(vae_act *cur, int bi, int c, int n, int h, int w)
{
    cur->bi = bi, cur->c = c, cur->n = n, cur->h = h, cur->w = w;
}

/* WanResidualBlock (vae.md 2.4). */
static wan_status op_res(vae_run *r, const vae_op *op, vae_act *cur)
{
    const int A = (cur->bi + 1) % 3, B = (cur->bi + 2) % 3, n = cur->n, h = cur->h, w = cur->w;
    size_t in_sz = (size_t)n * op->cin * h * w, out_sz = (size_t)n * op->cout * h * w;
    vae_slot *s = &r->slots[op->slot];
    wan_status rc = load_gamma(r, op->name, "norm1", op->cin, 4);
    if (rc == WAN_OK && !r->dry && (!ensure(r, &r->bufs[A], in_sz > out_sz ? in_sz : out_sz) ||
                                    !ensure(r, &r->bufs[B], out_sz)))
        rc = r->err->code;
    float *x = act_data(r, cur), *a = r->bufs[A].d, *b = r->bufs[B].d;
    if (rc == WAN_OK && !r->dry)
        rc = norm_frames(r, cur, x, a, 1);
    if (rc == WAN_OK)
        rc = causal_conv(r, op->name, "conv1", op->cin, op->cout, s, a, n, h, w, b);
    vae_act mid = { .c = op->cout, .n = n, .h = h, .w = w };
    if (rc == WAN_OK)
        rc = load_gamma(r, op->name, "norm2", op->cout, 4);
    if (rc == WAN_OK && !r->dry)
        rc = norm_frames(r, &mid, b, b, 1);
    if (rc == WAN_OK)
        rc = causal_conv(r, op->name, "conv2", op->cout, op->cout, s + 1, b, n, h, w, a);
    if (rc != WAN_OK)
        return rc;
    if (op->cin != op->cout) {
        rc = pointwise(r, op->name, "conv_shortcut", op->cin, op->cout, 5, x, n, h, w, b);
        if (rc != WAN_OK || r->dry)
            return rc;
#pragma omp parallel for schedule(static) if (out_sz >= WAN_PAR_MIN)
        for (size_t i = 0; i < out_sz; i++)
            a[i] += b[i];
        swap_to(cur, A, op->cout, n, h, w);
    } else if (!r->dry) {
#pragma omp parallel for schedule(static) if (out_sz >= WAN_PAR_MIN)
        for (size_t i = 0; i < out_sz; i++)
            x[i] = a[i] + x[i];
    }
    return WAN_OK;
}

/* WanAttentionBlock (vae.md 2.5), frame by frame, in place. */
static wan_status op_attn(vae_run *r, const vae_op *op, vae_act *cur)
{
    const int c = op->cin, npix = cur->h * cur->w;
    const int A = (cur->bi + 1) % 3;
    wan_status rc = load_gamma(r, op->name, "norm", c, 3);
    if (rc == WAN_OK)
        rc = load_conv(r, &r->w, &r->b, op->name, "to_qkv", 3 * c, c, 1, 1, 4);
    if (rc == WAN_OK)
        rc = load_conv(r, &r->w2, &r->b2, op->name, "proj", c, c, 1, 1, 4);
    if (rc != WAN_OK || r->dry)
        return rc;
    int rows = (int)(((size_t)1 << 22) / (size_t)npix);
    rows = rows < 1 ? 1 : rows > npix ? npix : rows;
    size_t fs = (size_t)c * npix;
    float *x = act_data(r, cur);
    int nt = (double)c * npix * npix < SMALL_MACS ? 1 : r->nt;
    if (!ensure(r, &r->attn, 4 * fs + (size_t)nt * rows * npix) || !ensure(r, &r->bufs[A], fs))
        return r->err->code;
    float *qkv = r->attn.d, *o = qkv + 3 * fs, *s = o + fs, *y = r->bufs[A].d;
    vae_act one = { .c = c, .n = 1, .h = cur->h, .w = cur->w };
    wan_conv_geom gq = wan_conv_geom_make(c, 3 * c, cur->h, cur->w, 1, 1, 1, 0);
    wan_conv_geom gp = wan_conv_geom_make(c, c, cur->h, cur->w, 1, 1, 1, 0);
    for (int t = 0; t < cur->n && rc == WAN_OK; t++) {
        float *xt = x + t * fs;
        rc = norm_frames(r, &one, xt, y, 0);
        const float *tap = y;
        if (rc == WAN_OK)
            rc = conv_run(r, &gq, 1, r->w.d, r->b.d, &tap, qkv);
        if (rc != WAN_OK)
            break;
        wan_attention_frame(qkv, o, c, npix, s, rows, nt);
        tap = o;
        rc = conv_run(r, &gp, 1, r->w2.d, r->b2.d, &tap, y);
        for (size_t i = 0; i < fs; i++)
            xt[i] = y[i] + xt[i];
    }
    return rc;
}

/* upsample2d / upsample3d (vae.md 2.6, 2.7): [time_conv, frames doubled,] nearest x2, conv2d 3x3. */
static wan_status op_up(vae_run *r, const vae_op *op, vae_act *cur)
{
    const int A = (cur->bi + 1) % 3, B = (cur->bi + 2) % 3, c = op->cin, h = cur->h, w = cur->w;
    vae_act src = *cur;
    wan_status rc = WAN_OK;
    vae_slot *s = op->temporal ? &r->slots[op->slot] : NULL;
    if (s && (s->state > 0 || r->dry)) {
        /* time_conv C -> 2C, causal over (cache ++ chunk); the first call after "Rep" sees zeros only */
        rc = load_conv(r, &r->w, &r->b, op->name, "time_conv", 2 * c, c, 3, 1, 5);
        size_t fs = (size_t)c * h * w;
        if (rc == WAN_OK && !r->dry && !ensure(r, &r->bufs[A], 2 * fs * cur->n))
            rc = r->err->code;
        if (rc != WAN_OK)
            return rc;
        if (!r->dry) {
            wan_conv_geom g = wan_conv_geom_make(c, 2 * c, h, w, 1, 1, 1, 0);
            const float *x = act_data(r, cur);
            int m = s->state == 1 ? 0 : s->m;
            for (int t = 0; t < cur->n && rc == WAN_OK; t++) {
                const float *taps[3];
                for (int a = 0; a < 3; a++)
                    taps[a] = ext_frame(s, m, x, fs, t + a - 2 + m);
                rc = conv_run(r, &g, 3, r->w.d, r->b.d, taps, r->bufs[A].d + 2 * fs * t);
            }
            if (rc == WAN_OK && s->state == 1 && cur->n == 1) { /* cache = (zero frame, x) */
                s->m = 0;
                rc = slot_update(r, s, x, 1, fs);
                if (rc == WAN_OK) {
                    memcpy(s->f.d + fs, s->f.d, fs * sizeof(float));
                    memset(s->f.d, 0, fs * sizeof(float));
                    s->m = 2;
                }
            } else if (rc == WAN_OK) {
                rc = slot_update(r, s, x, cur->n, fs);
            }
            s->state = 2;
            swap_to(&src, A, c, 2 * cur->n, h, w);
        }
    } else if (s) {
        s->state = 1; /* first chunk: no time_conv, no doubling */
    }
    if (rc == WAN_OK)
        rc = load_conv(r, &r->w, &r->b, op->name, "resample.1", op->cout, c, 1, 3, 4);
    if (rc != WAN_OK || r->dry)
        return rc;
    int dst = src.bi == A ? B : A;
    size_t os = (size_t)op->cout * 4 * h * w;
    if (!ensure(r, &r->bufs[dst], os * src.n))
        return r->err->code;
    wan_conv_geom g = wan_conv_geom_make(c, op->cout, 2 * h, 2 * w, 3, 1, 1, 1);
    const float *x = act_data(r, &src);
    for (int t = 0; t < src.n && rc == WAN_OK; t++) {
        const float *tap = x + (size_t)t * act_fsize(&src);
        rc = conv_run(r, &g, 1, r->w.d, r->b.d, &tap, r->bufs[dst].d + os * t);
    }
    swap_to(cur, dst, op->cout, src.n, 2 * h, 2 * w);
    return rc;
}

/* downsample2d / downsample3d (vae.md 2.6, 2.7, 6.3): pad right/bottom, conv2d 3x3 stride 2, then for 3d
 * the stride-2 time_conv over (last cached frame ++ chunk); the first chunk passes through. */
static wan_status op_down(vae_run *r, const vae_op *op, vae_act *cur)
{
    const int A = (cur->bi + 1) % 3, B = (cur->bi + 2) % 3, c = op->cin;
    wan_status rc = load_conv(r, &r->w, &r->b, op->name, "resample.1", c, c, 1, 3, 4);
    if (rc == WAN_OK && op->temporal && r->dry)
        rc = load_conv(r, &r->w, &r->b, op->name, "time_conv", c, c, 3, 1, 5);
    if (rc != WAN_OK || r->dry)
        return rc;
    wan_conv_geom g = wan_conv_geom_make(c, c, cur->h, cur->w, 3, 2, 0, 0);
    size_t fs = (size_t)c * g.ho * g.wo;
    if (!ensure(r, &r->bufs[A], fs * cur->n))
        return r->err->code;
    const float *x = act_data(r, cur);
    for (int t = 0; t < cur->n && rc == WAN_OK; t++) {
        const float *tap = x + (size_t)t * act_fsize(cur);
        rc = conv_run(r, &g, 1, r->w.d, r->b.d, &tap, r->bufs[A].d + fs * t);
    }
    swap_to(cur, A, c, cur->n, g.ho, g.wo);
    vae_slot *s = op->temporal ? &r->slots[op->slot] : NULL;
    if (rc != WAN_OK || !s)
        return rc;
    const float *y = r->bufs[A].d;
    if (s->state == 0) {
        s->state = 2, s->m = 0;
        return slot_update(r, s, y + (size_t)(cur->n - 1) * fs, 1, fs);
    }
    int n_out = (cur->n + 1 - 3) / 2 + 1;
    WAN_ASSERT(cur->n + 1 >= 3, r->err);
    rc = load_conv(r, &r->w, &r->b, op->name, "time_conv", c, c, 3, 1, 5);
    if (rc == WAN_OK && !ensure(r, &r->bufs[B], fs * n_out))
        rc = r->err->code;
    wan_conv_geom gt = wan_conv_geom_make(c, c, g.ho, g.wo, 1, 1, 1, 0);
    for (int k = 0; k < n_out && rc == WAN_OK; k++) {
        const float *taps[3];
        for (int a = 0; a < 3; a++)
            taps[a] = ext_frame(s, 1, y, fs, 2 * k + a);
        rc = conv_run(r, &gt, 3, r->w.d, r->b.d, taps, r->bufs[B].d + fs * k);
    }
    if (rc == WAN_OK) { /* keep the chunk's last frame */
        s->m = 0;
        rc = slot_update(r, s, y + (size_t)(cur->n - 1) * fs, 1, fs);
    }
    swap_to(cur, B, c, n_out, g.ho, g.wo);
    return rc;
}

static wan_status op_save(vae_run *r, vae_act *cur)
{
    if (r->dry)
        return WAN_OK;
    size_t n = act_fsize(cur) * cur->n;
    if (!ensure(r, &r->save, n))
        return r->err->code;
    memcpy(r->save.d, act_data(r, cur), n * sizeof(float));
    r->saved = *cur;
    return WAN_OK;
}

/* cur += DupUp3D(saved) (vae.md 2.8); the first chunk drops the first ft-1 frames. */
static wan_status op_dupup(vae_run *r, const vae_op *op, vae_act *cur, int first)
{
    if (r->dry)
        return WAN_OK;
    const vae_act *in = &r->saved;
    const int ft = op->ft, fs = op->fs, co = op->cout, f3 = ft * fs * fs;
    const int rep = co * f3 / op->cin, trim = first ? ft - 1 : 0;
    WAN_ASSERT(cur->n == in->n * ft - trim && cur->h == in->h * fs && cur->w == in->w * fs && cur->c == co,
               r->err);
    float *y = act_data(r, cur);
    const float *x = r->save.d;
    const size_t ihw = (size_t)in->h * in->w;
#pragma omp parallel for schedule(static) if (act_fsize(cur) * cur->n >= WAN_PAR_MIN)
    for (int o = 0; o < co; o++)
        for (int t = trim; t < in->n * ft; t++) {
            int ti = t / ft, a = t % ft;
            float *yr = y + ((size_t)(t - trim) * co + o) * cur->h * cur->w;
            for (int yy = 0; yy < cur->h; yy++)
                for (int xx = 0; xx < cur->w; xx++) {
                    int j = o * f3 + a * fs * fs + (yy % fs) * fs + xx % fs;
                    yr[(size_t)yy * cur->w + xx] +=
                        x[((size_t)ti * in->c + j / rep) * ihw + (size_t)(yy / fs) * in->w + xx / fs];
                }
        }
    return WAN_OK;
}

/* cur += AvgDown3D(saved) (vae.md 2.9): zero frames in front up to a multiple of ft, mean of groups. */
static wan_status op_avgdown(vae_run *r, const vae_op *op, vae_act *cur)
{
    if (r->dry)
        return WAN_OK;
    const vae_act *in = &r->saved;
    const int ft = op->ft, fs = op->fs, co = op->cout, f3 = ft * fs * fs;
    const int g = op->cin * f3 / co, pad = (ft - in->n % ft) % ft;
    WAN_ASSERT(cur->n == (in->n + pad) / ft && cur->h == in->h / fs && cur->w == in->w / fs && cur->c == co,
               r->err);
    float *y = act_data(r, cur);
    const float *x = r->save.d;
    const size_t ihw = (size_t)in->h * in->w;
#pragma omp parallel for schedule(static) if (act_fsize(cur) * cur->n >= WAN_PAR_MIN)
    for (int o = 0; o < co; o++)
        for (int t = 0; t < cur->n; t++) {
            float *yr = y + ((size_t)t * co + o) * cur->h * cur->w;
            for (int yy = 0; yy < cur->h; yy++)
                for (int xx = 0; xx < cur->w; xx++) {
                    float sum = 0.0f;
                    for (int j = o * g; j < o * g + g; j++) {
                        int ci = j / f3, rest = j % f3, a = rest / (fs * fs), b = rest / fs % fs, d = rest % fs;
                        int ti = ft * t + a - pad;
                        if (ti >= 0)
                            sum += x[((size_t)ti * in->c + ci) * ihw + (size_t)(fs * yy + b) * in->w + fs * xx + d];
                    }
                    yr[(size_t)yy * cur->w + xx] += sum / (float)g;
                }
        }
    return WAN_OK;
}

/* conv_in, or the head: RMS norm, SiLU, conv_out. */
static wan_status op_conv(vae_run *r, const vae_op *op, vae_act *cur, int head)
{
    const int A = (cur->bi + 1) % 3, B = (cur->bi + 2) % 3;
    size_t in_sz = act_fsize(cur) * cur->n, out_sz = (size_t)op->cout * cur->h * cur->w * cur->n;
    wan_status rc = head ? load_gamma(r, op->name, "norm_out", op->cin, 4) : WAN_OK;
    if (rc == WAN_OK && !r->dry && (!ensure(r, &r->bufs[A], head ? in_sz : out_sz) ||
                                    (head && !ensure(r, &r->bufs[B], out_sz))))
        rc = r->err->code;
    if (rc == WAN_OK && head && !r->dry)
        rc = norm_frames(r, cur, act_data(r, cur), r->bufs[A].d, 1);
    const float *x = head ? r->bufs[A].d : act_data(r, cur);
    int dst = head ? B : A;
    if (rc == WAN_OK)
        rc = causal_conv(r, op->name, head ? "conv_out" : "conv_in", op->cin, op->cout, &r->slots[op->slot], x,
                         cur->n, cur->h, cur->w, r->bufs[dst].d);
    if (rc == WAN_OK && !r->dry)
        swap_to(cur, dst, op->cout, cur->n, cur->h, cur->w);
    return rc;
}

/* Runs the whole plan on the chunk in cur (dry: checks every tensor's name and shape only). */
static wan_status run_plan(vae_run *r, vae_act *cur, int first)
{
    for (int i = 0; i < r->plan->n; i++) {
        const vae_op *op = &r->plan->ops[i];
        wan_status rc;
        switch (op->kind) {
        case OP_CONV_IN: rc = op_conv(r, op, cur, 0); break;
        case OP_HEAD: rc = op_conv(r, op, cur, 1); break;
        case OP_RES: rc = op_res(r, op, cur); break;
        case OP_ATTN: rc = op_attn(r, op, cur); break;
        case OP_UP: rc = op_up(r, op, cur); break;
        case OP_DOWN: rc = op_down(r, op, cur); break;
        case OP_SAVE: rc = op_save(r, cur); break;
        case OP_DUPUP: rc = op_dupup(r, op, cur, first); break;
        case OP_AVGDOWN: rc = op_avgdown(r, op, cur); break;
        default: rc = wan_err(r->err, WAN_ERR_INTERNAL, "VAE: unknown op %d", (int)op->kind);
        }
        if (rc != WAN_OK)
            return rc;
        if (op->dbg[0] && r->dbg && !r->dry)
            r->dbg(op->dbg, r->chunk, act_data(r, cur), cur->c, cur->n, cur->h, cur->w, r->dbg_user);
    }
    return WAN_OK;
}

/* ---- decoding --------------------------------------------------------------------------------- */

/* Where finished pixels go: value (channel c, row y, column x) of frame f at
 * base[f*fs + c*cs + y*row + x]. */
typedef struct vae_sink {
    float *base;
    size_t fs, cs, row;
} vae_sink;

static inline float clampf(float v)
{
    return v < -1.0f ? -1.0f : v > 1.0f ? 1.0f : v;
}

/* Stores a decoder-output (patchified) value at patch position (y, x) of channel cp: unpatchify
 * (vae.md 2.10: cp = c*p*p + col_offset*p + row_offset) and clamp. */
static inline void sink_put(const vae_sink *s, int p, int f, int cp, int y, int x, float v)
{
    int c = cp / (p * p), r = cp % (p * p) / p, q = cp % p;
    s->base[(size_t)f * s->fs + (size_t)c * s->cs + (size_t)(y * p + q) * s->row + (size_t)x * p + r] = clampf(v);
}

typedef struct vae_dec {
    const wan_vae_config *cfg;
    vae_run run;
    int up, p, oc;           /* decoder spatial factor, patch size, decoder output channels */
    int fpc;                 /* frames per latent frame after the first                     */
    const float *z;          /* this batch item: [zc][T][h][w]                               */
    int T, h, w;
    const wan_vae_params *prm;
    int step, n_steps;
} vae_dec;

static wan_status progress(vae_dec *d)
{
    d->step++;
    if (!d->prm->progress)
        return WAN_OK;
    wan_progress pr = { .stage = WAN_STAGE_DECODE, .step = d->step, .n_steps = d->n_steps, .expert = -1,
                        .eta_s = -1.0 };
    if (d->prm->progress(&pr, d->prm->progress_user))
        return wan_err(d->run.err, WAN_ERR_CANCELLED, "VAE: cancelled by the progress callback");
    return WAN_OK;
}

/* Decodes latent frame k of the region rows [y0, y0+lh) x cols [x0, x0+lw) into d->run's cur. */
static wan_status decode_chunk(vae_dec *d, int k, int y0, int x0, int lh, int lw, vae_act *cur)
{
    vae_run *r = &d->run;
    const int zc = d->cfg->z_dim;
    size_t n = (size_t)zc * lh * lw;
    if (!ensure(r, &r->bufs[0], n) || !ensure(r, &r->bufs[1], n))
        return r->err->code;
    for (int c = 0; c < zc; c++)
        for (int y = 0; y < lh; y++)
            memcpy(r->bufs[0].d + ((size_t)c * lh + y) * lw,
                   d->z + (((size_t)c * d->T + k) * d->h + y0 + y) * d->w + x0, (size_t)lw * sizeof(float));
    wan_status rc = pointwise(r, "", "post_quant_conv", zc, zc, 5, r->bufs[0].d, 1, lh, lw, r->bufs[1].d);
    swap_to(cur, 1, zc, 1, lh, lw);
    r->chunk = k;
    if (rc == WAN_OK)
        rc = run_plan(r, cur, k == 0);
    return rc;
}

static int first_frame(const vae_dec *d, int k)
{
    return k == 0 ? 0 : 1 + d->fpc * (k - 1);
}

/* Untiled: every chunk's frames go out through on_frame as soon as they are made. */
static wan_status decode_stream(vae_dec *d, int batch, wan_vae_frame_fn on_frame, void *user)
{
    vae_run *r = &d->run;
    const int H = d->h * d->up * d->p, W = d->w * d->up * d->p;
    vbuf frame = { 0 };
    wan_status rc = ensure(r, &frame, (size_t)3 * H * W) ? WAN_OK : r->err->code;
    run_reset_cache(r);
    for (int k = 0; k < d->T && rc == WAN_OK; k++) {
        vae_act cur;
        rc = decode_chunk(d, k, 0, 0, d->h, d->w, &cur);
        for (int f = 0; f < cur.n && rc == WAN_OK; f++) {
            const float *src = act_data(r, &cur) + (size_t)f * act_fsize(&cur);
            vae_sink s = { .base = frame.d, .cs = (size_t)H * W, .row = (size_t)W };
            for (int c = 0; c < cur.c; c++)
                for (int y = 0; y < cur.h; y++)
                    for (int x = 0; x < cur.w; x++)
                        sink_put(&s, d->p, 0, c, y, x, src[((size_t)c * cur.h + y) * cur.w + x]);
            if (on_frame(batch, first_frame(d, k) + f, frame.d, H, W, user))
                rc = wan_err(r->err, WAN_ERR_CANCELLED, "VAE: cancelled by the frame callback");
        }
        if (rc == WAN_OK)
            rc = progress(d);
    }
    wan_free(frame.d);
    return rc;
}

/* Tiles in decoder-output (patchified) pixels, from enable_tiling's sample-pixel arguments (vae.md 7). */
typedef struct vae_tiling {
    int lt_h, lt_w, ls_h, ls_w; /* latent tile size and stride                   */
    int os_h, os_w;             /* output rows/columns kept per tile (the stride)  */
    int blend_h, blend_w;       /* output blend width                              */
    int out_h, out_w;           /* output size after the final crop                */
    int ni, nj;                 /* tile rows and columns                           */
} vae_tiling;

static int imin(int a, int b)
{
    return a < b ? a : b;
}

/* Per tile row (or column) i: output size, blend width with the previous one, offset in the output. */
typedef struct tile_axis {
    int *o, *e, *off;
} tile_axis;

static wan_status tile_axis_make(vae_run *r, int n, int latent, int lt, int ls, int os, int blend, int up,
                                 tile_axis *ax)
{
    ax->o = wan_calloc((size_t)3 * n, sizeof(int));
    if (!ax->o)
        return wan_err(r->err, WAN_ERR_NOMEM, "VAE: out of memory");
    ax->e = ax->o + n, ax->off = ax->o + 2 * n;
    for (int i = 0, off = 0; i < n; i++) {
        ax->o[i] = imin(lt, latent - i * ls) * up;
        ax->e[i] = i ? imin(imin(ax->o[i - 1], ax->o[i]), blend) : 0;
        ax->off[i] = off;
        off += imin(os, ax->o[i]);
    }
    return WAN_OK;
}

/* Blends, keeps the strips the next tiles need, and writes the kept part of one frame B [oc][oh][ow] of
 * tile (i, j); vprev/hprev hold the strips of the tile above / to the left, vcur/hcur receive B's. */
typedef struct tile_ctx {
    const vae_tiling *tl;
    tile_axis rows, cols;
    size_t *colsum;    /* output columns of the tiles left of column j */
    float *vprev, *vcur, *hprev, *hcur;
    int F, oc, p;
    const vae_sink *out;
} tile_ctx;

static void tile_frame(tile_ctx *t, int i, int j, int fi, float *B)
{
    const int oc = t->oc, oh = t->rows.o[i], ow = t->cols.o[j];
    const size_t plane = (size_t)oh * ow;
    if (i > 0) {
        const int e = t->rows.e[i];
        const float *A = t->vprev + (size_t)oc * t->F * e * t->colsum[j] + (size_t)fi * oc * e * ow;
        for (int c = 0; c < oc; c++)
            for (int y = 0; y < e; y++) {
                float wa = (float)(1.0 - (double)y / e), wb = (float)((double)y / e);
                const float *ar = A + ((size_t)c * e + y) * ow;
                float *br = B + c * plane + (size_t)y * ow;
                for (int x = 0; x < ow; x++)
                    br[x] = ar[x] * wa + br[x] * wb;
            }
    }
    if (j > 0) {
        const int e = t->cols.e[j];
        const float *A = t->hprev + (size_t)fi * oc * oh * e;
        for (int c = 0; c < oc; c++)
            for (int y = 0; y < oh; y++) {
                const float *ar = A + ((size_t)c * oh + y) * e;
                float *br = B + c * plane + (size_t)y * ow;
                for (int x = 0; x < e; x++)
                    br[x] = ar[x] * (float)(1.0 - (double)x / e) + br[x] * (float)((double)x / e);
            }
    }
    if (i + 1 < t->tl->ni) {
        const int e = t->rows.e[i + 1];
        float *V = t->vcur + (size_t)oc * t->F * e * t->colsum[j] + (size_t)fi * oc * e * ow;
        for (int c = 0; c < oc; c++)
            memcpy(V + (size_t)c * e * ow, B + c * plane + (size_t)(oh - e) * ow, (size_t)e * ow * sizeof(float));
    }
    if (j + 1 < t->tl->nj) {
        const int e = t->cols.e[j + 1];
        float *Hs = t->hcur + (size_t)fi * oc * oh * e;
        for (int c = 0; c < oc; c++)
            for (int y = 0; y < oh; y++)
                memcpy(Hs + ((size_t)c * oh + y) * e, B + c * plane + (size_t)y * ow + (ow - e), (size_t)e * sizeof(float));
    }
    const int kh = imin(t->tl->os_h, oh), kw = imin(t->tl->os_w, ow);
    for (int c = 0; c < oc; c++)
        for (int y = 0; y < kh; y++) {
            int gy = t->rows.off[i] + y;
            if (gy >= t->tl->out_h)
                break;
            for (int x = 0; x < kw; x++) {
                int gx = t->cols.off[j] + x;
                if (gx >= t->tl->out_w)
                    break;
                sink_put(t->out, t->p, fi, c, gy, gx, B[c * plane + (size_t)y * ow + x]);
            }
        }
}

/* Tile strip buffers: two rows of bottom strips and two right strips, for all frames. */
static wan_status tile_alloc(vae_dec *d, tile_ctx *t, vbuf *v)
{
    const vae_tiling *tl = t->tl;
    size_t vmax = 0, hmax = 0;
    t->colsum = wan_calloc((size_t)tl->nj, sizeof(size_t));
    if (!t->colsum)
        return wan_err(d->run.err, WAN_ERR_NOMEM, "VAE: out of memory");
    for (int j = 1; j < tl->nj; j++)
        t->colsum[j] = t->colsum[j - 1] + (size_t)t->cols.o[j - 1];
    for (int i = 1; i < tl->ni; i++) {
        size_t row = 0;
        for (int j = 0; j < tl->nj; j++)
            row += (size_t)t->oc * t->F * t->rows.e[i] * t->cols.o[j];
        vmax = row > vmax ? row : vmax;
    }
    for (int i = 0; i < tl->ni; i++)
        for (int j = 1; j < tl->nj; j++) {
            size_t n = (size_t)t->oc * t->F * t->rows.o[i] * t->cols.e[j];
            hmax = n > hmax ? n : hmax;
        }
    for (int k = 0; k < 4; k++)
        if (!ensure(&d->run, &v[k], k < 2 ? vmax : hmax))
            return d->run.err->code;
    t->vprev = v[0].d, t->vcur = v[1].d, t->hprev = v[2].d, t->hcur = v[3].d;
    return WAN_OK;
}

static wan_status decode_tiled(vae_dec *d, const vae_tiling *tl, const vae_sink *out)
{
    vae_run *r = &d->run;
    tile_ctx t = { .tl = tl, .F = 1 + d->fpc * (d->T - 1), .oc = d->oc, .p = d->p, .out = out };
    vbuf strips[4] = { { 0 } };
    wan_status rc = tile_axis_make(r, tl->ni, d->h, tl->lt_h, tl->ls_h, tl->os_h, tl->blend_h, d->up, &t.rows);
    if (rc == WAN_OK)
        rc = tile_axis_make(r, tl->nj, d->w, tl->lt_w, tl->ls_w, tl->os_w, tl->blend_w, d->up, &t.cols);
    if (rc == WAN_OK)
        rc = tile_alloc(d, &t, strips);
    for (int i = 0; i < tl->ni && rc == WAN_OK; i++) {
        for (int j = 0; j < tl->nj && rc == WAN_OK; j++) {
            run_reset_cache(r);
            int y0 = i * tl->ls_h, x0 = j * tl->ls_w;
            for (int k = 0; k < d->T && rc == WAN_OK; k++) {
                vae_act cur;
                rc = decode_chunk(d, k, y0, x0, imin(tl->lt_h, d->h - y0), imin(tl->lt_w, d->w - x0), &cur);
                if (rc == WAN_OK && (cur.h != t.rows.o[i] || cur.w != t.cols.o[j] || cur.c != t.oc))
                    rc = wan_err(r->err, WAN_ERR_INTERNAL, "VAE: tile (%d, %d) decoded to %dx%d", i, j, cur.h, cur.w);
                for (int f = 0; f < cur.n && rc == WAN_OK; f++)
                    tile_frame(&t, i, j, first_frame(d, k) + f, act_data(r, &cur) + (size_t)f * act_fsize(&cur));
                if (rc == WAN_OK)
                    rc = progress(d);
            }
            float *sw = t.hprev;
            t.hprev = t.hcur, t.hcur = sw;
        }
        float *sw = t.vprev;
        t.vprev = t.vcur, t.vcur = sw;
    }
    for (int k = 0; k < 4; k++)
        wan_free(strips[k].d);
    wan_free(t.rows.o);
    wan_free(t.cols.o);
    wan_free(t.colsum);
    return rc;
}

/* ---- public entry points ---------------------------------------------------------------------- */

void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);

wan_vae_params wan_vae_default_params(void)
{
    wan_vae_params p = { .tile_sample_min_height = 256, .tile_sample_min_width = 256,
                         .tile_sample_stride_height = 192, .tile_sample_stride_width = 192 };
    return p;
}

/* Threads for one call: an OpenMP team of n (this thread's setting), each thread calling a single-threaded
 * sgemm on its own share, so OpenBLAS's own pool is set to 1 thread (process-wide); both restored after.
 * (OpenBLAS's pthread pool next to OpenMP regions spins against it: 2.7x the CPU time on 2 cores.) */
typedef struct vae_threads {
    int omp, blas;
} vae_threads;

static vae_threads threads_enter(vae_run *r, int n)
{
    vae_threads t = { omp_get_max_threads(), openblas_get_num_threads() };
    r->nt = n > 0 ? n : t.omp;
    omp_set_num_threads(r->nt);
    openblas_set_num_threads(1);
    return t;
}

static void threads_leave(vae_threads t)
{
    omp_set_num_threads(t.omp);
    openblas_set_num_threads(t.blas);
}

static wan_status vae_of(const wan_model_t *model, const wan_vae_config **cfg, const wan_st_set **ws,
                         wan_error *err)
{
    *cfg = model ? wan_model_vae_config(model) : NULL;
    *ws = model ? wan_model_weights(model, WAN_COMPONENT_VAE) : NULL;
    if (!*cfg || !*ws)
        return wan_err(err, model ? WAN_ERR_NOT_FOUND : WAN_ERR_INVALID_ARG, "VAE: %s",
                       model ? "the model has no VAE" : "model is NULL");
    if ((*cfg)->n_dim_mult < 2 || (*cfg)->n_dim_mult > 8)
        return wan_err(err, WAN_ERR_UNSUPPORTED, "VAE: %d levels are not supported", (*cfg)->n_dim_mult);
    return WAN_OK;
}

/* A 5-D F32 tensor with `channels` channels and every dimension >= 1. */
static wan_status check_input(const wan_host_tensor *t, const char *what, int channels, wan_error *err)
{
    if (!t || !t->data)
        return wan_err(err, WAN_ERR_INVALID_ARG, "VAE: %s is NULL or has no data", what);
    if (t->dtype != WAN_DTYPE_F32 || t->ndim != 5)
        return wan_err(err, WAN_ERR_INVALID_ARG, "VAE: %s must be a 5-D F32 tensor [B, C, T, H, W], got %d-D %s",
                       what, t->ndim, wan_dtype_name(t->dtype));
    for (int i = 0; i < 5; i++)
        if (t->shape[i] < 1 || t->shape[i] > (1 << 20))
            return wan_err(err, WAN_ERR_INVALID_ARG, "VAE: %s dimension %d is %lld", what, i,
                           (long long)t->shape[i]);
    if (t->shape[1] != channels)
        return wan_err(err, WAN_ERR_INVALID_ARG, "VAE: %s has %lld channels, this VAE needs %d", what,
                       (long long)t->shape[1], channels);
    return WAN_OK;
}

static int frames_per_latent(const wan_vae_config *c)
{
    int n = 0;
    for (int i = 0; i < c->n_dim_mult - 1; i++)
        n += c->temporal_downsample[i] != 0;
    return 1 << n;
}

static wan_status tiling_make(const vae_dec *d, const wan_vae_params *p, vae_tiling *tl, wan_error *err)
{
    const int s = d->cfg->scale_factor_spatial;
    memset(tl, 0, sizeof *tl);
    if (p->tile_sample_min_height < 1 || p->tile_sample_min_width < 1 || p->tile_sample_stride_height < 1 ||
        p->tile_sample_stride_width < 1)
        return wan_err(err, WAN_ERR_INVALID_ARG, "VAE: tile sizes and strides must be positive");
    tl->lt_h = p->tile_sample_min_height / s, tl->lt_w = p->tile_sample_min_width / s;
    tl->ls_h = p->tile_sample_stride_height / s, tl->ls_w = p->tile_sample_stride_width / s;
    if (tl->lt_h < 1 || tl->lt_w < 1 || tl->ls_h < 1 || tl->ls_w < 1)
        return wan_err(err, WAN_ERR_INVALID_ARG,
                       "VAE: tiles of %dx%d px with stride %dx%d px are smaller than one latent pixel (%d px)",
                       p->tile_sample_min_height, p->tile_sample_min_width, p->tile_sample_stride_height,
                       p->tile_sample_stride_width, s);
    if (s != d->up * d->p)
        return wan_err(err, WAN_ERR_UNSUPPORTED, "VAE: scale_factor_spatial %d differs from the decoder's %d",
                       s, d->up * d->p);
    tl->os_h = p->tile_sample_stride_height / d->p, tl->os_w = p->tile_sample_stride_width / d->p;
    tl->blend_h = p->tile_sample_min_height / d->p - tl->os_h;
    tl->blend_w = p->tile_sample_min_width / d->p - tl->os_w;
    tl->blend_h = tl->blend_h < 0 ? 0 : tl->blend_h, tl->blend_w = tl->blend_w < 0 ? 0 : tl->blend_w;
    tl->out_h = d->h * d->up, tl->out_w = d->w * d->up;
    tl->ni = (d->h + tl->ls_h - 1) / tl->ls_h, tl->nj = (d->w + tl->ls_w - 1) / tl->ls_w;
    return WAN_OK;
}

typedef struct frame_copy {
    float *out;       /* [B, 3, F, H, W] */
    int F;
} frame_copy;

static int copy_frame(int batch, int frame, const float *rgb, int height, int width, void *user)
{
    const frame_copy *fc = user;
    size_t hw = (size_t)height * width;
    for (int c = 0; c < 3; c++)
        memcpy(fc->out + (((size_t)batch * 3 + c) * fc->F + frame) * hw, rgb + c * hw, hw * sizeof(float));
    return 0;
}

/* One batch item at a time; tiled items go to `out` ([B,3,F,H,W]) when given, else to a frame buffer
 * that is then handed to on_frame. */
static wan_status decode_items(vae_dec *d, const wan_host_tensor *z, wan_vae_frame_fn on_frame, void *user,
                               float *out)
{
    vae_run *r = &d->run;
    const int B = (int)z->shape[0], F = 1 + d->fpc * (d->T - 1);
    const int H = d->h * d->up * d->p, W = d->w * d->up * d->p;
    vae_tiling tl;
    int tiled = d->prm->tiled;
    if (tiled) {
        wan_status rc = tiling_make(d, d->prm, &tl, r->err);
        if (rc != WAN_OK)
            return rc;
        tiled = d->w > tl.lt_w || d->h > tl.lt_h; /* as diffusers: only when larger than one tile */
    }
    d->n_steps = B * d->T * (tiled ? tl.ni * tl.nj : 1);
    const size_t item = (size_t)3 * F * H * W;
    for (int b = 0; b < B; b++) {
        d->z = (const float *)z->data + (size_t)b * d->cfg->z_dim * d->T * d->h * d->w;
        wan_status rc;
        if (!tiled) {
            rc = decode_stream(d, b, on_frame, user);
        } else if (out) {
            vae_sink s = { .base = out + b * item, .fs = (size_t)H * W, .cs = (size_t)F * H * W, .row = (size_t)W };
            rc = decode_tiled(d, &tl, &s);
        } else {
            vbuf v = { 0 };
            rc = ensure(r, &v, item) ? WAN_OK : r->err->code;
            vae_sink s = { .base = v.d, .fs = (size_t)3 * H * W, .cs = (size_t)H * W, .row = (size_t)W };
            if (rc == WAN_OK)
                rc = decode_tiled(d, &tl, &s);
            for (int f = 0; f < F && rc == WAN_OK; f++)
                if (on_frame(b, f, v.d + f * s.fs, H, W, user))
                    rc = wan_err(r->err, WAN_ERR_CANCELLED, "VAE: cancelled by the frame callback");
            wan_free(v.d);
        }
        if (rc != WAN_OK)
            return rc;
    }
    return WAN_OK;
}

static wan_status decode_impl(const wan_model_t *model, const wan_host_tensor *z, const wan_vae_params *prm,
                              wan_vae_frame_fn on_frame, void *user, float *out, wan_vae_debug_fn dbg,
                              void *dbg_user, wan_error *err)
{
    wan_vae_params defaults = wan_vae_default_params();
    vae_dec d = { .prm = prm ? prm : &defaults };
    const wan_st_set *ws;
    wan_status rc = vae_of(model, &d.cfg, &ws, err);
    if (rc == WAN_OK)
        rc = check_input(z, "z", d.cfg->z_dim, err);
    if (rc != WAN_OK)
        return rc;
    vae_plan *plan = wan_malloc(sizeof *plan);
    if (!plan)
        return wan_err(err, WAN_ERR_NOMEM, "VAE: out of memory");
    rc = plan_decoder(d.cfg, plan, err);
    if (rc == WAN_OK)
        rc = run_init(&d.run, ws, plan, err);
    if (rc == WAN_OK) {
        d.p = d.cfg->patch_size > 1 ? d.cfg->patch_size : 1;
        d.up = 1 << (d.cfg->n_dim_mult - 1);
        d.oc = d.cfg->out_channels;
        d.fpc = frames_per_latent(d.cfg);
        d.T = (int)z->shape[2], d.h = (int)z->shape[3], d.w = (int)z->shape[4];
        d.run.dbg = dbg, d.run.dbg_user = dbg_user;
        if (d.oc != 3 * d.p * d.p)
            rc = wan_err(err, WAN_ERR_UNSUPPORTED, "VAE: out_channels %d is not 3 x patch %d^2", d.oc, d.p);
    }
    if (rc == WAN_OK) { /* every tensor, before any work */
        vae_act cur = { 0 };
        d.run.dry = 1;
        rc = pointwise(&d.run, "", "post_quant_conv", d.cfg->z_dim, d.cfg->z_dim, 5, NULL, 1, 1, 1, NULL);
        if (rc == WAN_OK)
            rc = run_plan(&d.run, &cur, 1);
        d.run.dry = 0;
        run_reset_cache(&d.run);
    }
    if (rc == WAN_OK) {
        vae_threads th = threads_enter(&d.run, d.prm->n_threads);
        rc = decode_items(&d, z, on_frame, user, out);
        threads_leave(th);
    }
    if (d.run.slots)
        run_free(&d.run);
    wan_free(plan);
    return rc;
}

wan_status wan_vae_decode_debug(const wan_model_t *model, const wan_host_tensor *z, const wan_vae_params *p,
                                wan_vae_frame_fn on_frame, void *user, wan_vae_debug_fn dbg, void *dbg_user,
                                wan_error *err)
{
    if (!on_frame)
        return wan_err(err, WAN_ERR_INVALID_ARG, "VAE: on_frame is NULL");
    return decode_impl(model, z, p, on_frame, user, NULL, dbg, dbg_user, err);
}

wan_status wan_vae_decode_frames(const wan_model_t *model, const wan_host_tensor *z,
                                 const wan_vae_params *params, wan_vae_frame_fn on_frame, void *user,
                                 char *errbuf, size_t errlen)
{
    wan_error err = { 0 };
    wan_status rc = wan_vae_decode_debug(model, z, params, on_frame, user, NULL, NULL, &err);
    wan_err_copy(&err, errbuf, errlen);
    return rc;
}

wan_status wan_vae_decode(const wan_model_t *model, const wan_host_tensor *z, const wan_vae_params *params,
                          wan_host_tensor *sample, char *errbuf, size_t errlen)
{
    wan_error err = { 0 };
    const wan_vae_config *cfg = NULL;
    const wan_st_set *ws;
    wan_status rc = sample ? vae_of(model, &cfg, &ws, &err)
                           : wan_err(&err, WAN_ERR_INVALID_ARG, "VAE: sample is NULL");
    if (rc == WAN_OK)
        rc = check_input(z, "z", cfg->z_dim, &err);
    wan_host_tensor out = { .dtype = WAN_DTYPE_F32, .ndim = 5 };
    if (rc == WAN_OK) {
        int s = (1 << (cfg->n_dim_mult - 1)) * (cfg->patch_size > 1 ? cfg->patch_size : 1);
        int64_t F = 1 + (int64_t)frames_per_latent(cfg) * (z->shape[2] - 1);
        int64_t shape[5] = { z->shape[0], 3, F, z->shape[3] * s, z->shape[4] * s };
        memcpy(out.shape, shape, sizeof shape);
        snprintf(out.name, sizeof out.name, "sample");
        out.data = wan_malloc((size_t)wan_host_tensor_numel(&out) * sizeof(float));
        if (!out.data)
            rc = wan_err(&err, WAN_ERR_NOMEM, "VAE: out of memory for the %lld-frame output", (long long)F);
    }
    if (rc == WAN_OK) {
        frame_copy fc = { .out = out.data, .F = (int)out.shape[2] };
        rc = decode_impl(model, z, params, copy_frame, &fc, out.data, NULL, NULL, &err);
    }
    if (rc == WAN_OK)
        *sample = out;
    else
        wan_free(out.data);
    wan_err_copy(&err, errbuf, errlen);
    return rc;
}

/* ---- encoding --------------------------------------------------------------------------------- */

/* Chunk k of item x ([3][F][H][W]) patchified into bufs[0] (vae.md 2.10, 6.1). */
static wan_status encode_gather(vae_run *r, const float *x, int F, int H, int W, int p, int f0, int n,
                                vae_act *cur)
{
    const int cin = 3 * p * p, hp = H / p, wp = W / p;
    if (!ensure(r, &r->bufs[0], (size_t)n * cin * hp * wp))
        return r->err->code;
    float *dst = r->bufs[0].d;
    for (int t = 0; t < n; t++)
        for (int cp = 0; cp < cin; cp++) {
            int c = cp / (p * p), col = cp % (p * p) / p, row = cp % p;
            const float *src = x + ((size_t)c * F + f0 + t) * H * W;
            for (int y = 0; y < hp; y++)
                for (int xx = 0; xx < wp; xx++)
                    *dst++ = src[(size_t)(y * p + row) * W + xx * p + col];
        }
    swap_to(cur, 0, cin, n, hp, wp);
    return WAN_OK;
}

/* Encodes batch item x into mean ([z][Tl][h][w]). */
static wan_status encode_item(vae_run *r, const wan_vae_config *c, const float *x, int F, int H, int W, int Tl,
                              float *mean)
{
    const int p = c->patch_size > 1 ? c->patch_size : 1, fpc = frames_per_latent(c), z = c->z_dim;
    wan_status rc = WAN_OK;
    int tout = 0;
    run_reset_cache(r);
    for (int k = 0; tout < Tl && rc == WAN_OK; k++) {
        vae_act cur;
        rc = encode_gather(r, x, F, H, W, p, k ? 1 + fpc * (k - 1) : 0, k ? fpc : 1, &cur);
        r->chunk = k;
        if (rc == WAN_OK)
            rc = run_plan(r, &cur, k == 0);
        /* quant_conv, only its first z output channels (the mean) */
        if (rc == WAN_OK)
            rc = load_conv(r, &r->w, &r->b, "", "quant_conv", 2 * z, 2 * z, 1, 1, 5);
        int A = (cur.bi + 1) % 3;
        size_t hw = (size_t)cur.h * cur.w;
        if (rc == WAN_OK && !ensure(r, &r->bufs[A], (size_t)z * hw))
            rc = r->err->code;
        wan_conv_geom g = wan_conv_geom_make(2 * z, z, cur.h, cur.w, 1, 1, 1, 0);
        for (int t = 0; t < cur.n && tout < Tl && rc == WAN_OK; t++, tout++) {
            const float *tap = act_data(r, &cur) + (size_t)t * act_fsize(&cur);
            rc = conv_run(r, &g, 1, r->w.d, r->b.d, &tap, r->bufs[A].d);
            for (int ch = 0; ch < z && rc == WAN_OK; ch++)
                memcpy(mean + ((size_t)ch * Tl + tout) * hw, r->bufs[A].d + ch * hw, hw * sizeof(float));
        }
    }
    return rc;
}

static wan_status encode_check(vae_run *r, const wan_vae_config *c)
{
    vae_act cur = { 0 };
    r->dry = 1;
    wan_status rc = run_plan(r, &cur, 1);
    if (rc == WAN_OK)
        rc = load_conv(r, &r->w, &r->b, "", "quant_conv", 2 * c->z_dim, 2 * c->z_dim, 1, 1, 5);
    r->dry = 0;
    return rc;
}

wan_status wan_vae_encode(const wan_model_t *model, const wan_host_tensor *x, const wan_vae_params *params,
                          wan_host_tensor *latent_mean, char *errbuf, size_t errlen)
{
    wan_error err = { 0 };
    wan_vae_params defaults = wan_vae_default_params();
    const wan_vae_params *prm = params ? params : &defaults;
    const wan_vae_config *c = NULL;
    const wan_st_set *ws;
    wan_status rc = latent_mean ? vae_of(model, &c, &ws, &err)
                                : wan_err(&err, WAN_ERR_INVALID_ARG, "VAE: latent_mean is NULL");
    const int p = rc == WAN_OK && c->patch_size > 1 ? c->patch_size : 1;
    if (rc == WAN_OK && c->in_channels != 3 * p * p)
        rc = wan_err(&err, WAN_ERR_UNSUPPORTED, "VAE: in_channels %d is not 3 x patch %d^2", c->in_channels, p);
    if (rc == WAN_OK)
        rc = check_input(x, "x", 3, &err);
    const int s = rc == WAN_OK ? (1 << (c->n_dim_mult - 1)) * p : 1;
    if (rc == WAN_OK && (x->shape[3] % s || x->shape[4] % s))
        rc = wan_err(&err, WAN_ERR_INVALID_ARG, "VAE: x is %lldx%lld pixels; the encoder needs multiples of %d",
                     (long long)x->shape[3], (long long)x->shape[4], s);
    vae_plan *plan = rc == WAN_OK ? wan_malloc(sizeof *plan) : NULL;
    if (rc == WAN_OK && !plan)
        rc = wan_err(&err, WAN_ERR_NOMEM, "VAE: out of memory");
    if (rc == WAN_OK)
        rc = plan_encoder(c, plan, &err);
    vae_run r = { 0 };
    if (rc == WAN_OK)
        rc = run_init(&r, ws, plan, &err);
    if (rc == WAN_OK)
        rc = encode_check(&r, c);
    wan_host_tensor out = { .dtype = WAN_DTYPE_F32, .ndim = 5 };
    if (rc == WAN_OK) {
        const int fpc = frames_per_latent(c), F = (int)x->shape[2];
        int64_t shape[5] = { x->shape[0], c->z_dim, 1 + (F - 1) / fpc, x->shape[3] / s, x->shape[4] / s };
        memcpy(out.shape, shape, sizeof shape);
        snprintf(out.name, sizeof out.name, "latent_dist_mean");
        out.data = wan_malloc((size_t)wan_host_tensor_numel(&out) * sizeof(float));
        if (!out.data)
            rc = wan_err(&err, WAN_ERR_NOMEM, "VAE: out of memory");
    }
    if (rc == WAN_OK) {
        vae_threads th = threads_enter(&r, prm->n_threads);
        const int64_t B = x->shape[0], F = x->shape[2], H = x->shape[3], W = x->shape[4];
        const size_t item = (size_t)wan_host_tensor_numel(&out) / (size_t)B;
        for (int64_t b = 0; b < B && rc == WAN_OK; b++)
            rc = encode_item(&r, c, (const float *)x->data + (size_t)b * 3 * F * H * W, (int)F, (int)H, (int)W,
                             (int)out.shape[2], (float *)out.data + b * item);
        threads_leave(th);
    }
    if (r.slots)
        run_free(&r);
    wan_free(plan);
    if (rc == WAN_OK)
        *latent_mean = out;
    else
        wan_free(out.data);
    wan_err_copy(&err, errbuf, errlen);
    return rc;
}
