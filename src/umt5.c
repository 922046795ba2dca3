/* umt5.c — the umT5 encoder (transformers UMT5EncoderModel) in fp32 on the CPU: token embedding, pre-norm
 * blocks that each own a relative position bias, unscaled softmax attention, gated tanh-GELU FFN, final
 * RMSNorm; plus the text-encoding entry points of wan.h. Weights stay as stored (mmap); one matrix at a
 * time is converted to f32 (tile by tile, wan_cpu_linear) for OpenBLAS. */
#define _POSIX_C_SOURCE 200809L
#include "umt5.h"

#include "cpu/gemm.h"
#include "model_dir.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

/* ---- names ------------------------------------------------------------------------------------ */

/* Per-block tensors: original Wan T5 suffix -> transformers suffix (text.md §5). */
static const struct {
    const char *orig, *hf;
} k_block_names[] = {
    { "norm1.weight", "layer.0.layer_norm.weight" },
    { "attn.q.weight", "layer.0.SelfAttention.q.weight" },
    { "attn.k.weight", "layer.0.SelfAttention.k.weight" },
    { "attn.v.weight", "layer.0.SelfAttention.v.weight" },
    { "attn.o.weight", "layer.0.SelfAttention.o.weight" },
    { "pos_embedding.embedding.weight", "layer.0.SelfAttention.relative_attention_bias.weight" },
    { "norm2.weight", "layer.1.layer_norm.weight" },
    { "ffn.gate.0.weight", "layer.1.DenseReluDense.wi_0.weight" },
    { "ffn.fc1.weight", "layer.1.DenseReluDense.wi_1.weight" },
    { "ffn.fc2.weight", "layer.1.DenseReluDense.wo.weight" },
};

/* q8_0 scales ("<weight>_scale") follow their weight: base renamed by fn, then the suffix again. */
static int rename_scale(int (*fn)(const char *, char *, size_t, void *), const char *name, char *buf, size_t len)
{
    const size_t n = strlen(name), sl = strlen("_scale");
    char base[256];
    if (n <= sl || n - sl >= sizeof base || strcmp(name + n - sl, "_scale") != 0)
        return 0;
    memcpy(base, name, n - sl);
    base[n - sl] = 0;
    if (!fn(base, buf, len, NULL))
        return 0;
    const size_t bl = strlen(buf);
    return bl + sl < len && snprintf(buf + bl, len - bl, "_scale") == (int)sl;
}

int wan_umt5_rename_original(const char *name, char *buf, size_t len, void *user)
{
    (void)user;
    if (rename_scale(wan_umt5_rename_original, name, buf, len))
        return 1;
    const char *hf = NULL;
    if (!strcmp(name, "token_embedding.weight"))
        hf = "shared.weight";
    else if (!strcmp(name, "norm.weight"))
        hf = "encoder.final_layer_norm.weight";
    if (hf)
        return snprintf(buf, len, "%s", hf) < (int)len;
    int layer = 0, used = 0;
    if (strncmp(name, "blocks.", 7) != 0 || name[7] < '0' || name[7] > '9' ||
        sscanf(name, "blocks.%d.%n", &layer, &used) != 1 || used == 0)
        return 0;
    for (size_t i = 0; i < sizeof k_block_names / sizeof *k_block_names; i++)
        if (!strcmp(name + used, k_block_names[i].orig))
            return snprintf(buf, len, "encoder.block.%d.%s", layer, k_block_names[i].hf) < (int)len;
    return 0;
}

int wan_umt5_rename_to_original(const char *name, char *buf, size_t len, void *user)
{
    (void)user;
    if (rename_scale(wan_umt5_rename_to_original, name, buf, len))
        return 1;
    const char *orig = NULL;
    if (!strcmp(name, "shared.weight"))
        orig = "token_embedding.weight";
    else if (!strcmp(name, "encoder.final_layer_norm.weight"))
        orig = "norm.weight";
    if (orig)
        return snprintf(buf, len, "%s", orig) < (int)len;
    int layer = 0, used = 0;
    if (strncmp(name, "encoder.block.", 14) != 0 || sscanf(name, "encoder.block.%d.%n", &layer, &used) != 1 ||
        used == 0)
        return 0;
    for (size_t i = 0; i < sizeof k_block_names / sizeof *k_block_names; i++)
        if (!strcmp(name + used, k_block_names[i].hf))
            return snprintf(buf, len, "blocks.%d.%s", layer, k_block_names[i].orig) < (int)len;
    return 0;
}

