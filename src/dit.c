/* dit.c — WanTransformer3DModel: weight binding, and the forward (embeddings, blocks, head) as a sequence of
 * calls on a backend table (backend.h: the CPU kernels, or CUDA), and the public wan_transformer_forward. Math
 * follows docs/MODEL.md "## Transformer (DiT)" and spec/transformer.md §3-§5. */
#include "dit.h"
#include "backend.h"
#include "cpu/gemm.h"
#include "cpu/ops.h"
#include "lora.h"
#include "model_dir.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FFN_CHUNK 2048      /* tokens per FFN hidden chunk: bounds the [tokens, F] buffer */
#define ROPE_THETA 10000.0

/* ---- binding ---------------------------------------------------------------------------------- */

typedef struct binder {
    const wan_st_set *w;
    float *cur, *end;
    wan_error *err;
} binder;

static int64_t r16(int64_t n) { return (n + 15) / 16 * 16; }

static wan_status bind_vec(binder *bd, const char *name, int ndim, const int64_t *shape, const float **out)
{
    wan_tensor t;
    wan_status rc = wan_st_set_get(bd->w, name, ndim, shape, &t, bd->err);
    if (rc != WAN_OK)
        return rc;
    const int64_t n = wan_tensor_numel(&t);
    WAN_ASSERT(bd->cur + r16(n) <= bd->end, bd->err);
    wan_cpu_to_f32(t.data, t.dtype, bd->cur, n);
    *out = bd->cur;
    bd->cur += r16(n);
    return WAN_OK;
}

static wan_status bind_lin(binder *bd, const char *prefix, int64_t N, int64_t K, wan_dit_linear *out)
{
    char name[256];
    snprintf(name, sizeof name, "%s.weight", prefix);
    wan_status rc = wan_st_set_get_weight(bd->w, name, N, K, &out->w, bd->err);
    if (rc != WAN_OK)
        return rc;
    snprintf(name, sizeof name, "%s.bias", prefix);
    return bind_vec(bd, name, 1, (int64_t[]){ N }, &out->b);
}

static wan_status bind_block(binder *bd, const wan_dit *d, int i, wan_dit_block *b)
{
    static const char *const attn_lin[4] = { "to_q", "to_k", "to_v", "to_out.0" };
    const int64_t D = d->D;
    char p[128], name[160];
    wan_status rc;
    snprintf(name, sizeof name, "blocks.%d.scale_shift_table", i);
    if ((rc = bind_vec(bd, name, 3, (int64_t[]){ 1, 6, D }, &b->sst)) != WAN_OK)
        return rc;
    for (int a = 0; a < 2; a++) {
        wan_dit_linear *lins[4] = { a ? &b->q2 : &b->q, a ? &b->k2 : &b->k, a ? &b->v2 : &b->v,
                                    a ? &b->o2 : &b->o };
        for (int j = 0; j < 4; j++) {
            snprintf(p, sizeof p, "blocks.%d.attn%d.%s", i, a + 1, attn_lin[j]);
            if ((rc = bind_lin(bd, p, D, D, lins[j])) != WAN_OK)
                return rc;
        }
        snprintf(name, sizeof name, "blocks.%d.attn%d.norm_q.weight", i, a + 1);
        if ((rc = bind_vec(bd, name, 1, &D, a ? &b->norm_q2 : &b->norm_q)) != WAN_OK)
            return rc;
        snprintf(name, sizeof name, "blocks.%d.attn%d.norm_k.weight", i, a + 1);
        if ((rc = bind_vec(bd, name, 1, &D, a ? &b->norm_k2 : &b->norm_k)) != WAN_OK)
            return rc;
    }
    b->norm2_w = b->norm2_b = NULL;
    if (d->cfg.cross_attn_norm) {
        snprintf(name, sizeof name, "blocks.%d.norm2.weight", i);
        if ((rc = bind_vec(bd, name, 1, &D, &b->norm2_w)) != WAN_OK)
            return rc;
        snprintf(name, sizeof name, "blocks.%d.norm2.bias", i);
        if ((rc = bind_vec(bd, name, 1, &D, &b->norm2_b)) != WAN_OK)
            return rc;
    }
    snprintf(p, sizeof p, "blocks.%d.ffn.net.0.proj", i);
    if ((rc = bind_lin(bd, p, d->F, D, &b->ff1)) != WAN_OK)
        return rc;
    snprintf(p, sizeof p, "blocks.%d.ffn.net.2", i);
    return bind_lin(bd, p, D, d->F, &b->ff2);
}

static wan_status check_config(const wan_transformer_config *c, wan_error *err)
{
    const int *ps = c->patch_size;
    if (c->num_attention_heads < 1 || c->attention_head_dim < 2 || c->attention_head_dim % 2 || c->in_channels < 1 ||
        c->out_channels < 1 || c->text_dim < 1 || c->freq_dim < 2 || c->ffn_dim < 1 || c->num_layers < 0 ||
        ps[0] < 1 || ps[1] < 1 || ps[2] < 1 || !(c->eps >= 0) || c->rope_max_seq_len < 1)
        return wan_err(err, WAN_ERR_UNSUPPORTED,
                       "transformer config: unsupported values (heads %d, head_dim %d (must be even), in %d, out %d, "
                       "text_dim %d, freq_dim %d, ffn %d, layers %d, patch %dx%dx%d)",
                       c->num_attention_heads, c->attention_head_dim, c->in_channels, c->out_channels, c->text_dim,
                       c->freq_dim, c->ffn_dim, c->num_layers, ps[0], ps[1], ps[2]);
    if (c->image_dim > 0 || c->added_kv_proj_dim > 0)
        return wan_err(err, WAN_ERR_UNSUPPORTED,
                       "transformer config: image conditioning (image_dim %d, added_kv_proj_dim %d) is not "
                       "supported (text-to-video only)", c->image_dim, c->added_kv_proj_dim);
    return WAN_OK;
}

