/* safetensors.c — parsing, validation and memory mapping of safetensors files and shard sets. */
#define _DEFAULT_SOURCE
#include "safetensors.h"
#include "pth.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- header parsing --------------------------------------------------------------------------- */

static bool dtype_from_name(const char *s, wan_dtype *out)
{
    for (int i = 0; i < WAN_DTYPE_COUNT; i++) {
        if (strcmp(s, wan_dtype_name((wan_dtype)i)) == 0) {
            *out = (wan_dtype)i;
            return true;
        }
    }
    return false;
}

/* A JSON number that is a non-negative integer below 2^53 (exact in a double). */
static bool json_uint(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d >= 9007199254740992.0 || floor(d) != d)
        return false;
    *out = (uint64_t)d;
    return true;
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const wan_st_tensor *)a)->name, ((const wan_st_tensor *)b)->name);
}

static int cmp_tensor_begin(const void *a, const void *b)
{
    const wan_st_tensor *x = *(const wan_st_tensor *const *)a, *y = *(const wan_st_tensor *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : (x->end > y->end);
}

/* Parses one header entry into t. The data area starts at byte data_off of the file. */
static wan_status parse_entry(const char *path, const cJSON *item, uint64_t data_off,
                              uint64_t data_size, wan_st_tensor *t, wan_error *err)
{
    const char *name = item->string;
    if (!cJSON_IsObject(item))
        return wan_err(err, WAN_ERR_FORMAT, "%s: tensor '%s': header entry is not a JSON object",
                       path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off))
        return wan_err(err, WAN_ERR_FORMAT,
                       "%s: tensor '%s': needs string 'dtype', array 'shape' and array 'data_offsets'",
                       path, name);
    if (!dtype_from_name(dt->valuestring, &t->dtype))
        return wan_err(err, WAN_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", path, name,
                       dt->valuestring);
    int nd = cJSON_GetArraySize(sh);
    if (nd > WAN_ST_MAX_DIMS)
        return wan_err(err, WAN_ERR_UNSUPPORTED, "%s: tensor '%s': %d dimensions (at most %d)", path,
                       name, nd, WAN_ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    bool overflow = false;
    for (int i = 0; i < nd; i++) {
        uint64_t d;
        if (!json_uint(cJSON_GetArrayItem(sh, i), &d))
            return wan_err(err, WAN_ERR_FORMAT,
                           "%s: tensor '%s': shape[%d] is not a non-negative integer", path, name, i);
        t->shape[i] = (int64_t)d;
        if (d && numel > UINT64_MAX / d)
            overflow = true;
        numel *= d;
    }
    uint64_t b, e;
    if (cJSON_GetArraySize(off) != 2 || !json_uint(cJSON_GetArrayItem(off, 0), &b) ||
        !json_uint(cJSON_GetArrayItem(off, 1), &e))
        return wan_err(err, WAN_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets must be two non-negative integers", path, name);
    if (e < b)
        return wan_err(err, WAN_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before begin",
                       path, name, (unsigned long long)b, (unsigned long long)e);
    if (e > data_size)
        return wan_err(err, WAN_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu] (file bytes %llu..%llu) run past the "
                       "end of the file: the data area has %llu bytes (truncated?)",
                       path, name, (unsigned long long)b, (unsigned long long)e,
                       (unsigned long long)(data_off + b), (unsigned long long)(data_off + e),
                       (unsigned long long)data_size);
    size_t es = wan_dtype_size(t->dtype);
    if (overflow || numel > UINT64_MAX / es || numel * es != e - b) {
        char sbuf[160];
        return wan_err(err, WAN_ERR_FORMAT,
                       "%s: tensor '%s': shape %s x %s (%zu bytes each) does not match its byte span "
                       "%llu (data_offsets [%llu, %llu])",
                       path, name, wan_shape_str(nd, t->shape, sbuf, sizeof sbuf), dt->valuestring, es,
                       (unsigned long long)(e - b), (unsigned long long)b, (unsigned long long)e);
    }
    t->begin = b;
    t->end = e;
    return WAN_OK;
}

static wan_status check_layout(const char *path, wan_st_file *f, uint64_t data_off, wan_error *err)
{
    if (f->n_tensors == 0)
        return WAN_OK;
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_tensor_name);
    for (int i = 1; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0)
            return wan_err(err, WAN_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", path,
                           f->tensors[i].name);
    const wan_st_tensor **order = wan_malloc(sizeof *order * (size_t)f->n_tensors);
    if (!order)
        return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory checking tensor offsets", path);
    for (int i = 0; i < f->n_tensors; i++)
        order[i] = &f->tensors[i];
    qsort(order, (size_t)f->n_tensors, sizeof *order, cmp_tensor_begin);
    wan_status rc = WAN_OK;
    const wan_st_tensor *prev = NULL;
    for (int i = 0; i < f->n_tensors; i++) {
        const wan_st_tensor *t = order[i];
        if (t->begin == t->end)
            continue;
        if (prev && t->begin < prev->end) {
            rc = wan_err(err, WAN_ERR_FORMAT,
                         "%s: tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap (file offset %llu)",
                         path, prev->name, (unsigned long long)prev->begin,
                         (unsigned long long)prev->end, t->name, (unsigned long long)t->begin,
                         (unsigned long long)t->end, (unsigned long long)(data_off + t->begin));
            break;
        }
        prev = t;
    }
    wan_free(order);
    return rc;
}

