/* vae.c — AutoencoderKLWan (vae.md): the causal video VAE of Wan2.1 (z16) and Wan2.2 (z48) in f32.
 *
 * The network is described once as a plan (a list of ops built from the config, vae.md 3 and 5.4) that a
 * small interpreter runs on one chunk at a time: a decoder chunk is one latent frame, an encoder chunk is
 * frame 0, then 4 frames at a time. Activations are frame-major ([n][C][H][W], a frame is contiguous), so
 * a causal 3x3x3 convolution takes its three temporal taps as frame pointers into the cache and the chunk
 * without copying, and the upsampler's time_conv output [2C] per frame is already the doubled sequence
 * (channels [0,C) = the earlier frame). Buffers grow to the largest chunk on first use and are reused.
 *
 * Every op runs through a backend table (backend.h: "cpu" or "cuda", chosen by the caller at run time):
 * activations, caches and prepared weights are backend memory, and the host only uploads each latent chunk
 * (or video chunk) and downloads each chunk's result. */
#include "vae.h"
#include "backend.h"
#include "cpu/conv3d.h"
#include "cpu/gemm.h"
#include "model_dir.h"

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

/* The cache of one causal conv: up to 2 frames of its input (vae.md 4.2), in backend memory. */
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

/* One weight the plan uses, found by the dry pass: a conv kernel [cout, cin, kt, k, k] with its bias, or a
 * norm's gamma [c] (kt = 0, cout = c). */
typedef struct vae_wt {
    char name[128];      /* "<prefix>.<stem>" */
    wan_tensor w, b;     /* as stored (b: conv only) */
    int cout, cin, kt, k;
    const float *wd, *bd; /* f32 in backend memory: packed kernel [kt][cout][cin·k·k] (NULL: repacked on each use,
                           * host backends only) and bias; a gamma in wd */
} vae_wt;

typedef struct vae_run {
    wan_backend *be;
    const wan_st_set *ws;
    const vae_plan *plan;
    vae_slot *slots;
    vbuf bufs[3], save, attn; /* backend memory: activations, the shortcut input, qkv + attention output */
    vbuf pack[2];             /* backend (= host) memory: kernels repacked on use                          */
    vbuf stage;               /* host memory: uploads and downloads of a device backend                    */
    vae_wt *wt;               /* the weights, in the order the dry pass met them                           */
    int n_wt, cap_wt, wcur;   /* wcur: where the next lookup starts                                        */
    float *wmem;              /* backend memory holding the prepared weights                               */
    vae_act saved;
    int dry;        /* check tensors only */
    wan_vae_debug_fn dbg;
    void *dbg_user;
    int chunk;
    wan_error *err;
} vae_run;

/* The backend's sticky error (synchronising first when `wait`) as the run's error; WAN_OK when none. */
static wan_status be_status(vae_run *r, int wait)
{
    if (!wait && r->be->err.code == WAN_OK)
        return WAN_OK;
    wan_error e = { 0 };
    wan_status rc = r->be->sync(r->be, &e);
    return rc == WAN_OK ? WAN_OK : wan_err(r->err, rc, "VAE: %s", e.msg);
}

/* Backend buffer of at least n floats; contents are lost when it grows. */
static float *ensure(vae_run *r, vbuf *v, size_t n)
{
    if (n <= v->cap)
        return v->d;
    r->be->free(r->be, v->d);
    v->d = r->be->alloc(r->be, (n ? n : 1) * sizeof(float));
    v->cap = v->d ? n : 0;
    if (!v->d && be_status(r, 0) == WAN_OK)
        wan_err(r->err, WAN_ERR_NOMEM, "VAE: out of memory allocating %zu MiB of activations",
                n * sizeof(float) >> 20);
    return v->d;
}

/* Host buffer of at least n floats. */
static float *host_ensure(vae_run *r, vbuf *v, size_t n)
{
    if (n <= v->cap)
        return v->d;
    wan_free(v->d);
    v->d = wan_malloc((n ? n : 1) * sizeof(float));
    v->cap = v->d ? n : 0;
    if (!v->d)
        wan_err(r->err, WAN_ERR_NOMEM, "VAE: out of memory allocating %zu MiB of host memory",
                n * sizeof(float) >> 20);
    return v->d;
}

/* Where the host writes n floats bound for backend buffer dst: dst itself on a host backend, else the staging
 * buffer that to_backend then uploads. NULL on failure. */
static float *host_for(vae_run *r, float *dst, size_t n)
{
    return r->be->host_memory ? dst : host_ensure(r, &r->stage, n);
}

static void to_backend(vae_run *r, float *dst, const float *src, size_t n)
{
    if (src != dst)
        r->be->upload(r->be, dst, src, n * sizeof(float));
}

/* Host view of n floats of backend memory: src itself on a host backend, else a download into the staging
 * buffer (valid until the next staging use). NULL on failure. */
static float *to_host(vae_run *r, float *src, size_t n)
{
    if (r->be->host_memory)
        return be_status(r, 0) == WAN_OK ? src : NULL;
    float *h = host_ensure(r, &r->stage, n);
    if (h)
        r->be->download(r->be, h, src, n * sizeof(float));
    return h && be_status(r, 0) == WAN_OK ? h : NULL;
}

static void run_free(vae_run *r)
{
    wan_backend *be = r->be;
    for (int i = 0; r->slots && i < r->plan->n_slots; i++)
        be->free(be, r->slots[i].f.d);
    wan_free(r->slots);
    vbuf *all[] = { &r->bufs[0], &r->bufs[1], &r->bufs[2], &r->save, &r->attn, &r->pack[0], &r->pack[1] };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        be->free(be, all[i]->d);
    be->free(be, r->wmem);
    wan_free(r->stage.d);
    wan_free(r->wt);
    memset(r, 0, sizeof *r);
}