wan_status wan_dit_set_config(wan_dit *d, const wan_transformer_config *cfg, wan_error *err)
{
    memset(d, 0, sizeof *d);
    wan_status rc = check_config(cfg, err);
    if (rc != WAN_OK)
        return rc;
    d->cfg = *cfg;
    d->H = cfg->num_attention_heads;
    d->hd = cfg->attention_head_dim;
    d->D = d->H * d->hd;
    d->F = cfg->ffn_dim;
    const int64_t pvol = (int64_t)cfg->patch_size[0] * cfg->patch_size[1] * cfg->patch_size[2];
    d->Kp = cfg->in_channels * pvol;
    d->Op = cfg->out_channels * pvol;
    /* RoPE split (spec §3.1): height and width get 2·floor(hd/6) channels each, frames the rest */
    d->rope_h = d->rope_w = 2 * (int)(d->hd / 6);
    d->rope_t = (int)d->hd - 2 * d->rope_h;
    return WAN_OK;
}

wan_status wan_dit_init(wan_dit *d, const wan_st_set *w, const wan_transformer_config *cfg, wan_error *err)
{
    wan_status rc = wan_dit_set_config(d, cfg, err);
    if (rc != WAN_OK)
        return rc;

    const int64_t D = d->D, nl = cfg->num_layers;
    const int64_t nvec = 13 * D + d->Op + 8 * 16 + nl * (21 * D + d->F + 17 * 16);
    d->vec = wan_malloc((size_t)nvec * sizeof(float));
    d->blocks = wan_calloc(nl ? (size_t)nl : 1, sizeof *d->blocks);
    if (!d->vec || !d->blocks) {
        wan_dit_free(d);
        return wan_err(err, WAN_ERR_NOMEM, "transformer: cannot allocate %lld weight vectors", (long long)nvec);
    }
    binder bd = { w, d->vec, d->vec + nvec, err };
    const int64_t pshape[5] = { D, cfg->in_channels, cfg->patch_size[0], cfg->patch_size[1], cfg->patch_size[2] };
    if ((rc = wan_st_set_get(w, "patch_embedding.weight", 5, pshape, &d->patch.w, err)) != WAN_OK ||
        (rc = bind_vec(&bd, "patch_embedding.bias", 1, &D, &d->patch.b)) != WAN_OK)
        goto fail;
    d->patch.w = wan_tensor_view(d->patch.w.dtype, 2, (int64_t[]){ D, d->Kp }, d->patch.w.data);
    if ((rc = bind_lin(&bd, "condition_embedder.time_embedder.linear_1", D, cfg->freq_dim, &d->t1)) ||
        (rc = bind_lin(&bd, "condition_embedder.time_embedder.linear_2", D, D, &d->t2)) ||
        (rc = bind_lin(&bd, "condition_embedder.time_proj", 6 * D, D, &d->tproj)) ||
        (rc = bind_lin(&bd, "condition_embedder.text_embedder.linear_1", D, cfg->text_dim, &d->c1)) ||
        (rc = bind_lin(&bd, "condition_embedder.text_embedder.linear_2", D, D, &d->c2)) ||
        (rc = bind_lin(&bd, "proj_out", d->Op, D, &d->out)) ||
        (rc = bind_vec(&bd, "scale_shift_table", 3, (int64_t[]){ 1, 2, D }, &d->sst_out)))
        goto fail;
    for (int i = 0; i < cfg->num_layers; i++)
        if ((rc = bind_block(&bd, d, i, &d->blocks[i])) != WAN_OK)
            goto fail;
    char extra[64];
    snprintf(extra, sizeof extra, "blocks.%d.scale_shift_table", cfg->num_layers);
    if (wan_st_set_find(w, extra)) {
        rc = wan_err(err, WAN_ERR_SHAPE, "%s: the weights have a block %d but the config says num_layers %d",
                     w->dir ? w->dir : "transformer", cfg->num_layers, cfg->num_layers);
        goto fail;
    }
    return WAN_OK;
fail:
    wan_dit_free(d);
    return rc;
}

void wan_dit_free(wan_dit *d)
{
    if (!d)
        return;
    wan_free(d->vec);
    wan_free(d->blocks);
    memset(d, 0, sizeof *d);
}

/* Appends one entry when there is room; counts it either way. */
static void put_param(wan_dit_param *out, int cap, int *n, const char *name, wan_dit_linear *lin, const float *vec,
                      int64_t len)
{
    if (*n < cap) {
        wan_dit_param *p = &out[*n];
        snprintf(p->name, sizeof p->name, "%s", name);
        p->lin = lin;
        p->vec = (float *)vec; /* the f32 copies live in dit->vec, which the wan_dit owns */
        p->n = len;
    }
    (*n)++;
}

static void put_linear(wan_dit_param *out, int cap, int *n, const char *prefix, wan_dit_linear *l)
{
    char name[96];
    snprintf(name, sizeof name, "%s.weight", prefix);
    put_param(out, cap, n, name, l, NULL, 0);
    snprintf(name, sizeof name, "%s.bias", prefix);
    put_param(out, cap, n, name, NULL, l->b, l->w.ne[0]);
}

int wan_dit_params(wan_dit *d, wan_dit_param *out, int cap)
{
    static const char *const attn_lin[4] = { "to_q", "to_k", "to_v", "to_out.0" };
    const int64_t D = d->D;
    int n = 0;
    char p[96];
    put_linear(out, cap, &n, "patch_embedding", &d->patch);
    put_linear(out, cap, &n, "condition_embedder.time_embedder.linear_1", &d->t1);
    put_linear(out, cap, &n, "condition_embedder.time_embedder.linear_2", &d->t2);
    put_linear(out, cap, &n, "condition_embedder.time_proj", &d->tproj);
    put_linear(out, cap, &n, "condition_embedder.text_embedder.linear_1", &d->c1);
    put_linear(out, cap, &n, "condition_embedder.text_embedder.linear_2", &d->c2);
    put_linear(out, cap, &n, "proj_out", &d->out);
    put_param(out, cap, &n, "scale_shift_table", NULL, d->sst_out, 2 * D);
    for (int i = 0; i < d->cfg.num_layers; i++) {
        wan_dit_block *b = &d->blocks[i];
        for (int a = 0; a < 2; a++) {
            wan_dit_linear *lins[4] = { a ? &b->q2 : &b->q, a ? &b->k2 : &b->k, a ? &b->v2 : &b->v,
                                        a ? &b->o2 : &b->o };
            for (int j = 0; j < 4; j++) {
                snprintf(p, sizeof p, "blocks.%d.attn%d.%s", i, a + 1, attn_lin[j]);
                put_linear(out, cap, &n, p, lins[j]);
            }
            snprintf(p, sizeof p, "blocks.%d.attn%d.norm_q.weight", i, a + 1);
            put_param(out, cap, &n, p, NULL, a ? b->norm_q2 : b->norm_q, D);
            snprintf(p, sizeof p, "blocks.%d.attn%d.norm_k.weight", i, a + 1);
            put_param(out, cap, &n, p, NULL, a ? b->norm_k2 : b->norm_k, D);
        }
        snprintf(p, sizeof p, "blocks.%d.ffn.net.0.proj", i);
        put_linear(out, cap, &n, p, &b->ff1);
        snprintf(p, sizeof p, "blocks.%d.ffn.net.2", i);
        put_linear(out, cap, &n, p, &b->ff2);
        snprintf(p, sizeof p, "blocks.%d.scale_shift_table", i);
        put_param(out, cap, &n, p, NULL, b->sst, 6 * D);
        if (b->norm2_w) {
            snprintf(p, sizeof p, "blocks.%d.norm2.weight", i);
            put_param(out, cap, &n, p, NULL, b->norm2_w, D);
            snprintf(p, sizeof p, "blocks.%d.norm2.bias", i);
            put_param(out, cap, &n, p, NULL, b->norm2_b, D);
        }
    }
    return n;
}

