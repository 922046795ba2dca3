/*
 * wan.h — the public API of wan.c, a C11 inference engine for the Wan2.x text-to-video models.
 *
 * Usage (error handling shortened):
 *
 *     char err[512];
 *     wan_model_t *model;
 *     wan_ctx_t *ctx;
 *     if (wan_model_load("Wan2.2-T2V-A14B-Diffusers", NULL, &model, err, sizeof err) != WAN_OK)
 *         return fprintf(stderr, "%s\n", err), 1;
 *     wan_ctx_new(model, &ctx, err, sizeof err);
 *     wan_generate_params p = wan_generate_default_params(model);   // 1280x720, 81 frames, 40 steps
 *     p.prompt = "a corgi surfing a wave at sunset";
 *     p.seed = 42;
 *     wan_video v;
 *     if (wan_generate(ctx, &p, &v) != WAN_OK)
 *         fprintf(stderr, "%s\n", wan_ctx_errmsg(ctx));
 *     else
 *         wan_video_write("corgi.mp4", v.frames, v.num_frames, v.height, v.width, v.fps, NULL, err, sizeof err);
 *     wan_video_free(&v);
 *     wan_ctx_free(ctx);
 *     wan_model_free(model);
 *
 * Conventions used throughout this header:
 * - Every fallible call returns a wan_status: WAN_OK (0) on success, a negative code on failure.
 *   wan_status_str() names the code; calls that take an `err` buffer write a message into it that says
 *   what failed and where (file, tensor name, byte offset). The buffer is always NUL-terminated when
 *   errlen > 0, and may be NULL.
 * - Output handles are written only on success; on failure they are left NULL.
 * - Objects returned through `**out` parameters are owned by the caller and freed with the matching
 *   *_free() function. Pointers returned by getters borrow from their owner and stay valid until it is freed.
 * - Thread safety: a loaded wan_model_t is read-only and may be shared by threads. Functions that do not
 *   take a model are thread-safe unless stated otherwise.
 * - The library never calls exit(), abort() or prints; messages go through the log callback.
 */
#ifndef WAN_H
#define WAN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WAN_VERSION_STRING "0.1.0"

/* ---------------------------------------------------------------------------------------------
 * Status codes
 * ------------------------------------------------------------------------------------------- */
typedef enum wan_status {
    WAN_OK = 0,
    WAN_ERR_IO = -1,          /* a file could not be opened, read, mapped or written          */
    WAN_ERR_FORMAT = -2,      /* a file is malformed (bad JSON, corrupt safetensors header)   */
    WAN_ERR_SHAPE = -3,       /* a tensor has the wrong shape or dtype for the config         */
    WAN_ERR_NOMEM = -4,       /* an allocation failed                                         */
    WAN_ERR_INVALID_ARG = -5, /* a caller passed a bad argument                               */
    WAN_ERR_UNSUPPORTED = -6, /* valid input that this build does not handle (class, dtype)   */
    WAN_ERR_NOT_FOUND = -7,   /* a file, component or tensor that must exist is missing        */
    WAN_ERR_CANCELLED = -8,   /* a progress callback or wan_ctx_cancel() stopped the call     */
    WAN_ERR_INTERNAL = -9     /* an internal invariant failed: a bug, please report it         */
} wan_status;

/* Returns a static, human-readable name for a status code ("ok", "i/o error", ...). Never NULL. */
const char *wan_status_str(wan_status rc);

/* Returns the library version, e.g. "0.1.0". Static string. */
const char *wan_version(void);

/* ---------------------------------------------------------------------------------------------
 * Logging
 * ------------------------------------------------------------------------------------------- */
typedef enum wan_log_level {
    WAN_LOG_ERROR = 0,
    WAN_LOG_WARN = 1,
    WAN_LOG_INFO = 2,
    WAN_LOG_DEBUG = 3
} wan_log_level;

typedef void (*wan_log_fn)(wan_log_level level, const char *msg, void *user);

/* Sets the log callback and the most verbose level passed to it (default: no callback, nothing is
 * logged). `msg` is one line without a trailing newline and is only valid during the call. Passing
 * fn = NULL silences the library. Not thread-safe with respect to concurrent logging: set it once at
 * start-up, before other threads call the library. */
void wan_log_set(wan_log_fn fn, void *user, wan_log_level max_level);

/* ---------------------------------------------------------------------------------------------
 * Memory accounting
 * ------------------------------------------------------------------------------------------- */
/* Bytes of host memory currently allocated by the library (not counting memory-mapped weights), and
 * the peak since start or since the last wan_mem_reset_peak(). Thread-safe. */
size_t wan_mem_current(void);
size_t wan_mem_peak(void);
void wan_mem_reset_peak(void);

/* ---------------------------------------------------------------------------------------------
 * CPU features
 * ------------------------------------------------------------------------------------------- */
typedef struct wan_cpu_info {
    int avx2;        /* AVX2 + FMA + F16C                                  */
    int avx512;      /* AVX-512 F/BW/DQ/VL                                 */
    int avx512_bf16; /* AVX-512 BF16 dot products                          */
    int amx_bf16;    /* AMX tiles with BF16 products (CPU and OS support)   */
    int n_threads;   /* threads the library uses by default (OpenMP max)   */
} wan_cpu_info;

/* Fills the CPU features detected at run time and the kernel set in use. Thread-safe. */
wan_cpu_info wan_cpu_get_info(void);

/* Name of the kernel set chosen for this CPU: "avx512", "avx2" or "generic". Static string. */
const char *wan_cpu_kernel_name(void);

/* ---------------------------------------------------------------------------------------------
 * Tensor element types (as stored in safetensors files)
 * ------------------------------------------------------------------------------------------- */
typedef enum wan_dtype {
    WAN_DTYPE_F32 = 0,
    WAN_DTYPE_F16,
    WAN_DTYPE_BF16,
    WAN_DTYPE_F64,
    WAN_DTYPE_I64,
    WAN_DTYPE_I32,
    WAN_DTYPE_I16,
    WAN_DTYPE_I8,
    WAN_DTYPE_U8,
    WAN_DTYPE_BOOL,
    WAN_DTYPE_F8_E4M3,
    WAN_DTYPE_F8_E5M2,
    WAN_DTYPE_COUNT
} wan_dtype;

/* Safetensors name of a dtype ("F32", "BF16", ...), or "?" when out of range. Static string. */
const char *wan_dtype_name(wan_dtype t);
/* Size in bytes of one element, or 0 when out of range. */
size_t wan_dtype_size(wan_dtype t);

/* ---------------------------------------------------------------------------------------------
 * Model folders and configs
 * ------------------------------------------------------------------------------------------- */

/* How the files on disk are organised. */
typedef enum wan_layout {
    WAN_LAYOUT_DIFFUSERS_PIPELINE = 0, /* model_index.json + component folders            */
    WAN_LAYOUT_DIFFUSERS_COMPONENT,    /* one folder with config.json + weights           */
    WAN_LAYOUT_ORIGINAL,               /* Wan release: high_noise_model/, low_noise_model/ */
    WAN_LAYOUT_SINGLE_FILE             /* one .safetensors file, config inferred           */
} wan_layout;

/* The parts a pipeline is made of. */
typedef enum wan_component {
    WAN_COMPONENT_TRANSFORMER = 0, /* the DiT; the high-noise expert of a two-expert model */
    WAN_COMPONENT_TRANSFORMER_2,   /* the low-noise expert (Wan2.2 A14B only)              */
    WAN_COMPONENT_TEXT_ENCODER,    /* umT5 encoder                                         */
    WAN_COMPONENT_TOKENIZER,       /* tokenizer.json and/or spiece.model                   */
    WAN_COMPONENT_VAE,             /* AutoencoderKLWan                                     */
    WAN_COMPONENT_SCHEDULER,       /* scheduler_config.json                                */
    WAN_COMPONENT_COUNT
} wan_component;

