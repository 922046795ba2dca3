/* pth.c — torch.save archives read safely: the zip container (stored entries, zip64) and a pickle
 * interpreter restricted to what torch writes for a state dict (see pth.h). Nothing is executed: the
 * few allowed globals are recognised by name and their effect is reproduced here. */
#define _POSIX_C_SOURCE 200809L
#include "pth.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

#define ZIP_LOCAL_SIG 0x04034b50u
#define ZIP_CENTRAL_SIG 0x02014b50u
#define ZIP_EOCD_SIG 0x06054b50u
#define ZIP64_LOCATOR_SIG 0x07064b50u
#define ZIP64_EOCD_SIG 0x06064b50u

bool wan_pth_is_zip(const uint8_t *buf, size_t size)
{
    return size >= 4 && rd32(buf) == ZIP_LOCAL_SIG;
}

bool wan_pth_is_legacy(const uint8_t *buf, size_t size)
{
    static const uint8_t magic[] = { 0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19 };
    return size >= sizeof magic && memcmp(buf, magic, sizeof magic) == 0;
}

/* ---- zip container ---------------------------------------------------------------------------- */

typedef struct zip_entry {
    const char *name; /* into the buffer, not NUL-terminated */
    size_t nlen;
    uint64_t off;     /* file offset of the entry's bytes */
    uint64_t size;
} zip_entry;

typedef struct zip_archive {
    const char *path;
    const uint8_t *buf;
    size_t size;
    zip_entry *e;     /* sorted by name */
    size_t n;
    char prefix[256]; /* the folder every record sits in ("archive", or the file's stem) */
} zip_archive;

static int name_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

static int cmp_entry(const void *x, const void *y)
{
    const zip_entry *a = x, *b = y;
    return name_cmp(a->name, a->nlen, b->name, b->nlen);
}

