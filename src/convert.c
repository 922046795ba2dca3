/* convert.c — wan_model_convert: writes a loaded model as a diffusers WanPipeline folder (model_index.json,
 * component configs, sharded safetensors with index files, tokenizer files) or in the original Wan release
 * layout, optionally converting floating-point tensors. The output is built in DST.tmp-XXXXXX, every file
 * is fsync'ed, and the folder is renamed to DST only when complete. */
#define _GNU_SOURCE
#include "convert.h"
#include "cpu/gemm.h"
#include "quant.h"

#include "model_dir.h"
#include "umt5.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIFFUSERS_VERSION "0.35.0" /* the first diffusers release with Wan2.2 (boundary_ratio) */

wan_convert_params wan_convert_default_params(void)
{
    return (wan_convert_params){ .layout = WAN_CONVERT_DIFFUSERS, .dtype = -1, .shard_bytes = 5000000000LL };
}

typedef struct writer {
    const wan_model_t *m;
    wan_convert_params p;
    char *tmp;          /* the folder being filled */
    int64_t bytes;      /* tensor bytes written */
    int files;
    wan_error *err;
} writer;

/* How an output tensor is made from its source. */
typedef enum out_kind {
    OUT_COPY = 0,  /* the source's values, in `dtype` */
    OUT_Q_VALUES,  /* a [N, K] weight (float, float8, or the other integer format) quantised to q8_0 or q4_0: the
                      values (I8 [N, K], or U8 [N, K / 2]) */
    OUT_Q_SCALES,  /* ... and its F16 scales, [N, K / WAN_Q8_BLOCK] */
    OUT_DEQUANT    /* a quantised weight (q8_0, float8 with its scale) as floats of `dtype` */
} out_kind;

typedef struct out_tensor {
    char *name;             /* name in the output */
    const wan_st_tensor *t; /* source */
    wan_tensor w;           /* other kinds than OUT_COPY: the source as a weight view, with its scales */
    wan_dtype dtype;        /* dtype in the output */
    out_kind kind;
} out_tensor;

/* ---- files ------------------------------------------------------------------------------------ */

static wan_status fsync_path(const char *path, wan_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return wan_err(err, WAN_ERR_IO, "%s: fsync failed: %s", path, strerror(e));
    }
    close(fd);
    return WAN_OK;
}

/* Closes f after flushing it to the disk. */
static wan_status close_synced(FILE *f, const char *path, wan_error *err)
{
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    int e = errno;
    ok = (fclose(f) == 0) && ok;
    if (!ok)
        return wan_err(err, WAN_ERR_IO, "%s: write failed: %s", path, strerror(e ? e : errno));
    return WAN_OK;
}