/* ---- relative position buckets ---------------------------------------------------------------- */

/* transformers computes the large-distance bucket in float32: log(a / max_exact) / log(max_distance /
 * max_exact) * (n - max_exact), truncated. Powers of two land exactly on integers (logf(2^k) = k·logf(2)
 * in float32), which is what makes a = 16, 32, 64 fall in the upper bucket; keep the float32 ops. */
int wan_umt5_bucket(int64_t d, int num_buckets, int max_distance)
{
    int n = num_buckets / 2; /* half per direction */
    int bucket = d > 0 ? n : 0;
    int64_t a = d < 0 ? -d : d;
    int max_exact = n / 2;
    if (a < max_exact)
        return bucket + (int)a;
    float r = logf((float)a / (float)max_exact) / (float)log((double)max_distance / max_exact);
    int64_t large = max_exact + (int64_t)(r * (float)(n - max_exact));
    return bucket + (int)(large < n - 1 ? large : n - 1);
}

/* ---- weights ---------------------------------------------------------------------------------- */

typedef struct umt5_block {
    wan_tensor norm1; /* [d]                         */
    wan_tensor q, k, v; /* [inner, d]                */
    wan_tensor o;     /* [d, inner]                  */
    wan_tensor bias;  /* [buckets, heads]            */
    wan_tensor norm2; /* [d]                         */
    wan_tensor wi0;   /* [d_ff, d]  GELU branch      */
    wan_tensor wi1;   /* [d_ff, d]  linear branch    */
    wan_tensor wo;    /* [d, d_ff]                   */
} umt5_block;

typedef struct umt5_net {
    const wan_text_encoder_config *c;
    int64_t inner;     /* heads * d_kv */
    wan_tensor emb;    /* [vocab, d] */
    wan_tensor norm;   /* [d] */
    umt5_block *blk;   /* [num_layers] */
} umt5_net;

static wan_status check_config(const wan_text_encoder_config *c, wan_error *err)
{
    if (!c->gated_gelu)
        return wan_err(err, WAN_ERR_UNSUPPORTED,
                       "umT5 text encoder: only feed_forward_proj \"gated-gelu\" is supported");
    if (c->d_model <= 0 || c->d_kv <= 0 || c->num_heads <= 0 || c->d_ff <= 0 || c->num_layers <= 0 ||
        c->vocab_size <= 0 || c->relative_attention_num_buckets < 4 || c->relative_attention_max_distance < 1)
        return wan_err(err, WAN_ERR_FORMAT,
                       "umT5 text encoder: bad config (d_model %d, d_kv %d, heads %d, d_ff %d, layers %d, "
                       "vocab %d, buckets %d, max_distance %d)", c->d_model, c->d_kv, c->num_heads, c->d_ff,
                       c->num_layers, c->vocab_size, c->relative_attention_num_buckets,
                       c->relative_attention_max_distance);
    return WAN_OK;
}

static wan_status get_block_tensor(const wan_st_set *w, int layer, const char *suffix, int ndim, int64_t d0,
                                   int64_t d1, wan_tensor *t, wan_error *err)
{
    char name[160];
    snprintf(name, sizeof name, "encoder.block.%d.%s", layer, suffix);
    return wan_st_set_get(w, name, ndim, (int64_t[]){ d0, d1 }, t, err);
}

/* The [d0, d1] weight of a linear layer of a block (F32/F16/BF16 or q8_0). */
static wan_status get_block_linear(const wan_st_set *w, int layer, const char *suffix, int64_t d0, int64_t d1,
                                   wan_tensor *t, wan_error *err)
{
    char name[160];
    snprintf(name, sizeof name, "encoder.block.%d.%s", layer, suffix);
    return wan_st_set_get_weight(w, name, d0, d1, t, err);
}