/* A plan op loads at most 5 weights (a residual block: two norms, two convs, the shortcut), plus the
 * quant/post-quant conv. */
static wan_status run_init(vae_run *r, wan_backend *be, const wan_st_set *ws, const vae_plan *plan,
                           wan_error *err)
{
    memset(r, 0, sizeof *r);
    r->be = be, r->ws = ws, r->plan = plan, r->err = err;
    r->cap_wt = 5 * plan->n + 1;
    r->slots = wan_calloc((size_t)(plan->n_slots ? plan->n_slots : 1), sizeof *r->slots);
    r->wt = wan_calloc((size_t)r->cap_wt, sizeof *r->wt);
    if (!r->slots || !r->wt) {
        wan_free(r->slots), wan_free(r->wt);
        r->slots = NULL, r->wt = NULL;
        return wan_err(err, WAN_ERR_NOMEM, "VAE: out of memory");
    }
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
/* The dry pass before any work meets every weight (checking its name and shape) and records it; then
 * weights_prepare converts the biases and gammas to f32 once, and the kernels to f32 [kt][cout][cin·k·k]:
 * once, uploaded, on a device backend; on a host backend an F32 kernel with kt = 1 is already in that layout
 * and is used in place, and the others (3D kernels, half precision) are repacked on each use into one
 * layer's buffer, so that no f32 copy of the whole decoder (290 MB for Wan2.1) stays resident. */

static wan_status get_tensor(vae_run *r, const char *prefix, const char *suffix, int ndim, const int64_t *shape,
                             wan_tensor *t)
{
    char name[160];
    snprintf(name, sizeof name, "%s%s%s", prefix, prefix[0] ? "." : "", suffix);
    return wan_st_set_get(r->ws, name, ndim, shape, t, r->err);
}

static void weight_name(char *buf, size_t len, const char *prefix, const char *stem)
{
    snprintf(buf, len, "%s%s%s", prefix, prefix[0] ? "." : "", stem);
}

static wan_status wt_add(vae_run *r, const char *name, const wan_tensor *w, const wan_tensor *b, int cout, int cin,
                         int kt, int k)
{
    if (r->n_wt >= r->cap_wt)
        return wan_err(r->err, WAN_ERR_INTERNAL, "VAE: more than %d weights in the plan", r->cap_wt);
    vae_wt *e = &r->wt[r->n_wt++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->w = *w;
    if (b)
        e->b = *b;
    e->cout = cout, e->cin = cin, e->kt = kt, e->k = k;
    return WAN_OK;
}

/* The weight recorded under `name` (lookups usually come in the recorded order). */
static const vae_wt *wt_find(vae_run *r, const char *name)
{
    for (int i = 0; i < r->n_wt; i++) {
        int j = (r->wcur + i) % r->n_wt;
        if (!strcmp(r->wt[j].name, name)) {
            r->wcur = j + 1;
            return &r->wt[j];
        }
    }
    wan_err(r->err, WAN_ERR_INTERNAL, "VAE: weight %s was not checked before the run", name);
    return NULL;
}

static size_t kernel_floats(const vae_wt *e)
{
    return (size_t)e->cout * e->cin * e->kt * e->k * e->k;
}

/* Kernel [cout, cin, kt, k, k] as stored -> f32 [kt][cout][cin·k·k]. */
static void pack_kernel(const vae_wt *e, float *dst)
{
    const int cout = e->cout, cin = e->cin, kt = e->kt;
    const size_t kk = (size_t)e->k * e->k, per_o = (size_t)cin * kt * kk;
    const uint8_t *src = e->w.data;
    const size_t esz = wan_dtype_size(e->w.dtype);
#pragma omp parallel for schedule(static) if (kernel_floats(e) >= WAN_PAR_MIN)
    for (int o = 0; o < cout; o++)
        for (int i = 0; i < cin; i++)
            for (int a = 0; a < kt; a++)
                wan_cpu_to_f32(src + ((size_t)o * per_o + ((size_t)i * kt + a) * kk) * esz, e->w.dtype,
                               dst + ((size_t)a * cout + o) * cin * kk + (size_t)i * kk, (int64_t)kk);
}

/* A host backend uses an F32 kernel of one temporal tap in place (4-byte aligned: the file need not be). */
static int kernel_in_place(const vae_run *r, const vae_wt *e)
{
    return r->be->host_memory && e->kt == 1 && e->w.dtype == WAN_DTYPE_F32 && (uintptr_t)e->w.data % 4 == 0;
}

/* Kernels kept in backend memory: all of them on a device backend, none on a host backend. */
static int kernel_resident(const vae_run *r, const vae_wt *e)
{
    return e->kt > 0 && !r->be->host_memory;
}

#define WT_ALIGN 64 /* floats: every prepared array starts 256-byte aligned */

static size_t wt_round(size_t n)
{
    return (n + WT_ALIGN - 1) / WT_ALIGN * WT_ALIGN;
}

/* Floats of backend memory entry e takes: [packed kernel when resident] [bias or gamma]. */
static size_t wt_floats(const vae_run *r, const vae_wt *e)
{
    return (kernel_resident(r, e) ? wt_round(kernel_floats(e)) : 0) + wt_round((size_t)e->cout);
}

/* Converts entry e into `dst` (host memory laid out as wt_floats says); returns the bias/gamma's offset. */
static size_t wt_pack(const vae_run *r, const vae_wt *e, float *dst)
{
    size_t off = 0;
    if (kernel_resident(r, e)) {
        pack_kernel(e, dst);
        off = wt_round(kernel_floats(e));
    }
    wan_cpu_to_f32(e->kt ? e->b.data : e->w.data, e->kt ? e->b.dtype : e->w.dtype, dst + off, e->cout);
    return off;
}

/* After the dry pass: one backend allocation for every bias, gamma and resident kernel, filled once (uploaded
 * through the staging buffer on a device backend). */
static wan_status weights_prepare(vae_run *r)
{
    wan_backend *be = r->be;
    size_t total = 0, most = 0;
    for (int i = 0; i < r->n_wt; i++) {
        size_t n = wt_floats(r, &r->wt[i]);
        total += n;
        most = n > most ? n : most;
    }
    r->wmem = be->alloc(be, (total ? total : 1) * sizeof(float));
    if (!r->wmem)
        return be_status(r, 0) != WAN_OK ? r->err->code
                                         : wan_err(r->err, WAN_ERR_NOMEM, "VAE: out of memory for the weights");
    float *host = be->host_memory ? NULL : host_ensure(r, &r->stage, most);
    if (!be->host_memory && !host)
        return r->err->code;
    for (size_t i = 0, off = 0; i < (size_t)r->n_wt; i++) {
        vae_wt *e = &r->wt[i];
        const size_t n = wt_floats(r, e);
        float *dst = r->wmem + off, *h = host ? host : dst;
        const size_t boff = wt_pack(r, e, h);
        to_backend(r, dst, h, n);
        if (e->kt == 0) {
            e->wd = dst;
        } else {
            e->bd = dst + boff;
            e->wd = kernel_resident(r, e) ? dst : kernel_in_place(r, e) ? (const float *)e->w.data : NULL;
        }
        off += n;
    }
    return be_status(r, 0);
}

typedef struct conv_w {
    const float *w, *b; /* packed kernel and bias, backend memory */
} conv_w;

/* `<prefix>.<stem>.weight` [cout, cin, kt, k, k] (ndim 5) or [cout, cin, k, k] (ndim 4, kt = 1) and its bias:
 * the dry pass checks and records them; a run gets them ready (a kernel repacked on use goes to pack[pair]). */
static wan_status load_conv(vae_run *r, int pair, const char *prefix, const char *stem, int cout, int cin, int kt,
                            int k, int ndim, conv_w *cw)
{
    char name[128];
    weight_name(name, sizeof name, prefix, stem);
    if (r->dry) {
        int64_t shape5[5] = { cout, cin, kt, k, k }, shape4[4] = { cout, cin, k, k };
        char suffix[48];
        wan_tensor tw, tb;
        snprintf(suffix, sizeof suffix, "%s.weight", stem);
        wan_status rc = get_tensor(r, prefix, suffix, ndim, ndim == 5 ? shape5 : shape4, &tw);
        snprintf(suffix, sizeof suffix, "%s.bias", stem);
        if (rc == WAN_OK)
            rc = get_tensor(r, prefix, suffix, 1, (int64_t[]){ cout }, &tb);
        return rc == WAN_OK ? wt_add(r, name, &tw, &tb, cout, cin, kt, k) : rc;
    }
    const vae_wt *e = wt_find(r, name);
    if (!e)
        return r->err->code;
    cw->w = e->wd, cw->b = e->bd;
    if (!cw->w) {
        WAN_ASSERT(r->be->host_memory, r->err);
        float *d = ensure(r, &r->pack[pair], kernel_floats(e));
        if (!d)
            return r->err->code;
        pack_kernel(e, d);
        cw->w = d;
    }
    return WAN_OK;
}

/* `<prefix>.<stem>.gamma` [c, 1, 1, 1] (ndim 4) or [c, 1, 1] (ndim 3): checked and recorded by the dry pass,
 * then *gamma points at its f32 copy in backend memory. */
static wan_status load_gamma(vae_run *r, const char *prefix, const char *stem, int c, int ndim, const float **gamma)
{
    char name[128];
    weight_name(name, sizeof name, prefix, stem);
    if (r->dry) {
        char suffix[48];
        snprintf(suffix, sizeof suffix, "%s.gamma", stem);
        wan_tensor t;
        wan_status rc = get_tensor(r, prefix, suffix, ndim, (int64_t[]){ c, 1, 1, 1 }, &t);
        return rc == WAN_OK ? wt_add(r, name, &t, NULL, c, 0, 0, 0) : rc;
    }
    const vae_wt *e = wt_find(r, name);
    *gamma = e ? e->wd : NULL;
    return e ? WAN_OK : r->err->code;
}

/* ---- building blocks -------------------------------------------------------------------------- */

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
    wan_backend *be = r->be;
    const size_t bytes = fs * sizeof(float);
    if (s->f.cap < 2 * fs) {
        if (s->m == 1 && n == 1) { /* keep the one cached frame while growing */
            vbuf old = s->f;
            s->f = (vbuf){ 0 };
            if (ensure(r, &s->f, 2 * fs))
                be->copy(be, s->f.d, old.d, bytes);
            be->free(be, old.d);
            if (!s->f.d)
                return r->err->code;
        } else if (!ensure(r, &s->f, 2 * fs)) {
            return r->err->code;
        }
    }
    if (n >= 2) {
        be->copy(be, s->f.d, x + (size_t)(n - 2) * fs, 2 * bytes);
        s->m = 2;
    } else if (s->m >= 1) {
        if (s->m == 2)
            be->copy(be, s->f.d, s->f.d + fs, bytes);
        be->copy(be, s->f.d + fs, x, bytes);
        s->m = 2;
    } else {
        be->copy(be, s->f.d, x, bytes);
        s->m = 1;
    }
    return WAN_OK;
}

/* Causal 3x3x3 conv `<prefix>.<stem>` of the chunk x ([n][cin][h][w]) with cache slot s into y
 * ([n][cout][h][w]); the cache then holds the last two input frames (vae.md 2.1, 4.2). */
static wan_status causal_conv(vae_run *r, const char *prefix, const char *stem, int cin, int cout, vae_slot *s,
                              const float *x, int n, int h, int w, float *y)
{
    conv_w cw;
    wan_status rc = load_conv(r, 0, prefix, stem, cout, cin, 3, 3, 5, &cw);
    if (rc != WAN_OK || r->dry)
        return rc;
    wan_conv_geom g = wan_conv_geom_make(cin, cout, h, w, 3, 1, 1, 0);
    size_t fs = (size_t)cin * h * w, os = (size_t)cout * h * w;
    for (int t = 0; t < n; t++) {
        const float *taps[3];
        for (int a = 0; a < 3; a++)
            taps[a] = ext_frame(s, s->m, x, fs, t + a - 2 + s->m);
        r->be->conv2d_taps(r->be, &g, 3, cw.w, cw.b, taps, y + t * os);
    }
    return slot_update(r, s, x, n, fs);
}

/* 1x1(x1) conv of every frame: `<prefix>.<stem>` [cout, cin, 1, 1, 1] (ndim 5) or [cout, cin, 1, 1]. */
static wan_status pointwise(vae_run *r, const char *prefix, const char *stem, int cin, int cout, int ndim,
                            const float *x, int n, int h, int w, float *y)
{
    conv_w cw;
    wan_status rc = load_conv(r, 0, prefix, stem, cout, cin, 1, 1, ndim, &cw);
    if (rc != WAN_OK || r->dry)
        return rc;
    wan_conv_geom g = wan_conv_geom_make(cin, cout, h, w, 1, 1, 1, 0);
    size_t fs = (size_t)cin * h * w, os = (size_t)cout * h * w;
    for (int t = 0; t < n; t++) {
        const float *tap = x + t * fs;
        r->be->conv2d_taps(r->be, &g, 1, cw.w, cw.b, &tap, y + t * os);
    }
    return WAN_OK;
}

static void swap_to(vae_act *cur, int bi, int c, int n, int h, int w)
{
    cur->bi = bi, cur->c = c, cur->n = n, cur->h = h, cur->w = w;
}

/* WanResidualBlock (vae.md 2.4). */
static wan_status op_res(vae_run *r, const vae_op *op, vae_act *cur)
{
    wan_backend *be = r->be;
    const int A = (cur->bi + 1) % 3, B = (cur->bi + 2) % 3, n = cur->n, h = cur->h, w = cur->w;
    const size_t hw = (size_t)h * w, in_sz = (size_t)n * op->cin * hw, out_sz = (size_t)n * op->cout * hw;
    vae_slot *s = &r->slots[op->slot];
    const float *g1 = NULL, *g2 = NULL;
    wan_status rc = load_gamma(r, op->name, "norm1", op->cin, 4, &g1);
    if (rc == WAN_OK && !r->dry && (!ensure(r, &r->bufs[A], in_sz > out_sz ? in_sz : out_sz) ||
                                    !ensure(r, &r->bufs[B], out_sz)))
        rc = r->err->code;
    float *x = act_data(r, cur), *a = r->bufs[A].d, *b = r->bufs[B].d;
    if (rc == WAN_OK && !r->dry)
        be->chan_rmsnorm(be, x, a, op->cin, (int64_t)hw, n, g1, 1);
    if (rc == WAN_OK)
        rc = causal_conv(r, op->name, "conv1", op->cin, op->cout, s, a, n, h, w, b);
    if (rc == WAN_OK)
        rc = load_gamma(r, op->name, "norm2", op->cout, 4, &g2);
    if (rc == WAN_OK && !r->dry)
        be->chan_rmsnorm(be, b, b, op->cout, (int64_t)hw, n, g2, 1);
    if (rc == WAN_OK)
        rc = causal_conv(r, op->name, "conv2", op->cout, op->cout, s + 1, b, n, h, w, a);
    if (rc != WAN_OK)
        return rc;
    if (op->cin != op->cout) {
        rc = pointwise(r, op->name, "conv_shortcut", op->cin, op->cout, 5, x, n, h, w, b);
        if (rc != WAN_OK || r->dry)
            return rc;
        be->add(be, a, b, (int64_t)out_sz);
        swap_to(cur, A, op->cout, n, h, w);
    } else if (!r->dry) {
        be->add(be, x, a, (int64_t)out_sz);
    }
    return WAN_OK;
}

/* WanAttentionBlock (vae.md 2.5), frame by frame, in place. */
static wan_status op_attn(vae_run *r, const vae_op *op, vae_act *cur)
{
    wan_backend *be = r->be;
    const int c = op->cin, npix = cur->h * cur->w;
    const int A = (cur->bi + 1) % 3;
    const float *gamma = NULL;
    conv_w qkv_w, proj_w;
    wan_status rc = load_gamma(r, op->name, "norm", c, 3, &gamma);
    if (rc == WAN_OK)
        rc = load_conv(r, 0, op->name, "to_qkv", 3 * c, c, 1, 1, 4, &qkv_w);
    if (rc == WAN_OK)
        rc = load_conv(r, 1, op->name, "proj", c, c, 1, 1, 4, &proj_w);
    if (rc != WAN_OK || r->dry)
        return rc;
    const size_t fs = (size_t)c * npix;
    float *x = act_data(r, cur);
    if (!ensure(r, &r->attn, 4 * fs) || !ensure(r, &r->bufs[A], fs))
        return r->err->code;
    float *qkv = r->attn.d, *o = qkv + 3 * fs, *y = r->bufs[A].d;
    wan_conv_geom gq = wan_conv_geom_make(c, 3 * c, cur->h, cur->w, 1, 1, 1, 0);
    wan_conv_geom gp = wan_conv_geom_make(c, c, cur->h, cur->w, 1, 1, 1, 0);
    for (int t = 0; t < cur->n; t++) {
        float *xt = x + t * fs;
        be->chan_rmsnorm(be, xt, y, c, npix, 1, gamma, 0);
        const float *tap = y;
        be->conv2d_taps(be, &gq, 1, qkv_w.w, qkv_w.b, &tap, qkv);
        be->attention_frame(be, qkv, o, c, npix);
        tap = o;
        be->conv2d_taps(be, &gp, 1, proj_w.w, proj_w.b, &tap, y);
        be->add(be, xt, y, (int64_t)fs);
    }
    return WAN_OK;
}

/* time_conv of upsample3d: C -> 2C, causal over (cache ++ chunk) into bufs[A]; the first call after "Rep" sees
 * zeros only, and leaves (zero frame, x) in the cache. */
static wan_status up_time_conv(vae_run *r, const vae_op *op, const vae_act *cur, vae_slot *s, int A)
{
    wan_backend *be = r->be;
    const int c = op->cin, h = cur->h, w = cur->w;
    conv_w cw;
    wan_status rc = load_conv(r, 0, op->name, "time_conv", 2 * c, c, 3, 1, 5, &cw);
    const size_t fs = (size_t)c * h * w;
    if (rc != WAN_OK || r->dry)
        return rc;
    if (!ensure(r, &r->bufs[A], 2 * fs * cur->n))
        return r->err->code;
    wan_conv_geom g = wan_conv_geom_make(c, 2 * c, h, w, 1, 1, 1, 0);
    const float *x = act_data(r, cur);
    const int m = s->state == 1 ? 0 : s->m;
    for (int t = 0; t < cur->n; t++) {
        const float *taps[3];
        for (int a = 0; a < 3; a++)
            taps[a] = ext_frame(s, m, x, fs, t + a - 2 + m);
        be->conv2d_taps(be, &g, 3, cw.w, cw.b, taps, r->bufs[A].d + 2 * fs * t);
    }
    if (s->state == 1 && cur->n == 1) { /* cache = (zero frame, x) */
        s->m = 0;
        rc = slot_update(r, s, x, 1, fs);
        if (rc == WAN_OK) {
            be->copy(be, s->f.d + fs, s->f.d, fs * sizeof(float));
            be->zero(be, s->f.d, fs * sizeof(float));
            s->m = 2;
        }
    } else {
        rc = slot_update(r, s, x, cur->n, fs);
    }
    s->state = 2;
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
        rc = up_time_conv(r, op, cur, s, A);
        if (rc != WAN_OK)
            return rc;
        if (!r->dry)
            swap_to(&src, A, c, 2 * cur->n, h, w);
    } else if (s) {
        s->state = 1; /* first chunk: no time_conv, no doubling */
    }
    conv_w cw;
    rc = load_conv(r, 0, op->name, "resample.1", op->cout, c, 1, 3, 4, &cw);
    if (rc != WAN_OK || r->dry)
        return rc;
    int dst = src.bi == A ? B : A;
    size_t os = (size_t)op->cout * 4 * h * w;
    if (!ensure(r, &r->bufs[dst], os * src.n))
        return r->err->code;
    wan_conv_geom g = wan_conv_geom_make(c, op->cout, 2 * h, 2 * w, 3, 1, 1, 1);
    const float *x = act_data(r, &src);
    for (int t = 0; t < src.n; t++) {
        const float *tap = x + (size_t)t * act_fsize(&src);
        r->be->conv2d_taps(r->be, &g, 1, cw.w, cw.b, &tap, r->bufs[dst].d + os * t);
    }
    swap_to(cur, dst, op->cout, src.n, 2 * h, 2 * w);
    return WAN_OK;
}