wan_status wan_st_parse(const char *path, const uint8_t *buf, size_t size, wan_st_file *out,
                        wan_error *err)
{
    memset(out, 0, sizeof *out);
    if (size < 8)
        return wan_err(err, WAN_ERR_FORMAT,
                       "%s: file is %zu bytes, too short for the 8-byte header length (truncated?)",
                       path, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | buf[i];
    if (hlen > size - 8)
        return wan_err(err, WAN_ERR_FORMAT,
                       "%s: header length %llu at byte 0 exceeds the %zu bytes that follow it "
                       "(truncated or not a safetensors file)",
                       path, (unsigned long long)hlen, size - 8);
    if (hlen > WAN_ST_MAX_HEADER)
        return wan_err(err, WAN_ERR_FORMAT, "%s: header length %llu exceeds the %u-byte limit", path,
                       (unsigned long long)hlen, WAN_ST_MAX_HEADER);
    const char *json = (const char *)buf + 8;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, (size_t)hlen, &end, 0);
    if (!root) {
        size_t at = end ? (size_t)(end - json) : 0;
        if (!end && cJSON_GetErrorPtr())
            at = (size_t)(cJSON_GetErrorPtr() - json);
        return wan_err(err, WAN_ERR_FORMAT, "%s: header is not valid JSON (near byte %zu of the file)",
                       path, 8 + at);
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return wan_err(err, WAN_ERR_FORMAT, "%s: header is not a JSON object", path);
    }
    /* Trailing bytes after the JSON object must be padding spaces. */
    for (const char *p = end; p && p < json + hlen; p++) {
        if (*p != ' ' && *p != '\0' && *p != '\n' && *p != '\r' && *p != '\t') {
            cJSON_Delete(root);
            return wan_err(err, WAN_ERR_FORMAT, "%s: unexpected bytes after the header JSON at byte %zu",
                           path, (size_t)(8 + (p - json)));
        }
    }
    uint64_t data_off = 8 + hlen, data_size = size - data_off;
    int n = 0;
    for (const cJSON *it = root->child; it; it = it->next)
        if (strcmp(it->string, "__metadata__") != 0)
            n++;
    wan_status rc = WAN_OK;
    out->tensors = wan_calloc((size_t)(n ? n : 1), sizeof *out->tensors);
    out->path = wan_strdup(path);
    if (!out->tensors || !out->path) {
        rc = wan_err(err, WAN_ERR_NOMEM, "%s: out of memory parsing the header", path);
        goto done;
    }
    for (const cJSON *it = root->child; it; it = it->next) {
        if (strcmp(it->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(it)) {
                rc = wan_err(err, WAN_ERR_FORMAT, "%s: __metadata__ is not a JSON object", path);
                goto done;
            }
            continue;
        }
        wan_st_tensor *t = &out->tensors[out->n_tensors];
        t->name = wan_strdup(it->string);
        if (!t->name) {
            rc = wan_err(err, WAN_ERR_NOMEM, "%s: out of memory parsing the header", path);
            goto done;
        }
        out->n_tensors++;
        rc = parse_entry(path, it, data_off, data_size, t, err);
        if (rc != WAN_OK)
            goto done;
        t->data = buf + data_off + t->begin;
    }
    out->header_len = hlen;
    out->size = size;
    rc = check_layout(path, out, data_off, err);
done:
    cJSON_Delete(root);
    if (rc != WAN_OK)
        wan_st_file_clear(out);
    return rc;
}

