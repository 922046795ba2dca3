/* dit.c — WanTransformer3DModel forward on the CPU: weight binding, embeddings, blocks, head, and the public
 * wan_transformer_forward. Math follows docs/MODEL.md "## Transformer (DiT)" and spec/transformer.md §3-§5. */
#include "dit.h"
#include "cpu/attention.h"
#include "cpu/gemm.h"
#include "cpu/ops.h"
#include "lora.h"
#include "model_dir.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

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
    wan_status rc = wan_st_set_get(bd->w, name, 2, (int64_t[]){ N, K }, &out->w, bd->err);
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
    int nt;                         /* threads                                           */
    int nf, nh, nw;                 /* token grid F', H', W'                             */
    int64_t L, Lt, U, chunk;        /* tokens, text rows, distinct timesteps, FFN chunk  */
    const float *tvals;             /* [U] distinct timesteps                            */
    const int32_t *tok_row;         /* [L] row of each token in the U tables; NULL: U==1 */
    float *x, *h, *q, *k, *v, *o;   /* [L, D]: residual, normed, q, k, v, attention out  */
    float *c, *ck, *cv;             /* [Lt, D]: text embedding, cross K, cross V          */
    float *u;                       /* [chunk, F] FFN hidden                             */
    float *sinus;                   /* [U, freq_dim]                                     */
    float *temb, *tmp, *tproj, *mod;/* [U, D], [U, D], [U, 6D], [U, 6D]                  */
    float *patches, *p;             /* [L, Kp], [L, Op]                                  */
    float *rope_t, *rope_h, *rope_w;/* per-axis cos/sin tables                           */
    float *lin;                     /* linear-layer conversion scratch                   */
    float *lora;                    /* LoRA low-rank products, per thread (NULL: no LoRA) */
    void *att;                      /* attention scratch                                 */
    const wan_dit_probe *probe;
} dit_run;

static void *take(wan_arena *a, size_t *need, int64_t bytes)
{
    size_t b = ((size_t)bytes + 63) & ~(size_t)63;
    if (!a->base) {
        *need += b;
        return NULL;
    }
    return wan_arena_alloc(a, b);
}

static int64_t max_i64(int64_t a, int64_t b) { return a > b ? a : b; }

static int64_t linear_scratch_max(const wan_dit *d)
{
    const wan_dit_linear *top[] = { &d->patch, &d->t1, &d->t2, &d->tproj, &d->c1, &d->c2, &d->out };
    int64_t m = 0;
    for (size_t i = 0; i < sizeof top / sizeof *top; i++)
        m = max_i64(m, wan_cpu_linear_scratch(&top[i]->w));
    for (int i = 0; i < d->cfg.num_layers; i++) {
        const wan_dit_block *b = &d->blocks[i];
        const wan_dit_linear *l[] = { &b->q, &b->k, &b->v, &b->o, &b->q2, &b->k2, &b->v2, &b->o2, &b->ff1, &b->ff2 };
        for (size_t j = 0; j < sizeof l / sizeof *l; j++)
            m = max_i64(m, wan_cpu_linear_scratch(&l[j]->w));
    }
    return m;
}

/* Lays out every buffer of one forward; with a->base NULL it only adds the bytes to *need. */
static void plan(dit_run *r, wan_arena *a, size_t *need)
{
    const wan_dit *d = r->d;
    const int64_t D = d->D, L = r->L, Lt = r->Lt, U = r->U, f4 = sizeof(float);
    float **ld[] = { &r->x, &r->h, &r->q, &r->k, &r->v, &r->o };
    for (size_t i = 0; i < sizeof ld / sizeof *ld; i++)
        *ld[i] = take(a, need, L * D * f4);
    r->c = take(a, need, Lt * D * f4);
    r->ck = take(a, need, Lt * D * f4);
    r->cv = take(a, need, Lt * D * f4);
    r->u = take(a, need, r->chunk * d->F * f4);
    r->sinus = take(a, need, U * d->cfg.freq_dim * f4);
    r->temb = take(a, need, U * D * f4);
    r->tmp = take(a, need, U * D * f4);
    r->tproj = take(a, need, U * 6 * D * f4);
    r->mod = take(a, need, U * 6 * D * f4);
    r->patches = take(a, need, L * d->Kp * f4);
    r->p = take(a, need, L * d->Op * f4);
    r->rope_t = take(a, need, (int64_t)r->nf * d->rope_t * f4);
    r->rope_h = take(a, need, (int64_t)r->nh * d->rope_h * f4);
    r->rope_w = take(a, need, (int64_t)r->nw * d->rope_w * f4);
    r->lin = take(a, need, max_i64(1, linear_scratch_max(d)) * f4);
    r->lora = d->lora_rank ? take(a, need, wan_lora_lin_scratch(d->lora_rank, r->nt) * f4) : NULL;
    r->att = take(a, need, (int64_t)wan_cpu_attention_scratch(max_i64(L, Lt), (int)d->H, (int)d->hd, r->nt));
}