/* Looks up and shape-checks every tensor. net->blk is allocated here (free with wan_free). */
static wan_status bind_weights(const wan_st_set *w, const wan_text_encoder_config *c, umt5_net *net,
                               wan_error *err)
{
    memset(net, 0, sizeof *net);
    net->c = c;
    net->inner = (int64_t)c->num_heads * c->d_kv;
    int64_t d = c->d_model, in = net->inner, ff = c->d_ff;
    const char *emb = wan_st_set_find(w, "shared.weight") || !wan_st_set_find(w, "encoder.embed_tokens.weight")
                          ? "shared.weight"
                          : "encoder.embed_tokens.weight";
    wan_status rc = wan_st_set_get_weight(w, emb, c->vocab_size, d, &net->emb, err); /* float8 files too */
    if (rc == WAN_OK)
        rc = wan_st_set_get(w, "encoder.final_layer_norm.weight", 1, &d, &net->norm, err);
    if (rc != WAN_OK)
        return wan_err_wrap(err, "umT5 text encoder: ");
    net->blk = wan_calloc((size_t)c->num_layers, sizeof *net->blk);
    if (!net->blk)
        return wan_err(err, WAN_ERR_NOMEM, "umT5 text encoder: out of memory");
    for (int l = 0; rc == WAN_OK && l < c->num_layers; l++) {
        umt5_block *b = &net->blk[l];
        const char *p = "layer.0.SelfAttention.";
        char n[96];
        rc = get_block_tensor(w, l, "layer.0.layer_norm.weight", 1, d, 0, &b->norm1, err);
        if (rc == WAN_OK)
            rc = get_block_linear(w, l, (snprintf(n, sizeof n, "%sq.weight", p), n), in, d, &b->q, err);
        if (rc == WAN_OK)
            rc = get_block_linear(w, l, (snprintf(n, sizeof n, "%sk.weight", p), n), in, d, &b->k, err);
        if (rc == WAN_OK)
            rc = get_block_linear(w, l, (snprintf(n, sizeof n, "%sv.weight", p), n), in, d, &b->v, err);
        if (rc == WAN_OK)
            rc = get_block_linear(w, l, (snprintf(n, sizeof n, "%so.weight", p), n), d, in, &b->o, err);
        if (rc == WAN_OK)
            rc = get_block_tensor(w, l, (snprintf(n, sizeof n, "%srelative_attention_bias.weight", p), n), 2,
                                  c->relative_attention_num_buckets, c->num_heads, &b->bias, err);
        if (rc == WAN_OK)
            rc = get_block_tensor(w, l, "layer.1.layer_norm.weight", 1, d, 0, &b->norm2, err);
        if (rc == WAN_OK)
            rc = get_block_linear(w, l, "layer.1.DenseReluDense.wi_0.weight", ff, d, &b->wi0, err);
        if (rc == WAN_OK)
            rc = get_block_linear(w, l, "layer.1.DenseReluDense.wi_1.weight", ff, d, &b->wi1, err);
        if (rc == WAN_OK)
            rc = get_block_linear(w, l, "layer.1.DenseReluDense.wo.weight", d, ff, &b->wo, err);
    }
    if (rc != WAN_OK) {
        wan_free(net->blk);
        net->blk = NULL;
        return wan_err_wrap(err, "umT5 text encoder: ");
    }
    return WAN_OK;
}

wan_status wan_umt5_check_weights(const wan_st_set *w, const wan_text_encoder_config *c, wan_error *err)
{
    if (c->num_layers < 1)
        return wan_err(err, WAN_ERR_FORMAT, "umT5 text encoder: %s has no encoder blocks", w->dir);
    umt5_net net;
    wan_status rc = bind_weights(w, c, &net, err);
    wan_free(net.blk);
    return rc;
}

static bool is_direct_f32(const wan_tensor *t)
{
    return t->dtype == WAN_DTYPE_F32 && ((uintptr_t)t->data & 3) == 0;
}

/* ---- activations ------------------------------------------------------------------------------ */

/* Everything one forward needs, carved from one counted allocation that is freed at the end. */
typedef struct umt5_buf {
    int nt;                 /* threads */
    void *block;            /* the allocation */
    float *x, *h;           /* [S, d]      residual stream, normed input */
    float *q, *k, *v, *a;   /* [S, inner]  */
    float *g, *u;           /* [S, d_ff]   */
    float *s;               /* [S, S]      scores of one head */
    float *w;               /* weight tiles converted to f32 (wan_cpu_linear), NULL when all are F32 */
    float *vec;             /* [max(d, buckets*heads)] norm gains / bias table in f32 */
    int *bucket;            /* [2S-1]      bucket of d = t - (S-1) */
} umt5_buf;