void wan_st_file_clear(wan_st_file *f)
{
    for (int i = 0; i < f->n_tensors; i++)
        wan_free(f->tensors[i].name);
    wan_free(f->tensors);
    wan_free(f->path);
    memset(f, 0, sizeof *f);
}

wan_status wan_st_open(const char *path, wan_st_file **out, wan_error *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return wan_err(err, errno == ENOENT ? WAN_ERR_NOT_FOUND : WAN_ERR_IO, "%s: cannot open: %s",
                       path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return wan_err(err, WAN_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    const uint8_t *map = NULL;
    if (size > 0) {
        void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            return wan_err(err, WAN_ERR_IO, "%s: mmap of %zu bytes failed: %s", path, size,
                           strerror(errno));
        }
        map = m;
    }
    close(fd);
    static const uint8_t empty[1];
    wan_st_file *f = wan_calloc(1, sizeof *f);
    if (!f) {
        if (map)
            munmap((void *)map, size);
        return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory", path);
    }
    /* a zip archive is a torch.save .pth state dict: same entries, read by the restricted unpickler */
    wan_status rc = map && wan_pth_is_zip(map, size) ? wan_pth_parse(path, map, size, f, err)
                    : map && wan_pth_is_legacy(map, size)
                        ? wan_err(err, WAN_ERR_UNSUPPORTED, "%s: a legacy (torch < 1.6) torch.save file; re-save it "
                                  "with a newer torch (torch.save(torch.load(f), f))", path)
                        : wan_st_parse(path, map ? map : empty, size, f, err);
    if (rc != WAN_OK) {
        if (map)
            munmap((void *)map, size);
        wan_free(f);
        return rc;
    }
    f->map = map;
    *out = f;
    return WAN_OK;
}

void wan_st_close(wan_st_file *f)
{
    if (!f)
        return;
    if (f->map)
        munmap((void *)f->map, f->size);
    wan_st_file_clear(f);
    wan_free(f);
}

const wan_st_tensor *wan_st_find(const wan_st_file *f, const char *name)
{
    wan_st_tensor key = { .name = (char *)name };
    return bsearch(&key, f->tensors, (size_t)f->n_tensors, sizeof key, cmp_tensor_name);
}

/* ---- sets ------------------------------------------------------------------------------------- */

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const wan_st_entry *)a)->name, ((const wan_st_entry *)b)->name);
}

static wan_st_set *set_new(const char *dir)
{
    wan_st_set *s = wan_calloc(1, sizeof *s);
    if (s && !(s->dir = wan_strdup(dir))) {
        wan_free(s);
        return NULL;
    }
    return s;
}

void wan_st_set_free(wan_st_set *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n_files; i++)
        wan_st_close(s->files[i]);
    for (int i = 0; i < s->n; i++)
        wan_free(s->entries[i].owned);
    wan_free(s->files);
    wan_free(s->entries);
    wan_free(s->index_path);
    wan_free(s->dir);
    wan_free(s);
}

static wan_status set_add_file(wan_st_set *s, const char *path, wan_error *err)
{
    wan_st_file **files = wan_realloc(s->files, sizeof *files * (size_t)(s->n_files + 1));
    if (!files)
        return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory", path);
    s->files = files;
    wan_st_file *f;
    wan_status rc = wan_st_open(path, &f, err);
    if (rc != WAN_OK)
        return rc;
    s->files[s->n_files++] = f;
    return WAN_OK;
}

static wan_status set_check_unique(wan_st_set *s, wan_error *err)
{
    qsort(s->entries, (size_t)s->n, sizeof *s->entries, cmp_entry);
    for (int i = 1; i < s->n; i++)
        if (strcmp(s->entries[i - 1].name, s->entries[i].name) == 0)
            return wan_err(err, WAN_ERR_FORMAT, "%s: tensor '%s' is stored twice (%s and %s)", s->dir,
                           s->entries[i].name, s->files[s->entries[i - 1].file]->path,
                           s->files[s->entries[i].file]->path);
    return WAN_OK;
}

