/* backend.c — picking a backend by name, the sticky error, and uploading an expert's weights once (see
 * backend.h). Nothing here depends on which backends the build has. */
#include "backend.h"
#include "cpu/gemm.h"
#include "dit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

wan_status wan_backend_create(const char *name, int n_threads, wan_backend **out, wan_error *err)
{
    if (!name || !out)
        return wan_err(err, WAN_ERR_INVALID_ARG, "backend: NULL argument");
    *out = NULL;
    if (!strcmp(name, "cpu"))
        return wan_backend_cpu_create(n_threads, out, err);
    if (!strncmp(name, "cuda", 4) && (name[4] == '\0' || name[4] == ':')) {
        int dev = 0;
        if (name[4] == ':') {
            char *end;
            long v = strtol(name + 5, &end, 10);
            if (end == name + 5 || *end || v < 0 || v > 64)
                return wan_err(err, WAN_ERR_INVALID_ARG, "backend \"%s\": expected cuda or cuda:N (N a device "
                               "index)", name);
            dev = (int)v;
        }
        return wan_backend_cuda_create(dev, out, err);
    }
    return wan_err(err, WAN_ERR_INVALID_ARG, "unknown backend \"%s\" (expected cpu, cuda or cuda:N)", name);
}

wan_status wan_backend_for_device(const char *device, int n_threads, wan_backend **out, wan_error *err)
{
    return wan_backend_create(device && *device ? device : "cpu", n_threads, out, err);
}

wan_status wan_device_check(const char *device, char *desc, size_t desc_len, char *errbuf, size_t errlen)
{
    wan_error err = { 0 };
    wan_backend *be = NULL;
    wan_status rc = wan_backend_for_device(device, 0, &be, &err);
    if (rc != WAN_OK) {
        wan_err_copy(&err, errbuf, errlen);
        return rc;
    }
    if (desc && desc_len)
        snprintf(desc, desc_len, "%s", be->device);
    wan_backend_free(be);
    return WAN_OK;
}

void wan_backend_free(wan_backend *be)
{
    if (be)
        be->destroy(be);
}

void wan_backend_fail(wan_backend *be, wan_status code, const char *fmt, ...)
{
    if (be->err.code != WAN_OK)
        return;
    be->err.code = code;
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(be->err.msg, sizeof be->err.msg, "%s backend: ", be->name);
    vsnprintf(be->err.msg + n, sizeof be->err.msg - (size_t)n, fmt, ap);
    va_end(ap);
}

/* ---- expert upload ------------------------------------------------------------------------------------- */

#define UP_ALIGN 256

static size_t up_round(size_t n) { return (n + UP_ALIGN - 1) / UP_ALIGN * UP_ALIGN; }

/* Linear i of the expert (i < dit_n_linears): the 7 top-level ones, then 10 per block. */
static int64_t dit_n_linears(const wan_dit *d) { return 7 + 10 * (int64_t)d->cfg.num_layers; }

static wan_dit_linear *dit_linear(const wan_dit *d, int64_t i)
{
    wan_dit *m = (wan_dit *)d; /* the callers own *d; only the constness of the argument is dropped */
    wan_dit_linear *top[] = { &m->patch, &m->t1, &m->t2, &m->tproj, &m->c1, &m->c2, &m->out };
    if (i < 7)
        return top[i];
    wan_dit_block *b = &m->blocks[(i - 7) / 10];
    wan_dit_linear *l[] = { &b->q, &b->k, &b->v, &b->o, &b->q2, &b->k2, &b->v2, &b->o2, &b->ff1, &b->ff2 };
    return l[(i - 7) % 10];
}

/* Floats of d->vec that the expert's vectors span: every vector field lies inside that one block. */
static size_t vec_span(const wan_dit *d)
{
    const float *end = d->vec;
#define SPAN(p, len)                                                                                              \
    do {                                                                                                          \
        if ((p) && (p) + (len) > end)                                                                             \
            end = (p) + (len);                                                                                    \
    } while (0)
    const int64_t D = d->D;
    for (int64_t i = 0; i < dit_n_linears(d); i++)
        SPAN(dit_linear(d, i)->b, dit_linear(d, i)->w.ne[0]);
    SPAN(d->sst_out, 2 * D);
    for (int i = 0; i < d->cfg.num_layers; i++) {
        const wan_dit_block *b = &d->blocks[i];
        SPAN(b->sst, 6 * D);
        SPAN(b->norm_q, D);
        SPAN(b->norm_k, D);
        SPAN(b->norm_q2, D);
        SPAN(b->norm_k2, D);
        SPAN(b->norm2_w, D);
        SPAN(b->norm2_b, D);
    }
#undef SPAN
    return (size_t)(end - d->vec);
}

/* q8_0 and float8 weights go to backend memory as BF16: the device kernels multiply F32/BF16/F16 weights. */
static bool expand_to_bf16(const wan_tensor *w) { return w->qscale || wan_dtype_is_f8(w->dtype); }

static size_t device_bytes(const wan_tensor *w)
{
    return expand_to_bf16(w) ? (size_t)(w->ne[0] * w->ne[1]) * sizeof(uint16_t) : wan_tensor_nbytes(w);
}

size_t wan_dit_upload_bytes(const wan_dit *src)
{
    size_t total = up_round(vec_span(src) * sizeof(float));
    for (int64_t i = 0; i < dit_n_linears(src); i++)
        total += up_round(device_bytes(&dit_linear(src, i)->w));
    return total;
}