/* ---- forward ---------------------------------------------------------------------------------- */

typedef struct dit_run {
    const wan_dit *d;
    wan_backend *be;
    int nt;                         /* host threads (the LoRA terms)                     */
    int nf, nh, nw;                 /* token grid F', H', W'                             */
    int64_t L, Lt, U, nts, chunk;   /* tokens, text rows, distinct timesteps, timestep values, FFN chunk */
    int64_t Lu;                     /* text rows computed: row Lu - 1 stands for the last Lt - Lu + 1 (equal) */
    float last_w;                   /* Lt - Lu + 1: the multiplicity of cross-attention's last key */
    /* backend memory (the workspace) */
    float *x, *h, *q, *k, *v, *o;   /* [L, D]: residual, normed, q, k, v, attention out  */
    float *c, *ck, *cv;             /* [Lu, D]: text embedding, cross K, cross V          */
    float *u;                       /* [chunk, F] FFN hidden                             */
    float *sinus;                   /* [U, freq_dim]                                     */
    float *temb, *tmp, *tproj, *mod;/* [U, D], [U, D], [U, 6D], [U, 6D]                  */
    float *patches, *p;             /* [L, Kp], [L, Op]                                  */
    float *rope_t, *rope_h, *rope_w;/* per-axis cos/sin tables                           */
    int32_t *tok_row;               /* [L] row of each token in the U tables; NULL: U==1 */
    /* host memory (the workspace's staging) */
    float *tvals;                   /* [nts] distinct timesteps first                    */
    int32_t *rows;                  /* [nts] each value's row among them                 */
    float *hctx;                    /* [Lt, text_dim] the context, downloaded to find its trailing run (device) */
    float *hsinus, *hrope;          /* the sinusoids and RoPE tables, built here, then uploaded */
    float *lora;                    /* LoRA low-rank products, per thread (NULL: no LoRA) */
    const wan_dit_probe *probe;
} dit_run;

#define WS_ALIGN 256 /* backend buffers: what the CUDA kernels' vector loads and cuBLASLt prefer */

/* Places `bytes` at *off from base (base NULL: only counts). */
static void *take(uint8_t *base, size_t *off, int64_t bytes)
{
    void *p = base ? base + *off : NULL;
    *off += ((size_t)bytes + WS_ALIGN - 1) & ~(size_t)(WS_ALIGN - 1);
    return p;
}

static int64_t rope_floats(const dit_run *r)
{
    const wan_dit *d = r->d;
    return (int64_t)r->nf * d->rope_t + (int64_t)r->nh * d->rope_h + (int64_t)r->nw * d->rope_w;
}

/* Lays out the backend buffers of one forward at base (NULL: counts the bytes); returns the bytes. */
static size_t plan_dev(dit_run *r, uint8_t *base)
{
    const wan_dit *d = r->d;
    const int64_t D = d->D, L = r->L, U = r->U, f4 = sizeof(float);
    size_t off = 0;
    float **ld[] = { &r->x, &r->h, &r->q, &r->k, &r->v, &r->o };
    for (size_t i = 0; i < sizeof ld / sizeof *ld; i++)
        *ld[i] = take(base, &off, L * D * f4);
    r->c = take(base, &off, r->Lu * D * f4);
    r->ck = take(base, &off, r->Lu * D * f4);
    r->cv = take(base, &off, r->Lu * D * f4);
    r->u = take(base, &off, r->chunk * d->F * f4);
    r->sinus = take(base, &off, U * d->cfg.freq_dim * f4);
    r->temb = take(base, &off, U * D * f4);
    r->tmp = take(base, &off, U * D * f4);
    r->tproj = take(base, &off, U * 6 * D * f4);
    r->mod = take(base, &off, U * 6 * D * f4);
    r->patches = take(base, &off, L * d->Kp * f4);
    r->p = take(base, &off, L * d->Op * f4);
    r->rope_t = take(base, &off, rope_floats(r) * f4);
    r->rope_h = base ? r->rope_t + (int64_t)r->nf * d->rope_t : NULL;
    r->rope_w = base ? r->rope_h + (int64_t)r->nh * d->rope_h : NULL;
    r->tok_row = take(base, &off, L * (int64_t)sizeof(int32_t));
    return off;
}

/* The host staging of one forward at base (NULL: counts the bytes); returns the bytes. */
static size_t plan_host(dit_run *r, uint8_t *base)
{
    const wan_dit *d = r->d;
    const int64_t f4 = sizeof(float);
    size_t off = 0;
    r->tvals = take(base, &off, r->nts * f4);
    r->rows = take(base, &off, r->nts * (int64_t)sizeof(int32_t));
    r->hctx = take(base, &off, r->be->host_memory ? 0 : r->Lt * d->cfg.text_dim * f4);
    r->hsinus = take(base, &off, r->U * d->cfg.freq_dim * f4);
    r->hrope = take(base, &off, rope_floats(r) * f4);
    r->lora = d->lora_rank ? take(base, &off, wan_lora_lin_scratch(d->lora_rank, r->nt) * f4) : NULL;
    return off;
}

void wan_dit_ws_free(wan_dit_ws *ws)
{
    if (!ws)
        return;
    if (ws->mem)
        ws->be->free(ws->be, ws->mem);
    wan_free(ws->host);
    memset(ws, 0, sizeof *ws);
}