wan_status wan_st_set_open_file(const char *path, wan_st_set **out, wan_error *err)
{
    *out = NULL;
    wan_st_set *s = set_new(path);
    if (!s)
        return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory", path);
    wan_status rc = set_add_file(s, path, err);
    if (rc == WAN_OK) {
        wan_st_file *f = s->files[0];
        s->entries = wan_calloc((size_t)(f->n_tensors ? f->n_tensors : 1), sizeof *s->entries);
        if (!s->entries)
            rc = wan_err(err, WAN_ERR_NOMEM, "%s: out of memory", path);
        for (int i = 0; rc == WAN_OK && i < f->n_tensors; i++)
            s->entries[s->n++] = (wan_st_entry){ f->tensors[i].name, &f->tensors[i], 0, NULL };
    }
    if (rc != WAN_OK) {
        wan_st_set_free(s);
        return rc;
    }
    *out = s;
    return WAN_OK;
}

/* Directory part of a path (through the counted allocator). */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return wan_strdup(".");
    return wan_asprintf("%.*s", (int)(slash - path > 0 ? slash - path : 1), path);
}

static int find_file_index(const wan_st_set *s, const char *path)
{
    for (int i = 0; i < s->n_files; i++)
        if (strcmp(s->files[i]->path, path) == 0)
            return i;
    return -1;
}

static wan_status index_load(wan_st_set *s, const char *index_path, cJSON *wm, wan_error *err)
{
    int n = cJSON_GetArraySize(wm);
    s->entries = wan_calloc((size_t)(n ? n : 1), sizeof *s->entries);
    if (!s->entries)
        return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory", index_path);
    for (const cJSON *it = wm->child; it; it = it->next) {
        if (!cJSON_IsString(it))
            return wan_err(err, WAN_ERR_FORMAT, "%s: weight_map entry '%s' is not a file name string",
                           index_path, it->string);
        const char *shard = it->valuestring;
        if (strchr(shard, '/') || strcmp(shard, "..") == 0)
            return wan_err(err, WAN_ERR_FORMAT, "%s: weight_map entry '%s' names '%s', not a file in "
                           "the same folder", index_path, it->string, shard);
        char *path = wan_path_join(s->dir, shard);
        if (!path)
            return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory", index_path);
        int fi = find_file_index(s, path);
        wan_status rc = WAN_OK;
        if (fi < 0) {
            if (!wan_path_is_file(path))
                rc = wan_err(err, WAN_ERR_NOT_FOUND, "%s: shard '%s' (named for tensor '%s') is missing",
                             index_path, shard, it->string);
            else
                rc = set_add_file(s, path, err);
            fi = s->n_files - 1;
        }
        wan_free(path);
        if (rc != WAN_OK)
            return rc;
        const wan_st_tensor *t = wan_st_find(s->files[fi], it->string);
        if (!t)
            return wan_err(err, WAN_ERR_NOT_FOUND, "%s: tensor '%s' is not in shard '%s' named by %s",
                           s->files[fi]->path, it->string, shard, index_path);
        s->entries[s->n++] = (wan_st_entry){ t->name, t, fi, NULL };
    }
    return set_check_unique(s, err);
}

wan_status wan_st_set_open_index(const char *index_path, wan_st_set **out, wan_error *err)
{
    *out = NULL;
    char *text = NULL;
    wan_status rc = wan_read_file(index_path, &text, NULL, err);
    if (rc != WAN_OK)
        return rc;
    cJSON *root = cJSON_Parse(text);
    wan_free(text);
    if (!root)
        return wan_err(err, WAN_ERR_FORMAT, "%s: not valid JSON", index_path);
    cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        cJSON_Delete(root);
        return wan_err(err, WAN_ERR_FORMAT, "%s: no 'weight_map' object", index_path);
    }
    char *dir = dir_of(index_path);
    wan_st_set *s = dir ? set_new(dir) : NULL;
    wan_free(dir);
    if (!s || !(s->index_path = wan_strdup(index_path))) {
        wan_st_set_free(s);
        cJSON_Delete(root);
        return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory", index_path);
    }
    rc = index_load(s, index_path, wm, err);
    cJSON_Delete(root);
    if (rc != WAN_OK) {
        wan_st_set_free(s);
        return rc;
    }
    *out = s;
    return WAN_OK;
}