static void lin(const dit_run *r, const wan_dit_linear *l, const float *x, int64_t M, float *y)
{
    wan_cpu_linear(x, M, l->w.ne[1], &l->w, l->b, y, l->w.ne[0], r->lin, r->nt);
    if (l->lora)
        wan_lora_lin_apply(l->lora, x, M, l->w.ne[1], y, l->w.ne[0], r->lora, r->nt);
}

static void probe(const dit_run *r, const char *name, const float *data, int64_t rows, int64_t cols)
{
    if (r->probe && r->probe->fn)
        r->probe->fn(name, data, rows, cols, r->probe->user);
}

/* Sinusoid (diffusers get_timestep_embedding, flip_sin_to_cos, shift 0) → time MLP → time_proj. The
 * exponent and the angle are rounded to f32 exactly as diffusers computes them; cos comes first. */
static void time_embed(dit_run *r)
{
    const wan_dit *d = r->d;
    const int fd = d->cfg.freq_dim, half = fd / 2;
    const float c = (float)-log(10000.0);
    for (int64_t u = 0; u < r->U; u++) {
        float *e = r->sinus + u * fd;
        for (int i = 0; i < half; i++) {
            const float ex = (float)i * c / (float)half;
            const float arg = r->tvals[u] * (float)exp((double)ex);
            e[i] = (float)cos((double)arg);
            e[half + i] = (float)sin((double)arg);
        }
        if (fd % 2)
            e[fd - 1] = 0.0f;
    }
    lin(r, &d->t1, r->sinus, r->U, r->tmp);
    wan_cpu_silu(r->tmp, r->tmp, r->U * d->D);
    lin(r, &d->t2, r->tmp, r->U, r->temb); /* temb: pre-SiLU, used by the head */
    probe(r, "temb", r->temb, r->U, d->D);
    wan_cpu_silu(r->temb, r->tmp, r->U * d->D);
    lin(r, &d->tproj, r->tmp, r->U, r->tproj);
    probe(r, "timestep_proj", r->tproj, r->U, 6 * d->D);
}

/* Text MLP over every context row, padded rows included: linear_2(gelu_tanh(linear_1(ctx))). */
static void text_embed(dit_run *r, const float *ctx)
{
    lin(r, &r->d->c1, ctx, r->Lt, r->ck);
    wan_cpu_gelu_tanh(r->ck, r->Lt * r->d->D, r->nt);
    lin(r, &r->d->c2, r->ck, r->Lt, r->c);
    probe(r, "text_emb", r->c, r->Lt, r->d->D);
}

/* Conv3d with stride = kernel: gather channel-major patch vectors, one GEMM. */
static void patch_embed(dit_run *r, const float *x, int T, int Hl, int Wl)
{
    const wan_dit *d = r->d;
    const int pt = d->cfg.patch_size[0], ph = d->cfg.patch_size[1], pw = d->cfg.patch_size[2];
    const int Cin = d->cfg.in_channels;
#pragma omp parallel for num_threads(r->nt) schedule(static)
    for (int64_t l = 0; l < r->L; l++) {
        const int w = (int)(l % r->nw), h = (int)((l / r->nw) % r->nh), f = (int)(l / ((int64_t)r->nw * r->nh));
        float *v = r->patches + l * d->Kp;
        for (int c = 0; c < Cin; c++)
            for (int a = 0; a < pt; a++)
                for (int b = 0; b < ph; b++)
                    for (int e = 0; e < pw; e++)
                        *v++ = x[(((int64_t)c * T + f * pt + a) * Hl + h * ph + b) * Wl + w * pw + e];
    }
    lin(r, &d->patch, r->patches, r->L, r->x);
    probe(r, "patch", r->x, r->L, d->D);
}