static wan_status write_text(writer *w, const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return wan_err(w->err, WAN_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    size_t n = strlen(text);
    if (fwrite(text, 1, n, f) != n) {
        fclose(f);
        return wan_err(w->err, WAN_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    w->files++;
    return close_synced(f, path, w->err);
}

/* Writes o (which it frees) as pretty-printed JSON to <dir>/<name>. */
static wan_status write_json(writer *w, const char *dir, const char *name, cJSON *o)
{
    char *text = o ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    char *path = wan_path_join(dir, name);
    char *nl = text ? wan_asprintf("%s\n", text) : NULL;
    free(text);
    wan_status rc = path && nl ? write_text(w, path, nl) : wan_err(w->err, WAN_ERR_NOMEM, "out of memory writing %s", name);
    wan_free(nl);
    wan_free(path);
    return rc;
}

static wan_status copy_file(writer *w, const char *src, const char *dst)
{
    char *text = NULL;
    size_t len = 0;
    wan_status rc = wan_read_file(src, &text, &len, w->err);
    if (rc != WAN_OK)
        return rc;
    FILE *f = fopen(dst, "wb");
    if (!f)
        rc = wan_err(w->err, WAN_ERR_IO, "%s: cannot create: %s", dst, strerror(errno));
    else if (fwrite(text, 1, len, f) != len) {
        fclose(f);
        rc = wan_err(w->err, WAN_ERR_IO, "%s: write failed: %s", dst, strerror(errno));
    } else {
        w->files++;
        rc = close_synced(f, dst, w->err);
    }
    wan_free(text);
    return rc;
}

/* Creates <tmp>/<rel> (rel may be "" for tmp itself) and returns its path in *out. */
static wan_status make_dir(writer *w, const char *rel, char **out)
{
    *out = rel[0] ? wan_path_join(w->tmp, rel) : wan_strdup(w->tmp);
    if (!*out)
        return wan_err(w->err, WAN_ERR_NOMEM, "out of memory");
    if (rel[0] && mkdir(*out, 0755) != 0 && errno != EEXIST)
        return wan_err(w->err, WAN_ERR_IO, "%s: cannot create the folder: %s", *out, strerror(errno));
    return WAN_OK;
}

/* ---- safetensors output ----------------------------------------------------------------------- */

static bool is_float(wan_dtype t) { return t == WAN_DTYPE_F32 || t == WAN_DTYPE_F16 || t == WAN_DTYPE_BF16; }

static float load_f(const uint8_t *p, wan_dtype t)
{
    if (t == WAN_DTYPE_F32) {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    uint16_t h = (uint16_t)(p[0] | p[1] << 8);
    return t == WAN_DTYPE_BF16 ? wan_bf16_to_f32(h) : wan_f16_to_f32(h);
}

static void store_f(uint8_t *p, wan_dtype t, float f)
{
    if (t == WAN_DTYPE_F32) {
        memcpy(p, &f, 4);
        return;
    }
    uint16_t h = t == WAN_DTYPE_BF16 ? wan_f32_to_bf16(f) : wan_f32_to_f16(f);
    p[0] = (uint8_t)h, p[1] = (uint8_t)(h >> 8);
}

/* Shape of the output tensor into sh; returns its rank. */
static int out_shape(const out_tensor *o, int64_t *sh)
{
    if (o->kind == OUT_COPY) {
        for (int d = 0; d < o->t->ndim; d++)
            sh[d] = o->t->shape[d];
        return o->t->ndim;
    }
    sh[0] = o->w.ne[0]; /* the weight's [N, K] in values */
    sh[1] = o->kind == OUT_Q_SCALES                              ? o->w.ne[1] / WAN_Q8_BLOCK
            : o->kind == OUT_Q_VALUES && o->dtype == WAN_DTYPE_U8 ? o->w.ne[1] / 2
                                                                  : o->w.ne[1];
    return 2;
}

static int64_t out_bytes(const out_tensor *o)
{
    int64_t n = 1, sh[WAN_ST_MAX_DIMS];
    for (int d = 0, nd = out_shape(o, sh); d < nd; d++)
        n *= sh[d];
    return n * (int64_t)wan_dtype_size(o->dtype);
}

/* Writes a weight row by row: as q8_0 or q4_0 values or scales, or dequantised to floats. */
static wan_status write_rows(writer *w, FILE *f, const out_tensor *o, const char *path)
{
    const int64_t N = o->w.ne[0], K = o->w.ne[1], nb = K / WAN_Q8_BLOCK;
    const bool q4 = w->p.quantize == WAN_QUANT_Q4_0;
    const size_t des = wan_dtype_size(o->dtype);
    float *x = wan_malloc(sizeof(float) * (size_t)K);
    uint8_t *buf = wan_malloc((size_t)K * 4);
    int8_t *q = wan_malloc((size_t)K);
    uint16_t *sc = wan_malloc(sizeof(uint16_t) * (size_t)(nb ? nb : 1));
    wan_status rc = x && buf && q && sc ? WAN_OK : wan_err(w->err, WAN_ERR_NOMEM, "%s: out of memory", path);
    for (int64_t r = 0; rc == WAN_OK && r < N; r++) {
        const void *out;
        size_t bytes;
        wan_cpu_weight_row_to_f32(&o->w, K, r, 0, K, x);
        if (o->kind == OUT_DEQUANT) {
            for (int64_t k = 0; k < K; k++)
                store_f(buf + k * des, o->dtype, x[k]);
            out = buf, bytes = (size_t)K * des;
        } else {
            if (q4)
                wan_q4_quantize_row(x, K, (uint8_t *)q, sc);
            else
                wan_q8_quantize_row(x, K, q, sc);
            for (int64_t b = 0; b < nb; b++) /* little-endian F16 in the file */
                buf[2 * b] = (uint8_t)sc[b], buf[2 * b + 1] = (uint8_t)(sc[b] >> 8);
            out = o->kind == OUT_Q_VALUES ? (const void *)q : (const void *)buf;
            bytes = o->kind == OUT_Q_VALUES ? (size_t)(q4 ? K / 2 : K) : (size_t)nb * 2;
        }
        if (fwrite(out, 1, bytes, f) != bytes)
            rc = wan_err(w->err, WAN_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    wan_free(x);
    wan_free(buf);
    wan_free(q);
    wan_free(sc);
    return rc;
}

/* Writes the tensor's bytes, converted to o->dtype (round to nearest even, as torch's .to()). */
static wan_status write_data(writer *w, FILE *f, const out_tensor *o, const char *path)
{
    size_t n = o->t->end - o->t->begin;
    if (o->kind != OUT_COPY)
        return write_rows(w, f, o, path);
    if (o->dtype == o->t->dtype)
        return fwrite(o->t->data, 1, n, f) == n ? WAN_OK
                                                 : wan_err(w->err, WAN_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    enum { CHUNK = 16384 };
    uint8_t buf[CHUNK * 4];
    size_t ses = wan_dtype_size(o->t->dtype), des = wan_dtype_size(o->dtype), ne = n / ses;
    for (size_t i = 0; i < ne; i += CHUNK) {
        size_t k = ne - i < CHUNK ? ne - i : CHUNK;
        for (size_t j = 0; j < k; j++)
            store_f(buf + j * des, o->dtype, load_f(o->t->data + (i + j) * ses, o->t->dtype));
        if (fwrite(buf, des, k, f) != k)
            return wan_err(w->err, WAN_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    return WAN_OK;
}

/* One safetensors file holding v[0..n): header (padded to 8 bytes), then the data in the same order. */
static wan_status write_safetensors(writer *w, const char *path, const out_tensor *v, int n)
{
    cJSON *h = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(h, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_AddObjectToObject(h, v[i].name);
        cJSON_AddStringToObject(e, "dtype", wan_dtype_name(v[i].dtype));
        cJSON *sh = cJSON_AddArrayToObject(e, "shape"), *of = cJSON_AddArrayToObject(e, "data_offsets");
        int64_t shape[WAN_ST_MAX_DIMS];
        for (int d = 0, nd = out_shape(&v[i], shape); d < nd; d++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)shape[d]));
        int64_t b = out_bytes(&v[i]);
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + b)));
        off += b;
    }
    char *json = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (!json)
        return wan_err(w->err, WAN_ERR_NOMEM, "%s: out of memory writing the header", path);
    size_t jl = strlen(json), hl = (jl + 7) / 8 * 8;
    FILE *f = fopen(path, "wb");
    wan_status rc = WAN_OK;
    if (!f) {
        free(json);
        return wan_err(w->err, WAN_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    if (fwrite(len8, 1, 8, f) != 8 || fwrite(json, 1, jl, f) != jl || fprintf(f, "%*s", (int)(hl - jl), "") < 0)
        rc = wan_err(w->err, WAN_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    free(json);
    for (int i = 0; rc == WAN_OK && i < n; i++)
        rc = write_data(w, f, &v[i], path);
    if (rc != WAN_OK) {
        fclose(f);
        return rc;
    }
    w->bytes += off;
    w->files++;
    wan_log_info("wrote %s (%d tensors, %.1f MB)", path, n, (double)off / 1e6);
    return close_synced(f, path, w->err);
}

/* Writes v[0..n) into dir: one file `single` when everything fits in one shard (or shard is false),
 * else <base>-0000k-of-0000N.safetensors + <base>.safetensors.index.json (weight_map, metadata.total_size). */
static wan_status write_shards(writer *w, const char *dir, const char *base, const char *single, bool shard,
                               const out_tensor *v, int n)
{
    int *which = wan_calloc((size_t)(n ? n : 1), sizeof *which);
    if (!which)
        return wan_err(w->err, WAN_ERR_NOMEM, "out of memory");
    int shards = 1;
    int64_t cur = 0, total = 0;
    for (int i = 0; i < n; i++) {
        int64_t b = out_bytes(&v[i]);
        if (shard && cur > 0 && cur + b > w->p.shard_bytes)
            shards++, cur = 0;
        which[i] = shards - 1;
        cur += b, total += b;
    }
    wan_status rc = WAN_OK;
    cJSON *index = shards > 1 ? cJSON_CreateObject() : NULL, *wm = NULL;
    if (index) {
        cJSON *meta = cJSON_AddObjectToObject(index, "metadata");
        cJSON_AddNumberToObject(meta, "total_size", (double)total);
        wm = cJSON_AddObjectToObject(index, "weight_map");
    }
    for (int s = 0, first = 0; rc == WAN_OK && s < shards; s++) {
        int last = first;
        while (last < n && which[last] == s)
            last++;
        char name[160];
        if (shards == 1)
            snprintf(name, sizeof name, "%s", single);
        else
            snprintf(name, sizeof name, "%s-%05d-of-%05d.safetensors", base, s + 1, shards);
        for (int i = first; wm && i < last; i++)
            cJSON_AddStringToObject(wm, v[i].name, name);
        char *path = wan_path_join(dir, name);
        rc = path ? write_safetensors(w, path, v + first, last - first) : wan_err(w->err, WAN_ERR_NOMEM, "out of memory");
        wan_free(path);
        first = last;
    }
    wan_free(which);
    if (index && rc == WAN_OK) {
        char iname[160];
        snprintf(iname, sizeof iname, "%s.safetensors.index.json", base);
        return write_json(w, dir, iname, index);
    }
    cJSON_Delete(index);
    return rc;
}

static int cmp_out(const void *a, const void *b)
{
    return strcmp(((const out_tensor *)a)->name, ((const out_tensor *)b)->name);
}

static void free_out(out_tensor *v, int n)
{
    for (int i = 0; v && i < n; i++)
        wan_free(v[i].name);
    wan_free(v);
}

/* Whether `name` of component c is the weight of a linear layer that --quantize q8_0 stores as q8_0: the attention
 * and feed-forward projections of the transformer blocks and of the umT5 encoder blocks (99% of their parameters;
 * embeddings, norms, the patch embedding and the head stay as they are). */
static bool quant_target(wan_component c, const char *name)
{
    int b, off = 0;
    if (c == WAN_COMPONENT_TRANSFORMER || c == WAN_COMPONENT_TRANSFORMER_2) {
        static const char *const lin[] = { "attn1.to_q.weight", "attn1.to_k.weight", "attn1.to_v.weight",
                                           "attn1.to_out.0.weight", "attn2.to_q.weight", "attn2.to_k.weight",
                                           "attn2.to_v.weight", "attn2.to_out.0.weight", "ffn.net.0.proj.weight",
                                           "ffn.net.2.weight" };
        if (sscanf(name, "blocks.%d.%n", &b, &off) == 1 && off > 0)
            for (size_t i = 0; i < sizeof lin / sizeof *lin; i++)
                if (!strcmp(name + off, lin[i]))
                    return true;
    } else if (c == WAN_COMPONENT_TEXT_ENCODER) {
        static const char *const lin[] = { "layer.0.SelfAttention.q.weight", "layer.0.SelfAttention.k.weight",
                                           "layer.0.SelfAttention.v.weight", "layer.0.SelfAttention.o.weight",
                                           "layer.1.DenseReluDense.wi_0.weight", "layer.1.DenseReluDense.wi_1.weight",
                                           "layer.1.DenseReluDense.wo.weight" };
        if (sscanf(name, "encoder.block.%d.%n", &b, &off) == 1 && off > 0)
            for (size_t i = 0; i < sizeof lin / sizeof *lin; i++)
                if (!strcmp(name + off, lin[i]))
                    return true;
    }
    return false;
}


/* The source dtype of weights already in the --quantize format (I8 for q8_0, U8 for q4_0), or -1. */
static int target_dtype(const writer *w)
{
    return w->p.quantize == WAN_QUANT_Q8_0 ? WAN_DTYPE_I8 : w->p.quantize == WAN_QUANT_Q4_0 ? WAN_DTYPE_U8 : -1;
}

/* How weight e (its row length K in values) is written: quantised (--quantize, a quant_target float, float8 or
 * other-format weight), dequantised (a quantised source with --dtype, unless it is already in the --quantize format),
 * or copied. */
static out_kind weight_kind(const writer *w, wan_component c, const wan_st_entry *e, bool quantised, int64_t K)
{
    const wan_st_tensor *t = e->t;
    const bool in_format = quantised && (int)t->dtype == target_dtype(w);
    if (target_dtype(w) >= 0 && !in_format && (quantised || is_float(t->dtype)) && t->ndim == 2 &&
        K % WAN_Q8_BLOCK == 0 && quant_target(c, e->name))
        return OUT_Q_VALUES;
    if (quantised && w->p.dtype >= 0 && !in_format)
        return OUT_DEQUANT;
    return OUT_COPY;
}


/* Appends output tensor `name` (renamed by fn when given, then `suffix`) to v[*n]. */
static wan_status add_out(writer *w, out_tensor *v, int *n, const char *name, const char *suffix, wan_st_rename_fn fn,
                          void *user, out_tensor o)
{
    char buf[512];
    o.name = wan_asprintf("%s%s", fn && fn(name, buf, sizeof buf, user) ? buf : name, suffix);
    if (!o.name)
        return wan_err(w->err, WAN_ERR_NOMEM, "out of memory");
    v[(*n)++] = o;
    return WAN_OK;
}

/* The tensors of a component under their output names (renamed by fn when given), sorted; the tied
 * alias encoder.embed_tokens.weight is dropped when shared.weight is there (save_pretrained does too).
 * --quantize q8_0 turns each float (or float8) linear weight quant_target names into two tensors; quantised sources
 * (q8_0, float8) are kept as they are with their scales, or written as floats when a float dtype is asked for. */
static wan_status gather(writer *w, wan_component c, wan_st_rename_fn fn, void *user, out_tensor **out, int *nout)
{
    const wan_st_set *s = wan_model_weights(w->m, c);
    out_tensor *v = wan_calloc((size_t)(2 * s->n + 1), sizeof *v);
    if (!v)
        return wan_err(w->err, WAN_ERR_NOMEM, "out of memory");
    int n = 0;
    bool shared = wan_st_set_find(s, "shared.weight") != NULL;
    wan_status rc = WAN_OK;
    for (int i = 0; rc == WAN_OK && i < s->n; i++) {
        const wan_st_entry *e = &s->entries[i], *owner;
        const wan_st_tensor *t = e->t;
        wan_tensor qv;
        if (shared && !strcmp(e->name, "encoder.embed_tokens.weight"))
            continue;
        if ((owner = wan_st_set_aux_owner(s, e, &qv))) { /* kept bit for bit beside a kept weight, whatever --dtype says */
            if (weight_kind(w, c, owner, true, qv.ne[1]) == OUT_COPY &&
                !(shared && !strcmp(owner->name, "encoder.embed_tokens.weight")))
                rc = add_out(w, v, &n, e->name, "", fn, user, (out_tensor){ .t = t, .dtype = t->dtype });
            continue;
        }
        if (!strcmp(e->name, "scaled_fp8")) { /* ComfyUI's marker: meaningless once its float8 is dequantised */
            if (w->p.dtype < 0)
                rc = add_out(w, v, &n, e->name, "", fn, user, (out_tensor){ .t = t, .dtype = t->dtype });
            continue;
        }
        const bool quantised = wan_st_set_quantised(s, e, &qv);
        const out_kind k = weight_kind(w, c, e, quantised, quantised ? qv.ne[1] : t->ndim == 2 ? t->shape[1] : 1);
        if (!quantised && k != OUT_COPY)
            qv = wan_tensor_view(t->dtype, 2, (int64_t[]){ t->shape[0], t->shape[1] }, (void *)t->data);
        if (k == OUT_Q_VALUES) {
            rc = add_out(w, v, &n, e->name, "", fn, user,
                         (out_tensor){ .t = t, .w = qv, .dtype = (wan_dtype)target_dtype(w), .kind = OUT_Q_VALUES });
            if (rc == WAN_OK)
                rc = add_out(w, v, &n, e->name, "_scale", fn, user,
                             (out_tensor){ .t = t, .w = qv, .dtype = WAN_DTYPE_F16, .kind = OUT_Q_SCALES });
        } else if (k == OUT_DEQUANT) {
            rc = add_out(w, v, &n, e->name, "", fn, user,
                         (out_tensor){ .t = t, .w = qv, .dtype = (wan_dtype)w->p.dtype, .kind = OUT_DEQUANT });
        } else {
            rc = add_out(w, v, &n, e->name, "", fn, user,
                         (out_tensor){ .t = t, .dtype = w->p.dtype >= 0 && is_float(t->dtype) ? (wan_dtype)w->p.dtype
                                                                                              : t->dtype });
        }
    }
    if (rc != WAN_OK) {
        free_out(v, n);
        return rc;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_out);
    for (int i = 1; i < n; i++)
        if (!strcmp(v[i - 1].name, v[i].name)) {
            wan_status rc = wan_err(w->err, WAN_ERR_FORMAT, "%s: two tensors would both be written as '%s'",
                                    wan_component_name(c), v[i].name);
            free_out(v, n);
            return rc;
        }
    *out = v;
    *nout = n;
    return WAN_OK;
}

/* Writes one component's tensors into <tmp>/<rel>. */
static wan_status write_weights(writer *w, wan_component c, const char *rel, wan_st_rename_fn fn, void *user,
                                const char *base, const char *single, bool shard)
{
    out_tensor *v = NULL;
    int n = 0;
    char *dir = NULL;
    wan_status rc = make_dir(w, rel, &dir);
    if (rc == WAN_OK)
        rc = gather(w, c, fn, user, &v, &n);
    if (rc == WAN_OK)
        rc = write_shards(w, dir, base, single, shard, v, n);
    if (rc != WAN_OK)
        wan_err_wrap(w->err, "writing %s: ", wan_component_name(c));
    free_out(v, n);
    wan_free(dir);
    wan_model_release_component(w->m, c);
    return rc;
}

static wan_status copy_tokenizer(writer *w, const char *rel)
{
    static const char *const files[] = { "tokenizer.json", "spiece.model", "tokenizer_config.json",
                                         "special_tokens_map.json" };
    wan_component_info ci;
    wan_model_component_info(w->m, WAN_COMPONENT_TOKENIZER, &ci);
    const char *src = ci.path;
    char *dir = NULL;
    wan_status rc = make_dir(w, rel, &dir);
    for (size_t i = 0; rc == WAN_OK && i < sizeof files / sizeof *files; i++) {
        char *a = wan_path_join(src, files[i]), *b = wan_path_join(dir, files[i]);
        if (!a || !b)
            rc = wan_err(w->err, WAN_ERR_NOMEM, "out of memory");
        else if (wan_path_is_file(a))
            rc = copy_file(w, a, b);
        wan_free(a);
        wan_free(b);
    }
    wan_free(dir);
    return rc;
}

/* ---- configs ---------------------------------------------------------------------------------- */

/* A JSON float with the fewest digits that read back as the same value (2.8184, not 2.81839991), always
 * with a '.' or an exponent: transformers 5 rejects 1 where its config wants a float. */
static cJSON *json_real(double x, bool f32)
{
    char b[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(b, sizeof b, "%.*g", p, x);
        if (f32 ? strtof(b, NULL) == (float)x : strtod(b, NULL) == x)
            break;
    }
    if (!strpbrk(b, ".eEn"))
        strcat(b, ".0");
    return cJSON_CreateRaw(b);
}

static cJSON *json_f32(float x) { return json_real(x, true); }

static void add_real(cJSON *o, const char *key, double x) { cJSON_AddItemToObject(o, key, json_real(x, false)); }

static cJSON *int_list(const int *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static cJSON *transformer_json(const wan_transformer_config *c)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "_class_name", "WanTransformer3DModel");
    cJSON_AddStringToObject(o, "_diffusers_version", DIFFUSERS_VERSION);
    cJSON_AddNullToObject(o, "added_kv_proj_dim");
    cJSON_AddNumberToObject(o, "attention_head_dim", c->attention_head_dim);
    cJSON_AddBoolToObject(o, "cross_attn_norm", c->cross_attn_norm);
    add_real(o, "eps", c->eps);
    cJSON_AddNumberToObject(o, "ffn_dim", c->ffn_dim);
    cJSON_AddNumberToObject(o, "freq_dim", c->freq_dim);
    cJSON_AddNullToObject(o, "image_dim");
    cJSON_AddNumberToObject(o, "in_channels", c->in_channels);
    cJSON_AddNumberToObject(o, "num_attention_heads", c->num_attention_heads);
    cJSON_AddNumberToObject(o, "num_layers", c->num_layers);
    cJSON_AddNumberToObject(o, "out_channels", c->out_channels);
    cJSON_AddItemToObject(o, "patch_size", int_list(c->patch_size, 3));
    cJSON_AddNullToObject(o, "pos_embed_seq_len");
    cJSON_AddStringToObject(o, "qk_norm", "rms_norm_across_heads");
    cJSON_AddNumberToObject(o, "rope_max_seq_len", c->rope_max_seq_len);
    cJSON_AddNumberToObject(o, "text_dim", c->text_dim);
    return o;
}

/* The WanModel config.json of the original release (transformer.md 1). */
static cJSON *wanmodel_json(const wan_transformer_config *c, bool ti2v)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "_class_name", "WanModel");
    cJSON_AddStringToObject(o, "_diffusers_version", DIFFUSERS_VERSION);
    cJSON_AddBoolToObject(o, "cross_attn_norm", c->cross_attn_norm);
    cJSON_AddNumberToObject(o, "dim", c->num_attention_heads * c->attention_head_dim);
    add_real(o, "eps", c->eps);
    cJSON_AddNumberToObject(o, "ffn_dim", c->ffn_dim);
    cJSON_AddNumberToObject(o, "freq_dim", c->freq_dim);
    cJSON_AddNumberToObject(o, "in_dim", c->in_channels);
    cJSON_AddStringToObject(o, "model_type", ti2v ? "ti2v" : "t2v");
    cJSON_AddNumberToObject(o, "num_heads", c->num_attention_heads);
    cJSON_AddNumberToObject(o, "num_layers", c->num_layers);
    cJSON_AddNumberToObject(o, "out_dim", c->out_channels);
    cJSON_AddItemToObject(o, "patch_size", int_list(c->patch_size, 3));
    cJSON_AddBoolToObject(o, "qk_norm", 1);
    cJSON_AddNumberToObject(o, "text_dim", c->text_dim);
    cJSON_AddNumberToObject(o, "text_len", 512);
    cJSON_AddItemToObject(o, "window_size", int_list((const int[]){ -1, -1 }, 2));
    return o;
}

static cJSON *vae_json(const wan_vae_config *c)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "_class_name", "AutoencoderKLWan");
    cJSON_AddStringToObject(o, "_diffusers_version", DIFFUSERS_VERSION);
    cJSON_AddItemToObject(o, "attn_scales", cJSON_CreateArray());
    cJSON_AddNumberToObject(o, "base_dim", c->base_dim);
    if (c->decoder_base_dim != c->base_dim)
        cJSON_AddNumberToObject(o, "decoder_base_dim", c->decoder_base_dim);
    else
        cJSON_AddNullToObject(o, "decoder_base_dim");
    cJSON_AddItemToObject(o, "dim_mult", int_list(c->dim_mult, c->n_dim_mult));
    add_real(o, "dropout", 0.0);
    cJSON_AddNumberToObject(o, "in_channels", c->in_channels);
    cJSON_AddBoolToObject(o, "is_residual", c->is_residual);
    cJSON *mean = cJSON_AddArrayToObject(o, "latents_mean"), *std = cJSON_AddArrayToObject(o, "latents_std");
    for (int i = 0; i < c->z_dim && i < WAN_VAE_MAX_Z; i++) {
        cJSON_AddItemToArray(mean, json_f32(c->latents_mean[i]));
        cJSON_AddItemToArray(std, json_f32(c->latents_std[i]));
    }
    cJSON_AddNumberToObject(o, "num_res_blocks", c->num_res_blocks);
    cJSON_AddNumberToObject(o, "out_channels", c->out_channels);
    if (c->patch_size)
        cJSON_AddNumberToObject(o, "patch_size", c->patch_size);
    else
        cJSON_AddNullToObject(o, "patch_size");
    cJSON_AddNumberToObject(o, "scale_factor_spatial", c->scale_factor_spatial);
    cJSON_AddNumberToObject(o, "scale_factor_temporal", c->scale_factor_temporal);
    cJSON *td = cJSON_AddArrayToObject(o, "temperal_downsample");
    for (int i = 0; i + 1 < c->n_dim_mult; i++)
        cJSON_AddItemToArray(td, cJSON_CreateBool(c->temporal_downsample[i]));
    cJSON_AddNumberToObject(o, "z_dim", c->z_dim);
    return o;
}

/* transformers' UMT5Config as google/umt5-xxl ships it, with the sizes of this encoder. */
static cJSON *text_encoder_json(const wan_text_encoder_config *c, const char *dtype)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("UMT5EncoderModel"));
    add_real(o, "classifier_dropout", 0.0);
    cJSON_AddNumberToObject(o, "d_ff", c->d_ff);
    cJSON_AddNumberToObject(o, "d_kv", c->d_kv);
    cJSON_AddNumberToObject(o, "d_model", c->d_model);
    cJSON_AddNumberToObject(o, "decoder_start_token_id", 0);
    cJSON_AddStringToObject(o, "dense_act_fn", c->gated_gelu ? "gelu_new" : "relu");
    add_real(o, "dropout_rate", 0.1);
    cJSON_AddStringToObject(o, "dtype", dtype);
    cJSON_AddNumberToObject(o, "eos_token_id", 1);
    cJSON_AddStringToObject(o, "feed_forward_proj", c->gated_gelu ? "gated-gelu" : "relu");
    add_real(o, "initializer_factor", 1.0);
    cJSON_AddBoolToObject(o, "is_encoder_decoder", 1);
    cJSON_AddBoolToObject(o, "is_gated_act", c->gated_gelu);
    add_real(o, "layer_norm_epsilon", c->layer_norm_epsilon);
    cJSON_AddStringToObject(o, "model_type", "umt5");
    cJSON_AddNumberToObject(o, "num_decoder_layers", c->num_layers);
    cJSON_AddNumberToObject(o, "num_heads", c->num_heads);
    cJSON_AddNumberToObject(o, "num_layers", c->num_layers);
    cJSON_AddNumberToObject(o, "pad_token_id", 0);
    cJSON_AddNumberToObject(o, "relative_attention_max_distance", c->relative_attention_max_distance);
    cJSON_AddNumberToObject(o, "relative_attention_num_buckets", c->relative_attention_num_buckets);
    cJSON_AddBoolToObject(o, "scalable_attention", 1);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", 0);
    cJSON_AddStringToObject(o, "tokenizer_class", "T5Tokenizer");
    cJSON_AddBoolToObject(o, "use_cache", 1);
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    return o;
}