/* Finds the only file in dir whose name ends with suffix; NULL (and *count) otherwise. */
static char *find_unique_suffix(const char *dir, const char *suffix, int *count)
{
    *count = 0;
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    char *found = NULL;
    size_t sl = strlen(suffix);
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > sl && strcmp(e->d_name + n - sl, suffix) == 0) {
            if (++*count == 1)
                found = wan_path_join(dir, e->d_name);
        }
    }
    closedir(d);
    if (*count != 1) {
        wan_free(found);
        return NULL;
    }
    return found;
}

wan_status wan_st_set_open_dir(const char *dir, wan_st_set **out, wan_error *err)
{
    *out = NULL;
    static const char *bases[] = { "diffusion_pytorch_model", "model" };
    static const char *variants[] = { "", ".fp16", ".bf16" };
    for (size_t b = 0; b < 2; b++) {
        for (size_t v = 0; v < 3; v++) {
            char name[96];
            /* diffusers puts the variant before the last extension of the index name */
            snprintf(name, sizeof name, "%s.safetensors.index%s.json", bases[b], variants[v]);
            char *p = wan_path_join(dir, name);
            if (!p)
                return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory", dir);
            if (wan_path_is_file(p)) {
                wan_status rc = wan_st_set_open_index(p, out, err);
                wan_free(p);
                return rc;
            }
            wan_free(p);
            snprintf(name, sizeof name, "%s%s.safetensors", bases[b], variants[v]);
            p = wan_path_join(dir, name);
            if (!p)
                return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory", dir);
            if (wan_path_is_file(p)) {
                wan_status rc = wan_st_set_open_file(p, out, err);
                wan_free(p);
                return rc;
            }
            wan_free(p);
        }
    }
    int count;
    char *p = find_unique_suffix(dir, ".safetensors.index.json", &count);
    if (p) {
        wan_status rc = wan_st_set_open_index(p, out, err);
        wan_free(p);
        return rc;
    }
    p = find_unique_suffix(dir, ".safetensors", &count);
    if (p) {
        wan_status rc = wan_st_set_open_file(p, out, err);
        wan_free(p);
        return rc;
    }
    if (count > 1)
        return wan_err(err, WAN_ERR_FORMAT,
                       "%s: %d .safetensors files but no .safetensors.index.json saying which to use",
                       dir, count);
    return wan_err(err, WAN_ERR_NOT_FOUND, "%s: no .safetensors weights found", dir);
}

wan_status wan_st_set_rename(wan_st_set *s, wan_st_rename_fn fn, void *user, wan_error *err)
{
    for (int i = 0; i < s->n; i++) {
        char buf[512];
        if (!fn(s->entries[i].name, buf, sizeof buf, user))
            continue;
        char *nn = wan_strdup(buf);
        if (!nn)
            return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory renaming tensors", s->dir);
        wan_free(s->entries[i].owned);
        s->entries[i].owned = nn;
        s->entries[i].name = nn;
    }
    qsort(s->entries, (size_t)s->n, sizeof *s->entries, cmp_entry);
    for (int i = 1; i < s->n; i++)
        if (strcmp(s->entries[i - 1].name, s->entries[i].name) == 0)
            return wan_err(err, WAN_ERR_FORMAT, "%s: tensors '%s' and '%s' both map to the name '%s'",
                           s->dir, s->entries[i - 1].t->name, s->entries[i].t->name,
                           s->entries[i].name);
    return WAN_OK;
}

/* The per-tensor scale of the float8 weight e ("<module>.weight"): "<module>.weight_scale" (ComfyUI's comfy_quant
 * files) or "<module>.scale_weight" (its older "scaled_fp8" files), one F32/F16/BF16 value; none: 1. */