/* downsample2d / downsample3d (vae.md 2.6, 2.7, 6.3): pad right/bottom, conv2d 3x3 stride 2, then for 3d
 * the stride-2 time_conv over (last cached frame ++ chunk); the first chunk passes through. */
static wan_status op_down(vae_run *r, const vae_op *op, vae_act *cur)
{
    wan_backend *be = r->be;
    const int A = (cur->bi + 1) % 3, B = (cur->bi + 2) % 3, c = op->cin;
    conv_w cw;
    wan_status rc = load_conv(r, 0, op->name, "resample.1", c, c, 1, 3, 4, &cw);
    if (rc == WAN_OK && op->temporal && r->dry)
        rc = load_conv(r, 0, op->name, "time_conv", c, c, 3, 1, 5, &cw);
    if (rc != WAN_OK || r->dry)
        return rc;
    wan_conv_geom g = wan_conv_geom_make(c, c, cur->h, cur->w, 3, 2, 0, 0);
    size_t fs = (size_t)c * g.ho * g.wo;
    if (!ensure(r, &r->bufs[A], fs * cur->n))
        return r->err->code;
    const float *x = act_data(r, cur);
    for (int t = 0; t < cur->n; t++) {
        const float *tap = x + (size_t)t * act_fsize(cur);
        be->conv2d_taps(be, &g, 1, cw.w, cw.b, &tap, r->bufs[A].d + fs * t);
    }
    swap_to(cur, A, c, cur->n, g.ho, g.wo);
    vae_slot *s = op->temporal ? &r->slots[op->slot] : NULL;
    if (!s)
        return WAN_OK;
    const float *y = r->bufs[A].d;
    if (s->state == 0) {
        s->state = 2, s->m = 0;
        return slot_update(r, s, y + (size_t)(cur->n - 1) * fs, 1, fs);
    }
    int n_out = (cur->n + 1 - 3) / 2 + 1;
    WAN_ASSERT(cur->n + 1 >= 3, r->err);
    rc = load_conv(r, 0, op->name, "time_conv", c, c, 3, 1, 5, &cw);
    if (rc == WAN_OK && !ensure(r, &r->bufs[B], fs * n_out))
        rc = r->err->code;
    if (rc != WAN_OK)
        return rc;
    wan_conv_geom gt = wan_conv_geom_make(c, c, g.ho, g.wo, 1, 1, 1, 0);
    for (int k = 0; k < n_out; k++) {
        const float *taps[3];
        for (int a = 0; a < 3; a++)
            taps[a] = ext_frame(s, 1, y, fs, 2 * k + a);
        be->conv2d_taps(be, &gt, 3, cw.w, cw.b, taps, r->bufs[B].d + fs * k);
    }
    s->m = 0; /* keep the chunk's last frame */
    rc = slot_update(r, s, y + (size_t)(cur->n - 1) * fs, 1, fs);
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
    r->be->copy(r->be, r->save.d, act_data(r, cur), n * sizeof(float));
    r->saved = *cur;
    return WAN_OK;
}