/* Inverse of the patch gather with the channel innermost in each output feature vector. */
static void unpatchify(const dit_run *r, float *out, int T, int Hl, int Wl)
{
    const wan_dit *d = r->d;
    const int pt = d->cfg.patch_size[0], ph = d->cfg.patch_size[1], pw = d->cfg.patch_size[2];
    const int Cout = d->cfg.out_channels;
#pragma omp parallel for num_threads(r->nt) schedule(static)
    for (int64_t l = 0; l < r->L; l++) {
        const int w = (int)(l % r->nw), h = (int)((l / r->nw) % r->nh), f = (int)(l / ((int64_t)r->nw * r->nh));
        const float *pv = r->p + l * d->Op;
        for (int a = 0; a < pt; a++)
            for (int b = 0; b < ph; b++)
                for (int e = 0; e < pw; e++)
                    for (int c = 0; c < Cout; c++)
                        out[(((int64_t)c * T + f * pt + a) * Hl + h * ph + b) * Wl + w * pw + e] = *pv++;
    }
}

static void attention(const dit_run *r, const float *q, const float *k, const float *v, float *o, int64_t Lk)
{
    const int64_t D = r->d->D;
    wan_cpu_attention(q, D, k, D, v, D, o, D, r->L, Lk, (int)r->d->H, (int)r->d->hd,
                      (float)(1.0 / sqrt((double)r->d->hd)), r->att, r->nt);
}

static void run_block(dit_run *r, const wan_dit_block *b)
{
    const wan_dit *d = r->d;
    const int64_t D = d->D, L = r->L, ml = 6 * D;
    const float eps = (float)d->cfg.eps;
    const int nt = r->nt;
    const int32_t *tr = r->tok_row;
    /* modulation rows: shift/scale/gate (self-attention), shift/scale/gate (FFN), one set per distinct t */
    for (int64_t u = 0; u < r->U; u++)
        for (int64_t i = 0; i < ml; i++)
            r->mod[u * ml + i] = b->sst[i] + r->tproj[u * ml + i];
    const float *M = r->mod;

    /* (a) self-attention: LN·(1 + scale) + shift → q/k/v → RMSNorm over all heads → RoPE → attention */
    wan_cpu_layernorm(r->x, r->h, L, D, D, eps, NULL, NULL, M, M + D, tr, ml, nt);
    lin(r, &b->q, r->h, L, r->q);
    lin(r, &b->k, r->h, L, r->k);
    lin(r, &b->v, r->h, L, r->v);
    wan_cpu_rmsnorm(r->q, L, D, D, eps, b->norm_q, nt);
    wan_cpu_rmsnorm(r->k, L, D, D, eps, b->norm_k, nt);
    wan_cpu_rope(r->q, D, r->nf, r->nh, r->nw, (int)d->H, (int)d->hd, d->rope_t, d->rope_h, r->rope_t, r->rope_h,
                 r->rope_w, nt);
    wan_cpu_rope(r->k, D, r->nf, r->nh, r->nw, (int)d->H, (int)d->hd, d->rope_t, d->rope_h, r->rope_t, r->rope_h,
                 r->rope_w, nt);
    attention(r, r->q, r->k, r->v, r->o, L);
    lin(r, &b->o, r->o, L, r->h);
    wan_cpu_gated_add(r->x, D, r->h, D, L, D, M + 2 * D, tr, ml, nt);

    /* (b) cross-attention over every text row: affine LN, no modulation, no gate, no RoPE */
    if (b->norm2_w)
        wan_cpu_layernorm(r->x, r->h, L, D, D, eps, b->norm2_w, b->norm2_b, NULL, NULL, NULL, 0, nt);
    else
        memcpy(r->h, r->x, (size_t)(L * D) * sizeof(float));
    lin(r, &b->q2, r->h, L, r->q);
    wan_cpu_rmsnorm(r->q, L, D, D, eps, b->norm_q2, nt);
    lin(r, &b->k2, r->c, r->Lt, r->ck);
    wan_cpu_rmsnorm(r->ck, r->Lt, D, D, eps, b->norm_k2, nt);
    lin(r, &b->v2, r->c, r->Lt, r->cv);
    attention(r, r->q, r->ck, r->cv, r->o, r->Lt);
    lin(r, &b->o2, r->o, L, r->h);
    wan_cpu_gated_add(r->x, D, r->h, D, L, D, NULL, NULL, 0, nt);

    /* (c) feed-forward with tanh GELU, in token chunks */
    wan_cpu_layernorm(r->x, r->h, L, D, D, eps, NULL, NULL, M + 3 * D, M + 4 * D, tr, ml, nt);
    for (int64_t c0 = 0; c0 < L; c0 += r->chunk) {
        const int64_t n = L - c0 < r->chunk ? L - c0 : r->chunk;
        lin(r, &b->ff1, r->h + c0 * D, n, r->u);
        wan_cpu_gelu_tanh(r->u, n * d->F, nt);
        lin(r, &b->ff2, r->u, n, r->o + c0 * D);
    }
    wan_cpu_gated_add(r->x, D, r->o, D, L, D, M + 5 * D, tr, ml, nt);
}