/* Name of a component as in model_index.json ("transformer", "vae", ...). Static string. */
const char *wan_component_name(wan_component c);
/* Name of a layout ("diffusers pipeline", ...). Static string. */
const char *wan_layout_name(wan_layout l);

/* WanTransformer3DModel config (diffusers field names; original WanModel configs are translated). */
typedef struct wan_transformer_config {
    int patch_size[3];        /* (pt, ph, pw)                                 */
    int num_attention_heads;  /* H                                            */
    int attention_head_dim;   /* hd; D = H * hd                               */
    int in_channels;          /* latent channels in                           */
    int out_channels;         /* latent channels out                          */
    int text_dim;             /* width of the text encoder output             */
    int freq_dim;             /* sinusoid width of the timestep embedding     */
    int ffn_dim;              /* F                                            */
    int num_layers;           /* N blocks                                     */
    int cross_attn_norm;      /* 1: the cross-attention pre-norm has affine params */
    double eps;               /* every LayerNorm / RMSNorm                    */
    int rope_max_seq_len;     /* RoPE table length                            */
    int image_dim;            /* 0 when absent (T2V)                          */
    int added_kv_proj_dim;    /* 0 when absent (T2V)                          */
} wan_transformer_config;

/* AutoencoderKLWan config. Lists hold at most WAN_VAE_MAX_Z entries. */
#define WAN_VAE_MAX_Z 64
typedef struct wan_vae_config {
    int base_dim;
    int decoder_base_dim;      /* equals base_dim when absent                  */
    int z_dim;
    int dim_mult[8];
    int n_dim_mult;
    int num_res_blocks;
    int temporal_downsample[8]; /* "temperal_downsample" in diffusers, n_dim_mult-1 entries */
    int is_residual;
    int in_channels;
    int out_channels;
    int patch_size;             /* 0 when absent (Wan2.1), 2 for Wan2.2        */
    int scale_factor_temporal;
    int scale_factor_spatial;
    float latents_mean[WAN_VAE_MAX_Z]; /* z_dim entries                        */
    float latents_std[WAN_VAE_MAX_Z];  /* z_dim entries                        */
} wan_vae_config;

/* UMT5EncoderModel config. */
typedef struct wan_text_encoder_config {
    int vocab_size;
    int d_model;
    int d_kv;
    int d_ff;
    int num_layers;
    int num_heads;
    int relative_attention_num_buckets;
    int relative_attention_max_distance;
    double layer_norm_epsilon;
    int gated_gelu;             /* feed_forward_proj == "gated-gelu"            */
} wan_text_encoder_config;

typedef enum wan_scheduler_kind {
    WAN_SCHEDULER_UNIPC = 0,
    WAN_SCHEDULER_EULER,
    WAN_SCHEDULER_DPMPP
} wan_scheduler_kind;

/* Scheduler config (UniPCMultistepScheduler / FlowMatchEulerDiscreteScheduler fields). */
typedef struct wan_scheduler_config {
    wan_scheduler_kind kind;
    int num_train_timesteps;
    double flow_shift;          /* "flow_shift" (UniPC) or "shift" (Euler)      */
    int solver_order;
    int use_flow_sigmas;
    int lower_order_final;
    int predict_x0;
    char prediction_type[32];
    char solver_type[16];
    char final_sigmas_type[16];
} wan_scheduler_config;

/* Pipeline-level settings (model_index.json). */
typedef struct wan_pipeline_config {
    double boundary_ratio;      /* < 0 when absent/null (single expert)          */
    int expand_timesteps;       /* per-token timesteps (TI2V-5B)                 */
} wan_pipeline_config;

/* What is known about one component after loading. */
typedef struct wan_component_info {
    int present;                /* 0: the component is absent from this model     */
    const char *class_name;     /* e.g. "WanTransformer3DModel"; borrowed          */
    const char *path;           /* folder or file it was read from; borrowed       */
    int64_t n_tensors;
    int64_t n_params;           /* elements over all tensors but q8_0 scales        */
    int64_t n_bytes;            /* bytes of tensor data on disk                    */
    int64_t bytes_by_dtype[WAN_DTYPE_COUNT];
    int n_files;                /* safetensors files (shards)                      */
    int original_names;         /* 1: tensors carry original Wan names             */
} wan_component_info;

typedef struct wan_model_params {
    int validate_shapes;        /* check every expected tensor against the config (default 1) */
} wan_model_params;

/* Opaque handle: a loaded model (configs + memory-mapped weights). Read-only after load. */
typedef struct wan_model wan_model_t;

/* Default load parameters, by value. */
wan_model_params wan_model_default_params(void);

/* Opens a model: a diffusers pipeline folder (model_index.json), a single diffusers component folder
 * (config.json + safetensors), an original Wan release folder (high_noise_model/ + low_noise_model/, or a
 * WanModel config.json at its root), or one .safetensors file whose config is inferred from tensor shapes.
 * Weights are memory-mapped, not read. `params` may be NULL for the defaults.
 * On success *out owns the model; free it with wan_model_free(). On failure returns an error code,
 * writes a message to err (may be NULL) and leaves *out NULL. */
wan_status wan_model_load(const char *path, const wan_model_params *params, wan_model_t **out,
                          char *err, size_t errlen);

/* Frees a model and unmaps its weights. NULL is allowed. */
void wan_model_free(wan_model_t *model);

/* Layout detected at load. */
wan_layout wan_model_layout(const wan_model_t *model);

/* Path the model was loaded from. Borrowed. */
const char *wan_model_path(const wan_model_t *model);

/* Fills *info for one component; returns WAN_ERR_INVALID_ARG for a bad component index.
 * An absent component gives WAN_OK with info->present == 0. */
wan_status wan_model_component_info(const wan_model_t *model, wan_component c, wan_component_info *info);

/* Typed configs. Each returns NULL when the model has no such component. `expert` is 0 for
 * `transformer` (high-noise) and 1 for `transformer_2` (low-noise). Borrowed. */
const wan_transformer_config *wan_model_transformer_config(const wan_model_t *model, int expert);
const wan_vae_config *wan_model_vae_config(const wan_model_t *model);
const wan_text_encoder_config *wan_model_text_encoder_config(const wan_model_t *model);
const wan_scheduler_config *wan_model_scheduler_config(const wan_model_t *model);
const wan_pipeline_config *wan_model_pipeline_config(const wan_model_t *model);

/* Estimate of the peak host memory (bytes) a generation of `frames` frames at width x height needs with
 * one expert resident, its weights (and the text encoder's) at the size they are stored (F32, BF16, q8_0 ...: they
 * are used in place from the mapping), for planning and for `wan info`. Returns 0 when the model has no
 * transformer. */
int64_t wan_model_estimate_memory(const wan_model_t *model, int width, int height, int frames);

/* ---------------------------------------------------------------------------------------------
 * Tensor files (safetensors) for tools and tests
 * ------------------------------------------------------------------------------------------- */

/* A tensor held in host memory. `data` is owned by whoever filled the struct: tensors read by
 * wan_safetensors_read are released with wan_host_tensor_free. Shapes are row-major (PyTorch order). */
#define WAN_HOST_MAX_DIMS 8
typedef struct wan_host_tensor {
    char name[256];
    wan_dtype dtype;
    int ndim;
    int64_t shape[WAN_HOST_MAX_DIMS];
    void *data;
} wan_host_tensor;

/* Elements of a host tensor (product of its shape). */
int64_t wan_host_tensor_numel(const wan_host_tensor *t);