/* cur += DupUp3D(saved) (vae.md 2.8); the first chunk drops the first ft-1 frames. */
static wan_status op_dupup(vae_run *r, const vae_op *op, vae_act *cur, int first)
{
    if (r->dry)
        return WAN_OK;
    const vae_act *in = &r->saved;
    const int ft = op->ft, fs = op->fs, trim = first ? ft - 1 : 0;
    WAN_ASSERT(in->c == op->cin && cur->n == in->n * ft - trim && cur->h == in->h * fs && cur->w == in->w * fs &&
                   cur->c == op->cout,
               r->err);
    r->be->dupup_add(r->be, act_data(r, cur), r->save.d, in->c, op->cout, in->n, in->h, in->w, ft, fs, trim);
    return WAN_OK;
}

/* cur += AvgDown3D(saved) (vae.md 2.9): zero frames in front up to a multiple of ft, mean of groups. */
static wan_status op_avgdown(vae_run *r, const vae_op *op, vae_act *cur)
{
    if (r->dry)
        return WAN_OK;
    const vae_act *in = &r->saved;
    const int ft = op->ft, fs = op->fs, pad = (ft - in->n % ft) % ft;
    WAN_ASSERT(in->c == op->cin && cur->n == (in->n + pad) / ft && cur->h == in->h / fs && cur->w == in->w / fs &&
                   cur->c == op->cout,
               r->err);
    r->be->avgdown_add(r->be, act_data(r, cur), r->save.d, in->c, op->cout, in->n, in->h, in->w, ft, fs);
    return WAN_OK;
}