static wan_status get_f8_weight(const wan_st_set *s, const wan_st_entry *e, int64_t N, int64_t K, wan_tensor *out,
                                wan_error *err)
{
    char sname[2][512];
    const size_t n = strlen(e->name), wl = strlen(".weight");
    snprintf(sname[0], sizeof sname[0], "%s_scale", e->name);
    if (n > wl && !strcmp(e->name + n - wl, ".weight"))
        snprintf(sname[1], sizeof sname[1], "%.*s.scale_weight", (int)(n - wl), e->name);
    else
        sname[1][0] = 0;
    float scale = 1.0f;
    for (int i = 0; i < 2; i++) {
        const wan_st_entry *se = sname[i][0] ? wan_st_set_find(s, sname[i]) : NULL;
        if (!se)
            continue;
        int64_t numel = 1;
        for (int d = 0; d < se->t->ndim; d++)
            numel *= se->t->shape[d];
        const wan_dtype dt = se->t->dtype;
        if (numel != 1 || (dt != WAN_DTYPE_F32 && dt != WAN_DTYPE_F16 && dt != WAN_DTYPE_BF16))
            return wan_err(err, WAN_ERR_UNSUPPORTED, "%s: the scale '%s' of float8 weight '%s' is %s with %lld values "
                           "(one F32, F16 or BF16 value per tensor is supported)", s->files[se->file]->path, sname[i],
                           e->name, wan_dtype_name(dt), (long long)numel);
        if (dt == WAN_DTYPE_F32)
            memcpy(&scale, se->t->data, 4);
        else {
            uint16_t h;
            memcpy(&h, se->t->data, 2);
            scale = dt == WAN_DTYPE_F16 ? wan_f16_to_f32(h) : wan_bf16_to_f32(h);
        }
        if (!isfinite(scale) || scale == 0.0f)
            return wan_err(err, WAN_ERR_FORMAT, "%s: the scale '%s' of float8 weight '%s' is %g",
                           s->files[se->file]->path, sname[i], e->name, (double)scale);
        break;
    }
    *out = wan_tensor_view(e->t->dtype, 2, (int64_t[]){ N, K }, (void *)e->t->data);
    out->name = e->name;
    out->wscale = scale;
    return WAN_OK;
}

wan_status wan_st_set_get_weight(const wan_st_set *s, const char *name, int64_t N, int64_t K, wan_tensor *out,
                                 wan_error *err)
{
    const wan_st_entry *e = wan_st_set_find(s, name);
    if (!e || (e->t->dtype != WAN_DTYPE_I8 && e->t->dtype != WAN_DTYPE_U8 && !wan_dtype_is_f8(e->t->dtype)))
        return wan_st_set_get(s, name, 2, (int64_t[]){ N, K }, out, err);
    const wan_st_tensor *t = e->t;
    const char *file = s->files[e->file]->path, *fmt = t->dtype == WAN_DTYPE_U8 ? "q4_0" : "q8_0";
    char a[160], b[160], sname[512];
    const int64_t stored = t->dtype == WAN_DTYPE_U8 ? K / 2 : K; /* q4_0: two values a byte */
    if (t->ndim != 2 || t->shape[0] != N || t->shape[1] != stored || (t->dtype == WAN_DTYPE_U8 && K % 2))
        return wan_err(err, WAN_ERR_SHAPE, "%s: tensor '%s' has shape %s, the config implies %s%s", file, t->name,
                       wan_shape_str(t->ndim, t->shape, a, sizeof a), wan_shape_str(2, (int64_t[]){ N, stored }, b, sizeof b),
                       t->dtype == WAN_DTYPE_U8 ? " (q4_0: two values a byte)" : "");
    if (wan_dtype_is_f8(t->dtype))
        return get_f8_weight(s, e, N, K, out, err);
    if (K % WAN_Q8_BLOCK)
        return wan_err(err, WAN_ERR_UNSUPPORTED, "%s: tensor '%s' is %s (%s) but its rows of %lld values are not "
                       "whole blocks of %d", file, t->name, wan_dtype_name(t->dtype), fmt, (long long)K, WAN_Q8_BLOCK);
    snprintf(sname, sizeof sname, "%s_scale", name);
    const wan_st_entry *se = wan_st_set_find(s, sname);
    if (!se)
        return wan_err(err, WAN_ERR_NOT_FOUND, "%s: tensor '%s' is %s (%s) but its scales '%s' are missing", file,
                       t->name, wan_dtype_name(t->dtype), fmt, sname);
    const int64_t ss[2] = { N, K / WAN_Q8_BLOCK };
    if (se->t->dtype != WAN_DTYPE_F16 || se->t->ndim != 2 || se->t->shape[0] != ss[0] || se->t->shape[1] != ss[1])
        return wan_err(err, WAN_ERR_SHAPE, "%s: %s scales '%s' are %s %s, '%s' needs F16 %s",
                       s->files[se->file]->path, fmt, sname, wan_dtype_name(se->t->dtype),
                       wan_shape_str(se->t->ndim, se->t->shape, a, sizeof a), t->name, wan_shape_str(2, ss, b, sizeof b));
    *out = wan_tensor_view(t->dtype, 2, (int64_t[]){ N, K }, (void *)t->data);
    out->name = e->name;
    out->qscale = (const uint16_t *)se->t->data;
    return WAN_OK;
}