/* Reads tensor `name` from a safetensors file into newly allocated memory, converted to `want`:
 * WAN_DTYPE_F32 accepts F32/F16/BF16/F64 in the file, WAN_DTYPE_I64 accepts I64/I32/I16/I8/U8,
 * WAN_DTYPE_U8 accepts U8 only. On success fills *out (free with wan_host_tensor_free); on failure
 * returns an error naming the file and the tensor. Thread-safe. */
wan_status wan_safetensors_read(const char *path, const char *name, wan_dtype want, wan_host_tensor *out,
                                char *err, size_t errlen);

/* Frees the data of a tensor filled by wan_safetensors_read and clears it. NULL allowed. */
void wan_host_tensor_free(wan_host_tensor *t);

/* Writes n tensors (F32, F16, BF16, I64, U8 ... any dtype, data contiguous) to a new safetensors file
 * at path (replaced if present; written to a temporary name first, then renamed). Names must be unique
 * and non-empty. Thread-safe. */
wan_status wan_safetensors_write(const char *path, const wan_host_tensor *tensors, int n, char *err,
                                 size_t errlen);

/* ---------------------------------------------------------------------------------------------
 * Tokenizer and prompt cleaning (umT5; what WanPipeline does before the text encoder)
 *
 * The ids are those of the Hugging Face `tokenizers` core reading the model's tokenizer.json (the
 * reference; transformers 5's T5TokenizerFast.from_pretrained is not, see docs/MODEL.md): added tokens
 * (so literal "</s>" or "<extra_id_0>" in a prompt become their ids), the Precompiled/Strip/Replace
 * normalizers, Metaspace, Unigram, the "$A </s>" template, right truncation and right padding.
 * Text is UTF-8; invalid byte sequences are replaced by U+FFFD (as Rust's String::from_utf8_lossy).
 * Thread-safety: a loaded wan_tokenizer_t is read-only; any number of threads may encode with it at
 * once. Every function below is thread-safe (the truncation warning goes through the log callback).
 * ------------------------------------------------------------------------------------------- */

/* Opaque handle: a loaded tokenizer. */
typedef struct wan_tokenizer wan_tokenizer_t;

/* Pass as a text length to mean "NUL-terminated". */
#define WAN_STRLEN ((size_t)-1)

/* Loads a tokenizer from `path`: a tokenizer.json, a spiece.model (rebuilt as transformers' T5Converter
 * does, with extra_ids and legacy read from a tokenizer_config.json beside it; defaults 0 and true), or
 * a folder holding either (checked in this order: tokenizer.json, tokenizer/tokenizer.json,
 * spiece.model, tokenizer/spiece.model; a diffusers pipeline folder works). On success *out owns the
 * tokenizer (free with wan_tokenizer_free). Errors: WAN_ERR_NOT_FOUND, WAN_ERR_IO, WAN_ERR_FORMAT (the
 * message names the file and the JSON field or byte offset), WAN_ERR_UNSUPPORTED (a model, normalizer
 * or pre-tokenizer type other than those umT5 uses), WAN_ERR_NOMEM. */
wan_status wan_tokenizer_load(const char *path, wan_tokenizer_t **out, char *err, size_t errlen);

/* Frees a tokenizer. NULL is allowed. */
void wan_tokenizer_free(wan_tokenizer_t *tok);

/* Number of ids (model vocabulary and added tokens). */
int wan_tokenizer_vocab_size(const wan_tokenizer_t *tok);
/* The piece text of an id (borrowed, NUL-terminated), or NULL when out of range. */
const char *wan_tokenizer_id_to_piece(const wan_tokenizer_t *tok, int32_t id);
/* Id of "<pad>", or -1 when the tokenizer has none. */
int32_t wan_tokenizer_pad_id(const wan_tokenizer_t *tok);

typedef struct wan_encode_params {
    int max_length; /* > 0: truncate to this many ids incl. "</s>", as transformers' truncation=True
                       (a warning is logged); <= 0: no limit. Default 512 (WanPipeline).             */
    int pad;        /* 1: right-pad with <pad> to max_length (padding="max_length"). Default 1.       */
    int clean;      /* 1: run wan_prompt_clean first (WanPipeline does). Default 1.                   */
    int ftfy;       /* with clean: 1 = the ftfy subset is applied (ftfy installed). Default 1.        */
} wan_encode_params;

/* Defaults, by value: max_length 512, pad 1, clean 1, ftfy 1 (exactly WanPipeline's call). */
wan_encode_params wan_encode_default_params(void);

/* The result of an encode: n ids, the first n_real of them real (mask 1), the rest padding (mask 0). */
typedef struct wan_tokens {
    int32_t *ids;
    int32_t *mask;          /* attention mask, 1 for real tokens and "</s>", 0 for padding       */
    int n;                  /* entries in ids and mask                                           */
    int n_real;             /* = sum(mask)                                                       */
    int truncated;          /* 1 when ids were cut to max_length                                 */
    int64_t n_untruncated;  /* ids (with specials) before truncation                             */
} wan_tokens;

/* Encodes text[0..len) (len = WAN_STRLEN: NUL-terminated). `params` may be NULL for the defaults.
 * On success fills *out (free with wan_tokens_free). Errors: WAN_ERR_INVALID_ARG (NULL arguments,
 * padding without a <pad> token, an unknown character with no unk id), WAN_ERR_NOMEM. */
wan_status wan_tokenizer_encode(const wan_tokenizer_t *tok, const char *text, size_t len,
                                const wan_encode_params *params, wan_tokens *out, char *err, size_t errlen);

/* Frees the arrays of a wan_tokens and clears it. NULL is allowed. */
void wan_tokens_free(wan_tokens *tokens);

/* WanPipeline's prompt_clean: ftfy.fix_text (the subset documented in docs/MODEL.md, only when `ftfy`
 * is 1), html.unescape twice, strip, every run of Unicode whitespace -> one space, strip.
 * On success *out is a new NUL-terminated UTF-8 string (free with wan_string_free) of *out_len bytes
 * (out_len may be NULL). Errors: WAN_ERR_INVALID_ARG, WAN_ERR_NOMEM. */
wan_status wan_prompt_clean(const char *text, size_t len, int ftfy, char **out, size_t *out_len, char *err,
                            size_t errlen);

/* Frees a string returned by the library. NULL is allowed. */
void wan_string_free(char *s);

/* The default negative prompt of the official Wan2.2 release (sample_neg_prompt, Chinese, UTF-8).
 * diffusers' WanPipeline uses "" when negative_prompt is None; the official scripts use this one.
 * Static string. */
const char *wan_default_negative_prompt(void);

/* ---------------------------------------------------------------------------------------------
 * Text encoding (the umT5 encoder: token ids -> prompt_embeds)
 *
 * Computed in f32 with the weights as stored (F32/F16/BF16, memory-mapped); every buffer the encoder
 * needs is freed before the call returns, so wan_mem_current() grows only by the returned tensor.
 * Thread-safety: the model is only read, so calls on different threads may share it; each call uses
 * n_threads OpenMP threads (<= 0: the OpenMP default) and sets the process-wide OpenBLAS thread count
 * to the same number.
 * ------------------------------------------------------------------------------------------- */

/* WanPipeline's prompt embedding of one tokenized prompt: ids[0..n_ids) are the real tokens as the
 * tokenizer returns them up to and including </s> (no padding: n_ids = sum of the attention mask).
 * The encoder runs on those n_ids tokens only; the result is trimmed and zero-padded as diffusers'
 * _get_t5_prompt_embeds does: *out = F32 [1, max_length, d_model] with rows >= n_ids exactly 0.
 * max_length is 512 for WanPipeline. Requires 1 <= n_ids <= max_length and every id < vocab_size.
 * On success *out owns its data (free with wan_host_tensor_free); on failure *out is untouched and err
 * says why (no text encoder, bad id, missing or misshapen tensor named with its file, out of memory). */