static const zip_entry *zip_find(const zip_archive *z, const char *name, size_t nlen)
{
    size_t lo = 0, hi = z->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(z->e[mid].name, z->e[mid].nlen, name, nlen);
        if (c == 0)
            return &z->e[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Finds the (zip64) end of central directory: where the directory is and how many entries it has. */
static wan_status zip_end_record(const zip_archive *z, uint64_t *cd_off, uint64_t *cd_size, uint64_t *count,
                                 wan_error *err)
{
    const uint8_t *b = z->buf;
    if (z->size < 22)
        return wan_err(err, WAN_ERR_FORMAT, "%s: %zu bytes, too short for a zip archive (truncated?)", z->path,
                       z->size);
    size_t lo = z->size > 22 + 65535 ? z->size - 22 - 65535 : 0, pos = z->size - 22;
    for (;; pos--) {
        if (rd32(b + pos) == ZIP_EOCD_SIG && pos + 22 + rd16(b + pos + 20) <= z->size)
            break;
        if (pos == lo)
            return wan_err(err, WAN_ERR_FORMAT,
                           "%s: no zip end-of-central-directory record near the end of the file (truncated, "
                           "or not a torch.save archive)", z->path);
    }
    const uint8_t *e = b + pos;
    uint64_t end = pos;
    uint64_t n = rd16(e + 10), cs = rd32(e + 12), co = rd32(e + 16);
    uint32_t disk = rd16(e + 4), cd_disk = rd16(e + 6);
    if (pos >= 20 && rd32(b + pos - 20) == ZIP64_LOCATOR_SIG) {
        uint64_t r64 = rd64(b + pos - 20 + 8);
        if (r64 > pos - 20 || pos - 20 - r64 < 56 || rd32(b + r64) != ZIP64_EOCD_SIG)
            return wan_err(err, WAN_ERR_FORMAT, "%s: the zip64 locator at byte %zu points to byte %llu, where "
                           "there is no zip64 end-of-central-directory record", z->path, pos - 20,
                           (unsigned long long)r64);
        const uint8_t *r = b + r64;
        disk = rd32(r + 16), cd_disk = rd32(r + 20);
        n = rd64(r + 32), cs = rd64(r + 40), co = rd64(r + 48);
        end = r64;
    } else if (n == 0xFFFF || cs == 0xFFFFFFFFu || co == 0xFFFFFFFFu) {
        return wan_err(err, WAN_ERR_FORMAT, "%s: the end record at byte %zu needs zip64 fields but there is no "
                       "zip64 locator", z->path, pos);
    }
    if (disk != 0 || cd_disk != 0)
        return wan_err(err, WAN_ERR_UNSUPPORTED, "%s: multi-volume zip archives are not supported", z->path);
    if (co > end || cs > end - co)
        return wan_err(err, WAN_ERR_FORMAT, "%s: the central directory (byte %llu, %llu bytes) runs past its end "
                       "record at byte %llu (truncated?)", z->path, (unsigned long long)co,
                       (unsigned long long)cs, (unsigned long long)end);
    if (n > cs / 46)
        return wan_err(err, WAN_ERR_FORMAT, "%s: %llu entries cannot fit in a central directory of %llu bytes",
                       z->path, (unsigned long long)n, (unsigned long long)cs);
    *cd_off = co, *cd_size = cs, *count = n;
    return WAN_OK;
}

/* Reads the zip64 extra field of a central-directory entry: the 64-bit values replace the 32-bit
 * fields that are 0xFFFFFFFF, in the order the format fixes. */
static wan_status zip64_extra(const zip_archive *z, const uint8_t *x, size_t xlen, uint64_t *usize,
                              uint64_t *csize, uint64_t *lho, size_t at, wan_error *err)
{
    for (size_t i = 0; i + 4 <= xlen;) {
        uint16_t id = rd16(x + i), sz = rd16(x + i + 2);
        if (i + 4 + sz > xlen)
            break;
        if (id == 1) {
            const uint8_t *q = x + i + 4, *qe = q + sz;
            uint64_t *f[3] = { usize, csize, lho };
            for (int k = 0; k < 3; k++) {
                if (*f[k] != 0xFFFFFFFFu)
                    continue;
                if (q + 8 > qe)
                    return wan_err(err, WAN_ERR_FORMAT, "%s: central directory entry at byte %zu: zip64 extra "
                                   "field too short", z->path, at);
                *f[k] = rd64(q);
                q += 8;
            }
            return WAN_OK;
        }
        i += 4 + (size_t)sz;
    }
    return WAN_OK;
}

/* One central-directory entry at file offset `at` (inside the directory [co, co + cs)): checks it and
 * its local header and returns where its stored bytes are. */
static wan_status zip_entry_at(zip_archive *z, uint64_t at, uint64_t co, uint64_t cs, zip_entry *ze,
                               size_t *len, wan_error *err)
{
    const uint8_t *b = z->buf, *c = b + at;
    if (at + 46 > co + cs || rd32(c) != ZIP_CENTRAL_SIG)
        return wan_err(err, WAN_ERR_FORMAT, "%s: bad central directory entry at byte %llu", z->path,
                       (unsigned long long)at);
    uint16_t flags = rd16(c + 8), method = rd16(c + 10), nlen = rd16(c + 28), xlen = rd16(c + 30),
             clen = rd16(c + 32);
    uint64_t csize = rd32(c + 20), usize = rd32(c + 24), lho = rd32(c + 42);
    *len = 46 + (size_t)nlen + xlen + clen;
    if (at + *len > co + cs)
        return wan_err(err, WAN_ERR_FORMAT, "%s: central directory entry at byte %llu runs past the directory",
                       z->path, (unsigned long long)at);
    const char *name = (const char *)c + 46;
    wan_status rc = zip64_extra(z, c + 46 + nlen, xlen, &usize, &csize, &lho, (size_t)at, err);
    if (rc != WAN_OK)
        return rc;
    if (flags & 1)
        return wan_err(err, WAN_ERR_UNSUPPORTED, "%s: zip entry '%.*s' is encrypted", z->path, (int)nlen, name);
    if (method != 0)
        return wan_err(err, WAN_ERR_UNSUPPORTED,
                       "%s: zip entry '%.*s' is compressed (method %u); torch.save stores entries uncompressed, "
                       "so re-save the state dict with torch.save (or re-zip with `zip -0`)",
                       z->path, (int)nlen, name, method);
    if (csize != usize)
        return wan_err(err, WAN_ERR_FORMAT, "%s: stored zip entry '%.*s' has compressed size %llu != size %llu",
                       z->path, (int)nlen, name, (unsigned long long)csize, (unsigned long long)usize);
    if (lho > co || co - lho < 30 || rd32(b + lho) != ZIP_LOCAL_SIG)
        return wan_err(err, WAN_ERR_FORMAT, "%s: zip entry '%.*s': no local header at byte %llu", z->path,
                       (int)nlen, name, (unsigned long long)lho);
    uint16_t lnlen = rd16(b + lho + 26), lxlen = rd16(b + lho + 28);
    uint64_t data = lho + 30 + lnlen + lxlen;
    if (data > co || usize > co - data)
        return wan_err(err, WAN_ERR_FORMAT, "%s: zip entry '%.*s': %llu bytes at byte %llu run past the central "
                       "directory at byte %llu (truncated?)", z->path, (int)nlen, name, (unsigned long long)usize,
                       (unsigned long long)data, (unsigned long long)co);
    if (lnlen != nlen || memcmp(b + lho + 30, name, nlen) != 0)
        return wan_err(err, WAN_ERR_FORMAT, "%s: zip entry '%.*s': the local header at byte %llu names another "
                       "file", z->path, (int)nlen, name, (unsigned long long)lho);
    *ze = (zip_entry){ name, nlen, data, usize };
    return WAN_OK;
}

static wan_status zip_open(zip_archive *z, wan_error *err)
{
    uint64_t co = 0, cs = 0, n = 0;
    wan_status rc = zip_end_record(z, &co, &cs, &n, err);
    if (rc != WAN_OK)
        return rc;
    if (n == 0)
        return wan_err(err, WAN_ERR_FORMAT, "%s: the zip archive is empty", z->path);
    z->e = wan_calloc((size_t)n, sizeof *z->e);
    if (!z->e)
        return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory reading %llu zip entries", z->path,
                       (unsigned long long)n);
    uint64_t at = co;
    for (uint64_t i = 0; i < n; i++) {
        size_t len = 0;
        rc = zip_entry_at(z, at, co, cs, &z->e[i], &len, err);
        if (rc != WAN_OK)
            return rc;
        at += len;
        z->n++;
    }
    /* torch names every record "<prefix>/..." and takes the prefix from the first entry */
    const char *slash = memchr(z->e[0].name, '/', z->e[0].nlen);
    if (!slash || slash == z->e[0].name || (size_t)(slash - z->e[0].name) >= sizeof z->prefix)
        return wan_err(err, WAN_ERR_FORMAT, "%s: zip entry '%.*s' is not in a folder: not a torch.save archive",
                       z->path, (int)z->e[0].nlen, z->e[0].name);
    snprintf(z->prefix, sizeof z->prefix, "%.*s", (int)(slash - z->e[0].name), z->e[0].name);
    qsort(z->e, z->n, sizeof *z->e, cmp_entry);
    for (size_t i = 1; i < z->n; i++)
        if (cmp_entry(&z->e[i - 1], &z->e[i]) == 0)
            return wan_err(err, WAN_ERR_FORMAT, "%s: zip entry '%.*s' appears twice", z->path, (int)z->e[i].nlen,
                           z->e[i].name);
    return WAN_OK;
}

/* The entry "<prefix>/<rest>", or NULL. */
static const zip_entry *zip_record(const zip_archive *z, const char *rest, size_t rlen)
{
    char name[600];
    int n = snprintf(name, sizeof name, "%s/%.*s", z->prefix, (int)rlen, rest);
    if (n < 0 || (size_t)n >= sizeof name)
        return NULL;
    return zip_find(z, name, (size_t)n);
}

/* ---- pickle values ---------------------------------------------------------------------------- */

typedef enum pv_kind {
    PV_NONE, PV_BOOL, PV_INT, PV_FLOAT, PV_STR, PV_TUPLE, PV_LIST, PV_DICT, PV_GLOBAL, PV_STORAGE, PV_TENSOR
} pv_kind;

static const char *const k_kind_names[] = { "None", "bool", "int", "float", "str", "tuple", "list", "dict",
                                            "global", "storage", "tensor" };

typedef enum pv_global {
    G_ORDERED_DICT, G_REBUILD_V2, G_REBUILD_V3, G_REBUILD_PARAM, G_REBUILD_PARAM_STATE, G_STORAGE_TYPE, G_DTYPE
} pv_global;

/* The only globals a state dict needs. Storage types and dtypes carry their element type. */
static const struct {
    const char *mod, *name;
    pv_global g;
    wan_dtype dtype;
} k_globals[] = {
    { "collections", "OrderedDict", G_ORDERED_DICT, WAN_DTYPE_U8 },
    { "torch._utils", "_rebuild_tensor_v2", G_REBUILD_V2, WAN_DTYPE_U8 },
    { "torch._utils", "_rebuild_tensor_v3", G_REBUILD_V3, WAN_DTYPE_U8 },
    { "torch._utils", "_rebuild_parameter", G_REBUILD_PARAM, WAN_DTYPE_U8 },
    { "torch._utils", "_rebuild_parameter_with_state", G_REBUILD_PARAM_STATE, WAN_DTYPE_U8 },
    { "torch", "FloatStorage", G_STORAGE_TYPE, WAN_DTYPE_F32 },
    { "torch", "DoubleStorage", G_STORAGE_TYPE, WAN_DTYPE_F64 },
    { "torch", "HalfStorage", G_STORAGE_TYPE, WAN_DTYPE_F16 },
    { "torch", "BFloat16Storage", G_STORAGE_TYPE, WAN_DTYPE_BF16 },
    { "torch", "LongStorage", G_STORAGE_TYPE, WAN_DTYPE_I64 },
    { "torch", "IntStorage", G_STORAGE_TYPE, WAN_DTYPE_I32 },
    { "torch", "ShortStorage", G_STORAGE_TYPE, WAN_DTYPE_I16 },
    { "torch", "CharStorage", G_STORAGE_TYPE, WAN_DTYPE_I8 },
    { "torch", "ByteStorage", G_STORAGE_TYPE, WAN_DTYPE_U8 },
    { "torch", "BoolStorage", G_STORAGE_TYPE, WAN_DTYPE_BOOL },
    { "torch", "UntypedStorage", G_STORAGE_TYPE, WAN_DTYPE_U8 },
    { "torch.storage", "UntypedStorage", G_STORAGE_TYPE, WAN_DTYPE_U8 },
    { "torch", "float32", G_DTYPE, WAN_DTYPE_F32 },
    { "torch", "float64", G_DTYPE, WAN_DTYPE_F64 },
    { "torch", "float16", G_DTYPE, WAN_DTYPE_F16 },
    { "torch", "bfloat16", G_DTYPE, WAN_DTYPE_BF16 },
    { "torch", "int64", G_DTYPE, WAN_DTYPE_I64 },
    { "torch", "int32", G_DTYPE, WAN_DTYPE_I32 },
    { "torch", "int16", G_DTYPE, WAN_DTYPE_I16 },
    { "torch", "int8", G_DTYPE, WAN_DTYPE_I8 },
    { "torch", "uint8", G_DTYPE, WAN_DTYPE_U8 },
    { "torch", "bool", G_DTYPE, WAN_DTYPE_BOOL },
    { "torch", "float8_e4m3fn", G_DTYPE, WAN_DTYPE_F8_E4M3 },
    { "torch", "float8_e5m2", G_DTYPE, WAN_DTYPE_F8_E5M2 },
};

typedef struct pv pv;
struct pv {
    pv_kind kind;
    int64_t i;           /* INT, BOOL; GLOBAL: index into k_globals */
    double f;            /* FLOAT */
    const char *s;       /* STR (into the pickle, not NUL-terminated) */
    size_t n;            /* STR length */
    pv **items;          /* TUPLE, LIST; DICT as key, value, key, value, ... */
    size_t len, cap;
    wan_dtype dtype;     /* STORAGE, TENSOR */
    const uint8_t *data; /* STORAGE: its bytes; TENSOR: its first element */
    uint64_t nbytes;     /* STORAGE, TENSOR */
    uint64_t file_off;   /* STORAGE, TENSOR: file offset of data */
    size_t at;           /* pickle offset of the opcode that made it */
    int ndim;            /* TENSOR */
    int64_t shape[WAN_ST_MAX_DIMS], stride[WAN_ST_MAX_DIMS];
    uint64_t offset, storage_bytes;
    int problem;         /* TENSOR: 0 fine, 1 not contiguous, 2 outside its storage */
};

#define PV_BLOCK 256

typedef struct unpickler {
    const char *path;
    char entry[300];     /* "<prefix>/data.pkl", for messages */
    const zip_archive *z;
    const uint8_t *p;
    size_t n, pos, op_at;
    pv **stack;
    size_t sp, scap;
    size_t *marks;
    size_t nm, mcap;
    pv **memo;
    size_t memo_cap, memo_count;
    pv **blocks;
    size_t nblocks, used;
    wan_error *err;
} unpickler;

static wan_status perr(unpickler *u, wan_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static wan_status perr(unpickler *u, wan_status code, const char *fmt, ...)
{
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return wan_err(u->err, code, "%s: %s byte %zu: %s", u->path, u->entry, u->op_at, msg);
}

static bool grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t nc = *cap ? *cap * 2 : 16;
    while (nc < need)
        nc *= 2;
    void *p = wan_realloc(*arr, nc * elem);
    if (!p)
        return false;
    *arr = p;
    *cap = nc;
    return true;
}

static pv *pv_new(unpickler *u, pv_kind kind)
{
    if (u->nblocks == 0 || u->used == PV_BLOCK) {
        size_t cap = u->nblocks;
        if (!grow((void **)&u->blocks, &cap, u->nblocks + 1, sizeof *u->blocks))
            return NULL;
        pv *b = wan_calloc(PV_BLOCK, sizeof *b);
        if (!b)
            return NULL;
        u->blocks[u->nblocks++] = b;
        u->used = 0;
    }
    pv *v = &u->blocks[u->nblocks - 1][u->used++];
    v->kind = kind;
    v->at = u->op_at;
    return v;
}

static void unpickler_free(unpickler *u)
{
    for (size_t b = 0; b < u->nblocks; b++) {
        size_t n = b + 1 == u->nblocks ? u->used : PV_BLOCK;
        for (size_t i = 0; i < n; i++)
            wan_free(u->blocks[b][i].items);
        wan_free(u->blocks[b]);
    }
    wan_free(u->blocks);
    wan_free(u->stack);
    wan_free(u->marks);
    wan_free(u->memo);
}

static wan_status nomem(unpickler *u) { return perr(u, WAN_ERR_NOMEM, "out of memory"); }

static wan_status push(unpickler *u, pv *v)
{
    if (!v || !grow((void **)&u->stack, &u->scap, u->sp + 1, sizeof *u->stack))
        return nomem(u);
    u->stack[u->sp++] = v;
    return WAN_OK;
}

static size_t stack_floor(const unpickler *u) { return u->nm ? u->marks[u->nm - 1] : 0; }

static wan_status pop(unpickler *u, pv **out)
{
    if (u->sp <= stack_floor(u))
        return perr(u, WAN_ERR_FORMAT, "stack underflow");
    *out = u->stack[--u->sp];
    return WAN_OK;
}

/* Pops the topmost mark; the items above it are stack[*from .. sp). */
static wan_status pop_mark(unpickler *u, size_t *from)
{
    if (!u->nm)
        return perr(u, WAN_ERR_FORMAT, "no MARK on the stack");
    *from = u->marks[--u->nm];
    return WAN_OK;
}

/* Appends the stack items from index `from` to the top to c (the stack may still be unallocated when empty). */
static wan_status add_items(unpickler *u, pv *c, size_t from)
{
    size_t n = u->sp - from;
    if (n == 0)
        return WAN_OK;
    if (!grow((void **)&c->items, &c->cap, c->len + n, sizeof *c->items))
        return nomem(u);
    memcpy(c->items + c->len, u->stack + from, n * sizeof *c->items);
    c->len += n;
    return WAN_OK;
}

/* Takes the top n items (or those above the mark) into a new container of the given kind. */
static wan_status collect(unpickler *u, pv_kind kind, size_t from)
{
    pv *c = pv_new(u, kind);
    if (!c)
        return nomem(u);
    size_t n = u->sp - from;
    if (kind == PV_DICT && n % 2)
        return perr(u, WAN_ERR_FORMAT, "odd number of items (%zu) for a dict", n);
    wan_status rc = add_items(u, c, from);
    if (rc != WAN_OK)
        return rc;
    u->sp = from;
    return push(u, c);
}

static bool str_is(const pv *v, const char *s)
{
    return v->kind == PV_STR && v->n == strlen(s) && memcmp(v->s, s, v->n) == 0;
}

static wan_status find_global(unpickler *u, const char *mod, size_t ml, const char *name, size_t nl)
{
    for (size_t i = 0; i < sizeof k_globals / sizeof *k_globals; i++) {
        if (strlen(k_globals[i].mod) == ml && !memcmp(k_globals[i].mod, mod, ml) &&
            strlen(k_globals[i].name) == nl && !memcmp(k_globals[i].name, name, nl)) {
            pv *g = pv_new(u, PV_GLOBAL);
            if (!g)
                return nomem(u);
            g->i = (int64_t)i;
            g->dtype = k_globals[i].dtype;
            return push(u, g);
        }
    }
    return perr(u, WAN_ERR_UNSUPPORTED, "global '%.*s.%.*s' is not allowed: a state dict needs only torch's "
                "tensor rebuilders and storage types, and nothing is ever imported or called",
                (int)(ml > 100 ? 100 : ml), mod, (int)(nl > 100 ? 100 : nl), name);
}

/* ---- what the allowed callables do ------------------------------------------------------------ */

static wan_status int_arg(unpickler *u, const pv *v, const char *what, int64_t *out)
{
    if (v->kind != PV_INT && v->kind != PV_BOOL)
        return perr(u, WAN_ERR_FORMAT, "%s is a %s, not an int", what, k_kind_names[v->kind]);
    *out = v->i;
    return WAN_OK;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]) and
 * _rebuild_tensor_v3(..., hooks, dtype[, metadata]): a view of the storage's bytes. */