bool wan_st_set_quantised(const wan_st_set *s, const wan_st_entry *e, wan_tensor *view)
{
    wan_error err = { 0 };
    const bool q4 = e->t->dtype == WAN_DTYPE_U8; /* two values a byte */
    return (e->t->dtype == WAN_DTYPE_I8 || q4 || wan_dtype_is_f8(e->t->dtype)) && e->t->ndim == 2 &&
           wan_st_set_get_weight(s, e->name, e->t->shape[0], e->t->shape[1] * (q4 ? 2 : 1), view, &err) == WAN_OK;
}

const wan_st_entry *wan_st_set_aux_owner(const wan_st_set *s, const wan_st_entry *e, wan_tensor *view)
{
    static const char *const sfx[] = { "_scale", ".scale_weight", ".comfy_quant", ".input_scale", ".scale_input" };
    const size_t n = strlen(e->name);
    for (size_t i = 0; i < sizeof sfx / sizeof *sfx; i++) {
        const size_t l = strlen(sfx[i]);
        char base[512];
        if (n <= l || strcmp(e->name + n - l, sfx[i]) ||
            snprintf(base, sizeof base, "%.*s%s", (int)(n - l), e->name, i ? ".weight" : "") >= (int)sizeof base)
            continue;
        const wan_st_entry *we = wan_st_set_find(s, base);
        if (we && wan_st_set_quantised(s, we, view) && (i == 0 || wan_dtype_is_f8(we->t->dtype)))
            return we;
    }
    return NULL;
}

void wan_st_set_release(const wan_st_set *s)
{
    if (!s)
        return;
    long page = sysconf(_SC_PAGESIZE);
    for (int i = 0; i < s->n_files; i++) {
        const wan_st_file *f = s->files[i];
        if (f->map && f->size)
            madvise((void *)f->map, (f->size + (size_t)page - 1) & ~((size_t)page - 1), MADV_DONTNEED);
    }
}

const wan_st_entry *wan_st_set_find(const wan_st_set *s, const char *name)
{
    wan_st_entry key = { .name = name };
    return bsearch(&key, s->entries, (size_t)s->n, sizeof key, cmp_entry);
}

wan_status wan_st_set_get(const wan_st_set *s, const char *name, int ndim, const int64_t *shape,
                          wan_tensor *out, wan_error *err)
{
    const wan_st_entry *e = wan_st_set_find(s, name);
    if (!e)
        return wan_err(err, WAN_ERR_NOT_FOUND, "%s: tensor '%s' is missing", s->dir, name);
    const wan_st_tensor *t = e->t;
    const char *file = s->files[e->file]->path;
    if (t->dtype != WAN_DTYPE_F32 && t->dtype != WAN_DTYPE_F16 && t->dtype != WAN_DTYPE_BF16)
        return wan_err(err, WAN_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (F32, F16 or BF16 needed)",
                       file, t->name, wan_dtype_name(t->dtype));
    bool ok = t->ndim == ndim && ndim <= WAN_MAX_DIMS;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == shape[i];
    if (!ok) {
        char a[160], b[160];
        return wan_err(err, WAN_ERR_SHAPE, "%s: tensor '%s' has shape %s, the config implies %s", file,
                       t->name, wan_shape_str(t->ndim, t->shape, a, sizeof a),
                       wan_shape_str(ndim, shape, b, sizeof b));
    }
    *out = wan_tensor_view(t->dtype, ndim, shape, (void *)t->data);
    out->name = e->name;
    return WAN_OK;
}