/* Scratch floats wan_cpu_linear needs for the matrices of one block. */
static int64_t block_scratch(const umt5_block *b)
{
    const wan_tensor *m[] = { &b->q, &b->k, &b->v, &b->o, &b->wi0, &b->wi1, &b->wo };
    int64_t n = 0;
    for (size_t i = 0; i < sizeof m / sizeof *m; i++) {
        int64_t k = wan_cpu_linear_scratch(m[i]);
        n = k > n ? k : n;
    }
    return n;
}

static wan_status buf_alloc(const umt5_net *net, int S, umt5_buf *b, wan_error *err)
{
    const wan_text_encoder_config *c = net->c;
    size_t d = (size_t)c->d_model, in = (size_t)net->inner, ff = (size_t)c->d_ff, s = (size_t)S;
    size_t scratch = 0;
    for (int l = 0; l < c->num_layers; l++) {
        size_t k = (size_t)block_scratch(&net->blk[l]);
        scratch = k > scratch ? k : scratch;
    }
    size_t nvec = (size_t)c->relative_attention_num_buckets * (size_t)c->num_heads;
    if (nvec < d)
        nvec = d;
    size_t sizes[] = { s * d, s * d, s * in, s * in, s * in, s * in, s * ff, s * ff, s * s,
                       scratch, nvec, 2 * s - 1 };
    enum { N_PIECES = sizeof sizes / sizeof *sizes };
    size_t off[N_PIECES], total = 0;
    for (int i = 0; i < N_PIECES; i++) {
        off[i] = total;
        total += (sizes[i] + 15) / 16 * 16; /* 64-byte aligned pieces of 4-byte elements */
    }
    b->block = wan_malloc(total * sizeof(float));
    if (!b->block)
        return wan_err(err, WAN_ERR_NOMEM, "umT5 text encoder: out of memory for %zu bytes of activations "
                       "(sequence length %d)", total * sizeof(float), S);
    float *p = b->block;
    b->x = p + off[0];
    b->h = p + off[1];
    b->q = p + off[2];
    b->k = p + off[3];
    b->v = p + off[4];
    b->a = p + off[5];
    b->g = p + off[6];
    b->u = p + off[7];
    b->s = p + off[8];
    b->w = scratch ? p + off[9] : NULL;
    b->vec = p + off[10];
    b->bucket = (int *)(void *)(p + off[11]);
    return WAN_OK;
}

/* f32 pointer to a small weight (norm gain, bias table): the mapping itself for aligned F32, else
 * converted into dst. */
static const float *vec_f32(const wan_tensor *t, float *dst)
{
    if (is_direct_f32(t))
        return t->data;
    wan_cpu_to_f32(t->data, t->dtype, dst, wan_tensor_numel(t));
    return dst;
}

/* y[S, out] = x[S, in] · Wᵀ, W [out, in] as stored (BF16/F16 converted tile by tile). */
static void linear(const umt5_buf *b, const float *x, int S, const wan_tensor *W, float *y)
{
    wan_cpu_linear(x, S, W->ne[1], W, NULL, y, W->ne[0], b->w, b->nt);
}

/* x += y, n floats. */
static void add_to(const umt5_buf *b, float *x, const float *y, size_t n)
{
#pragma omp parallel for num_threads(b->nt) schedule(static)
    for (size_t i = 0; i < n; i++)
        x[i] += y[i];
}

/* T5 RMSNorm: y = g ⊙ (x · rsqrt(mean(x²) + eps)); no mean subtraction, no bias. */
static void rms_norm(const umt5_buf *b, const float *x, int S, const wan_tensor *gain, double eps, float *y)
{
    int d = (int)gain->ne[0];
    const float *g = vec_f32(gain, b->vec);
#pragma omp parallel for num_threads(b->nt) schedule(static)
    for (int i = 0; i < S; i++) {
        const float *xi = x + (size_t)i * d;
        float *yi = y + (size_t)i * d;
        double ss = 0.0;
        for (int k = 0; k < d; k++)
            ss += (double)xi[k] * xi[k];
        float r = 1.0f / sqrtf((float)(ss / d) + (float)eps);
        for (int k = 0; k < d; k++)
            yi[k] = g[k] * (xi[k] * r);
    }
}

/* a = softmax(q·kᵀ + bias[bucket(j-i)] + mask) · v per head, no 1/sqrt(d_kv) scaling. */
static void attention(const umt5_net *net, const umt5_block *blk, const umt5_buf *b, const int64_t *mask,
                      int S)
{
    int H = net->c->num_heads, dk = net->c->d_kv, in = (int)net->inner;
    const float *rb = vec_f32(&blk->bias, b->vec); /* [buckets, H] */
    for (int n = 0; n < H; n++) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, S, S, dk, 1.0f, b->q + n * dk, in, b->k + n * dk,
                    in, 0.0f, b->s, S);
