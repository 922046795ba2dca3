/* safetensors.h — memory-mapped safetensors files and sharded checkpoints (internal). */
#ifndef WAN_SAFETENSORS_H
#define WAN_SAFETENSORS_H

#include "core.h"

#define WAN_ST_MAX_DIMS 8
#define WAN_ST_MAX_HEADER (100u * 1024u * 1024u) /* same cap as the reference implementation */

/* One tensor entry of a safetensors header. `data` points into the file mapping (zero-copy). */
typedef struct wan_st_tensor {
    char *name;
    wan_dtype dtype;
    int ndim;
    int64_t shape[WAN_ST_MAX_DIMS];
    uint64_t begin, end;  /* byte offsets relative to the data area */
    const uint8_t *data;  /* file base + data area + begin; NULL when parsed without a mapping */
} wan_st_tensor;

/* One parsed (and usually mapped) safetensors file. */
typedef struct wan_st_file {
    char *path;
    const uint8_t *map;   /* whole file, or NULL */
    size_t size;          /* file size in bytes */
    uint64_t header_len;
    int n_tensors;
    wan_st_tensor *tensors; /* sorted by name */
} wan_st_file;

/* Parses and validates the header of a safetensors file held in memory (`buf`, `size` bytes: the
 * whole file). Checks: header length inside the file and under WAN_ST_MAX_HEADER, valid JSON object,
 * known dtypes, non-negative integral shapes and offsets, numel x dtype size == byte span, offsets
 * inside the data area, no overlapping tensors, no duplicate names. Tensor views point into `buf`.
 * `path` is only used in messages. On success fills *out (caller frees with wan_st_file_clear).
 * On failure *out is left empty and err names the file, tensor and byte offset. */
wan_status wan_st_parse(const char *path, const uint8_t *buf, size_t size, wan_st_file *out,
                        wan_error *err);

/* Frees what wan_st_parse allocated (not the buffer). */
void wan_st_file_clear(wan_st_file *f);

/* Opens, maps and parses a file. On success *out is owned by the caller (wan_st_close). */
wan_status wan_st_open(const char *path, wan_st_file **out, wan_error *err);

/* Unmaps and frees. NULL allowed. */
void wan_st_close(wan_st_file *f);

/* Binary search by exact name; NULL when absent. */
const wan_st_tensor *wan_st_find(const wan_st_file *f, const char *name);

/* ---- a set of files seen as one checkpoint (single file or sharded via an index) -------------- */

typedef struct wan_st_entry {
    const char *name;            /* lookup name (after renaming); owned by the set */
    const wan_st_tensor *t;      /* borrowed from files[file] */
    int file;
    char *owned;                 /* the name's storage after wan_st_set_rename, else NULL */
} wan_st_entry;

typedef struct wan_st_set {
    char *dir;
    char *index_path;           /* NULL for a single file */
    int n_files;
    wan_st_file **files;
    int n;                      /* entries */
    wan_st_entry *entries;      /* sorted by name */
} wan_st_set;

/* Opens every weight file of a component folder. Looks, in this order, for
 * `<base>.safetensors.index.json`, `<base>.safetensors` for base in {diffusion_pytorch_model, model}
 * (with the optional diffusers variant `fp16`/`bf16`), then for a single `*.safetensors.index.json`,
 * then a single `*.safetensors`. Every tensor the index names must be in the shard it names.
 * On success *out is owned by the caller (wan_st_set_free). */
wan_status wan_st_set_open_dir(const char *dir, wan_st_set **out, wan_error *err);

/* Opens a sharded checkpoint through its index file. */
wan_status wan_st_set_open_index(const char *index_path, wan_st_set **out, wan_error *err);

/* Opens one safetensors file as a set. */
wan_status wan_st_set_open_file(const char *path, wan_st_set **out, wan_error *err);

/* Renames every entry: fn writes the new name for `name` into buf (returns 0 to keep the old name).
 * Fails when two tensors end up with the same name. */
typedef int (*wan_st_rename_fn)(const char *name, char *buf, size_t len, void *user);
wan_status wan_st_set_rename(wan_st_set *s, wan_st_rename_fn fn, void *user, wan_error *err);

/* Entry by name or NULL. */
const wan_st_entry *wan_st_set_find(const wan_st_set *s, const char *name);

/* Looks up `name` and checks its dtype is one of F32/F16/BF16 and its shape equals shape[0..ndim).
 * On success fills *out with a view (data borrowed from the mapping). Errors name the file and the
 * tensor and give the expected and actual shapes. */
wan_status wan_st_set_get(const wan_st_set *s, const char *name, int ndim, const int64_t *shape,
                          wan_tensor *out, wan_error *err);

/* Looks up the 2-D weight `name` of a linear layer, [N, K]: F32/F16/BF16 as wan_st_set_get; q8_0: `name`
 * of dtype I8 with `<name>_scale` of dtype F16, [N, K / WAN_Q8_BLOCK] (K a multiple of WAN_Q8_BLOCK), given as an
 * I8 view with out->qscale set; q4_0: `name` of dtype U8 [N, K / 2] with the same scales, given as a U8 view of ne
 * [N, K] (quant.h) with out->qscale set; or float8 (F8_E4M3, F8_E5M2) with an optional per-tensor scale, given in
 * out->wscale (see get_f8_weight in safetensors.c for the names). Errors as wan_st_set_get's, and for a missing or
 * misshapen scale tensor. */
wan_status wan_st_set_get_weight(const wan_st_set *s, const char *name, int64_t N, int64_t K, wan_tensor *out,
                                 wan_error *err);

/* Whether entry e of s is a quantised weight that wan_st_set_get_weight binds (q8_0, q4_0, float8, 2-D); its view in
 * *view. */
bool wan_st_set_quantised(const wan_st_set *s, const wan_st_entry *e, wan_tensor *view);

/* The quantised weight entry e belongs to, or NULL: "<weight>_scale" (q8_0/q4_0 scales, ComfyUI's weight_scale), and
 * ComfyUI's "<module>.scale_weight", ".comfy_quant", ".input_scale", ".scale_input" beside a float8
 * "<module>.weight". The owner's view in *view. */
const wan_st_entry *wan_st_set_aux_owner(const wan_st_set *s, const wan_st_entry *e, wan_tensor *view);

/* Tells the kernel the mapped pages of every file may be dropped (madvise MADV_DONTNEED): the
 * memory a component used is given back while its mapping stays valid (pages are read from the file
 * again if touched). */
void wan_st_set_release(const wan_st_set *s);

void wan_st_set_free(wan_st_set *s);

#endif /* WAN_SAFETENSORS_H */