/* Grows the host staging to r's shapes, keeping its contents (the timestep rows lead the layout). */
static wan_status host_reserve(wan_dit_ws *ws, dit_run *r, wan_error *err)
{
    const size_t need = plan_host(r, NULL);
    if (need > ws->host_cap) {
        void *p = wan_realloc(ws->host, need);
        if (!p)
            return wan_err(err, WAN_ERR_NOMEM, "transformer: cannot allocate %zu bytes of host staging", need);
        ws->host = p;
        ws->host_cap = need;
        ws->grows++;
    }
    plan_host(r, ws->host);
    return WAN_OK;
}

/* Grows the workspace to the shapes of r (never shrinks it) and lays r's buffers out in it. Nothing is
 * allocated when the shapes fit what an earlier forward used. */
static wan_status ws_reserve(wan_dit_ws *ws, dit_run *r, wan_error *err)
{
    const size_t need = plan_dev(r, NULL);
    if (need > ws->cap) {
        if (ws->mem)
            ws->be->free(ws->be, ws->mem);
        ws->cap = 0;
        ws->be = r->be;
        ws->mem = r->be->alloc(r->be, need);
        if (!ws->mem) {
            if (r->be->sync(r->be, err) == WAN_OK)
                wan_err(err, WAN_ERR_NOMEM, "%s backend: allocation failed", r->be->name);
            return wan_err_wrap(err, "transformer workspace (%zu MiB for %lld tokens, %lld text rows): ",
                                need >> 20, (long long)r->L, (long long)r->Lt);
        }
        ws->cap = need;
        ws->grows++;
    }
    plan_dev(r, ws->mem);
    return host_reserve(ws, r, err);
}

static void lin(const dit_run *r, const wan_dit_linear *l, const float *x, int64_t M, float *y)
{
    wan_backend *be = r->be;
    be->linear(be, x, M, l->w.ne[1], &l->w, l->b, y, l->w.ne[0]);
    /* host-only: wan_dit_forward_ws refuses LoRA terms on a backend whose memory is not the host's */
    if (l->lora && be->err.code == WAN_OK)
        wan_lora_lin_apply(l->lora, x, M, l->w.ne[1], y, l->w.ne[0], r->lora, r->nt);
}

/* Passes a tensor to the probe (downloaded first when it lives in device memory). */
static void probe(const dit_run *r, const char *name, const float *data, int64_t rows, int64_t cols)
{
    if (!r->probe || !r->probe->fn)
        return;
    if (r->be->host_memory) {
        r->probe->fn(name, data, rows, cols, r->probe->user);
        return;
    }
    float *h = wan_malloc((size_t)(rows * cols) * sizeof(float)); /* tests only: not on the sampling path */
    if (!h) {
        wan_backend_fail(r->be, WAN_ERR_NOMEM, "out of host memory for the probe of %s", name);
        return;
    }
    r->be->download(r->be, h, data, (size_t)(rows * cols) * sizeof(float));
    if (r->be->err.code == WAN_OK)
        r->probe->fn(name, h, rows, cols, r->probe->user);
    wan_free(h);
}

/* Sinusoid (diffusers get_timestep_embedding, flip_sin_to_cos, shift 0) → time MLP → time_proj. The
 * exponent and the angle are rounded to f32 exactly as diffusers computes them; cos comes first. The
 * sinusoids are built on the host and uploaded. */
static void time_embed(dit_run *r)
{
    const wan_dit *d = r->d;
    wan_backend *be = r->be;
    const int fd = d->cfg.freq_dim, half = fd / 2;
    const float c = (float)-log(10000.0);
    for (int64_t u = 0; u < r->U; u++) {
        float *e = r->hsinus + u * fd;
        for (int i = 0; i < half; i++) {
            const float ex = (float)i * c / (float)half;
            const float arg = r->tvals[u] * (float)exp((double)ex);
            e[i] = (float)cos((double)arg);
            e[half + i] = (float)sin((double)arg);
        }
        if (fd % 2)
            e[fd - 1] = 0.0f;
    }
    be->upload(be, r->sinus, r->hsinus, (size_t)(r->U * fd) * sizeof(float));
    lin(r, &d->t1, r->sinus, r->U, r->tmp);
    be->silu(be, r->tmp, r->tmp, r->U * d->D);
    lin(r, &d->t2, r->tmp, r->U, r->temb); /* temb: pre-SiLU, used by the head */
    probe(r, "temb", r->temb, r->U, d->D);
    be->silu(be, r->temb, r->tmp, r->U * d->D);
    lin(r, &d->tproj, r->tmp, r->U, r->tproj);
    probe(r, "timestep_proj", r->tproj, r->U, 6 * d->D);
}

/* Rows of ctx [Lt, C] up to the first one of its trailing run of rows bitwise equal to the last row: Lt when the
 * last two rows differ, 1 when all rows are equal. The pipeline pads a prompt's umT5 embedding to 512 rows with
 * zero rows and diffusers passes no mask, so every pad row is a key; equal rows stay equal through the text MLP
 * and the K/V projections, hence one computed row with a multiplicity in the softmax gives the same attention. */
static int64_t ctx_rows_kept(const float *ctx, int64_t Lt, int64_t C)
{
    const float *last = ctx + (Lt - 1) * C;
    int64_t n = Lt;
    while (n > 1 && !memcmp(ctx + (n - 2) * C, last, (size_t)C * sizeof(float)))
        n--;
    return n;
}

/* Sets r->Lu and r->last_w for the context (backend memory: a device context is downloaded to the host staging
 * first); every row is kept when all_rows is set. */
static void share_pad_rows(dit_run *r, const float *ctx, int all_rows)
{
    const int64_t C = r->d->cfg.text_dim;
    r->Lu = r->Lt;
    if (!all_rows && r->be->host_memory) {
        r->Lu = ctx_rows_kept(ctx, r->Lt, C);
    } else if (!all_rows) {
        r->be->download(r->be, r->hctx, ctx, (size_t)(r->Lt * C) * sizeof(float));
        if (r->be->err.code == WAN_OK)
            r->Lu = ctx_rows_kept(r->hctx, r->Lt, C);
    }
    r->last_w = (float)(r->Lt - r->Lu + 1);
}