/* Uploads the [N, K] weight w to dst as BF16 (each value rounded to nearest even from the f32 the CPU kernels use),
 * through a host buffer of up to 8 MiB of rows, converted by n_threads threads. */
static wan_status upload_bf16(wan_backend *be, uint8_t *dst, const wan_tensor *w, wan_error *err)
{
    const int64_t N = w->ne[0], K = w->ne[1], rows = K < ((int64_t)1 << 22) ? ((int64_t)1 << 22) / K : 1;
    uint16_t *buf = wan_malloc(sizeof(uint16_t) * (size_t)(rows * K));
    float *f = wan_malloc(sizeof(float) * (size_t)(rows * K));
    if (!buf || !f) {
        wan_free(buf);
        wan_free(f);
        return wan_err(err, WAN_ERR_NOMEM, "uploading '%s' as BF16: out of host memory", w->name ? w->name : "?");
    }
    for (int64_t r0 = 0; r0 < N; r0 += rows) {
        const int64_t nr = N - r0 < rows ? N - r0 : rows;
#pragma omp parallel for num_threads(be->n_threads > 0 ? be->n_threads : 1) schedule(static)
        for (int64_t r = 0; r < nr; r++) {
            wan_cpu_weight_row_to_f32(w, K, r0 + r, 0, K, f + r * K);
            for (int64_t k = 0; k < K; k++)
                buf[r * K + k] = wan_f32_to_bf16(f[r * K + k]);
        }
        be->upload(be, dst + (size_t)(r0 * K) * sizeof(uint16_t), buf, (size_t)(nr * K) * sizeof(uint16_t));
    }
    wan_free(buf);
    wan_free(f);
    return WAN_OK;
}

static const float *remap(const float *p, const float *from, float *to) { return p ? to + (p - from) : NULL; }

/* Points every vector field of dst (a copy of src) into the uploaded copy of src->vec at dvec. */
static void remap_vectors(const wan_dit *src, wan_dit *dst, float *dvec)
{
    const float *v = src->vec;
    dst->sst_out = remap(src->sst_out, v, dvec);
    for (int i = 0; i < src->cfg.num_layers; i++) {
        const wan_dit_block *s = &src->blocks[i];
        wan_dit_block *b = &dst->blocks[i];
        b->sst = remap(s->sst, v, dvec);
        b->norm_q = remap(s->norm_q, v, dvec);
        b->norm_k = remap(s->norm_k, v, dvec);
        b->norm_q2 = remap(s->norm_q2, v, dvec);
        b->norm_k2 = remap(s->norm_k2, v, dvec);
        b->norm2_w = remap(s->norm2_w, v, dvec);
        b->norm2_b = remap(s->norm2_b, v, dvec);
    }
}

wan_status wan_dit_upload(const wan_dit *src, wan_backend *be, wan_dit *dst, wan_error *err)
{
    memset(dst, 0, sizeof *dst);
    const int64_t nl = dit_n_linears(src);
    for (int64_t i = 0; i < nl; i++)
        if (dit_linear(src, i)->lora)
            return wan_err(err, WAN_ERR_UNSUPPORTED, "uploading the transformer to the %s backend: on-the-fly "
                           "LoRA terms are not supported there (merge the adapter into the weights)", be->name);
    wan_dit_block *blocks = wan_calloc(src->cfg.num_layers ? (size_t)src->cfg.num_layers : 1, sizeof *blocks);
    if (!blocks)
        return wan_err(err, WAN_ERR_NOMEM, "uploading the transformer: out of host memory");
    const size_t nvec = vec_span(src), total = wan_dit_upload_bytes(src);
    uint8_t *mem = be->alloc(be, total);
    if (!mem) {
        wan_free(blocks);
        if (be->sync(be, err) == WAN_OK)
            wan_err(err, WAN_ERR_NOMEM, "%s backend: allocation failed", be->name);
        return wan_err_wrap(err, "uploading the transformer (%zu MiB): ", total >> 20);
    }
    *dst = *src;
    memcpy(blocks, src->blocks, (size_t)src->cfg.num_layers * sizeof *blocks);
    dst->blocks = blocks;
    dst->vec = (float *)mem;
    be->upload(be, mem, src->vec, nvec * sizeof(float));
    remap_vectors(src, dst, dst->vec);
    size_t off = up_round(nvec * sizeof(float));
    for (int64_t i = 0; i < nl; i++) {
        const wan_dit_linear *s = dit_linear(src, i);
        wan_dit_linear *l = dit_linear(dst, i);
        const size_t nb = device_bytes(&s->w);
        if (expand_to_bf16(&s->w)) {
            if (upload_bf16(be, mem + off, &s->w, err) != WAN_OK) {
                wan_dit_release(be, dst);
                return wan_err_wrap(err, "uploading the transformer: ");
            }
            l->w = wan_tensor_view(WAN_DTYPE_BF16, 2, s->w.ne, mem + off);
        } else {
            be->upload(be, mem + off, s->w.data, nb);
            l->w = wan_tensor_view(s->w.dtype, s->w.ndim, s->w.ne, mem + off);
        }
        l->w.name = s->w.name;
        l->b = remap(s->b, src->vec, dst->vec);
        off += up_round(nb);
    }
    if (be->sync(be, err) != WAN_OK) {
        wan_dit_release(be, dst);
        return wan_err_wrap(err, "uploading the transformer: ");
    }
    return WAN_OK;
}

void wan_dit_release(wan_backend *be, wan_dit *dst)
{
    if (!dst)
        return;
    if (dst->vec)
        be->free(be, dst->vec);
    wan_free(dst->blocks);
    memset(dst, 0, sizeof *dst);
}