/* Output head: LN·(1 + (S_out[1] + temb)) + (S_out[0] + temb) with the pre-SiLU temb, then proj_out. */
static void head(dit_run *r)
{
    const wan_dit *d = r->d;
    const int64_t D = d->D, ml = 2 * D;
    for (int64_t u = 0; u < r->U; u++)
        for (int64_t i = 0; i < D; i++) {
            r->mod[u * ml + i] = d->sst_out[i] + r->temb[u * D + i];
            r->mod[u * ml + D + i] = d->sst_out[D + i] + r->temb[u * D + i];
        }
    wan_cpu_layernorm(r->x, r->h, r->L, D, D, (float)d->cfg.eps, NULL, NULL, r->mod, r->mod + D, r->tok_row, ml,
                      r->nt);
    lin(r, &d->out, r->h, r->L, r->p);
    probe(r, "proj_out", r->p, r->L, d->Op);
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

wan_status wan_dit_forward(const wan_dit *d, const float *x, int T, int Hl, int Wl, const float *t, int per_token,
                           const float *ctx, int64_t Lt, float *out, int n_threads, const wan_dit_probe *pr,
                           wan_error *err)
{
    const int *ps = d->cfg.patch_size;
    if (T < 1 || Hl < 1 || Wl < 1 || T % ps[0] || Hl % ps[1] || Wl % ps[2])
        return wan_err(err, WAN_ERR_SHAPE, "transformer: latent frames x height x width %d x %d x %d must be "
                       "positive multiples of the patch %d x %d x %d", T, Hl, Wl, ps[0], ps[1], ps[2]);
    dit_run r = { .d = d, .nf = T / ps[0], .nh = Hl / ps[1], .nw = Wl / ps[2], .Lt = Lt, .probe = pr };
    const int rmax = d->cfg.rope_max_seq_len;
    if (r.nf > rmax || r.nh > rmax || r.nw > rmax)
        return wan_err(err, WAN_ERR_SHAPE, "transformer: token grid %d x %d x %d exceeds rope_max_seq_len %d",
                       r.nf, r.nh, r.nw, rmax);
    if (Lt < 1)
        return wan_err(err, WAN_ERR_SHAPE, "transformer: the text context has no rows");
    r.L = (int64_t)r.nf * r.nh * r.nw;
    r.chunk = r.L < FFN_CHUNK ? r.L : FFN_CHUNK;
#ifdef _OPENMP
    r.nt = n_threads > 0 ? n_threads : omp_get_max_threads();
#else
    r.nt = 1;
#endif
    const int64_t nts = per_token ? r.L : 1;
    for (int64_t i = 0; i < nts; i++)
        if (!isfinite(t[i]))
            return wan_err(err, WAN_ERR_INVALID_ARG, "transformer: timestep %lld is not finite", (long long)i);
    float *tvals = wan_malloc((size_t)nts * sizeof(float));
    int32_t *rows = wan_malloc((size_t)nts * sizeof(int32_t));
    wan_arena arena = { 0 };
    wan_status rc = WAN_OK;
    if (!tvals || !rows) {
        rc = wan_err(err, WAN_ERR_NOMEM, "transformer: cannot allocate %lld timestep rows", (long long)nts);
        goto done;
    }
    r.U = distinct_t(t, nts, tvals, rows);
    r.tvals = tvals;
    r.tok_row = r.U > 1 ? rows : NULL;
    size_t need = 0;
    plan(&r, &arena, &need);
    if ((rc = wan_arena_init(&arena, need, err)) != WAN_OK) {
        wan_err_wrap(err, "transformer forward (%lld tokens, %lld text rows)", (long long)r.L, (long long)Lt);
        goto done;
    }
    plan(&r, &arena, &need);
    if (!r.att) { /* the second pass must fit exactly what the first one measured */
        rc = wan_err(err, WAN_ERR_INTERNAL, "internal error: transformer arena plan mismatch at %s:%d", __FILE__,
                     __LINE__);
        goto done;
    }
    wan_cpu_rope_table(r.rope_t, r.nf, d->rope_t, ROPE_THETA);
    wan_cpu_rope_table(r.rope_h, r.nh, d->rope_h, ROPE_THETA);
    wan_cpu_rope_table(r.rope_w, r.nw, d->rope_w, ROPE_THETA);

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
done:
    wan_arena_free(&arena);
    wan_free(tvals);
    wan_free(rows);
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

static wan_status forward_batch(const wan_dit *dit, const wan_host_tensor *hs, const float *tf, int per_token,
                                const wan_host_tensor *ehs, float *out, int n_threads, wan_error *err)
{
    const wan_transformer_config *c = &dit->cfg;
    const int64_t B = hs->shape[0], T = hs->shape[2], Hl = hs->shape[3], Wl = hs->shape[4];
    const int64_t in_n = c->in_channels * T * Hl * Wl, out_n = c->out_channels * T * Hl * Wl;
    const int64_t Lt = ehs->shape[1], ctx_n = Lt * c->text_dim;
    const int64_t tn = per_token ? T / c->patch_size[0] * (Hl / c->patch_size[1]) * (Wl / c->patch_size[2]) : 1;
    for (int64_t b = 0; b < B; b++) {
        wan_status rc = wan_dit_forward(dit, (const float *)hs->data + b * in_n, (int)T, (int)Hl, (int)Wl,
                                        tf + b * tn, per_token, (const float *)ehs->data + b * ctx_n, Lt,
                                        out + b * out_n, n_threads, NULL, err);
        if (rc != WAN_OK)
            return B > 1 ? wan_err_wrap(err, "batch item %lld", (long long)b) : rc;
    }
    return WAN_OK;
}

wan_status wan_transformer_forward(const wan_model_t *model, int expert, const wan_host_tensor *hidden_states,
                                   const wan_host_tensor *timestep, const wan_host_tensor *encoder_hidden_states,
                                   wan_host_tensor *out_sample, int n_threads, char *errbuf, size_t errlen)
{
    wan_error err = { 0 };
    wan_status rc;
    wan_dit dit;
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
    if ((rc = check_inputs(cfg, hidden_states, timestep, encoder_hidden_states, &err)) != WAN_OK)
        goto fail;
    if ((rc = wan_dit_init(&dit, w, cfg, &err)) != WAN_OK)
        goto fail;
    rc = wan_dit_forward_host(&dit, hidden_states, timestep, encoder_hidden_states, out_sample, n_threads, &err);
    wan_dit_free(&dit);
    if (rc == WAN_OK)
        return WAN_OK;
fail:
    wan_err_copy(&err, errbuf, errlen);
    return rc;
}

wan_status wan_dit_forward_host(const wan_dit *dit, const wan_host_tensor *hidden_states,
                                const wan_host_tensor *timestep, const wan_host_tensor *encoder_hidden_states,
                                wan_host_tensor *out_sample, int n_threads, wan_error *err)
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
    if ((rc = forward_batch(dit, hidden_states, tf, timestep->ndim == 2, encoder_hidden_states, out, n_threads,
                            err)) != WAN_OK)
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
