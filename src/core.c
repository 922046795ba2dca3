/* core.c — errors, logging, counted allocation, tensors, arenas, conversions, file helpers. */
#define _POSIX_C_SOURCE 200809L
#include "core.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- status ----------------------------------------------------------------------------------- */

const char *wan_status_str(wan_status rc)
{
    switch (rc) {
    case WAN_OK: return "ok";
    case WAN_ERR_IO: return "i/o error";
    case WAN_ERR_FORMAT: return "malformed file";
    case WAN_ERR_SHAPE: return "shape or dtype mismatch";
    case WAN_ERR_NOMEM: return "out of memory";
    case WAN_ERR_INVALID_ARG: return "invalid argument";
    case WAN_ERR_UNSUPPORTED: return "unsupported";
    case WAN_ERR_NOT_FOUND: return "not found";
    case WAN_ERR_CANCELLED: return "cancelled";
    case WAN_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

const char *wan_version(void) { return WAN_VERSION_STRING; }

wan_status wan_err(wan_error *err, wan_status code, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

wan_status wan_err_wrap(wan_error *err, const char *fmt, ...)
{
    if (!err)
        return WAN_ERR_INTERNAL;
    char old[WAN_ERRMSG_MAX];
    memcpy(old, err->msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof err->msg - 1) {
        size_t room = sizeof err->msg - 1 - (size_t)n, len = strnlen(old, sizeof old - 1);
        memcpy(err->msg + n, old, len < room ? len : room);
        err->msg[(size_t)n + (len < room ? len : room)] = 0;
    }
    return err->code;
}

void wan_err_copy(const wan_error *err, char *buf, size_t len)
{
    if (!buf || len == 0)
        return;
    snprintf(buf, len, "%s", err ? err->msg : "");
}

/* ---- logging ---------------------------------------------------------------------------------- */

static wan_log_fn g_log_fn;
static void *g_log_user;
static wan_log_level g_log_max = WAN_LOG_INFO;

void wan_log_set(wan_log_fn fn, void *user, wan_log_level max_level)
{
    g_log_fn = fn;
    g_log_user = user;
    g_log_max = max_level;
}

void wan_log(wan_log_level level, const char *fmt, ...)
{
    if (!g_log_fn || level > g_log_max)
        return;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    g_log_fn(level, buf, g_log_user);
}

/* ---- counted allocation ----------------------------------------------------------------------- */

#define WAN_ALIGN 64
static atomic_size_t g_mem_cur, g_mem_peak;
static atomic_long g_alloc_count, g_fail_at;

size_t wan_mem_current(void) { return atomic_load(&g_mem_cur); }
size_t wan_mem_peak(void) { return atomic_load(&g_mem_peak); }
void wan_mem_reset_peak(void) { atomic_store(&g_mem_peak, atomic_load(&g_mem_cur)); }

long wan_mem_fail_after(long n)
{
    long made = atomic_exchange(&g_alloc_count, 0);
    atomic_store(&g_fail_at, n);
    return made;
}

static void mem_add(size_t n)
{
    size_t cur = atomic_fetch_add(&g_mem_cur, n) + n;
    size_t peak = atomic_load(&g_mem_peak);
    while (cur > peak && !atomic_compare_exchange_weak(&g_mem_peak, &peak, cur))
        ;
}

void *wan_malloc(size_t size)
{
    long k = atomic_fetch_add(&g_alloc_count, 1) + 1;
    long fail_at = atomic_load(&g_fail_at);
    if (fail_at > 0 && k == fail_at)
        return NULL;
    if (size > SIZE_MAX - WAN_ALIGN)
        return NULL;
    void *base = NULL;
    if (posix_memalign(&base, WAN_ALIGN, size + WAN_ALIGN) != 0)
        return NULL;
    *(size_t *)base = size;
    mem_add(size);
    return (uint8_t *)base + WAN_ALIGN;
}

void *wan_calloc(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = wan_malloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void wan_free(void *p)
{
    if (!p)
        return;
    uint8_t *base = (uint8_t *)p - WAN_ALIGN;
    atomic_fetch_sub(&g_mem_cur, *(size_t *)base);
    free(base);
}

void *wan_realloc(void *p, size_t size)
{
    void *q = wan_malloc(size);
    if (!q)
        return NULL;
    if (p) {
        size_t old = *(size_t *)((uint8_t *)p - WAN_ALIGN);
        memcpy(q, p, old < size ? old : size);
        wan_free(p);
    }
    return q;
}

char *wan_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = wan_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

char *wan_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = wan_malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* ---- dtypes and tensors ----------------------------------------------------------------------- */

static const struct { const char *name; size_t size; } k_dtypes[WAN_DTYPE_COUNT] = {
    [WAN_DTYPE_F32] = { "F32", 4 },         [WAN_DTYPE_F16] = { "F16", 2 },
    [WAN_DTYPE_BF16] = { "BF16", 2 },       [WAN_DTYPE_F64] = { "F64", 8 },
    [WAN_DTYPE_I64] = { "I64", 8 },         [WAN_DTYPE_I32] = { "I32", 4 },
    [WAN_DTYPE_I16] = { "I16", 2 },         [WAN_DTYPE_I8] = { "I8", 1 },
    [WAN_DTYPE_U8] = { "U8", 1 },           [WAN_DTYPE_BOOL] = { "BOOL", 1 },
    [WAN_DTYPE_F8_E4M3] = { "F8_E4M3", 1 }, [WAN_DTYPE_F8_E5M2] = { "F8_E5M2", 1 },
};

const char *wan_dtype_name(wan_dtype t)
{
    return ((unsigned)t < WAN_DTYPE_COUNT) ? k_dtypes[t].name : "?";
}

size_t wan_dtype_size(wan_dtype t)
{
    return ((unsigned)t < WAN_DTYPE_COUNT) ? k_dtypes[t].size : 0;
}

int64_t wan_tensor_numel(const wan_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->ne[i];
    return n;
}

size_t wan_tensor_nbytes(const wan_tensor *t)
{
    return (size_t)wan_tensor_numel(t) * wan_dtype_size(t->dtype);
}

bool wan_tensor_is_contiguous(const wan_tensor *t)
{
    int64_t expect = (int64_t)wan_dtype_size(t->dtype);
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->ne[i] != 1 && t->nb[i] != expect)
            return false;
        expect *= t->ne[i];
    }
    return true;
}

wan_tensor wan_tensor_view(wan_dtype dtype, int ndim, const int64_t *ne, void *data)
{
    wan_tensor t = { .dtype = dtype, .ndim = ndim, .data = data };
    int64_t stride = (int64_t)wan_dtype_size(dtype);
    for (int i = ndim - 1; i >= 0; i--) {
        t.ne[i] = ne[i];
        t.nb[i] = stride;
        stride *= ne[i];
    }
    return t;
}

const char *wan_shape_str(int ndim, const int64_t *ne, char *buf, size_t len)
{
    size_t off = 0;
    if (len == 0)
        return buf;
    buf[0] = 0;
    off += (size_t)snprintf(buf + off, len - off, "[");
    for (int i = 0; i < ndim && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, i ? ", %lld" : "%lld", (long long)ne[i]);
    if (off < len)
        snprintf(buf + off, len - off, "]");
    return buf;
}

/* ---- arena ------------------------------------------------------------------------------------ */

wan_status wan_arena_init(wan_arena *a, size_t cap, wan_error *err)
{
    memset(a, 0, sizeof *a);
    a->base = wan_malloc(cap ? cap : 1);
    if (!a->base)
        return wan_err(err, WAN_ERR_NOMEM, "arena: cannot allocate %zu bytes", cap);
    a->cap = cap;
    return WAN_OK;
}

void *wan_arena_alloc(wan_arena *a, size_t size)
{
    size_t start = (a->used + WAN_ALIGN - 1) & ~(size_t)(WAN_ALIGN - 1);
    if (start > a->cap || size > a->cap - start)
        return NULL;
    a->used = start + size;
    if (a->used > a->high)
        a->high = a->used;
    return a->base + start;
}

void wan_arena_reset(wan_arena *a, size_t mark)
{
    if (mark <= a->used)
        a->used = mark;
}

void wan_arena_free(wan_arena *a)
{
    wan_free(a->base);
    memset(a, 0, sizeof *a);
}

/* ---- conversions ------------------------------------------------------------------------------ */

uint16_t wan_f32_to_bf16(float f)
{
    union { float f; uint32_t u; } v = { .f = f };
    if ((v.u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((v.u >> 16) | 0x40);
    v.u += 0x7fffu + ((v.u >> 16) & 1u);
    return (uint16_t)(v.u >> 16);
}

float wan_f8e4m3_to_f32(uint8_t b)
{
    const int e = (b >> 3) & 15, m = b & 7;
    float v = e == 15 && m == 7 ? NAN : e ? ldexpf(1.0f + (float)m / 8.0f, e - 7) : ldexpf((float)m, -9);
    return b & 0x80 ? -v : v;
}

float wan_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    union { uint32_t u; float f; } v;
    if (exp == 0) {
        float m = ldexpf((float)man, -24);
        return sign ? -m : m;
    }
    if (exp == 31)
        v.u = sign | 0x7f800000u | (man << 13);
    else
        v.u = sign | ((exp + 112) << 23) | (man << 13);
    return v.f;
}

uint16_t wan_f32_to_f16(float f)
{
    union { float f; uint32_t u; } v = { .f = f };
    uint32_t sign = (v.u >> 16) & 0x8000;
    uint32_t absu = v.u & 0x7fffffffu;
    if (absu > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00);
    if (absu >= 0x47800000u) /* >= 65536: overflow to inf (65520 rounds up too) */
        return (uint16_t)(sign | 0x7c00);
    if (absu < 0x38800000u) { /* subnormal or zero in f16 */
        float a = fabsf(f) * 16777216.0f; /* 2^24 */
        uint32_t m = (uint32_t)lrintf(a);
        return (uint16_t)(sign | m);
    }
    uint32_t e = (absu >> 23) - 112, m = absu & 0x7fffff;
    uint32_t r = (e << 10) | (m >> 13);
    uint32_t rem = m & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1)))
        r++;
    return (uint16_t)(sign | r);
}