/* Text MLP, linear_2(gelu_tanh(linear_1(ctx))), over the first Lu context rows (row Lu - 1 stands for the rest). */
static void text_embed(dit_run *r, const float *ctx)
{
    const int64_t D = r->d->D;
    lin(r, &r->d->c1, ctx, r->Lu, r->ck);
    r->be->gelu_tanh(r->be, r->ck, r->Lu * D);
    lin(r, &r->d->c2, r->ck, r->Lu, r->c);
    if (!r->probe || !r->probe->fn)
        return;
    /* the probe sees all Lt rows, as diffusers computes them: the last computed row repeated */
    float *h = wan_malloc((size_t)(r->Lt * D) * sizeof(float)); /* tests only: not on the sampling path */
    if (!h) {
        wan_backend_fail(r->be, WAN_ERR_NOMEM, "out of host memory for the probe of text_emb");
        return;
    }
    r->be->download(r->be, h, r->c, (size_t)(r->Lu * D) * sizeof(float));
    for (int64_t i = r->Lu; i < r->Lt; i++)
        memcpy(h + i * D, h + (r->Lu - 1) * D, (size_t)D * sizeof(float));
    if (r->be->err.code == WAN_OK)
        r->probe->fn("text_emb", h, r->Lt, D, r->probe->user);
    wan_free(h);
}

/* Conv3d with stride = kernel: gather channel-major patch vectors, one GEMM. */
static void patch_embed(dit_run *r, const float *x, int T, int Hl, int Wl)
{
    const wan_dit *d = r->d;
    const int *ps = d->cfg.patch_size;
    r->be->patchify(r->be, x, r->patches, d->cfg.in_channels, T, Hl, Wl, ps[0], ps[1], ps[2]);
    lin(r, &d->patch, r->patches, r->L, r->x);
    probe(r, "patch", r->x, r->L, d->D);
}

/* Attention of the L tokens over Lk keys, the last of multiplicity last_w. */
static void attention(const dit_run *r, const float *q, const float *k, const float *v, float *o, int64_t Lk,
                      float last_w)
{
    const int64_t D = r->d->D;
    r->be->attention(r->be, q, D, k, D, v, D, o, D, r->L, Lk, (int)r->d->H, (int)r->d->hd,
                     (float)(1.0 / sqrt((double)r->d->hd)), last_w);
}

static void run_block(dit_run *r, const wan_dit_block *b)
{
    const wan_dit *d = r->d;
    wan_backend *be = r->be;
    const int64_t D = d->D, L = r->L, ml = 6 * D;
    const float eps = (float)d->cfg.eps;
    const int32_t *tr = r->U > 1 ? r->tok_row : NULL;
    /* modulation rows: shift/scale/gate (self-attention), shift/scale/gate (FFN), one set per distinct t */
    be->add_rows(be, r->mod, b->sst, r->tproj, r->U, ml, ml, ml);
    const float *M = r->mod;

    /* (a) self-attention: LN·(1 + scale) + shift → q/k/v → RMSNorm over all heads → RoPE → attention */
    be->layernorm(be, r->x, r->h, L, D, D, eps, NULL, NULL, M, M + D, tr, ml);
    lin(r, &b->q, r->h, L, r->q);
    lin(r, &b->k, r->h, L, r->k);
    lin(r, &b->v, r->h, L, r->v);
    be->rmsnorm(be, r->q, L, D, D, eps, b->norm_q);
    be->rmsnorm(be, r->k, L, D, D, eps, b->norm_k);
    be->rope(be, r->q, D, r->nf, r->nh, r->nw, (int)d->H, (int)d->hd, d->rope_t, d->rope_h, r->rope_t, r->rope_h,
             r->rope_w);
    be->rope(be, r->k, D, r->nf, r->nh, r->nw, (int)d->H, (int)d->hd, d->rope_t, d->rope_h, r->rope_t, r->rope_h,
             r->rope_w);
    attention(r, r->q, r->k, r->v, r->o, L, 1.0f);
    lin(r, &b->o, r->o, L, r->h);
    be->gated_add(be, r->x, D, r->h, D, L, D, M + 2 * D, tr, ml);

    /* (b) cross-attention over every text row (the Lu computed ones, the last of multiplicity last_w): affine LN,
     * no modulation, no gate, no RoPE */
    if (b->norm2_w)
        be->layernorm(be, r->x, r->h, L, D, D, eps, b->norm2_w, b->norm2_b, NULL, NULL, NULL, 0);
    else
        be->copy(be, r->h, r->x, (size_t)(L * D) * sizeof(float));
    lin(r, &b->q2, r->h, L, r->q);
    be->rmsnorm(be, r->q, L, D, D, eps, b->norm_q2);
    lin(r, &b->k2, r->c, r->Lu, r->ck);
    be->rmsnorm(be, r->ck, r->Lu, D, D, eps, b->norm_k2);
    lin(r, &b->v2, r->c, r->Lu, r->cv);
    attention(r, r->q, r->ck, r->cv, r->o, r->Lu, r->last_w);
    lin(r, &b->o2, r->o, L, r->h);
    be->gated_add(be, r->x, D, r->h, D, L, D, NULL, NULL, 0);

    /* (c) feed-forward with tanh GELU, in token chunks */
    be->layernorm(be, r->x, r->h, L, D, D, eps, NULL, NULL, M + 3 * D, M + 4 * D, tr, ml);
    for (int64_t c0 = 0; c0 < L; c0 += r->chunk) {
        const int64_t n = L - c0 < r->chunk ? L - c0 : r->chunk;
        lin(r, &b->ff1, r->h + c0 * D, n, r->u);
        be->gelu_tanh(be, r->u, n * d->F);
        lin(r, &b->ff2, r->u, n, r->o + c0 * D);
    }
    be->gated_add(be, r->x, D, r->o, D, L, D, M + 5 * D, tr, ml);
}

/* Output head: LN·(1 + (S_out[1] + temb)) + (S_out[0] + temb) with the pre-SiLU temb, then proj_out. */
static void head(dit_run *r)
{
    const wan_dit *d = r->d;
    wan_backend *be = r->be;
    const int64_t D = d->D, ml = 2 * D;
    be->add_rows(be, r->mod, d->sst_out, r->temb, r->U, ml, D, D);
    be->layernorm(be, r->x, r->h, r->L, D, D, (float)d->cfg.eps, NULL, NULL, r->mod, r->mod + D,
                  r->U > 1 ? r->tok_row : NULL, ml);
    lin(r, &d->out, r->h, r->L, r->p);
    probe(r, "proj_out", r->p, r->L, d->Op);
}