/* conv_in, or the head: RMS norm, SiLU, conv_out. */
static wan_status op_conv(vae_run *r, const vae_op *op, vae_act *cur, int head)
{
    const int A = (cur->bi + 1) % 3, B = (cur->bi + 2) % 3;
    size_t in_sz = act_fsize(cur) * cur->n, out_sz = (size_t)op->cout * cur->h * cur->w * cur->n;
    const float *gamma = NULL;
    wan_status rc = head ? load_gamma(r, op->name, "norm_out", op->cin, 4, &gamma) : WAN_OK;
    if (rc == WAN_OK && !r->dry && (!ensure(r, &r->bufs[A], head ? in_sz : out_sz) ||
                                    (head && !ensure(r, &r->bufs[B], out_sz))))
        rc = r->err->code;
    if (rc == WAN_OK && head && !r->dry)
        r->be->chan_rmsnorm(r->be, act_data(r, cur), r->bufs[A].d, cur->c, (int64_t)cur->h * cur->w, cur->n, gamma,
                            1);
    const float *x = head ? r->bufs[A].d : act_data(r, cur);
    int dst = head ? B : A;
    if (rc == WAN_OK)
        rc = causal_conv(r, op->name, head ? "conv_out" : "conv_in", op->cin, op->cout, &r->slots[op->slot], x,
                         cur->n, cur->h, cur->w, r->bufs[dst].d);
    if (rc == WAN_OK && !r->dry)
        swap_to(cur, dst, op->cout, cur->n, cur->h, cur->w);
    return rc;
}