static wan_status rebuild_tensor(unpickler *u, const pv *args, bool v3)
{
    size_t base = v3 ? 7 : 6;
    if (args->len != base && args->len != base + 1)
        return perr(u, WAN_ERR_FORMAT, "%s takes %zu or %zu arguments, got %zu",
                    v3 ? "_rebuild_tensor_v3" : "_rebuild_tensor_v2", base, base + 1, args->len);
    pv *const *a = args->items;
    if (a[0]->kind != PV_STORAGE)
        return perr(u, WAN_ERR_FORMAT, "tensor storage is a %s, not a storage", k_kind_names[a[0]->kind]);
    if (a[2]->kind != PV_TUPLE || a[3]->kind != PV_TUPLE || a[2]->len != a[3]->len)
        return perr(u, WAN_ERR_FORMAT, "tensor size and stride must be tuples of equal length");
    if (a[2]->len > WAN_ST_MAX_DIMS)
        return perr(u, WAN_ERR_UNSUPPORTED, "tensor with %zu dimensions (at most %d)", a[2]->len,
                    WAN_ST_MAX_DIMS);
    if (a[5]->kind != PV_DICT)
        return perr(u, WAN_ERR_FORMAT, "tensor backward hooks are a %s, not a dict", k_kind_names[a[5]->kind]);
    if (args->len == base + 1 && (a[base]->kind != PV_DICT || a[base]->len != 0))
        return perr(u, WAN_ERR_UNSUPPORTED, "tensor metadata (conjugate/negative bits) is not supported");
    if (v3 && (a[6]->kind != PV_GLOBAL || k_globals[a[6]->i].g != G_DTYPE))
        return perr(u, WAN_ERR_FORMAT, "_rebuild_tensor_v3 needs a torch dtype as its 7th argument");
    pv *t = pv_new(u, PV_TENSOR);
    if (!t)
        return nomem(u);
    t->dtype = v3 ? a[6]->dtype : a[0]->dtype;
    int64_t off = 0, rg = 0;
    wan_status rc = int_arg(u, a[1], "tensor storage offset", &off);
    if (rc == WAN_OK)
        rc = int_arg(u, a[4], "requires_grad", &rg);
    if (rc != WAN_OK)
        return rc;
    if (off < 0)
        return perr(u, WAN_ERR_FORMAT, "negative storage offset %lld", (long long)off);
    t->ndim = (int)a[2]->len;
    uint64_t numel = 1;
    bool big = false;
    for (int d = 0; d < t->ndim; d++) {
        if ((rc = int_arg(u, a[2]->items[d], "tensor size", &t->shape[d])) != WAN_OK ||
            (rc = int_arg(u, a[3]->items[d], "tensor stride", &t->stride[d])) != WAN_OK)
            return rc;
        if (t->shape[d] < 0 || t->stride[d] < 0)
            return perr(u, WAN_ERR_FORMAT, "negative tensor size or stride in dimension %d", d);
        if (t->shape[d] && numel > ((uint64_t)1 << 62) / (uint64_t)t->shape[d])
            big = true;
        numel *= (uint64_t)t->shape[d];
    }
    size_t es = wan_dtype_size(t->dtype);
    int64_t expect = 1;
    for (int d = t->ndim - 1; d >= 0 && numel && !big; d--) {
        if (t->shape[d] != 1 && t->stride[d] != expect)
            t->problem = 1;
        expect *= t->shape[d];
    }
    t->offset = (uint64_t)off;
    t->storage_bytes = a[0]->nbytes;
    uint64_t cap = a[0]->nbytes / es;
    if (!t->problem && (big || numel > cap || (uint64_t)off > cap - numel))
        t->problem = 2;
    if (!t->problem) {
        t->data = a[0]->data + (uint64_t)off * es;
        t->file_off = a[0]->file_off + (uint64_t)off * es;
        t->nbytes = numel * es;
    }
    return push(u, t);
}