static cJSON *scheduler_json(const wan_scheduler_config *c)
{
    static const char *const cls[] = { "UniPCMultistepScheduler", "FlowMatchEulerDiscreteScheduler",
                                       "DPMSolverMultistepScheduler" };
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "_class_name", cls[c->kind]);
    cJSON_AddStringToObject(o, "_diffusers_version", DIFFUSERS_VERSION);
    cJSON_AddNumberToObject(o, "num_train_timesteps", c->num_train_timesteps);
    if (c->kind == WAN_SCHEDULER_EULER) {
        add_real(o, "shift", c->flow_shift);
        return o;
    }
    if (c->kind == WAN_SCHEDULER_DPMPP)
        cJSON_AddStringToObject(o, "algorithm_type", "dpmsolver++");
    cJSON_AddStringToObject(o, "final_sigmas_type", c->final_sigmas_type);
    add_real(o, "flow_shift", c->flow_shift);
    cJSON_AddBoolToObject(o, "lower_order_final", c->lower_order_final);
    if (c->kind == WAN_SCHEDULER_UNIPC)
        cJSON_AddBoolToObject(o, "predict_x0", c->predict_x0);
    cJSON_AddStringToObject(o, "prediction_type", c->prediction_type);
    cJSON_AddNumberToObject(o, "solver_order", c->solver_order);
    cJSON_AddStringToObject(o, "solver_type", c->solver_type);
    cJSON_AddBoolToObject(o, "use_flow_sigmas", c->use_flow_sigmas);
    return o;
}