/* Runs the whole plan on the chunk in cur (dry: checks and records every tensor only). */
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
        if (rc == WAN_OK && !r->dry)
            rc = be_status(r, 0);
        if (rc != WAN_OK)
            return rc;
        if (op->dbg[0] && r->dbg && !r->dry) {
            const float *h = to_host(r, act_data(r, cur), act_fsize(cur) * cur->n);
            if (!h)
                return r->err->code;
            r->dbg(op->dbg, r->chunk, h, cur->c, cur->n, cur->h, cur->w, r->dbg_user);
        }
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
    float *h = ensure(r, &r->bufs[0], n) && ensure(r, &r->bufs[1], n) ? host_for(r, r->bufs[0].d, n) : NULL;
    if (!h)
        return r->err->code;
    for (int c = 0; c < zc; c++)
        for (int y = 0; y < lh; y++)
            memcpy(h + ((size_t)c * lh + y) * lw, d->z + (((size_t)c * d->T + k) * d->h + y0 + y) * d->w + x0,
                   (size_t)lw * sizeof(float));
    to_backend(r, r->bufs[0].d, h, n);
    wan_status rc = pointwise(r, "", "post_quant_conv", zc, zc, 5, r->bufs[0].d, 1, lh, lw, r->bufs[1].d);
    swap_to(cur, 1, zc, 1, lh, lw);
    r->chunk = k;
    if (rc == WAN_OK)
        rc = run_plan(r, cur, k == 0);
    return rc;
}