wan_status wan_text_encode_ids(const wan_model_t *model, const int64_t *ids, int n_ids, int max_length,
                               wan_host_tensor *out, int n_threads, char *err, size_t errlen);

/* The raw encoder, as transformers' UMT5EncoderModel(input_ids, attention_mask).last_hidden_state:
 * ids[0..seq_len), mask (may be NULL: all ones; mask[j] == 0 hides key j from every query), and
 * *out = F32 [1, seq_len, d_model] including the rows of padding positions. For tools and tests; the
 * pipeline uses wan_text_encode_ids. Ownership and errors as wan_text_encode_ids. */
wan_status wan_text_encoder_forward(const wan_model_t *model, const int64_t *ids, const int64_t *mask,
                                    int seq_len, wan_host_tensor *out, int n_threads, char *err,
                                    size_t errlen);

/* WanPipeline.encode_prompt for one prompt: prompt_clean, tokenize (max_length, truncation; ftfy subset
 * on), encode the real tokens, zero-pad: *prompt_embeds = F32 [1, max_length, d_model] (max_length 512
 * for WanPipeline). When negative_prompt_embeds is not NULL, the negative prompt is encoded the same way
 * into it (negative_prompt NULL means "", as diffusers' negative_prompt=None; the official Wan scripts
 * pass wan_default_negative_prompt() instead). `tok` may be NULL: the model's own tokenizer is then
 * loaded for the call and freed again (pass a loaded one to encode many prompts). On success the
 * requested outputs own their data (wan_host_tensor_free); on failure none is written. Errors: those of
 * wan_tokenizer_load/wan_tokenizer_encode and wan_text_encode_ids, WAN_ERR_NOT_FOUND when the model has
 * no tokenizer or text encoder. Thread-safety as wan_text_encode_ids. */
wan_status wan_encode_prompt(const wan_model_t *model, const wan_tokenizer_t *tok, const char *prompt,
                             const char *negative_prompt, int max_length, wan_host_tensor *prompt_embeds,
                             wan_host_tensor *negative_prompt_embeds, int n_threads, char *err, size_t errlen);

/* ---------------------------------------------------------------------------------------------
 * Generation: prompt in, frames out (the WanPipeline)
 * ------------------------------------------------------------------------------------------- */

/* Opaque per-run state: activations, progress, last error, timings. One context is used by one thread
 * at a time; any number of contexts may share one model. */
typedef struct wan_ctx wan_ctx_t;

typedef enum wan_stage {
    WAN_STAGE_TEXT = 0,   /* tokenizing and encoding the prompts         */
    WAN_STAGE_DENOISE,    /* the sampler loop                            */
    WAN_STAGE_DECODE,     /* the VAE, chunk by chunk                     */
    WAN_STAGE_DONE
} wan_stage;

/* What the progress callback is told. */
typedef struct wan_progress {
    wan_stage stage;
    int step;            /* denoise: steps finished (1..n_steps); decode: chunks finished */
    int n_steps;         /* steps (or chunks) in this stage                           */
    int expert;          /* 0 high-noise (transformer), 1 low-noise (transformer_2), -1 none */
    double elapsed_s;    /* seconds since the call started                             */
    double step_s;       /* mean seconds per step of this stage so far (0 unknown)     */
    double eta_s;        /* estimated seconds left for the whole call (< 0 unknown)    */
} wan_progress;

/* Progress callback: called from the thread running wan_generate after each step; return nonzero to
 * cancel (wan_generate then returns WAN_ERR_CANCELLED). */
typedef int (*wan_progress_fn)(const wan_progress *p, void *user);

/* Per-step callback for tools and tests: latents after step `step` (0-based), n floats [1,C,T,h,w]. The
 * pointer is valid only during the call. step == -1 reports the initial latents. */
typedef void (*wan_step_fn)(int step, double timestep, double sigma, const float *latents, int64_t n,
                            void *user);

typedef struct wan_generate_params {
    const char *prompt;              /* required unless prompt_embeds is given                    */
    const char *negative_prompt;     /* NULL: the official Wan default; "": empty (diffusers)     */
    int width, height;               /* pixels; 0: the model's default; rounded down as diffusers */
    int num_frames;                  /* 0: default (81 / 121); rounded to 4k+1 as diffusers        */
    int steps;                       /* 0: default (40 A14B, 50 otherwise)                         */
    double guidance_scale;           /* < 0: default; CFG for the high-noise expert (or the only one) */
    double guidance_scale_2;         /* low-noise expert; < 0: same as guidance_scale, or the recipe's
                                        (3.0 for A14B) when both are < 0; warned about and ignored
                                        on one-expert models                                        */
    double shift;                    /* <= 0: the scheduler config's flow_shift                    */
    int sampler;                     /* < 0: the scheduler config's; else a wan_scheduler_kind      */
    uint64_t seed;                   /* torch CPU generator seed for the initial noise             */
    int n_threads;                   /* 0: OpenMP default                                          */
    const wan_host_tensor *latents;  /* optional initial latents F32 [1,C,T,h,w] (seed unused)      */
    const wan_host_tensor *prompt_embeds;          /* optional F32 [1,512,text_dim]                  */
    const wan_host_tensor *negative_prompt_embeds; /* optional, needed with prompt_embeds when CFG is on */
    wan_progress_fn progress;
    void *progress_user;
    wan_step_fn on_step;
    void *step_user;
    const struct wan_lora_use *loras; /* optional LoRA adapters for this call (see "LoRA adapters"); NULL: none */
    int n_loras;
    int lora_mode;                   /* a wan_lora_mode: how they are applied (0: WAN_LORA_RUNTIME)      */
    const char *device;              /* compute device of the transformer and the sampler: NULL or "cpu"
                                        (default), "cuda" or "cuda:N" (GPU N); borrowed for the call. The
                                        text encoder and the VAE run on the CPU. On a GPU each expert is
                                        uploaded when its first step comes (the other one is released
                                        first: one resident at a time) and the latents stay on the device
                                        until the decode. Checked before any work: WAN_ERR_INVALID_ARG for
                                        an unknown name, WAN_ERR_UNSUPPORTED when the build has no CUDA
                                        ("rebuild with `make cuda`") or no usable device (the driver's
                                        reason), and for on-the-fly LoRA (WAN_LORA_RUNTIME) on a GPU. */
} wan_generate_params;

/* ---------------------------------------------------------------------------------------------
 * LoRA adapters
 *
 * A wan_lora_t is one adapter file, opened (memory-mapped) and parsed once; like a model it is read-only
 * after load and may be shared by any number of threads and requests. Which adapters a generation uses,
 * at what strength and on which expert is a property of the request (wan_generate_params.loras): the model
 * is never changed, so one loaded model can serve requests with different LoRAs at the same time.
 *
 * Key formats (told apart per key by its prefix):
 *   diffusers / PEFT   transformer.blocks.0.attn1.to_q.lora_A.weight, .lora_B.weight, optional .lora_B.bias;
 *                      scale = lora_alpha / r (use_rslora: / sqrt(r); alpha_pattern honoured) from the
 *                      safetensors metadata "lora_adapter_metadata" that diffusers writes, else 1 (alpha = r,
 *                      as diffusers); a non-standard ".alpha" key is honoured too. Prefixes "transformer.",
 *                      "base_model.model." or none.
 *   original / ComfyUI diffusion_model.blocks.0.self_attn.q.lora_down.weight, .lora_up.weight (or lora_A/lora_B),
 *                      .alpha, and full deltas .diff (weight-shaped; also norms, modulation, patch_embedding)
 *                      and .diff_b (bias-shaped)
 *   kohya / musubi     lora_unet_blocks_0_self_attn_q.lora_down.weight, .lora_up.weight, .alpha
 * Low-rank terms change a Linear W [out, in] by ΔW = strength · scale · B·A with scale = alpha / rank when
 * the file gives an alpha (as diffusers' converters fold it), else 1; full deltas add strength · diff
 * (ComfyUI's semantics; diffusers drops or ignores most .diff keys, see docs/MODEL.md).
 * ------------------------------------------------------------------------------------------- */