/* Inverse of the patch gather with the channel innermost in each output feature vector. */
static void unpatchify(const dit_run *r, float *out, int T, int Hl, int Wl)
{
    const wan_dit *d = r->d;
    const int *ps = d->cfg.patch_size;
    r->be->unpatchify(r->be, r->p, out, d->cfg.out_channels, T, Hl, Wl, ps[0], ps[1], ps[2]);
}

/* Distinct timestep values and each token's row among them. tvals has room for n values. */
static int64_t distinct_t(const float *t, int64_t n, float *tvals, int32_t *row)
{
    int64_t U = 0;
    for (int64_t l = 0; l < n; l++) {
        int64_t u = (l > 0 && t[l] == tvals[row[l - 1]]) ? row[l - 1] : -1;
        for (int64_t j = 0; u < 0 && j < U; j++)
            if (tvals[j] == t[l])
                u = j;
        if (u < 0) {
            tvals[U] = t[l];
            u = U++;
        }
        row[l] = (int32_t)u;
    }
    return U;
}

/* Checks the shapes and timesteps and fills r's sizes (not its buffers). */
static wan_status run_init(dit_run *r, const wan_dit *d, wan_backend *be, int T, int Hl, int Wl, const float *t,
                           int per_token, int64_t Lt, wan_error *err)
{
    const int *ps = d->cfg.patch_size;
    if (T < 1 || Hl < 1 || Wl < 1 || T % ps[0] || Hl % ps[1] || Wl % ps[2])
        return wan_err(err, WAN_ERR_SHAPE, "transformer: latent frames x height x width %d x %d x %d must be "
                       "positive multiples of the patch %d x %d x %d", T, Hl, Wl, ps[0], ps[1], ps[2]);
    *r = (dit_run){ .d = d, .be = be, .nt = be->n_threads, .nf = T / ps[0], .nh = Hl / ps[1], .nw = Wl / ps[2],
                    .Lt = Lt, .Lu = Lt, .last_w = 1.0f };
    const int rmax = d->cfg.rope_max_seq_len;
    if (r->nf > rmax || r->nh > rmax || r->nw > rmax)
        return wan_err(err, WAN_ERR_SHAPE, "transformer: token grid %d x %d x %d exceeds rope_max_seq_len %d",
                       r->nf, r->nh, r->nw, rmax);
    if (Lt < 1)
        return wan_err(err, WAN_ERR_SHAPE, "transformer: the text context has no rows");
    if (d->lora_rank && !be->host_memory)
        return wan_err(err, WAN_ERR_UNSUPPORTED, "transformer: on-the-fly LoRA terms run on the host only, not "
                       "on the %s backend (merge the adapter into the weights)", be->name);
    r->L = (int64_t)r->nf * r->nh * r->nw;
    r->chunk = r->L < FFN_CHUNK ? r->L : FFN_CHUNK;
    r->nts = per_token ? r->L : 1;
    for (int64_t i = 0; i < r->nts; i++)
        if (!isfinite(t[i]))
            return wan_err(err, WAN_ERR_INVALID_ARG, "transformer: timestep %lld is not finite", (long long)i);
    r->U = 1; /* until the distinct values are counted */
    return WAN_OK;
}

wan_status wan_dit_forward_ws(const wan_dit *d, wan_backend *be, wan_dit_ws *ws, const float *x, int T, int Hl,
                              int Wl, const float *t, int per_token, const float *ctx, int64_t Lt, float *out,
                              const wan_dit_probe *pr, wan_error *err)
{
    if (ws->be && ws->be != be)
        return wan_err(err, WAN_ERR_INVALID_ARG, "transformer: the workspace belongs to the %s backend, not to "
                       "this %s one", ws->be->name, be->name);
    dit_run r;
    wan_status rc = run_init(&r, d, be, T, Hl, Wl, t, per_token, Lt, err);
    if (rc != WAN_OK)
        return rc;
    /* the distinct timesteps decide U, and U and the computed text rows Lu the sizes: find them first (the
     * staging for U = 1 holds the timestep rows and the context download, which stay in place when it grows) */
    if ((rc = host_reserve(ws, &r, err)) != WAN_OK)
        return rc;
    r.U = distinct_t(t, r.nts, r.tvals, r.rows);
    share_pad_rows(&r, ctx, ws->all_ctx_rows);
    if ((rc = ws_reserve(ws, &r, err)) != WAN_OK)
        return rc;
    r.probe = pr;
    wan_cpu_rope_table(r.hrope, r.nf, d->rope_t, ROPE_THETA);
    wan_cpu_rope_table(r.hrope + (int64_t)r.nf * d->rope_t, r.nh, d->rope_h, ROPE_THETA);
    wan_cpu_rope_table(r.hrope + (int64_t)r.nf * d->rope_t + (int64_t)r.nh * d->rope_h, r.nw, d->rope_w,
                       ROPE_THETA);
    be->upload(be, r.rope_t, r.hrope, (size_t)rope_floats(&r) * sizeof(float));
    if (r.U > 1)
        be->upload(be, r.tok_row, r.rows, (size_t)r.L * sizeof(int32_t));

    time_embed(&r);
    text_embed(&r, ctx);
    patch_embed(&r, x, T, Hl, Wl);
    for (int i = 0; i < d->cfg.num_layers; i++) {
        run_block(&r, &d->blocks[i]);
        char name[32];
        snprintf(name, sizeof name, "block.%d", i);
        probe(&r, name, r.x, r.L, d->D);
    }
    head(&r);
    unpatchify(&r, out, T, Hl, Wl);
    if ((rc = be->sync(be, err)) != WAN_OK)
        return wan_err_wrap(err, "transformer forward (%lld tokens, %lld text rows): ", (long long)r.L,
                            (long long)Lt);
    return WAN_OK;
}

wan_status wan_dit_forward(const wan_dit *d, const float *x, int T, int Hl, int Wl, const float *t, int per_token,
                           const float *ctx, int64_t Lt, float *out, int n_threads, const wan_dit_probe *pr,
                           wan_error *err)
{
    wan_backend *be = NULL;
    wan_status rc = wan_backend_cpu_create(n_threads, &be, err);
    if (rc != WAN_OK)
        return rc;
    wan_dit_ws ws = { 0 };
    rc = wan_dit_forward_ws(d, be, &ws, x, T, Hl, Wl, t, per_token, ctx, Lt, out, pr, err);
    wan_dit_ws_free(&ws);
    wan_backend_free(be);
    return rc;
}