#pragma omp parallel for num_threads(b->nt) schedule(static)
        for (int i = 0; i < S; i++) {
            float *row = b->s + (size_t)i * S;
            const int *bk = b->bucket + (S - 1 - i); /* bk[j] = bucket(j - i) */
            float mx = -INFINITY, sum = 0.0f;
            for (int j = 0; j < S; j++) {
                float v = row[j] + rb[bk[j] * H + n];
                if (mask && !mask[j])
                    v += -FLT_MAX; /* finfo(float32).min, added like transformers' extended mask */
                row[j] = v;
                mx = v > mx ? v : mx;
            }
            for (int j = 0; j < S; j++) {
                row[j] = expf(row[j] - mx);
                sum += row[j];
            }
            float inv = 1.0f / sum;
            for (int j = 0; j < S; j++)
                row[j] *= inv;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, S, dk, S, 1.0f, b->s, S, b->v + n * dk, in, 0.0f,
                    b->a + n * dk, in);
    }
}

/* gelu_new(g) ⊙ u into g: 0.5·z·(1 + tanh(√(2/π)·(z + 0.044715·z³))). */
static void gelu_gate(const umt5_buf *b, float *g, const float *u, size_t n)
{
    const float c0 = (float)sqrt(2.0 / 3.14159265358979323846); /* math.sqrt(2 / math.pi) */
#pragma omp parallel for num_threads(b->nt) schedule(static)
    for (size_t i = 0; i < n; i++) {
        float z = g[i];
        g[i] = 0.5f * z * (1.0f + tanhf(c0 * (z + 0.044715f * (z * z * z)))) * u[i];
    }
}

/* One pre-norm block on the residual stream b->x [S, d]. */
static void block_forward(const umt5_net *net, const umt5_block *blk, const umt5_buf *b, const int64_t *mask,
                          int S)
{
    double eps = net->c->layer_norm_epsilon;
    size_t n = (size_t)S * net->c->d_model;
    rms_norm(b, b->x, S, &blk->norm1, eps, b->h); /* [S, d] */
    linear(b, b->h, S, &blk->q, b->q);            /* [S, inner] */
    linear(b, b->h, S, &blk->k, b->k);
    linear(b, b->h, S, &blk->v, b->v);
    attention(net, blk, b, mask, S);              /* b->a [S, inner] */
    linear(b, b->a, S, &blk->o, b->h);            /* [S, d] */
    add_to(b, b->x, b->h, n);
    rms_norm(b, b->x, S, &blk->norm2, eps, b->h);
    linear(b, b->h, S, &blk->wi0, b->g);          /* [S, d_ff] */
    linear(b, b->h, S, &blk->wi1, b->u);
    gelu_gate(b, b->g, b->u, (size_t)S * net->c->d_ff);
    linear(b, b->g, S, &blk->wo, b->h);           /* [S, d] */
    add_to(b, b->x, b->h, n);
}