/* Opaque handle: a loaded adapter file. */
typedef struct wan_lora wan_lora_t;

/* Which expert(s) an adapter applies to. WAN_LORA_DEFAULT is diffusers' load_lora_weights default: the
 * `transformer` (the high-noise expert of Wan2.2 A14B, or the only expert); diffusers' load_into_transformer_2
 * = True is WAN_LORA_LOW. */
typedef enum wan_lora_target {
    WAN_LORA_DEFAULT = 0,
    WAN_LORA_HIGH = 1,  /* transformer (high-noise expert)  */
    WAN_LORA_LOW = 2,   /* transformer_2 (low-noise expert) */
    WAN_LORA_BOTH = 3
} wan_lora_target;

/* How adapters are applied. Results agree to float rounding (merged in BF16/F16 rounds W + ΔW once). */
typedef enum wan_lora_mode {
    WAN_LORA_RUNTIME = 0, /* y = x·Wᵀ + b + (x·Aᵀ)·(s·B)ᵀ per linear: the mapped weights stay untouched and
                             shared; costs ≈ rank·(in+out)/(in·out) more compute (r 64 on 5120²: 2.5%).
                             Full deltas (.diff) are still merged, into an f32 copy of that one weight.  */
    WAN_LORA_MERGE,       /* W' = round(W + ΔW) to the stored dtype, in private copies of every changed
                             weight (made when the expert's steps start, freed when they end): no compute
                             cost, the memory of the changed weights again. q8_0 and q4_0 weights are
                             quantised again (as wan convert does); float8 ones are merged into BF16 copies */
    WAN_LORA_MERGE_F32    /* W' = W + ΔW kept in f32 copies (no rounding; twice the memory of BF16 weights) */
} wan_lora_mode;

/* One adapter of a request. */
typedef struct wan_lora_use {
    const wan_lora_t *lora; /* a loaded adapter, or NULL: `path` is loaded for the call and freed after     */
    const char *path;
    double scale;           /* strength m (diffusers' set_adapters weight / fuse_lora lora_scale); 1 = as
                               trained, 0 = off                                                            */
    wan_lora_target target;
} wan_lora_use;

/* Opens and parses an adapter file (memory-mapped). Every key is mapped to a transformer tensor; keys in no
 * known format (e.g. DoRA's dora_scale, LoCon's lora_mid) are logged by name as warnings and ignored (see
 * wan_lora_info.n_unknown). On success *out owns the adapter (wan_lora_free). Errors: WAN_ERR_IO,
 * WAN_ERR_FORMAT (corrupt safetensors; lora_A without lora_B or the reverse; A and B ranks that differ; a
 * malformed alpha or metadata: the message names the file and the key), WAN_ERR_UNSUPPORTED (a tensor dtype
 * other than F32/F16/BF16, a regular-expression alpha_pattern), WAN_ERR_NOT_FOUND (no key in any known
 * format). Thread-safe. */
wan_status wan_lora_load(const char *path, wan_lora_t **out, char *err, size_t errlen);

/* Frees an adapter. It must not be in use by a running wan_generate. NULL is allowed. */
void wan_lora_free(wan_lora_t *lora);

typedef struct wan_lora_info {
    const char *format;   /* "diffusers", "original", "kohya" (the first key's), borrowed            */
    int n_lowrank;        /* low-rank (A, B) pairs                                                   */
    int n_delta;          /* full deltas (.diff, .diff_b, lora_B.bias)                               */
    int rank_min, rank_max;
    int n_unknown;        /* keys ignored (named in the log at load)                                 */
} wan_lora_info;

/* Describes a loaded adapter. Returns WAN_ERR_INVALID_ARG for NULL arguments. */
wan_status wan_lora_get_info(const wan_lora_t *lora, wan_lora_info *info);

/* Checks an adapter against a model for `target`, as wan_generate does before it starts: every key must fit
 * the shape of the tensor it changes (else WAN_ERR_SHAPE naming the key, the file and both shapes); keys
 * whose tensor the expert lacks are logged as warnings; when none matches, WAN_ERR_NOT_FOUND (an adapter
 * that changes nothing is an error, not a silent no-op). WAN_LORA_LOW on a one-expert model is
 * WAN_ERR_INVALID_ARG. Thread-safe (both are only read). */
wan_status wan_lora_check(const wan_model_t *model, const wan_lora_t *lora, wan_lora_target target, char *err,
                          size_t errlen);

/* A generated clip. Owned by the caller after wan_generate; release with wan_video_free. */
typedef struct wan_video {
    int num_frames, height, width;
    int fps;                  /* the model's default frame rate (16, or 24 for TI2V-5B)          */
    uint8_t *frames;          /* [num_frames, height, width, 3] RGB, uint8 as diffusers' export  */
    float *latents;           /* final latents [1,C,T,h,w] (normalised space), may be NULL       */
    int64_t latents_shape[5];
    int n_steps;              /* sampler steps run                                              */
    float *timesteps;         /* [n_steps] the timesteps fed to the transformer                 */
    float *sigmas;            /* [n_steps + 1] the sampler's sigmas                              */
    int n_high_steps;         /* steps run by the high-noise expert (transformer)               */
    double guidance_scale;    /* the settings in effect after defaults and rounding:             */
    double guidance_scale_2;
    double shift;
    int sampler;              /* wan_scheduler_kind                                              */
    uint64_t seed;
    double seconds_text, seconds_denoise, seconds_decode;
    size_t peak_bytes;        /* library host memory peak during the call                       */
} wan_video;

/* Defaults for a model (steps, CFG, size, frames from the official recipe and the model's configs). */
wan_generate_params wan_generate_default_params(const wan_model_t *model);

/* Creates a context for a model (which must outlive it). On failure writes err and leaves *out NULL. */
wan_status wan_ctx_new(const wan_model_t *model, wan_ctx_t **out, char *err, size_t errlen);

/* Frees a context. NULL allowed. */
void wan_ctx_free(wan_ctx_t *ctx);

/* Message of the last failure on this context ("" when none). Valid until the next call on it. */
const char *wan_ctx_errmsg(const wan_ctx_t *ctx);

/* Asks the running wan_generate on this context to stop at the next step. Safe from any thread or a
 * signal handler. */
void wan_ctx_cancel(wan_ctx_t *ctx);

/* Runs the whole pipeline. On success fills *out (free with wan_video_free). On failure returns an
 * error code, wan_ctx_errmsg() explains, and *out is left empty. Input validation follows diffusers:
 * sizes are rounded with a warning through the log callback; 0 frames or steps < 1 are errors. */
wan_status wan_generate(wan_ctx_t *ctx, const wan_generate_params *params, wan_video *out);

/* Releases what wan_generate put in a wan_video and clears it. NULL allowed. */
void wan_video_free(wan_video *video);

/* Checks that compute device `device` (NULL, "" or "cpu"; "cuda" or "cuda:N") can be used by this build on
 * this machine, by creating its backend and freeing it again (a GPU's context costs a moment). Returns
 * WAN_OK and, when desc_len > 0, a description in desc ("CPU, 16 threads", "NVIDIA H100 80GB HBM3, sm_90,
 * 79 GiB"); WAN_ERR_INVALID_ARG for an unknown name; WAN_ERR_UNSUPPORTED when the build has no CUDA
 * ("rebuild with `make cuda`") or no usable device (err gives the driver's reason). For tools that want to
 * fail at start-up rather than at the first wan_generate. Thread-safe. */