static const char *dtype_torch_name(const wan_st_set *s)
{
    for (int i = 0; i < s->n; i++)
        if (s->entries[i].t->dtype == WAN_DTYPE_BF16)
            return "bfloat16";
        else if (s->entries[i].t->dtype == WAN_DTYPE_F16)
            return "float16";
    return "float32";
}

/* ---- layouts ---------------------------------------------------------------------------------- */

static bool has(const writer *w, wan_component c)
{
    wan_component_info ci;
    return wan_model_component_info(w->m, c, &ci) == WAN_OK && ci.present;
}

static wan_status write_component_config(writer *w, const char *rel, const char *name, cJSON *o)
{
    char *dir = NULL;
    wan_status rc = make_dir(w, rel, &dir);
    if (rc == WAN_OK)
        rc = write_json(w, dir, name, o);
    else
        cJSON_Delete(o);
    wan_free(dir);
    return rc;
}

/* A lone text encoder or VAE (no transformer, nothing else): a pipeline without a transformer does not load, so it is
 * written as one diffusers component folder (config.json and weights at the root). */
static wan_status write_lone_component(writer *w, wan_component c)
{
    const wan_model_t *m = w->m;
    if (c == WAN_COMPONENT_VAE) {
        wan_status rc = write_component_config(w, "", "config.json", vae_json(wan_model_vae_config(m)));
        return rc == WAN_OK ? write_weights(w, c, "", NULL, NULL, "diffusion_pytorch_model",
                                            "diffusion_pytorch_model.safetensors", true)
                            : rc;
    }
    const char *dt = w->p.dtype >= 0 ? (w->p.dtype == WAN_DTYPE_BF16 ? "bfloat16"
                                        : w->p.dtype == WAN_DTYPE_F16 ? "float16" : "float32")
                                     : dtype_torch_name(wan_model_weights(m, c));
    wan_status rc = write_component_config(w, "", "config.json", text_encoder_json(wan_model_text_encoder_config(m), dt));
    return rc == WAN_OK ? write_weights(w, c, "", NULL, NULL, "model", "model.safetensors", true) : rc;
}