static wan_status reduce(unpickler *u)
{
    pv *args = NULL, *fn = NULL;
    wan_status rc = pop(u, &args);
    if (rc == WAN_OK)
        rc = pop(u, &fn);
    if (rc != WAN_OK)
        return rc;
    if (fn->kind != PV_GLOBAL)
        return perr(u, WAN_ERR_UNSUPPORTED, "REDUCE on a %s is not allowed", k_kind_names[fn->kind]);
    if (args->kind != PV_TUPLE)
        return perr(u, WAN_ERR_FORMAT, "REDUCE arguments are a %s, not a tuple", k_kind_names[args->kind]);
    switch (k_globals[fn->i].g) {
    case G_ORDERED_DICT:
        if (args->len != 0)
            return perr(u, WAN_ERR_UNSUPPORTED, "collections.OrderedDict is only allowed with no arguments");
        return push(u, pv_new(u, PV_DICT));
    case G_REBUILD_V2:
    case G_REBUILD_V3:
        return rebuild_tensor(u, args, k_globals[fn->i].g == G_REBUILD_V3);
    case G_REBUILD_PARAM:
    case G_REBUILD_PARAM_STATE: {
        size_t want = k_globals[fn->i].g == G_REBUILD_PARAM ? 3 : 4;
        if (args->len != want || args->items[0]->kind != PV_TENSOR)
            return perr(u, WAN_ERR_FORMAT, "%s needs a tensor and %zu more arguments", k_globals[fn->i].name,
                        want - 1);
        return push(u, args->items[0]);
    }
    default:
        return perr(u, WAN_ERR_UNSUPPORTED, "REDUCE on '%s.%s' is not allowed", k_globals[fn->i].mod,
                    k_globals[fn->i].name);
    }
}