wan_status wan_device_check(const char *device, char *desc, size_t desc_len, char *err, size_t errlen);

/* ---------------------------------------------------------------------------------------------
 * Transformer (DiT): one forward of WanTransformer3DModel
 * ------------------------------------------------------------------------------------------- */

/* Runs one forward of expert `expert` (0: `transformer`, the high-noise expert; 1: `transformer_2`, the
 * low-noise expert) on the CPU, as diffusers' WanTransformer3DModel(hidden_states, timestep,
 * encoder_hidden_states) does:
 *   hidden_states          F32 [B, in_channels, F, H, W]; F, H, W multiples of the patch size
 *   timestep               any integer or float dtype, [B] (one per sample) or [B, tokens] (per token,
 *                          Wan2.2 TI2V `expand_timesteps`; tokens = F/pt · H/ph · W/pw in (f, h, w) order)
 *   encoder_hidden_states  F32 [B, Lt, text_dim]: the text context, already zero-padded (the pipeline pads
 *                          to 512 rows; every row is attended, without a mask)
 * On success fills *out_sample with the flow prediction, F32 [B, out_channels, F, H, W] named "sample";
 * its data is allocated by the library and owned by the caller (free with wan_host_tensor_free). On failure
 * returns WAN_ERR_SHAPE for inputs of the wrong shape (channels, patch multiples, text_dim, timestep shape),
 * WAN_ERR_INVALID_ARG for wrong dtypes, NULL arguments or non-finite timesteps, WAN_ERR_NOT_FOUND when the
 * model has no such expert, WAN_ERR_NOMEM; writes a message to err and leaves *out_sample untouched.
 * Weights are used as stored (F32, BF16 or F16, memory-mapped); compute is f32, with BF16/F16 matrices
 * converted one tile at a time. Activations take about 6·tokens·D·4 bytes plus the text and FFN buffers.
 * n_threads <= 0 uses the OpenMP default. Thread-safety: the model is only read and may be shared by concurrent
 * calls; each call runs its own OpenMP team of n_threads and calls OpenBLAS single-threaded from it (it sets
 * OpenBLAS's process-wide thread count to 1). */
wan_status wan_transformer_forward(const wan_model_t *model, int expert, const wan_host_tensor *hidden_states,
                                   const wan_host_tensor *timestep, const wan_host_tensor *encoder_hidden_states,
                                   wan_host_tensor *out_sample, int n_threads, char *err, size_t errlen);

/* wan_transformer_forward on a compute device: NULL, "" or "cpu" is exactly wan_transformer_forward; "cuda" or
 * "cuda:N" uploads the expert's weights to GPU N for the call (wan.c's CUDA backend, docs/CUDA.md), runs each
 * batch item there and downloads the sample. Errors: those of wan_transformer_forward, plus WAN_ERR_INVALID_ARG
 * for an unknown device name and WAN_ERR_UNSUPPORTED when this build has no CUDA ("rebuild with `make cuda`")
 * or no usable device (the message gives the driver's reason). Thread-safety: as wan_transformer_forward; each
 * call creates and frees its own backend. */
wan_status wan_transformer_forward_device(const char *device, const wan_model_t *model, int expert,
                                          const wan_host_tensor *hidden_states, const wan_host_tensor *timestep,
                                          const wan_host_tensor *encoder_hidden_states, wan_host_tensor *out_sample,
                                          int n_threads, char *err, size_t errlen);

/* ---------------------------------------------------------------------------------------------
 * Schedulers (samplers)
 *
 * diffusers' flow-matching schedulers, reproduced step for step: UniPCMultistepScheduler (flow
 * sigmas, predict_x0, bh1/bh2, order 1-2: what every Wan2.x diffusers folder uses),
 * FlowMatchEulerDiscreteScheduler, and DPMSolverMultistepScheduler (dpmsolver++, midpoint, flow
 * sigmas). The kind comes from cfg->kind; to run another sampler on a model, copy its config and
 * change `kind` (the flow_shift is shared). Typical loop:
 *
 *     wan_scheduler_t *s;
 *     wan_scheduler_create(wan_model_scheduler_config(model), 40, NULL, &s, err, sizeof err);
 *     for (int i = 0; i < wan_scheduler_num_steps(s); i++) {
 *         float t = wan_scheduler_timesteps(s)[i];      // feed t to the DiT, get v
 *         wan_scheduler_step(s, v, x, x, n, err, sizeof err);   // x <- next sample
 *     }
 *     wan_scheduler_free(s);
 *
 * A scheduler is used by one thread at a time; distinct schedulers are independent.
 * ------------------------------------------------------------------------------------------- */
typedef struct wan_scheduler wan_scheduler_t;

typedef struct wan_scheduler_params {
    double shift;                  /* > 0: flow shift to use instead of cfg->flow_shift (like
                                      diffusers' from_config(cfg, flow_shift=S)); <= 0: the config's */
    const int *disable_corrector;  /* UniPC: step indices whose corrector is skipped (diffusers'
                                      disable_corrector); copied at create; may be NULL           */
    int n_disable_corrector;
} wan_scheduler_params;

/* Default parameters (no override, corrector everywhere), by value. */
wan_scheduler_params wan_scheduler_default_params(void);

/* Creates a scheduler for `num_inference_steps` (1..10000) steps and builds its grid exactly as the
 * reference's set_timesteps does. `params` may be NULL. Returns WAN_ERR_UNSUPPORTED for configs
 * outside the flow-matching family (e.g. prediction_type epsilon, solver_order 3) and
 * WAN_ERR_INVALID_ARG for bad numbers; *out is then NULL. Free with wan_scheduler_free(). */
wan_status wan_scheduler_create(const wan_scheduler_config *cfg, int num_inference_steps,
                                const wan_scheduler_params *params, wan_scheduler_t **out,
                                char *err, size_t errlen);

/* Frees a scheduler and its history buffers. NULL is allowed. */
void wan_scheduler_free(wan_scheduler_t *s);

/* Number of steps N. */
int wan_scheduler_num_steps(const wan_scheduler_t *s);

/* The N timesteps to feed the transformer, largest first. UniPC and DPM++ timesteps are the
 * reference's int64 values (trunc(sigma·1000) in float64: 999, 991, ...) held exactly as floats;
 * Euler timesteps are the reference's float32 sigma·1000. Borrowed; valid until the scheduler is
 * freed. The two-expert split compares these with boundary_ratio·1000 (t >= boundary: high noise). */
const float *wan_scheduler_timesteps(const wan_scheduler_t *s);

/* The N+1 sigmas (float32 as the reference stores them; sigmas[N] is the final sigma, 0 unless a
 * UniPC config asks for final_sigmas_type "sigma_min"). Borrowed. */
const float *wan_scheduler_sigmas(const wan_scheduler_t *s);

/* The flow shift in effect (the override or the config's), for logging. */
double wan_scheduler_shift(const wan_scheduler_t *s);

/* Index of the next step (0 before the first; N when done). */
int wan_scheduler_step_index(const wan_scheduler_t *s);

/* Advances one step: given the (guided) model output v and the current sample x, both n floats,
 * writes the next sample to prev_sample (which may alias x or v). The scheduler keeps the history
 * it needs (two x0 predictions and, for UniPC, the pre-corrector sample: 2-3 buffers of n floats,
 * allocated on the first step); n must stay the same across steps. Matches diffusers' step() to
 * float32 rounding (<= 1e-6 abs on the fixtures). Errors: WAN_ERR_INVALID_ARG (NULL pointers, n
 * changed, all steps done), WAN_ERR_NOMEM. */
wan_status wan_scheduler_step(wan_scheduler_t *s, const float *model_output, const float *sample,
                              float *prev_sample, size_t n, char *err, size_t errlen);