/* The chunk's finished frames [n][oc][h][w] on the host (downloaded from a device), after every queued op has
 * completed; NULL on failure. */
static float *chunk_frames(vae_run *r, const vae_act *cur)
{
    float *h = to_host(r, act_data(r, cur), act_fsize(cur) * cur->n);
    return h && be_status(r, 1) == WAN_OK ? h : NULL;
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
    wan_status rc = host_ensure(r, &frame, (size_t)3 * H * W) ? WAN_OK : r->err->code;
    run_reset_cache(r);
    for (int k = 0; k < d->T && rc == WAN_OK; k++) {
        vae_act cur;
        rc = decode_chunk(d, k, 0, 0, d->h, d->w, &cur);
        const float *out = NULL;
        if (rc == WAN_OK && !(out = chunk_frames(r, &cur)))
            rc = r->err->code;
        for (int f = 0; rc == WAN_OK && f < cur.n; f++) {
            const float *src = out + (size_t)f * act_fsize(&cur);
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
        if (!host_ensure(&d->run, &v[k], k < 2 ? vmax : hmax))
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
                float *B = NULL;
                if (rc == WAN_OK && !(B = chunk_frames(r, &cur)))
                    rc = r->err->code;
                for (int f = 0; rc == WAN_OK && f < cur.n; f++)
                    tile_frame(&t, i, j, first_frame(d, k) + f, B + (size_t)f * act_fsize(&cur));
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

static vae_threads threads_enter(int n)
{
    vae_threads t = { omp_get_max_threads(), openblas_get_num_threads() };
    omp_set_num_threads(n > 0 ? n : t.omp);
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
            rc = host_ensure(r, &v, item) ? WAN_OK : r->err->code;
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

/* The caller's backend, or (be NULL) a "cpu" table made for this call in *own (wan_backend_free it after). */
static wan_status backend_for(wan_backend *be, int n_threads, wan_backend **use, wan_backend **own, wan_error *err)
{
    *own = NULL, *use = be;
    if (be)
        return WAN_OK;
    wan_status rc = wan_backend_cpu_create(n_threads, own, err);
    *use = *own;
    return rc;
}

static wan_status decode_impl(const wan_model_t *model, wan_backend *be, const wan_host_tensor *z,
                              const wan_vae_params *prm, wan_vae_frame_fn on_frame, void *user, float *out,
                              wan_vae_debug_fn dbg, void *dbg_user, wan_error *err)
{
    wan_vae_params defaults = wan_vae_default_params();
    vae_dec d = { .prm = prm ? prm : &defaults };
    const wan_st_set *ws;
    wan_status rc = vae_of(model, &d.cfg, &ws, err);
    if (rc == WAN_OK)
        rc = check_input(z, "z", d.cfg->z_dim, err);
    if (rc != WAN_OK)
        return rc;
    wan_backend *own = NULL;
    vae_plan *plan = wan_malloc(sizeof *plan);
    if (!plan)
        return wan_err(err, WAN_ERR_NOMEM, "VAE: out of memory");
    rc = plan_decoder(d.cfg, plan, err);
    if (rc == WAN_OK)
        rc = backend_for(be, d.prm->n_threads, &be, &own, err);
    if (rc == WAN_OK)
        rc = run_init(&d.run, be, ws, plan, err);
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
        vae_threads th = threads_enter(d.prm->n_threads);
        rc = weights_prepare(&d.run);
        if (rc == WAN_OK)
            rc = decode_items(&d, z, on_frame, user, out);
        threads_leave(th);
    }
    if (d.run.slots)
        run_free(&d.run);
    wan_backend_free(own);
    wan_free(plan);
    return rc;
}

wan_status wan_vae_decode_debug(const wan_model_t *model, const wan_host_tensor *z, const wan_vae_params *p,
                                wan_vae_frame_fn on_frame, void *user, wan_vae_debug_fn dbg, void *dbg_user,
                                wan_error *err)
{
    if (!on_frame)
        return wan_err(err, WAN_ERR_INVALID_ARG, "VAE: on_frame is NULL");
    return decode_impl(model, NULL, z, p, on_frame, user, NULL, dbg, dbg_user, err);
}

wan_status wan_vae_decode_be(const wan_model_t *model, wan_backend *be, const wan_host_tensor *z,
                             const wan_vae_params *p, wan_vae_frame_fn on_frame, void *user, wan_error *err)
{
    if (!on_frame)
        return wan_err(err, WAN_ERR_INVALID_ARG, "VAE: on_frame is NULL");
    return decode_impl(model, be, z, p, on_frame, user, NULL, NULL, NULL, err);
}

wan_status wan_vae_decode_frames(const wan_model_t *model, const wan_host_tensor *z,
                                 const wan_vae_params *params, wan_vae_frame_fn on_frame, void *user,
                                 char *errbuf, size_t errlen)
{
    wan_error err = { 0 };
    wan_status rc = wan_vae_decode_be(model, NULL, z, params, on_frame, user, &err);
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
        rc = decode_impl(model, NULL, z, params, copy_frame, &fc, out.data, NULL, NULL, &err);
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
    const size_t total = (size_t)n * cin * hp * wp;
    float *h = ensure(r, &r->bufs[0], total) ? host_for(r, r->bufs[0].d, total) : NULL;
    if (!h)
        return r->err->code;
    float *dst = h;
    for (int t = 0; t < n; t++)
        for (int cp = 0; cp < cin; cp++) {
            int c = cp / (p * p), col = cp % (p * p) / p, row = cp % p;
            const float *src = x + ((size_t)c * F + f0 + t) * H * W;
            for (int y = 0; y < hp; y++)
                for (int xx = 0; xx < wp; xx++)
                    *dst++ = src[(size_t)(y * p + row) * W + xx * p + col];
        }
    to_backend(r, r->bufs[0].d, h, total);
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
        conv_w cw;
        rc = encode_gather(r, x, F, H, W, p, k ? 1 + fpc * (k - 1) : 0, k ? fpc : 1, &cur);
        r->chunk = k;
        if (rc == WAN_OK)
            rc = run_plan(r, &cur, k == 0);
        /* quant_conv, only its first z output channels (the mean) */
        if (rc == WAN_OK)
            rc = load_conv(r, 0, "", "quant_conv", 2 * z, 2 * z, 1, 1, 5, &cw);
        if (rc != WAN_OK)
            break;
        const int A = (cur.bi + 1) % 3;
        const size_t hw = (size_t)cur.h * cur.w;
        if (!ensure(r, &r->bufs[A], (size_t)z * hw))
            return r->err->code;
        wan_conv_geom g = wan_conv_geom_make(2 * z, z, cur.h, cur.w, 1, 1, 1, 0);
        for (int t = 0; rc == WAN_OK && t < cur.n && tout < Tl; t++, tout++) {
            const float *tap = act_data(r, &cur) + (size_t)t * act_fsize(&cur);
            r->be->conv2d_taps(r->be, &g, 1, cw.w, cw.b, &tap, r->bufs[A].d);
            const float *m = to_host(r, r->bufs[A].d, (size_t)z * hw);
            if (!m || be_status(r, 1) != WAN_OK) {
                rc = r->err->code;
                break;
            }
            for (int ch = 0; ch < z; ch++)
                memcpy(mean + ((size_t)ch * Tl + tout) * hw, m + ch * hw, hw * sizeof(float));
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
        rc = load_conv(r, 0, "", "quant_conv", 2 * c->z_dim, 2 * c->z_dim, 1, 1, 5, NULL);
    r->dry = 0;
    return rc;
}

/* Checks x against the encoder's config; sets *s to the spatial factor. */
static wan_status encode_check_input(const wan_vae_config *c, const wan_host_tensor *x, int *s, wan_error *err)
{
    const int p = c->patch_size > 1 ? c->patch_size : 1;
    if (c->in_channels != 3 * p * p)
        return wan_err(err, WAN_ERR_UNSUPPORTED, "VAE: in_channels %d is not 3 x patch %d^2", c->in_channels, p);
    wan_status rc = check_input(x, "x", 3, err);
    *s = (1 << (c->n_dim_mult - 1)) * p;
    if (rc == WAN_OK && (x->shape[3] % *s || x->shape[4] % *s))
        rc = wan_err(err, WAN_ERR_INVALID_ARG, "VAE: x is %lldx%lld pixels; the encoder needs multiples of %d",
                     (long long)x->shape[3], (long long)x->shape[4], *s);
    return rc;
}

wan_status wan_vae_encode_be(const wan_model_t *model, wan_backend *be, const wan_host_tensor *x,
                             const wan_vae_params *params, wan_host_tensor *latent_mean, wan_error *err)
{
    wan_vae_params defaults = wan_vae_default_params();
    const wan_vae_params *prm = params ? params : &defaults;
    const wan_vae_config *c = NULL;
    const wan_st_set *ws;
    int s = 1;
    wan_status rc = latent_mean ? vae_of(model, &c, &ws, err)
                                : wan_err(err, WAN_ERR_INVALID_ARG, "VAE: latent_mean is NULL");
    if (rc == WAN_OK)
        rc = encode_check_input(c, x, &s, err);
    vae_plan *plan = rc == WAN_OK ? wan_malloc(sizeof *plan) : NULL;
    if (rc == WAN_OK && !plan)
        rc = wan_err(err, WAN_ERR_NOMEM, "VAE: out of memory");
    if (rc == WAN_OK)
        rc = plan_encoder(c, plan, err);
    wan_backend *own = NULL;
    if (rc == WAN_OK)
        rc = backend_for(be, prm->n_threads, &be, &own, err);
    vae_run r = { 0 };
    if (rc == WAN_OK)
        rc = run_init(&r, be, ws, plan, err);
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
            rc = wan_err(err, WAN_ERR_NOMEM, "VAE: out of memory");
    }
    if (rc == WAN_OK) {
        vae_threads th = threads_enter(prm->n_threads);
        const int64_t B = x->shape[0], F = x->shape[2], H = x->shape[3], W = x->shape[4];
        const size_t item = (size_t)wan_host_tensor_numel(&out) / (size_t)B;
        rc = weights_prepare(&r);
        for (int64_t b = 0; b < B && rc == WAN_OK; b++)
            rc = encode_item(&r, c, (const float *)x->data + (size_t)b * 3 * F * H * W, (int)F, (int)H, (int)W,
                             (int)out.shape[2], (float *)out.data + b * item);
        threads_leave(th);
    }
    if (r.slots)
        run_free(&r);
    wan_backend_free(own);
    wan_free(plan);
    if (rc == WAN_OK)
        *latent_mean = out;
    else
        wan_free(out.data);
    return rc;
}

wan_status wan_vae_encode(const wan_model_t *model, const wan_host_tensor *x, const wan_vae_params *params,
                          wan_host_tensor *latent_mean, char *errbuf, size_t errlen)
{
    wan_error err = { 0 };
    wan_status rc = wan_vae_encode_be(model, NULL, x, params, latent_mean, &err);
    wan_err_copy(&err, errbuf, errlen);
    return rc;
}