/* BINPERSID ('storage', <storage type>, key, location, numel): the bytes of <prefix>/data/<key>. */
static wan_status persistent_load(unpickler *u)
{
    pv *pid = NULL;
    wan_status rc = pop(u, &pid);
    if (rc != WAN_OK)
        return rc;
    if (pid->kind != PV_TUPLE || pid->len != 5 || !str_is(pid->items[0], "storage"))
        return perr(u, WAN_ERR_UNSUPPORTED, "persistent id is not a ('storage', type, key, location, numel) "
                    "tuple");
    pv *type = pid->items[1], *key = pid->items[2], *numel = pid->items[4];
    if (type->kind != PV_GLOBAL || k_globals[type->i].g != G_STORAGE_TYPE)
        return perr(u, WAN_ERR_FORMAT, "storage type is not a torch storage class");
    if (key->kind != PV_STR || key->n == 0 || key->n > 200 || memchr(key->s, '/', key->n))
        return perr(u, WAN_ERR_FORMAT, "bad storage key");
    int64_t ne = 0;
    if ((rc = int_arg(u, numel, "storage numel", &ne)) != WAN_OK)
        return rc;
    char rest[220];
    int rl = snprintf(rest, sizeof rest, "data/%.*s", (int)key->n, key->s);
    const zip_entry *e = zip_record(u->z, rest, (size_t)rl);
    if (!e)
        return perr(u, WAN_ERR_FORMAT, "storage '%.*s' has no entry %s/%s in the archive", (int)key->n, key->s,
                    u->z->prefix, rest);
    size_t es = wan_dtype_size(type->dtype);
    if (ne < 0 || (uint64_t)ne > e->size / es)
        return perr(u, WAN_ERR_FORMAT, "storage '%.*s' has %lld elements of %zu bytes but its entry %s/%s holds "
                    "%llu bytes (file bytes %llu..%llu; truncated?)", (int)key->n, key->s, (long long)ne, es,
                    u->z->prefix, rest, (unsigned long long)e->size, (unsigned long long)e->off,
                    (unsigned long long)(e->off + e->size));
    pv *s = pv_new(u, PV_STORAGE);
    if (!s)
        return nomem(u);
    s->dtype = type->dtype;
    s->data = u->z->buf + e->off;
    s->file_off = e->off;
    s->nbytes = (uint64_t)ne * es;
    s->s = key->s, s->n = key->n;
    return push(u, s);
}

/* ---- the interpreter -------------------------------------------------------------------------- */

static wan_status need(unpickler *u, size_t k)
{
    if (u->n - u->pos < k)
        return perr(u, WAN_ERR_FORMAT, "the pickle ends inside an opcode (truncated?)");
    return WAN_OK;
}

static uint64_t take_le(unpickler *u, size_t k)
{
    uint64_t v = 0;
    for (size_t i = 0; i < k; i++)
        v |= (uint64_t)u->p[u->pos + i] << (8 * i);
    u->pos += k;
    return v;
}