/* Forgets the history and returns to step 0 (the grid and the buffers are kept). NULL allowed. */
void wan_scheduler_reset(wan_scheduler_t *s);

/* ---------------------------------------------------------------------------------------------
 * Random numbers compatible with torch
 * ------------------------------------------------------------------------------------------- */

/* Writes what `torch.manual_seed(seed); torch.randn(n)` gives on the CPU in float32 (also what
 * diffusers' randn_tensor draws with torch.Generator("cpu").manual_seed(seed) for a tensor of n
 * elements, any shape): MT19937 seeded with the low 32 bits of `seed` (a negative Python seed s is
 * 2^64 + s), then torch's Box–Muller (16-wide float kernel for n >= 16, the double-precision scalar
 * path below 16). Bit-identical to torch running its AVX2 kernel (x86-64 CPUs with AVX2 but without
 * AVX-512, torch's usual capability on desktops), whatever CPU this runs on; see wan_randn_ex for
 * torch on AVX-512 or aarch64. CUDA generators are not reproduced. Returns
 * WAN_ERR_INVALID_ARG when out is NULL and n > 0. Thread-safe (no global state). */
wan_status wan_randn(uint64_t seed, size_t n, float *out);

/* Which of torch's CPU normal kernels to reproduce for n >= 16 (below 16 they agree). */
typedef enum wan_randn_kernel {
    WAN_RANDN_TORCH_AVX2 = 0, /* x86-64 torch running its AVX2 kernels (the default of wan_randn)   */
    WAN_RANDN_TORCH_SCALAR    /* torch's portable kernel: AVX-512 and aarch64 builds, or
                                 ATEN_CPU_CAPABILITY=default; uses the C library's logf/cosf/sinf
                                 (bit-identical with glibc). Up to ~2e-6 from the AVX2 values.     */
} wan_randn_kernel;

/* wan_randn with an explicit kernel. WAN_ERR_INVALID_ARG for a bad kernel or NULL out (n > 0). */
wan_status wan_randn_ex(uint64_t seed, size_t n, wan_randn_kernel kernel, float *out);

/* ---------------------------------------------------------------------------------------------
 * Frames and video files
 * ------------------------------------------------------------------------------------------- */

typedef enum wan_frames_rounding {
    WAN_FRAMES_TRUNCATE = 0, /* uint8(y·255), as diffusers' export_to_video and Wan's save_video */
    WAN_FRAMES_ROUND         /* rint(y·255) (ties to even), as diffusers' output_type="pil"      */
} wan_frames_rounding;

/* Turns one decoded video, float [3, F, H, W] in [-1, 1] (the VAE output of one sample), into
 * uint8 RGB frames [F, H, W, 3] the way diffusers does: y = clamp(x·0.5 + 0.5, 0, 1) in float32
 * (VideoProcessor.postprocess_video, output_type "np"), then y·255 in float32 converted to uint8 by
 * truncation (export_to_video) or rounded to nearest, ties to even (numpy's round, output_type
 * "pil"). NaN maps to 0.
 * `frames` is caller-owned (F·H·W·3 bytes). Returns WAN_ERR_INVALID_ARG for NULL pointers or
 * non-positive sizes. Thread-safe. */
wan_status wan_video_postprocess(const float *video, int F, int H, int W, wan_frames_rounding rounding,
                                 uint8_t *frames, char *err, size_t errlen);

typedef struct wan_video_options {
    int crf;          /* constant quality for MP4/MKV (x264, 0-51) and WebM (VP9, 0-63); < 0: the
                         default, 25 for x264 (= diffusers' export_to_video quality 5; Wan's own
                         save_video uses 10) and 31 for VP9                                        */
    int quality;      /* WebP quality 0-100 (default 90); 101 = lossless                           */
    const char *preset; /* x264 preset; NULL: "medium" (FFmpeg's default, as export_to_video)      */
    int loop;         /* WebP/GIF: number of loops, 0 = forever (default)                         */
} wan_video_options;

/* Default options, by value. */
wan_video_options wan_video_default_options(void);

/* Writes F uint8 RGB frames [F, H, W, 3] (row-major, tightly packed) at `fps` frames per second.
 * The container comes from the extension of `path` (case-insensitive):
 *   .mp4 / .mkv      H.264 (libx264), yuv420p (BT.601 limited range), MP4 with +faststart
 *   .webm            VP9 (libvpx), yuv420p, constant quality
 *   .webp            animated WebP (libwebp)
 *   .gif             GIF with the fixed 256-colour RGB332 palette, dithered (small, lossy; prefer WebP)
 *   .safetensors     tensor "frames", U8 [F, H, W, 3] (exact pixels; no fps stored)
 *   no extension     a folder (created if needed) of PNG files frame_00000.png, frame_00001.png, ...
 * yuv420p needs even sizes: an odd width or height is padded by one column/row repeating the last
 * one (no scaling, the pixels are kept). `opts` may be NULL for the defaults. On failure returns
 * WAN_ERR_IO (cannot create or write the file: the message names the path and the OS/FFmpeg reason;
 * a partly written file is removed), WAN_ERR_UNSUPPORTED (unknown extension, or this FFmpeg build
 * lacks the encoder) or WAN_ERR_INVALID_ARG. FFmpeg's own messages are routed to the wan log
 * callback (this installs a process-wide av_log callback on first use). Thread-safe. */
wan_status wan_video_write(const char *path, const uint8_t *frames, int F, int H, int W, double fps,
                           const wan_video_options *opts, char *err, size_t errlen);

/* Writes `json` (any text; wan.c writes its generation settings) next to an output: the output
 * path with its extension replaced by ".json" (out.mp4 -> out.json), or with ".json" appended when
 * it has none (a PNG folder "out" -> "out.json"). Written to a temporary file, then renamed.
 * Returns WAN_ERR_IO with the path on failure. Thread-safe. */
wan_status wan_video_write_sidecar(const char *output_path, const char *json, char *err, size_t errlen);

/* ---------------------------------------------------------------------------------------------
 * Video VAE (AutoencoderKLWan: the Wan2.1 z16 VAE and the Wan2.2 z48 VAE)
 *
 * The numerics of diffusers' AutoencoderKLWan in f32, with the weights as stored (F32/F16/BF16,
 * memory-mapped; half-precision weights are converted one layer at a time). Decoding runs latent frame
 * by latent frame with the causal feature cache (the first latent frame gives 1 frame, every later one
 * 4), so without tiling its working memory does not grow with the number of frames: wan_vae_decode_frames
 * hands each frame out as soon as it is made. z is the VAE-space latent that vae.decode takes, i.e.
 * already de-normalised by the pipeline (latents / (1/latents_std) + latents_mean, per channel).
 * Every buffer a call allocates is freed before it returns (wan_mem_current() grows only by the tensor
 * returned). Thread-safety: the model is only read, so calls on different threads may share it; each
 * call uses n_threads OpenMP threads, each running single-threaded OpenBLAS GEMMs, and sets the
 * process-wide OpenBLAS thread count to 1 for its duration (restored after).
 * ------------------------------------------------------------------------------------------- */

typedef struct wan_vae_params {
    int tiled;                     /* 1: diffusers' tiled decode (enable_tiling); used only when the
                                    * latent is larger than one tile, as diffusers does              */
    int tile_sample_min_height;    /* tile size in sample pixels, enable_tiling's arguments          */
    int tile_sample_min_width;     /*   (default 256)                                                */
    int tile_sample_stride_height; /* tile stride in sample pixels (default 192)                     */
    int tile_sample_stride_width;
    int n_threads;                 /* <= 0: the OpenMP default                                       */
    wan_progress_fn progress;      /* optional: stage WAN_STAGE_DECODE, step = chunks done of n_steps
                                    * (over the whole batch and all tiles); nonzero cancels          */
    void *progress_user;
} wan_vae_params;