/* ---- public API ------------------------------------------------------------------------------- */

/* Converts a host tensor of any integer or float dtype to f32; returns 0 for other dtypes. */
static int host_to_f32(const wan_host_tensor *t, float *dst, int64_t n)
{
    const uint8_t *s = t->data;
    for (int64_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case WAN_DTYPE_F32: { float v; memcpy(&v, s + 4 * i, 4); dst[i] = v; break; }
        case WAN_DTYPE_F64: { double v; memcpy(&v, s + 8 * i, 8); dst[i] = (float)v; break; }
        case WAN_DTYPE_F16: { uint16_t v; memcpy(&v, s + 2 * i, 2); dst[i] = wan_f16_to_f32(v); break; }
        case WAN_DTYPE_BF16: { uint16_t v; memcpy(&v, s + 2 * i, 2); dst[i] = wan_bf16_to_f32(v); break; }
        case WAN_DTYPE_I64: { int64_t v; memcpy(&v, s + 8 * i, 8); dst[i] = (float)v; break; }
        case WAN_DTYPE_I32: { int32_t v; memcpy(&v, s + 4 * i, 4); dst[i] = (float)v; break; }
        case WAN_DTYPE_I16: { int16_t v; memcpy(&v, s + 2 * i, 2); dst[i] = (float)v; break; }
        case WAN_DTYPE_I8: dst[i] = (float)(int8_t)s[i]; break;
        case WAN_DTYPE_U8: dst[i] = (float)s[i]; break;
        default: return 0;
        }
    }
    return 1;
}

static wan_status check_inputs(const wan_transformer_config *c, const wan_host_tensor *hs, const wan_host_tensor *ts,
                               const wan_host_tensor *ehs, wan_error *err)
{
    char b1[96];
    if (!hs->data || !ts->data || !ehs->data)
        return wan_err(err, WAN_ERR_INVALID_ARG, "transformer: an input tensor has no data");
    if (hs->dtype != WAN_DTYPE_F32 || ehs->dtype != WAN_DTYPE_F32)
        return wan_err(err, WAN_ERR_INVALID_ARG, "transformer: hidden_states (%s) and encoder_hidden_states (%s) "
                       "must be F32", wan_dtype_name(hs->dtype), wan_dtype_name(ehs->dtype));
    if (hs->ndim != 5 || hs->shape[0] < 1 || hs->shape[1] != c->in_channels)
        return wan_err(err, WAN_ERR_SHAPE, "transformer: hidden_states has shape %s, expected [B, %d, F, H, W] "
                       "(in_channels %d)", wan_shape_str(hs->ndim, hs->shape, b1, sizeof b1), c->in_channels,
                       c->in_channels);
    const int64_t B = hs->shape[0];
    for (int i = 0; i < 3; i++)
        if (hs->shape[2 + i] < 1 || hs->shape[2 + i] > INT32_MAX || hs->shape[2 + i] % c->patch_size[i])
            return wan_err(err, WAN_ERR_SHAPE, "transformer: hidden_states shape %s: %s %lld is not a positive "
                           "multiple of the patch size %d", wan_shape_str(hs->ndim, hs->shape, b1, sizeof b1),
                           (const char *[]){ "frames", "height", "width" }[i], (long long)hs->shape[2 + i],
                           c->patch_size[i]);
    if (ehs->ndim != 3 || ehs->shape[0] != B || ehs->shape[1] < 1 || ehs->shape[2] != c->text_dim)
        return wan_err(err, WAN_ERR_SHAPE, "transformer: encoder_hidden_states has shape %s, expected [%lld, L, %d] "
                       "(batch %lld, text_dim %d)", wan_shape_str(ehs->ndim, ehs->shape, b1, sizeof b1), (long long)B,
                       c->text_dim, (long long)B, c->text_dim);
    const int64_t L = hs->shape[2] / c->patch_size[0] * (hs->shape[3] / c->patch_size[1]) *
                      (hs->shape[4] / c->patch_size[2]);
    if (!((ts->ndim == 1 && ts->shape[0] == B) || (ts->ndim == 2 && ts->shape[0] == B && ts->shape[1] == L)))
        return wan_err(err, WAN_ERR_SHAPE, "transformer: timestep has shape %s, expected [%lld] or [%lld, %lld] "
                       "(batch, or batch x tokens)", wan_shape_str(ts->ndim, ts->shape, b1, sizeof b1),
                       (long long)B, (long long)B, (long long)L);
    return WAN_OK;
}

/* The batch loop on a backend: each item's hidden states and context go in (uploaded first when the backend's
 * memory is not the host's), its sample comes out into out (host). */
static wan_status forward_batch(const wan_dit *dit, wan_backend *be, const wan_host_tensor *hs, const float *tf,
                                int per_token, const wan_host_tensor *ehs, float *out, wan_error *err)
{
    const wan_transformer_config *c = &dit->cfg;
    const int64_t B = hs->shape[0], T = hs->shape[2], Hl = hs->shape[3], Wl = hs->shape[4];
    const int64_t in_n = c->in_channels * T * Hl * Wl, out_n = c->out_channels * T * Hl * Wl;
    const int64_t Lt = ehs->shape[1], ctx_n = Lt * c->text_dim;
    const int64_t tn = per_token ? T / c->patch_size[0] * (Hl / c->patch_size[1]) * (Wl / c->patch_size[2]) : 1;
    const size_t f4 = sizeof(float);
    float *dx = NULL, *dc = NULL, *dout = NULL;
    wan_dit_ws ws = { 0 };
    wan_status rc = WAN_OK;
    if (!be->host_memory) {
        dx = be->alloc(be, (size_t)in_n * f4);
        dc = be->alloc(be, (size_t)ctx_n * f4);
        dout = be->alloc(be, (size_t)out_n * f4);
        if ((rc = be->sync(be, err)) != WAN_OK) {
            wan_err_wrap(err, "transformer forward: inputs and output on the %s backend: ", be->name);
            goto done;
        }
    }
    for (int64_t b = 0; b < B && rc == WAN_OK; b++) {
        const float *x = (const float *)hs->data + b * in_n, *ctx = (const float *)ehs->data + b * ctx_n;
        float *o = out + b * out_n;
        if (!be->host_memory) {
            be->upload(be, dx, x, (size_t)in_n * f4);
            be->upload(be, dc, ctx, (size_t)ctx_n * f4);
            x = dx, ctx = dc, o = dout;
        }
        rc = wan_dit_forward_ws(dit, be, &ws, x, (int)T, (int)Hl, (int)Wl, tf + b * tn, per_token, ctx, Lt, o, NULL,
                                err);
        if (rc == WAN_OK && !be->host_memory) {
            be->download(be, out + b * out_n, dout, (size_t)out_n * f4);
            rc = be->sync(be, err);
        }
        if (rc != WAN_OK && B > 1)
            wan_err_wrap(err, "batch item %lld: ", (long long)b);
    }
done:
    wan_dit_ws_free(&ws);
    if (!be->host_memory) {
        be->free(be, dx);
        be->free(be, dc);
        be->free(be, dout);
    }
    return rc;
}