static wan_status memo_put(unpickler *u, uint64_t idx)
{
    if (u->sp == 0)
        return perr(u, WAN_ERR_FORMAT, "memo store with an empty stack");
    if (idx > u->n)
        return perr(u, WAN_ERR_FORMAT, "memo index %llu is out of range", (unsigned long long)idx);
    size_t old = u->memo_cap;
    if (!grow((void **)&u->memo, &u->memo_cap, (size_t)idx + 1, sizeof *u->memo))
        return nomem(u);
    if (u->memo_cap > old)
        memset(u->memo + old, 0, (u->memo_cap - old) * sizeof *u->memo);
    if (!u->memo[idx])
        u->memo_count++;
    u->memo[idx] = u->stack[u->sp - 1];
    return WAN_OK;
}

static wan_status memo_get(unpickler *u, uint64_t idx)
{
    if (idx >= u->memo_cap || !u->memo[idx])
        return perr(u, WAN_ERR_FORMAT, "memo %llu was never stored", (unsigned long long)idx);
    return push(u, u->memo[idx]);
}

static wan_status push_int(unpickler *u, int64_t v, pv_kind kind)
{
    pv *x = pv_new(u, kind);
    if (!x)
        return nomem(u);
    x->i = v;
    return push(u, x);
}

static wan_status push_str(unpickler *u, uint64_t len)
{
    if (u->n - u->pos < len)
        return perr(u, WAN_ERR_FORMAT, "string of %llu bytes runs past the end of the pickle",
                    (unsigned long long)len);
    pv *s = pv_new(u, PV_STR);
    if (!s)
        return nomem(u);
    s->s = (const char *)u->p + u->pos;
    s->n = (size_t)len;
    u->pos += (size_t)len;
    return push(u, s);
}

/* GLOBAL "module\nname\n" */
static wan_status op_global(unpickler *u)
{
    const char *mod = (const char *)u->p + u->pos;
    const char *nl1 = memchr(mod, '\n', u->n - u->pos);
    if (!nl1)
        return perr(u, WAN_ERR_FORMAT, "GLOBAL without a newline");
    const char *name = nl1 + 1;
    const char *nl2 = memchr(name, '\n', (size_t)((const char *)u->p + u->n - name));
    if (!nl2)
        return perr(u, WAN_ERR_FORMAT, "GLOBAL without a second newline");
    u->pos = (size_t)((const uint8_t *)nl2 + 1 - u->p);
    return find_global(u, mod, (size_t)(nl1 - mod), name, (size_t)(nl2 - name));
}

static wan_status op_append(unpickler *u, pv_kind want, size_t nitems, bool to_mark)
{
    size_t from = 0;
    wan_status rc = WAN_OK;
    if (to_mark)
        rc = pop_mark(u, &from);
    else if (u->sp < nitems + 1 || u->sp - nitems - 1 < stack_floor(u))
        return perr(u, WAN_ERR_FORMAT, "stack underflow");
    else
        from = u->sp - nitems;
    if (rc != WAN_OK)
        return rc;
    if (from <= stack_floor(u))
        return perr(u, WAN_ERR_FORMAT, "nothing below the items to add them to");
    pv *c = u->stack[from - 1];
    if (c->kind != want)
        return perr(u, WAN_ERR_UNSUPPORTED, "adding items to a %s is not allowed", k_kind_names[c->kind]);
    if (want == PV_DICT && (u->sp - from) % 2)
        return perr(u, WAN_ERR_FORMAT, "odd number of items (%zu) for SETITEMS", u->sp - from);
    rc = add_items(u, c, from);
    u->sp = from;
    return rc;
}

static wan_status op_tuple_n(unpickler *u, size_t k)
{
    if (u->sp < k || u->sp - k < stack_floor(u))
        return perr(u, WAN_ERR_FORMAT, "stack underflow");
    return collect(u, PV_TUPLE, u->sp - k);
}

static wan_status op_build(unpickler *u)
{
    pv *state = NULL;
    wan_status rc = pop(u, &state);
    if (rc != WAN_OK)
        return rc;
    if (u->sp <= stack_floor(u))
        return perr(u, WAN_ERR_FORMAT, "stack underflow");
    pv *obj = u->stack[u->sp - 1];
    if (obj->kind != PV_DICT) /* OrderedDict state (the _metadata attribute) is dropped */
        return perr(u, WAN_ERR_UNSUPPORTED, "BUILD on a %s is not allowed", k_kind_names[obj->kind]);
    return WAN_OK;
}