wan_status wan_umt5_forward(const wan_st_set *w, const wan_text_encoder_config *c, const int64_t *ids,
                            const int64_t *mask, int S, float *out, float *layers, int n_threads,
                            wan_error *err)
{
    if (!w || !c || !ids || !out || S < 1)
        return wan_err(err, WAN_ERR_INVALID_ARG, "umT5 text encoder: weights, config, ids and out are "
                       "required and the sequence length (%d) must be >= 1", S);
    wan_status rc = check_config(c, err);
    for (int i = 0; rc == WAN_OK && i < S; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            rc = wan_err(err, WAN_ERR_INVALID_ARG,
                         "umT5 text encoder: token id %lld at position %d is outside the vocabulary "
                         "(%d rows)", (long long)ids[i], i, c->vocab_size);
    umt5_net net = { 0 };
    if (rc == WAN_OK)
        rc = bind_weights(w, c, &net, err);
    umt5_buf b = { .nt = n_threads > 0 ? n_threads : omp_get_max_threads() };
    if (rc == WAN_OK)
        rc = buf_alloc(&net, S, &b, err);
    if (rc != WAN_OK) {
        wan_free(net.blk);
        return rc;
    }
    wan_cpu_set_threads(b.nt);
    int64_t d = c->d_model;
    for (int i = 0; i < S; i++) /* embedding rows, no scaling */
        wan_cpu_weight_row_to_f32(&net.emb, d, ids[i], 0, d, b.x + (size_t)i * d);
    for (int t = 0; t < 2 * S - 1; t++)
        b.bucket[t] = wan_umt5_bucket(t - (S - 1), c->relative_attention_num_buckets,
                                      c->relative_attention_max_distance);
    for (int l = 0; l < c->num_layers; l++) {
        block_forward(&net, &net.blk[l], &b, mask, S);
        if (layers)
            memcpy(layers + (size_t)l * S * d, b.x, (size_t)S * d * sizeof *b.x);
    }
    rms_norm(&b, b.x, S, &net.norm, c->layer_norm_epsilon, out);
    wan_free(b.block);
    wan_free(net.blk);
    return WAN_OK;
}

wan_status wan_umt5_encode(const wan_st_set *w, const wan_text_encoder_config *c, const int64_t *ids, int L,
                           int max_len, float *out, int n_threads, wan_error *err)
{
    if (L < 1 || L > max_len)
        return wan_err(err, WAN_ERR_INVALID_ARG,
                       "umT5 text encoder: %d tokens for max_length %d (need 1 <= tokens <= max_length)", L,
                       max_len);
    wan_status rc = wan_umt5_forward(w, c, ids, NULL, L, out, NULL, n_threads, err);
    if (rc == WAN_OK)
        memset(out + (size_t)L * c->d_model, 0, (size_t)(max_len - L) * c->d_model * sizeof *out);
    return rc;
}

/* ---- public API ------------------------------------------------------------------------------- */

static wan_status text_encoder_of(const wan_model_t *model, const wan_st_set **w,
                                  const wan_text_encoder_config **c, wan_error *err)
{
    if (!model)
        return wan_err(err, WAN_ERR_INVALID_ARG, "text encoding: model is NULL");
    *w = wan_model_weights(model, WAN_COMPONENT_TEXT_ENCODER);
    *c = wan_model_text_encoder_config(model);
    if (!*w || !*c)
        return wan_err(err, WAN_ERR_NOT_FOUND, "%s: the model has no text encoder", wan_model_path(model));
    return WAN_OK;
}

/* Allocates out as F32 [1, rows, d]. */
static wan_status host_tensor_f32(wan_host_tensor *out, const char *name, int64_t rows, int64_t d, wan_error *err)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", name);
    out->dtype = WAN_DTYPE_F32;
    out->ndim = 3;
    out->shape[0] = 1;
    out->shape[1] = rows;
    out->shape[2] = d;
    out->data = wan_malloc((size_t)(rows * d) * sizeof(float));
    if (!out->data)
        return wan_err(err, WAN_ERR_NOMEM, "text encoding: out of memory for the [1, %lld, %lld] output",
                       (long long)rows, (long long)d);
    return WAN_OK;
}

wan_status wan_text_encoder_forward(const wan_model_t *model, const int64_t *ids, const int64_t *mask,
                                    int seq_len, wan_host_tensor *out, int n_threads, char *errbuf, size_t errlen)
{
    wan_error err = { 0 };
    const wan_st_set *w = NULL;
    const wan_text_encoder_config *c = NULL;
    wan_host_tensor t;
    wan_status rc = text_encoder_of(model, &w, &c, &err);
    if (rc == WAN_OK && (!out || !ids || seq_len < 1))
        rc = wan_err(&err, WAN_ERR_INVALID_ARG, "wan_text_encoder_forward: ids and out are required and "
                     "seq_len (%d) must be >= 1", seq_len);
    if (rc == WAN_OK)
        rc = host_tensor_f32(&t, "last_hidden_state", seq_len, c->d_model, &err);
    if (rc == WAN_OK) {
        rc = wan_umt5_forward(w, c, ids, mask, seq_len, t.data, NULL, n_threads, &err);
        if (rc == WAN_OK)
            *out = t;
        else
            wan_host_tensor_free(&t);
    }
    wan_err_copy(&err, errbuf, errlen);
    return rc;
}