static wan_status write_diffusers(writer *w)
{
    const wan_model_t *m = w->m;
    wan_status rc = WAN_OK;
    if (!has(w, WAN_COMPONENT_TRANSFORMER) && !has(w, WAN_COMPONENT_TOKENIZER) && !has(w, WAN_COMPONENT_SCHEDULER) &&
        has(w, WAN_COMPONENT_TEXT_ENCODER) != has(w, WAN_COMPONENT_VAE))
        return write_lone_component(w, has(w, WAN_COMPONENT_VAE) ? WAN_COMPONENT_VAE : WAN_COMPONENT_TEXT_ENCODER);
    for (int e = 0; rc == WAN_OK && e < 2; e++) {
        wan_component c = e ? WAN_COMPONENT_TRANSFORMER_2 : WAN_COMPONENT_TRANSFORMER;
        if (!has(w, c))
            continue;
        rc = write_component_config(w, wan_component_name(c), "config.json",
                                    transformer_json(wan_model_transformer_config(m, e)));
        if (rc == WAN_OK)
            rc = write_weights(w, c, wan_component_name(c), NULL, NULL, "diffusion_pytorch_model",
                               "diffusion_pytorch_model.safetensors", true);
    }
    if (rc == WAN_OK && has(w, WAN_COMPONENT_TEXT_ENCODER)) {
        const char *dt = w->p.dtype >= 0 ? (w->p.dtype == WAN_DTYPE_BF16 ? "bfloat16"
                                            : w->p.dtype == WAN_DTYPE_F16 ? "float16" : "float32")
                                         : dtype_torch_name(wan_model_weights(m, WAN_COMPONENT_TEXT_ENCODER));
        rc = write_component_config(w, "text_encoder", "config.json",
                                    text_encoder_json(wan_model_text_encoder_config(m), dt));
        if (rc == WAN_OK)
            rc = write_weights(w, WAN_COMPONENT_TEXT_ENCODER, "text_encoder", NULL, NULL, "model", "model.safetensors",
                               true);
    }
    if (rc == WAN_OK && has(w, WAN_COMPONENT_VAE)) {
        rc = write_component_config(w, "vae", "config.json", vae_json(wan_model_vae_config(m)));
        if (rc == WAN_OK)
            rc = write_weights(w, WAN_COMPONENT_VAE, "vae", NULL, NULL, "diffusion_pytorch_model",
                               "diffusion_pytorch_model.safetensors", true);
    }
    if (rc == WAN_OK && has(w, WAN_COMPONENT_TOKENIZER))
        rc = copy_tokenizer(w, "tokenizer");
    if (rc == WAN_OK && has(w, WAN_COMPONENT_SCHEDULER))
        rc = write_component_config(w, "scheduler", "scheduler_config.json",
                                    scheduler_json(wan_model_scheduler_config(m)));
    if (rc != WAN_OK)
        return rc;
    /* model_index.json last: a folder without it is not a pipeline */
    static const char *const lib[WAN_COMPONENT_COUNT][2] = {
        { "diffusers", "WanTransformer3DModel" }, { "diffusers", "WanTransformer3DModel" },
        { "transformers", "UMT5EncoderModel" },   { "transformers", "T5TokenizerFast" },
        { "diffusers", "AutoencoderKLWan" },      { "diffusers", NULL },
    };
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "_class_name", "WanPipeline");
    cJSON_AddStringToObject(o, "_diffusers_version", DIFFUSERS_VERSION);
    const wan_pipeline_config *pc = wan_model_pipeline_config(m);
    if (has(w, WAN_COMPONENT_TRANSFORMER_2) && pc->boundary_ratio >= 0)
        add_real(o, "boundary_ratio", pc->boundary_ratio);
    else
        cJSON_AddNullToObject(o, "boundary_ratio");
    cJSON_AddBoolToObject(o, "expand_timesteps", pc->expand_timesteps);
    for (int c = 0; c < WAN_COMPONENT_COUNT; c++) {
        cJSON *pair = cJSON_AddArrayToObject(o, wan_component_name((wan_component)c));
        wan_component_info ci;
        wan_model_component_info(m, (wan_component)c, &ci);
        bool on = ci.present;
        cJSON_AddItemToArray(pair, on ? cJSON_CreateString(lib[c][0]) : cJSON_CreateNull());
        cJSON_AddItemToArray(pair, on ? cJSON_CreateString(lib[c][1] ? lib[c][1] : ci.class_name) : cJSON_CreateNull());
    }
    return write_json(w, w->tmp, "model_index.json", o);
}