/* Defaults, by value: untiled, tiles 256/192 px, OpenMP threads, no progress callback. */
wan_vae_params wan_vae_default_params(void);

/* Receives one decoded frame: rgb [3, height, width] f32 in [-1, 1] (clamped), valid only during the
 * call. Frames arrive in order, frame = 0 .. 1+4(T-1)-1 for each batch item in turn. Return nonzero to
 * cancel (the decode then returns WAN_ERR_CANCELLED). */
typedef int (*wan_vae_frame_fn)(int batch, int frame, const float *rgb, int height, int width, void *user);

/* Decodes z F32 [B, z_dim, T, h, w] (vae.decode) frame by frame into on_frame. Output size: H = h*s,
 * W = w*s with s = the decoder's spatial factor (8 for Wan2.1, 16 for Wan2.2), 1+4(T-1) frames.
 * With params->tiled the frames of one batch item are assembled in a [F, 3, H, W] buffer first (tiles
 * span all frames), then handed out. params may be NULL for the defaults. Errors: no VAE in the model,
 * z not 5-D F32 or its channels != z_dim (WAN_ERR_INVALID_ARG), a missing or misshapen weight (named
 * with its file), out of memory, cancelled. */
wan_status wan_vae_decode_frames(const wan_model_t *model, const wan_host_tensor *z,
                                 const wan_vae_params *params, wan_vae_frame_fn on_frame, void *user,
                                 char *err, size_t errlen);

/* Decodes z F32 [B, z_dim, T, h, w] into *sample = F32 [B, 3, 1+4(T-1), H, W] clamped to [-1, 1]
 * (vae.decode(z).sample). On success *sample owns its data (free with wan_host_tensor_free); on failure
 * it is left empty. Errors as wan_vae_decode_frames. */
wan_status wan_vae_decode(const wan_model_t *model, const wan_host_tensor *z, const wan_vae_params *params,
                          wan_host_tensor *sample, char *err, size_t errlen);

/* Encodes a video x F32 [B, in 3, F, H, W] in [-1, 1] (H, W multiples of the spatial factor) into
 * *latent_mean = F32 [B, z_dim, 1+(F'-1)/4, H/s, W/s], the mean of vae.encode(x).latent_dist (what the
 * Wan pipelines use), where F' = 1+4*floor((F-1)/4): extra frames are dropped as diffusers does.
 * Chunks of 1 then 4 frames with the causal cache. Tiling is not used for encoding. Ownership and
 * errors as wan_vae_decode. */
wan_status wan_vae_encode(const wan_model_t *model, const wan_host_tensor *x, const wan_vae_params *params,
                          wan_host_tensor *latent_mean, char *err, size_t errlen);

/* ---------------------------------------------------------------------------------------------
 * Converting checkpoints between layouts (`wan convert`)
 *
 * Any model wan_model_load opens (a diffusers folder, an original Wan release with its .pth files, single
 * .safetensors/.pth files) can be written out again as a diffusers WanPipeline folder that diffusers'
 * WanPipeline.from_pretrained loads, or in the original Wan release layout. Tensors are copied bit for bit
 * unless a dtype is asked for.
 * ------------------------------------------------------------------------------------------- */

typedef enum wan_convert_layout {
    WAN_CONVERT_DIFFUSERS = 0, /* model_index.json; transformer/, transformer_2/, text_encoder/, tokenizer/,
                                  vae/, scheduler/ with config.json files (diffusers/transformers field names)
                                  and safetensors shards with *.safetensors.index.json (weight_map,
                                  metadata.total_size)                                                     */
    WAN_CONVERT_ORIGINAL       /* high_noise_model/ + low_noise_model/ (or the DiT at the root when there is
                                  one expert) with WanModel config.json and original tensor names,
                                  Wan2.1_VAE.safetensors / Wan2.2_VAE.safetensors,
                                  models_t5_umt5-xxl-enc-bf16.safetensors, google/umt5-xxl/ tokenizer files  */
} wan_convert_layout;

/* Weight quantisation wan_model_convert can apply. */
typedef enum wan_quant {
    WAN_QUANT_NONE = 0,
    WAN_QUANT_Q8_0 /* the linear weights of the transformer and umT5 blocks (about 99% of their parameters) as q8_0:
                      "<name>" I8 [N, K] and "<name>_scale" F16 [N, K/32], one scale per 32 values of a row, value =
                      q · scale (scale = max|w| / 127 of the block, q rounded to nearest). About 8.5 bits per weight
                      (A14B: ~15 GB per expert instead of 28.6 in bf16). Rows whose length is not a multiple of 32
                      are kept. A wan.c format: diffusers cannot load it; the CPU backend runs it as it is, the CUDA
                      backend gets it as BF16 (converted on the host when the expert is uploaded). */,
    WAN_QUANT_Q4_0 /* the same weights as q4_0: "<name>" U8 [N, K/2], two 4-bit values a byte (low nibble first, each
                      q + 8, q in [-8, 7]), "<name>_scale" F16 [N, K/32] = (the block's value of largest magnitude) / -8.
                      About 4.5 bits per weight (A14B: ~8 GB per expert); coarser than q8_0 (an error of up to half a
                      step of 1/8 of the block's largest value): for machines where q8_0 does not fit. */
} wan_quant;

typedef struct wan_convert_params {
    wan_convert_layout layout;
    int dtype;           /* < 0: keep every tensor's dtype; WAN_DTYPE_F32, F16 or BF16: convert every F32/F16/BF16
                            tensor (round to nearest even, as torch's .to()); integer tensors are kept. Quantised
                            weights (q8_0; float8 with ComfyUI's per-tensor scales) are written back as floats of this
                            dtype (their scale tensors dropped), except q8_0 ones when quantize is set too; with
                            dtype < 0 they are copied as they are                                          */
    int64_t shard_bytes; /* largest shard in bytes of tensor data (a bigger single tensor gets its own shard);
                            a component that fits in one shard is one file without an index              */
    wan_quant quantize;  /* WAN_QUANT_Q8_0: quantise the float (and float8) linear weights of the blocks (dtype then
                            applies to the rest)                                                         */
} wan_convert_params;

/* Defaults, by value: diffusers layout, dtypes kept, 5 GB (5·10^9 bytes) shards, no quantisation. */
wan_convert_params wan_convert_default_params(void);

/* Writes `model` to the folder `dst`, which must not exist. The output is built in a new folder
 * "<dst>.tmp-XXXXXX" beside it; every file and folder is fsync'ed; at the end that folder is renamed to
 * `dst` (without replacing anything). On failure the temporary folder is removed, so nothing named `dst`
 * appears; a process killed half-way leaves only the ".tmp-" folder (in the diffusers layout its
 * model_index.json, written last, is missing). Configs are written from the loaded typed configs (a source
 * without a config.json gets the one inferred at load; the original layout has no scheduler, so the
 * diffusers converter's UniPC config is written). A lone text encoder or VAE (no transformer, tokenizer or
 * scheduler) is written, in the diffusers layout, as one component folder (config.json and weights at dst), since a
 * pipeline without a transformer does not load. The mapped weights of each component are released as
 * soon as they are written. `params` may be NULL for the defaults. Errors: WAN_ERR_INVALID_ARG (bad
 * params, original layout without a transformer), WAN_ERR_IO (dst exists, a write, fsync or rename
 * failed: the message names the path and the OS reason), WAN_ERR_FORMAT (two tensors would get the same
 * name), WAN_ERR_NOMEM. Thread-safe for distinct destinations (the model is only read). */
wan_status wan_model_convert(const wan_model_t *model, const char *dst, const wan_convert_params *params,
                             char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif /* WAN_H */
