/* core.h — internal foundation shared by every component: errors, counted allocation, logging,
 * tensors, arenas. Not part of the public API. */
#ifndef WAN_CORE_H
#define WAN_CORE_H

#include "wan.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors ----------------------------------------------------------------------------------- */

#define WAN_ERRMSG_MAX 1024

/* An error being reported up the stack: a code and a message that says what and where. */
typedef struct wan_error {
    wan_status code;
    char msg[WAN_ERRMSG_MAX];
} wan_error;

/* Sets err (may be NULL) to code + formatted message and returns code, so that callers can write
 * `return wan_err(err, WAN_ERR_FORMAT, "%s: ...", path);`. */
wan_status wan_err(wan_error *err, wan_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the message already in err with more context ("loading vae: " + old message). */
wan_status wan_err_wrap(wan_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Copies err into a caller's buffer (public API boundary). */
void wan_err_copy(const wan_error *err, char *buf, size_t len);

/* Internal invariant check: logs file:line and returns WAN_ERR_INTERNAL from the calling function. */
#define WAN_ASSERT(cond, err)                                                                     \
    do {                                                                                          \
        if (!(cond))                                                                              \
            return wan_err((err), WAN_ERR_INTERNAL, "internal error: %s at %s:%d", #cond,         \
                           __FILE__, __LINE__);                                                   \
    } while (0)

/* ---- logging ---------------------------------------------------------------------------------- */

void wan_log(wan_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define wan_log_warn(...) wan_log(WAN_LOG_WARN, __VA_ARGS__)
#define wan_log_info(...) wan_log(WAN_LOG_INFO, __VA_ARGS__)
#define wan_log_debug(...) wan_log(WAN_LOG_DEBUG, __VA_ARGS__)

/* ---- counted allocation (the one choke point for host memory) -------------------------------- */

/* 64-byte aligned allocation; contents undefined. Returns NULL on failure or when fault injection
 * says so. wan_free(NULL) is a no-op. Thread-safe. */
void *wan_malloc(size_t size);
/* Zeroed 64-byte aligned allocation of n*size bytes (overflow-checked). */
void *wan_calloc(size_t n, size_t size);
/* Resizes a block from wan_malloc (NULL allowed); on failure the old block is untouched. */
void *wan_realloc(void *p, size_t size);
void wan_free(void *p);
/* strdup through the counted allocator. */
char *wan_strdup(const char *s);
/* Formatted string through the counted allocator; NULL on failure. */
char *wan_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Fault injection for tests: the n-th allocation from now (1 = the next) fails, and every one after
 * it succeeds again. 0 disables. Returns the number of allocations made since the last call. */
long wan_mem_fail_after(long n);

/* ---- tensors ---------------------------------------------------------------------------------- */

#define WAN_MAX_DIMS 5

/* A view of typed data: element counts ne[] in row-major order (ne[0] outermost, as in PyTorch) and
 * byte strides nb[]. `data` is borrowed unless the tensor was made by wan_tensor_new. */
typedef struct wan_tensor {
    wan_dtype dtype;
    int ndim;
    int64_t ne[WAN_MAX_DIMS];
    int64_t nb[WAN_MAX_DIMS];
    void *data;
    const char *name; /* borrowed, may be NULL */
    /* q8_0 weights only (dtype I8, 2-D [N, K], K a multiple of WAN_Q8_BLOCK): the F16 scale of each block of
     * WAN_Q8_BLOCK consecutive values of a row, [N, K / WAN_Q8_BLOCK] row-major, so that value k of row n is
     * data[n][k] · f32(qscale[n][k / WAN_Q8_BLOCK]). NULL for every other tensor. Borrowed. */
    const uint16_t *qscale;
    /* F8_E4M3 / F8_E5M2 weights only: value = f32(data) · wscale (the per-tensor scale of a ComfyUI "fp8 scaled"
     * checkpoint); 0 means 1. */
    float wscale;
} wan_tensor;

/* Values per scale of q8_0 weights (docs/MODEL.md "Quantised weights"). */
#define WAN_Q8_BLOCK 32

/* Number of elements. */
int64_t wan_tensor_numel(const wan_tensor *t);
/* Bytes spanned by a contiguous tensor. */
size_t wan_tensor_nbytes(const wan_tensor *t);
/* True when strides describe a dense row-major layout. */
bool wan_tensor_is_contiguous(const wan_tensor *t);
/* Makes a contiguous view header over data (borrowed). ndim <= WAN_MAX_DIMS. */
wan_tensor wan_tensor_view(wan_dtype dtype, int ndim, const int64_t *ne, void *data);
/* Formats the shape as "[1, 16, 3, 8, 12]" into buf; returns buf. */
const char *wan_shape_str(int ndim, const int64_t *ne, char *buf, size_t len);

/* ---- arena: bump allocation for activations, sized up front ----------------------------------- */

typedef struct wan_arena {
    uint8_t *base;
    size_t cap;
    size_t used;
    size_t high; /* high-water mark */
} wan_arena;

wan_status wan_arena_init(wan_arena *a, size_t cap, wan_error *err);
/* 64-byte aligned block from the arena, or NULL when it is full. */
void *wan_arena_alloc(wan_arena *a, size_t size);
/* Everything allocated after `mark` (a previous value of a->used) is released. */
void wan_arena_reset(wan_arena *a, size_t mark);
void wan_arena_free(wan_arena *a);

/* ---- numeric conversions ---------------------------------------------------------------------- */

static inline float wan_bf16_to_f32(uint16_t h)
{
    union { uint32_t u; float f; } v = { .u = (uint32_t)h << 16 };
    return v.f;
}
/* Round-to-nearest-even, NaN kept quiet. */
uint16_t wan_f32_to_bf16(float f);
float wan_f16_to_f32(uint16_t h);
uint16_t wan_f32_to_f16(float f);
/* float8 (torch.float8_e4m3fn: bias 7, no infinities, S.1111.111 is NaN; torch.float8_e5m2: the top byte of an
 * IEEE half) to f32, exactly. */
float wan_f8e4m3_to_f32(uint8_t b);
static inline float wan_f8e5m2_to_f32(uint8_t b) { return wan_f16_to_f32((uint16_t)(b << 8)); }
/* Whether dt is one of the two float8 dtypes. */
static inline bool wan_dtype_is_f8(wan_dtype dt) { return dt == WAN_DTYPE_F8_E4M3 || dt == WAN_DTYPE_F8_E5M2; }

/* ---- tensor names ----------------------------------------------------------------------------- */

/* Parses "<int>." (at most 6 digits) at the start of s, as in "12.attn1...": stores the int and returns
 * the text after the dot, or NULL when s does not start that way. */
const char *wan_name_index(const char *s, int *out);

/* ---- files ------------------------------------------------------------------------------------ */

/* Reads a whole file into a NUL-terminated counted buffer. *len excludes the NUL. */
wan_status wan_read_file(const char *path, char **out, size_t *len, wan_error *err);
bool wan_path_is_dir(const char *path);
bool wan_path_is_file(const char *path);
/* dir + "/" + name through the counted allocator; NULL on failure. */
char *wan_path_join(const char *dir, const char *name);

#endif /* WAN_CORE_H */
