/* tensor_io.c — reading single tensors from and writing tensors to safetensors files (public API). */
#define _POSIX_C_SOURCE 200809L
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int64_t wan_host_tensor_numel(const wan_host_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

void wan_host_tensor_free(wan_host_tensor *t)
{
    if (!t)
        return;
    wan_free(t->data);
    memset(t, 0, sizeof *t);
}

static bool convert(const wan_st_tensor *t, wan_dtype want, void *dst, int64_t n)
{
    const uint8_t *s = t->data;
    if (want == WAN_DTYPE_F32) {
        float *d = dst;
        for (int64_t i = 0; i < n; i++) {
            switch (t->dtype) {
            case WAN_DTYPE_F32: memcpy(&d[i], s + 4 * i, 4); break;
            case WAN_DTYPE_F16: { uint16_t h; memcpy(&h, s + 2 * i, 2); d[i] = wan_f16_to_f32(h); break; }
            case WAN_DTYPE_BF16: { uint16_t h; memcpy(&h, s + 2 * i, 2); d[i] = wan_bf16_to_f32(h); break; }
            case WAN_DTYPE_F64: { double v; memcpy(&v, s + 8 * i, 8); d[i] = (float)v; break; }
            default: return false;
            }
        }
        return true;
    }
    if (want == WAN_DTYPE_I64) {
        int64_t *d = dst;
        for (int64_t i = 0; i < n; i++) {
            switch (t->dtype) {
            case WAN_DTYPE_I64: memcpy(&d[i], s + 8 * i, 8); break;
            case WAN_DTYPE_I32: { int32_t v; memcpy(&v, s + 4 * i, 4); d[i] = v; break; }
            case WAN_DTYPE_I16: { int16_t v; memcpy(&v, s + 2 * i, 2); d[i] = v; break; }
            case WAN_DTYPE_I8: d[i] = (int8_t)s[i]; break;
            case WAN_DTYPE_U8: d[i] = s[i]; break;
            default: return false;
            }
        }
        return true;
    }
    if (want == WAN_DTYPE_U8 && t->dtype == WAN_DTYPE_U8) {
        memcpy(dst, s, (size_t)n);
        return true;
    }
    return false;
}

wan_status wan_safetensors_read(const char *path, const char *name, wan_dtype want, wan_host_tensor *out,
                                char *errbuf, size_t errlen)
{
    wan_error err = { 0 };
    memset(out, 0, sizeof *out);
    wan_st_file *f = NULL;
    wan_status rc = wan_st_open(path, &f, &err);
    if (rc == WAN_OK) {
        const wan_st_tensor *t = wan_st_find(f, name);
        if (!t) {
            rc = wan_err(&err, WAN_ERR_NOT_FOUND, "%s: no tensor named '%s'", path, name);
        } else if (strlen(name) >= sizeof out->name) {
            rc = wan_err(&err, WAN_ERR_INVALID_ARG, "%s: tensor name '%s' is too long", path, name);
        } else {
            int64_t n = 1;
            for (int i = 0; i < t->ndim; i++)
                n *= t->shape[i];
            void *data = wan_malloc((size_t)(n ? n : 1) * wan_dtype_size(want));
            if (!data)
                rc = wan_err(&err, WAN_ERR_NOMEM, "%s: tensor '%s': out of memory", path, name);
            else if (!convert(t, want, data, n)) {
                wan_free(data);
                rc = wan_err(&err, WAN_ERR_SHAPE, "%s: tensor '%s' has dtype %s, which cannot be read as %s",
                             path, name, wan_dtype_name(t->dtype), wan_dtype_name(want));
            } else {
                snprintf(out->name, sizeof out->name, "%s", name);
                out->dtype = want;
                out->ndim = t->ndim;
                memcpy(out->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
                out->data = data;
            }
        }
    }
    wan_st_close(f);
    wan_err_copy(&err, errbuf, errlen);
    return rc;
}

wan_status wan_safetensors_write(const char *path, const wan_host_tensor *ts, int n, char *errbuf,
                                 size_t errlen)
{
    wan_error err = { 0 };
    wan_status rc = WAN_OK;
    cJSON *root = cJSON_CreateObject();
    char *hdr = NULL, *tmp = NULL;
    FILE *f = NULL;
    if (!root) {
        rc = wan_err(&err, WAN_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const wan_host_tensor *t = &ts[i];
        if (!t->name[0] || cJSON_GetObjectItemCaseSensitive(root, t->name) ||
            (unsigned)t->dtype >= WAN_DTYPE_COUNT || t->ndim < 0 || t->ndim > WAN_HOST_MAX_DIMS) {
            rc = wan_err(&err, WAN_ERR_INVALID_ARG, "%s: tensor %d ('%s'): empty or duplicate name, bad "
                         "dtype or rank", path, i, t->name);
            goto done;
        }
        uint64_t bytes = (uint64_t)wan_host_tensor_numel(t) * wan_dtype_size(t->dtype);
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        cJSON *shape = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *offs = e ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        if (!e || !cJSON_AddStringToObject(e, "dtype", wan_dtype_name(t->dtype)) || !shape || !offs) {
            rc = wan_err(&err, WAN_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        for (int d = 0; d < t->ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + bytes)));
        off += bytes;
    }
    hdr = cJSON_PrintUnformatted(root);
    tmp = wan_asprintf("%s.tmp%ld", path, (long)getpid());
    if (!hdr || !tmp) {
        rc = wan_err(&err, WAN_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    size_t hl = strlen(hdr), padded = (hl + 7) & ~(size_t)7;
    f = fopen(tmp, "wb");
    if (!f) {
        rc = wan_err(&err, WAN_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto done;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    bool ok = fwrite(len8, 1, 8, f) == 8 && fwrite(hdr, 1, hl, f) == hl;
    for (size_t i = hl; ok && i < padded; i++)
        ok = fputc(' ', f) != EOF;
    for (int i = 0; ok && i < n; i++) {
        size_t bytes = (size_t)wan_host_tensor_numel(&ts[i]) * wan_dtype_size(ts[i].dtype);
        ok = bytes == 0 || fwrite(ts[i].data, 1, bytes, f) == bytes;
    }
    ok = (fclose(f) == 0) && ok;
    f = NULL;
    if (!ok || rename(tmp, path) != 0) {
        rc = wan_err(&err, WAN_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        unlink(tmp);
    }
done:
    if (f)
        fclose(f);
    cJSON_Delete(root);
    if (hdr)
        cJSON_free(hdr);
    wan_free(tmp);
    wan_err_copy(&err, errbuf, errlen);
    return rc;
}