static const char *opcode_name(uint8_t op)
{
    static const struct {
        uint8_t op;
        const char *name;
    } names[] = {
        { 'i', "INST" },   { 'o', "OBJ" },       { 0x81, "NEWOBJ" },     { 0x92, "NEWOBJ_EX" },
        { 'P', "PERSID" }, { 0x82, "EXT1" },     { 0x83, "EXT2" },       { 0x84, "EXT4" },
        { 'S', "STRING" }, { 'T', "BINSTRING" }, { 'U', "SHORT_BINSTRING" }, { 'V', "UNICODE" },
        { 'I', "INT" },    { 'L', "LONG" },      { 'F', "FLOAT" },       { 'p', "PUT" },
        { 'g', "GET" },    { 0x8b, "LONG4" },    { 'B', "BINBYTES" },    { 'C', "SHORT_BINBYTES" },
        { 0x8e, "BINBYTES8" }, { 0x8f, "EMPTY_SET" }, { 0x90, "ADDITEMS" }, { 0x91, "FROZENSET" },
        { 0x96, "BYTEARRAY8" }, { 0x97, "NEXT_BUFFER" }, { 0x98, "READONLY_BUFFER" }, { '2', "DUP" },
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (names[i].op == op)
            return names[i].name;
    return "unknown";
}

/* One opcode. Sets *done at STOP. */
static wan_status step(unpickler *u, pv **result, bool *done)
{
    u->op_at = u->pos;
    uint8_t op = u->p[u->pos++];
    wan_status rc;
    switch (op) {
    case 0x80: /* PROTO */
        if ((rc = need(u, 1)) != WAN_OK)
            return rc;
        if (u->p[u->pos] < 2 || u->p[u->pos] > 5)
            return perr(u, WAN_ERR_UNSUPPORTED, "pickle protocol %d (2 to 5 are read)", u->p[u->pos]);
        u->pos++;
        return WAN_OK;
    case 0x95: /* FRAME */
        if ((rc = need(u, 8)) != WAN_OK)
            return rc;
        u->pos += 8;
        return WAN_OK;
    case '.': /* STOP */
        *done = true;
        return pop(u, result);
    case '(': /* MARK */
        if (!grow((void **)&u->marks, &u->mcap, u->nm + 1, sizeof *u->marks))
            return nomem(u);
        u->marks[u->nm++] = u->sp;
        return WAN_OK;
    case '0': { /* POP */
        pv *x = NULL;
        return pop(u, &x);
    }
    case '1': { /* POP_MARK */
        size_t from = 0;
        if ((rc = pop_mark(u, &from)) == WAN_OK)
            u->sp = from;
        return rc;
    }
    case '}': return push(u, pv_new(u, PV_DICT));  /* EMPTY_DICT */
    case ']': return push(u, pv_new(u, PV_LIST));  /* EMPTY_LIST */
    case ')': return push(u, pv_new(u, PV_TUPLE)); /* EMPTY_TUPLE */
    case 'N': return push(u, pv_new(u, PV_NONE));  /* NONE */
    case 0x88: return push_int(u, 1, PV_BOOL);     /* NEWTRUE */
    case 0x89: return push_int(u, 0, PV_BOOL);     /* NEWFALSE */
    case 't':   /* TUPLE */
    case 'l':   /* LIST */
    case 'd': { /* DICT */
        size_t from = 0;
        if ((rc = pop_mark(u, &from)) != WAN_OK)
            return rc;
        return collect(u, op == 't' ? PV_TUPLE : op == 'l' ? PV_LIST : PV_DICT, from);
    }
    case 0x85: return op_tuple_n(u, 1); /* TUPLE1 */
    case 0x86: return op_tuple_n(u, 2); /* TUPLE2 */
    case 0x87: return op_tuple_n(u, 3); /* TUPLE3 */
    case 'a': return op_append(u, PV_LIST, 1, false); /* APPEND */
    case 'e': return op_append(u, PV_LIST, 0, true);  /* APPENDS */
    case 's': return op_append(u, PV_DICT, 2, false); /* SETITEM */
    case 'u': return op_append(u, PV_DICT, 0, true);  /* SETITEMS */
    case 'J': /* BININT */
        if ((rc = need(u, 4)) != WAN_OK)
            return rc;
        return push_int(u, (int32_t)(uint32_t)take_le(u, 4), PV_INT);
    case 'K': /* BININT1 */
    case 'M': /* BININT2 */
        if ((rc = need(u, op == 'K' ? 1 : 2)) != WAN_OK)
            return rc;
        return push_int(u, (int64_t)take_le(u, op == 'K' ? 1 : 2), PV_INT);
    case 0x8a: { /* LONG1 */
        if ((rc = need(u, 1)) != WAN_OK)
            return rc;
        size_t k = u->p[u->pos++];
        if (k > 8)
            return perr(u, WAN_ERR_UNSUPPORTED, "integer of %zu bytes does not fit in 64 bits", k);
        if ((rc = need(u, k)) != WAN_OK)
            return rc;
        uint64_t v = take_le(u, k);
        if (k && k < 8 && (v >> (8 * k - 1)) & 1) /* sign-extend */
            v |= ~(uint64_t)0 << (8 * k);
        return push_int(u, (int64_t)v, PV_INT);
    }
    case 'G': { /* BINFLOAT, big-endian */
        if ((rc = need(u, 8)) != WAN_OK)
            return rc;
        uint64_t bits = 0;
        for (int i = 0; i < 8; i++)
            bits = bits << 8 | u->p[u->pos++];
        pv *x = pv_new(u, PV_FLOAT);
        if (!x)
            return nomem(u);
        memcpy(&x->f, &bits, sizeof x->f);
        return push(u, x);
    }
    case 'X':  /* BINUNICODE */
    case 0x8c: /* SHORT_BINUNICODE */
    case 0x8d: { /* BINUNICODE8 */
        size_t k = op == 'X' ? 4 : op == 0x8c ? 1 : 8;
        if ((rc = need(u, k)) != WAN_OK)
            return rc;
        return push_str(u, take_le(u, k));
    }
    case 'q': /* BINPUT */
    case 'r': /* LONG_BINPUT */
        if ((rc = need(u, op == 'q' ? 1 : 4)) != WAN_OK)
            return rc;
        return memo_put(u, take_le(u, op == 'q' ? 1 : 4));
    case 0x94: /* MEMOIZE */
        return memo_put(u, u->memo_count);
    case 'h': /* BINGET */
    case 'j': /* LONG_BINGET */
        if ((rc = need(u, op == 'h' ? 1 : 4)) != WAN_OK)
            return rc;
        return memo_get(u, take_le(u, op == 'h' ? 1 : 4));
    case 'c': return op_global(u); /* GLOBAL */
    case 0x93: { /* STACK_GLOBAL */
        pv *name = NULL, *mod = NULL;
        if ((rc = pop(u, &name)) != WAN_OK || (rc = pop(u, &mod)) != WAN_OK)
            return rc;
        if (name->kind != PV_STR || mod->kind != PV_STR)
            return perr(u, WAN_ERR_FORMAT, "STACK_GLOBAL needs two strings");
        return find_global(u, mod->s, mod->n, name->s, name->n);
    }
    case 'R': return reduce(u);          /* REDUCE */
    case 'b': return op_build(u);        /* BUILD */
    case 'Q': return persistent_load(u); /* BINPERSID */
    default:
        return perr(u, WAN_ERR_UNSUPPORTED, "opcode 0x%02x (%s) is not allowed in a tensor state dict", op,
                    opcode_name(op));
    }
}

/* ---- from the unpickled dict to wan_st_tensor entries ---------------------------------------- */

typedef struct named {
    wan_st_tensor t;
    size_t order;
} named;

static int cmp_named(const void *x, const void *y)
{
    const named *a = x, *b = y;
    int c = strcmp(a->t.name, b->t.name);
    return c ? c : (a->order > b->order) - (a->order < b->order);
}

static size_t count_tensors(const pv *d)
{
    size_t n = 0;
    for (size_t i = 0; i + 1 < d->len; i += 2)
        n += d->items[i]->kind == PV_STR && d->items[i + 1]->kind == PV_TENSOR;
    return n;
}

static wan_status tensor_problem(unpickler *u, const pv *k, const pv *t)
{
    char sh[160], st[160];
    wan_shape_str(t->ndim, t->shape, sh, sizeof sh);
    wan_shape_str(t->ndim, t->stride, st, sizeof st);
    u->op_at = t->at;
    if (t->problem == 1)
        return perr(u, WAN_ERR_UNSUPPORTED, "tensor '%.*s' is not contiguous (shape %s, strides %s); save "
                    "it with .contiguous()", (int)k->n, k->s, sh, st);
    return perr(u, WAN_ERR_FORMAT, "tensor '%.*s' (shape %s, %s, storage offset %llu) lies outside its "
                "storage of %llu bytes", (int)k->n, k->s, sh, wan_dtype_name(t->dtype),
                (unsigned long long)t->offset, (unsigned long long)t->storage_bytes);
}

static wan_status extract(unpickler *u, const pv *root, wan_st_file *out)
{
    u->op_at = u->n;
    if (root->kind != PV_DICT)
        return perr(u, WAN_ERR_FORMAT, "the pickle holds a %s, not a dict of tensors", k_kind_names[root->kind]);
    const pv *d = root;
    static const char *const wrappers[] = { "state_dict", "model", "module" };
    for (size_t w = 0; !count_tensors(d) && w < sizeof wrappers / sizeof *wrappers; w++)
        for (size_t i = 0; i + 1 < root->len; i += 2)
            if (str_is(root->items[i], wrappers[w]) && root->items[i + 1]->kind == PV_DICT &&
                count_tensors(root->items[i + 1]))
                d = root->items[i + 1];
    size_t n = count_tensors(d);
    if (!n)
        return perr(u, WAN_ERR_FORMAT, "the state dict holds no tensors");
    named *v = wan_calloc(n, sizeof *v);
    if (!v)
        return nomem(u);
    size_t k = 0;
    wan_status rc = WAN_OK;
    for (size_t i = 0; rc == WAN_OK && i + 1 < d->len; i += 2) {
        const pv *key = d->items[i], *t = d->items[i + 1];
        if (key->kind != PV_STR || t->kind != PV_TENSOR) {
            if (key->kind == PV_STR)
                wan_log_debug("%s: state dict entry '%.*s' is a %s, skipped", u->path, (int)key->n, key->s,
                              k_kind_names[t->kind]);
            continue;
        }
        if (t->problem) {
            rc = tensor_problem(u, key, t);
            break;
        }
        if (key->n == 0 || key->n > 1000 || memchr(key->s, 0, key->n)) {
            rc = perr(u, WAN_ERR_FORMAT, "a tensor name is empty, longer than 1000 bytes or contains NUL");
            break;
        }
        named *x = &v[k];
        x->order = k++;
        x->t.name = wan_asprintf("%.*s", (int)key->n, key->s);
        if (!x->t.name) {
            rc = nomem(u);
            break;
        }
        x->t.dtype = t->dtype;
        x->t.ndim = t->ndim;
        memcpy(x->t.shape, t->shape, sizeof t->shape);
        x->t.begin = t->file_off;
        x->t.end = t->file_off + t->nbytes;
        x->t.data = t->data;
    }
    if (rc == WAN_OK)
        out->tensors = wan_calloc(k ? k : 1, sizeof *out->tensors);
    if (rc == WAN_OK && !out->tensors)
        rc = nomem(u);
    if (rc == WAN_OK) {
        qsort(v, k, sizeof *v, cmp_named);
        for (size_t i = 0; i < k; i++) {
            if (i + 1 < k && strcmp(v[i].t.name, v[i + 1].t.name) == 0) { /* a later SETITEM wins */
                wan_free(v[i].t.name);
                continue;
            }
            out->tensors[out->n_tensors++] = v[i].t;
        }
    } else {
        for (size_t i = 0; i < k; i++)
            wan_free(v[i].t.name);
    }
    wan_free(v);
    return rc;
}

static wan_status unpickle(unpickler *u, wan_st_file *out)
{
    pv *root = NULL;
    bool done = false;
    wan_status rc = WAN_OK;
    while (rc == WAN_OK && !done) {
        if (u->pos >= u->n) {
            u->op_at = u->pos;
            return perr(u, WAN_ERR_FORMAT, "the pickle ends without STOP (truncated?)");
        }
        rc = step(u, &root, &done);
    }
    return rc == WAN_OK ? extract(u, root, out) : rc;
}

wan_status wan_pth_parse(const char *path, const uint8_t *buf, size_t size, wan_st_file *out, wan_error *err)
{
    memset(out, 0, sizeof *out);
    zip_archive z = { .path = path, .buf = buf, .size = size };
    wan_status rc = zip_open(&z, err);
    const zip_entry *pkl = NULL, *bo = NULL;
    if (rc == WAN_OK && !(pkl = zip_record(&z, "data.pkl", 8)))
        rc = wan_err(err, WAN_ERR_FORMAT, "%s: no %s/data.pkl in the archive: not a torch.save file", path,
                     z.prefix);
    if (rc == WAN_OK && (bo = zip_record(&z, "byteorder", 9)) && bo->size == 3 && !memcmp(buf + bo->off, "big", 3))
        rc = wan_err(err, WAN_ERR_UNSUPPORTED, "%s: the archive was written on a big-endian machine", path);
    unpickler u = { .path = path, .z = &z, .err = err };
    if (rc == WAN_OK) {
        snprintf(u.entry, sizeof u.entry, "%s/data.pkl", z.prefix);
        u.p = buf + pkl->off;
        u.n = (size_t)pkl->size;
        rc = unpickle(&u, out);
    }
    unpickler_free(&u);
    wan_free(z.e);
    if (rc == WAN_OK && !(out->path = wan_strdup(path)))
        rc = wan_err(err, WAN_ERR_NOMEM, "%s: out of memory", path);
    if (rc != WAN_OK) {
        wan_st_file_clear(out);
        return rc;
    }
    out->size = size;
    return WAN_OK;
}