/* wan_dit_forward_host on a given backend (the expert bound in its memory). */
static wan_status forward_host_be(const wan_dit *dit, wan_backend *be, const wan_host_tensor *hidden_states,
                                  const wan_host_tensor *timestep, const wan_host_tensor *encoder_hidden_states,
                                  wan_host_tensor *out_sample, wan_error *err)
{
    const wan_transformer_config *cfg = &dit->cfg;
    wan_status rc = check_inputs(cfg, hidden_states, timestep, encoder_hidden_states, err);
    if (rc != WAN_OK)
        return rc;
    const int64_t nt = wan_host_tensor_numel(timestep);
    const int64_t on = hidden_states->shape[0] * cfg->out_channels * hidden_states->shape[2] *
                       hidden_states->shape[3] * hidden_states->shape[4];
    float *tf = wan_malloc((size_t)nt * sizeof(float));
    float *out = wan_malloc((size_t)on * sizeof(float));
    if (!tf || !out) {
        rc = wan_err(err, WAN_ERR_NOMEM, "transformer forward: cannot allocate the output (%lld floats)",
                     (long long)on);
        goto fail;
    }
    if (!host_to_f32(timestep, tf, nt)) {
        rc = wan_err(err, WAN_ERR_INVALID_ARG, "transformer forward: timestep dtype %s is not an integer or "
                     "float type", wan_dtype_name(timestep->dtype));
        goto fail;
    }
    if ((rc = forward_batch(dit, be, hidden_states, tf, timestep->ndim == 2, encoder_hidden_states, out, err)) !=
        WAN_OK)
        goto fail;
    wan_free(tf);
    memset(out_sample, 0, sizeof *out_sample);
    snprintf(out_sample->name, sizeof out_sample->name, "sample");
    out_sample->dtype = WAN_DTYPE_F32;
    out_sample->ndim = 5;
    memcpy(out_sample->shape, hidden_states->shape, 5 * sizeof(int64_t));
    out_sample->shape[1] = cfg->out_channels;
    out_sample->data = out;
    return WAN_OK;
fail:
    wan_free(tf);
    wan_free(out);
    return rc;
}

wan_status wan_dit_forward_host(const wan_dit *dit, const wan_host_tensor *hidden_states,
                                const wan_host_tensor *timestep, const wan_host_tensor *encoder_hidden_states,
                                wan_host_tensor *out_sample, int n_threads, wan_error *err)
{
    wan_backend *be = NULL;
    wan_status rc = wan_backend_cpu_create(n_threads, &be, err);
    if (rc == WAN_OK)
        rc = forward_host_be(dit, be, hidden_states, timestep, encoder_hidden_states, out_sample, err);
    wan_backend_free(be);
    return rc;
}

wan_status wan_transformer_forward_device(const char *device, const wan_model_t *model, int expert,
                                          const wan_host_tensor *hidden_states, const wan_host_tensor *timestep,
                                          const wan_host_tensor *encoder_hidden_states, wan_host_tensor *out_sample,
                                          int n_threads, char *errbuf, size_t errlen)
{
    wan_error err = { 0 };
    wan_status rc;
    wan_backend *be = NULL;
    wan_dit dit, dev;
    if (!model || !hidden_states || !timestep || !encoder_hidden_states || !out_sample ||
        (expert != 0 && expert != 1)) {
        rc = wan_err(&err, WAN_ERR_INVALID_ARG, "transformer forward: NULL argument or expert %d not 0/1", expert);
        goto fail;
    }
    const wan_transformer_config *cfg = wan_model_transformer_config(model, expert);
    const wan_st_set *w = wan_model_weights(model, expert ? WAN_COMPONENT_TRANSFORMER_2 : WAN_COMPONENT_TRANSFORMER);
    if (!cfg || !w) {
        rc = wan_err(&err, WAN_ERR_NOT_FOUND, "%s: the model has no %s", wan_model_path(model),
                     expert ? "transformer_2 (low-noise expert)" : "transformer");
        goto fail;
    }
    if ((rc = check_inputs(cfg, hidden_states, timestep, encoder_hidden_states, &err)) != WAN_OK ||
        (rc = wan_backend_for_device(device, n_threads, &be, &err)) != WAN_OK)
        goto fail;
    if ((rc = wan_dit_init(&dit, w, cfg, &err)) != WAN_OK)
        goto fail;
    if (be->host_memory) {
        rc = forward_host_be(&dit, be, hidden_states, timestep, encoder_hidden_states, out_sample, &err);
    } else if ((rc = wan_dit_upload(&dit, be, &dev, &err)) == WAN_OK) {
        rc = forward_host_be(&dev, be, hidden_states, timestep, encoder_hidden_states, out_sample, &err);
        wan_dit_release(be, &dev);
    }
    wan_dit_free(&dit);
    if (rc == WAN_OK) {
        wan_backend_free(be);
        return WAN_OK;
    }
fail:
    wan_backend_free(be);
    wan_err_copy(&err, errbuf, errlen);
    return rc;
}

wan_status wan_transformer_forward(const wan_model_t *model, int expert, const wan_host_tensor *hidden_states,
                                   const wan_host_tensor *timestep, const wan_host_tensor *encoder_hidden_states,
                                   wan_host_tensor *out_sample, int n_threads, char *errbuf, size_t errlen)
{
    return wan_transformer_forward_device(NULL, model, expert, hidden_states, timestep, encoder_hidden_states,
                                          out_sample, n_threads, errbuf, errlen);
}