/* ---- tensor names ----------------------------------------------------------------------------- */

const char *wan_name_index(const char *s, int *out)
{
    int v = 0, n = 0;
    while (s[n] >= '0' && s[n] <= '9' && n < 6)
        v = v * 10 + (s[n++] - '0');
    if (!n || s[n] != '.')
        return NULL;
    *out = v;
    return s + n + 1;
}

/* ---- files ------------------------------------------------------------------------------------ */

wan_status wan_read_file(const char *path, char **out, size_t *len, wan_error *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return wan_err(err, errno == ENOENT ? WAN_ERR_NOT_FOUND : WAN_ERR_IO, "%s: cannot open: %s",
                       path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return wan_err(err, WAN_ERR_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    char *buf = wan_malloc(n + 1);
    if (!buf) {
        fclose(f);
        return wan_err(err, WAN_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, n + 1);
    }
    if (n && fread(buf, 1, n, f) != n) {
        fclose(f);
        wan_free(buf);
        return wan_err(err, WAN_ERR_IO, "%s: short read", path);
    }
    fclose(f);
    buf[n] = 0;
    *out = buf;
    if (len)
        *len = n;
    return WAN_OK;
}

bool wan_path_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool wan_path_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

char *wan_path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    return wan_asprintf("%.*s/%s", (int)n, dir, name);
}