static wan_status write_original(writer *w)
{
    const wan_model_t *m = w->m;
    if (!has(w, WAN_COMPONENT_TRANSFORMER))
        return wan_err(w->err, WAN_ERR_INVALID_ARG, "%s: the original layout needs a transformer", wan_model_path(m));
    bool two = has(w, WAN_COMPONENT_TRANSFORMER_2);
    bool ti2v = wan_model_pipeline_config(m)->expand_timesteps;
    wan_status rc = WAN_OK;
    for (int e = 0; rc == WAN_OK && e < (two ? 2 : 1); e++) {
        wan_component c = e ? WAN_COMPONENT_TRANSFORMER_2 : WAN_COMPONENT_TRANSFORMER;
        const char *rel = two ? (e ? "low_noise_model" : "high_noise_model") : "";
        rc = write_component_config(w, rel, "config.json", wanmodel_json(wan_model_transformer_config(m, e), ti2v));
        if (rc == WAN_OK)
            rc = write_weights(w, c, rel, wan_dit_rename_to_original, NULL, "diffusion_pytorch_model",
                               "diffusion_pytorch_model.safetensors", true);
    }
    if (rc == WAN_OK && has(w, WAN_COMPONENT_VAE)) {
        const wan_vae_config *vc = wan_model_vae_config(m);
        wan_vae_names names = { vc->is_residual, vc->num_res_blocks };
        rc = write_weights(w, WAN_COMPONENT_VAE, "", wan_vae_rename_to_original, &names, "",
                           vc->z_dim == 48 ? "Wan2.2_VAE.safetensors" : "Wan2.1_VAE.safetensors", false);
    }
    if (rc == WAN_OK && has(w, WAN_COMPONENT_TEXT_ENCODER))
        rc = write_weights(w, WAN_COMPONENT_TEXT_ENCODER, "", wan_umt5_rename_to_original, NULL, "",
                           "models_t5_umt5-xxl-enc-bf16.safetensors", false);
    if (rc == WAN_OK && has(w, WAN_COMPONENT_TOKENIZER)) {
        char *g = NULL;
        rc = make_dir(w, "google", &g);
        wan_free(g);
        if (rc == WAN_OK)
            rc = copy_tokenizer(w, "google/umt5-xxl");
    }
    return rc;
}