wan_status wan_text_encode_ids(const wan_model_t *model, const int64_t *ids, int n_ids, int max_length,
                               wan_host_tensor *out, int n_threads, char *errbuf, size_t errlen)
{
    wan_error err = { 0 };
    const wan_st_set *w = NULL;
    const wan_text_encoder_config *c = NULL;
    wan_host_tensor t;
    wan_status rc = text_encoder_of(model, &w, &c, &err);
    if (rc == WAN_OK && (!out || !ids || n_ids < 1 || n_ids > max_length))
        rc = wan_err(&err, WAN_ERR_INVALID_ARG, "wan_text_encode_ids: ids and out are required and need "
                     "1 <= n_ids (%d) <= max_length (%d)", n_ids, max_length);
    if (rc == WAN_OK)
        rc = host_tensor_f32(&t, "prompt_embeds", max_length, c->d_model, &err);
    if (rc == WAN_OK) {
        rc = wan_umt5_encode(w, c, ids, n_ids, max_length, t.data, n_threads, &err);
        if (rc == WAN_OK)
            *out = t;
        else
            wan_host_tensor_free(&t);
    }
    wan_err_copy(&err, errbuf, errlen);
    return rc;
}

/* Tokenizes one prompt as WanPipeline (clean, ftfy subset, truncation) and encodes its real tokens. */
static wan_status encode_text(const wan_model_t *model, const wan_tokenizer_t *tok, const char *text,
                              int max_length, wan_host_tensor *out, int n_threads, char *errbuf, size_t errlen)
{
    wan_encode_params p = wan_encode_default_params();
    p.max_length = max_length;
    p.pad = 0; /* only the real tokens are encoded */
    wan_tokens t = { 0 };
    int64_t *ids = NULL;
    wan_status rc = wan_tokenizer_encode(tok, text, WAN_STRLEN, &p, &t, errbuf, errlen);
    if (rc == WAN_OK && !(ids = wan_malloc((size_t)(t.n_real > 0 ? t.n_real : 1) * sizeof *ids))) {
        rc = WAN_ERR_NOMEM;
        snprintf(errbuf, errlen, "wan_encode_prompt: out of memory");
    }
    for (int i = 0; rc == WAN_OK && i < t.n_real; i++)
        ids[i] = t.ids[i];
    if (rc == WAN_OK)
        rc = wan_text_encode_ids(model, ids, t.n_real, max_length, out, n_threads, errbuf, errlen);
    wan_free(ids);
    wan_tokens_free(&t);
    return rc;
}

wan_status wan_encode_prompt(const wan_model_t *model, const wan_tokenizer_t *tok, const char *prompt,
                             const char *negative_prompt, int max_length, wan_host_tensor *prompt_embeds,
                             wan_host_tensor *negative_prompt_embeds, int n_threads, char *errbuf, size_t errlen)
{
    wan_error err = { 0 };
    if (!model || !prompt || !prompt_embeds || max_length < 1) {
        wan_err(&err, WAN_ERR_INVALID_ARG, "wan_encode_prompt: model, prompt and prompt_embeds are required and "
                "max_length (%d) must be >= 1", max_length);
        wan_err_copy(&err, errbuf, errlen);
        return err.code;
    }
    wan_tokenizer_t *own = NULL;
    const char *path = model->tokenizer_json ? model->tokenizer_json : model->spiece_model;
    wan_status rc = WAN_OK;
    if (!tok && !path) {
        rc = wan_err(&err, WAN_ERR_NOT_FOUND, "%s: the model has no tokenizer", wan_model_path(model));
        wan_err_copy(&err, errbuf, errlen);
        return rc;
    }
    if (!tok && (rc = wan_tokenizer_load(path, &own, errbuf, errlen)) != WAN_OK)
        return rc;
    wan_host_tensor pe = { 0 }, ne = { 0 };
    rc = encode_text(model, tok ? tok : own, prompt, max_length, &pe, n_threads, errbuf, errlen);
    if (rc == WAN_OK && negative_prompt_embeds)
        rc = encode_text(model, tok ? tok : own, negative_prompt ? negative_prompt : "", max_length, &ne, n_threads,
                         errbuf, errlen);
    wan_tokenizer_free(own);
    if (rc != WAN_OK) {
        wan_host_tensor_free(&pe);
        wan_host_tensor_free(&ne);
        return rc;
    }
    snprintf(pe.name, sizeof pe.name, "prompt_embeds");
    *prompt_embeds = pe;
    if (negative_prompt_embeds) {
        snprintf(ne.name, sizeof ne.name, "negative_prompt_embeds");
        *negative_prompt_embeds = ne;
    }
    return WAN_OK;
}