/* ---- the entry point -------------------------------------------------------------------------- */

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

/* fsyncs every folder of the tree (the files were synced as they were closed). */
static int sync_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)ftw;
    if (flag == FTW_DP || flag == FTW_D)
        return fsync_path(p, NULL) == WAN_OK ? 0 : 1;
    return 0;
}

static wan_status finish(writer *w, const char *dst)
{
    if (nftw(w->tmp, sync_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return wan_err(w->err, WAN_ERR_IO, "%s: fsync of the folders failed", w->tmp);
    if (renameat2(AT_FDCWD, w->tmp, AT_FDCWD, dst, RENAME_NOREPLACE) != 0) {
        if (errno != EINVAL && errno != ENOSYS)
            return wan_err(w->err, WAN_ERR_IO, "cannot rename %s to %s: %s", w->tmp, dst, strerror(errno));
        /* a file system without RENAME_NOREPLACE: check, then rename */
        struct stat st;
        if (lstat(dst, &st) == 0)
            return wan_err(w->err, WAN_ERR_IO, "%s: already exists", dst);
        if (rename(w->tmp, dst) != 0)
            return wan_err(w->err, WAN_ERR_IO, "cannot rename %s to %s: %s", w->tmp, dst, strerror(errno));
    }
    char *slash = strrchr(dst, '/');
    char *parent = slash ? wan_asprintf("%.*s", (int)(slash == dst ? 1 : slash - dst), dst) : wan_strdup(".");
    if (parent)
        fsync_path(parent, NULL);
    wan_free(parent);
    return WAN_OK;
}

wan_status wan_model_convert(const wan_model_t *model, const char *dst, const wan_convert_params *params,
                             char *errbuf, size_t errlen)
{
    wan_error err = { 0 };
    writer w = { .m = model, .p = params ? *params : wan_convert_default_params(), .err = &err };
    struct stat st;
    wan_status rc = WAN_OK;
    if (!model || !dst || !dst[0])
        rc = wan_err(&err, WAN_ERR_INVALID_ARG, "wan_model_convert: model and dst must be given");
    else if (w.p.layout != WAN_CONVERT_DIFFUSERS && w.p.layout != WAN_CONVERT_ORIGINAL)
        rc = wan_err(&err, WAN_ERR_INVALID_ARG, "wan_model_convert: unknown layout %d", (int)w.p.layout);
    else if (w.p.dtype >= 0 && !is_float((wan_dtype)w.p.dtype))
        rc = wan_err(&err, WAN_ERR_INVALID_ARG, "wan_model_convert: dtype must be F32, F16 or BF16 (or -1 to keep)");
    else if (w.p.quantize != WAN_QUANT_NONE && w.p.quantize != WAN_QUANT_Q8_0 && w.p.quantize != WAN_QUANT_Q4_0)
        rc = wan_err(&err, WAN_ERR_INVALID_ARG, "wan_model_convert: unknown quantisation %d", (int)w.p.quantize);
    else if (w.p.shard_bytes <= 0)
        rc = wan_err(&err, WAN_ERR_INVALID_ARG, "wan_model_convert: shard size must be positive");
    else if (lstat(dst, &st) == 0)
        rc = wan_err(&err, WAN_ERR_IO, "%s: already exists (the converter never overwrites)", dst);
    else if (!(w.tmp = wan_asprintf("%s.tmp-XXXXXX", dst)))
        rc = wan_err(&err, WAN_ERR_NOMEM, "out of memory");
    else if (!mkdtemp(w.tmp)) {
        rc = wan_err(&err, WAN_ERR_IO, "%s: cannot create the temporary folder: %s", w.tmp, strerror(errno));
        wan_free(w.tmp);
        w.tmp = NULL;
    }
    if (rc == WAN_OK) {
        rc = w.p.layout == WAN_CONVERT_DIFFUSERS ? write_diffusers(&w) : write_original(&w);
        if (rc == WAN_OK)
            rc = finish(&w, dst);
        if (rc != WAN_OK)
            nftw(w.tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        else
            wan_log_info("%s: %d files, %.1f MB of tensors", dst, w.files, (double)w.bytes / 1e6);
    }
    wan_free(w.tmp);
    wan_err_copy(&err, errbuf, errlen);
    return rc;
}
