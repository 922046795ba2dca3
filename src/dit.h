/* dit.h — the Wan denoising transformer (WanTransformer3DModel) (internal).
 *
 * A wan_dit binds the weights of one expert in place (views into the memory-mapped files, F32/BF16/F16 as
 * stored) plus an f32 copy of the small vectors (biases, norm gains, modulation tables). The forward
 * computes in f32 through a backend table (backend.h): on "cpu" with the weights in place (large matrices
 * converted tile by tile inside the linear kernel), on a device with an expert uploaded by wan_dit_upload. */
#ifndef WAN_DIT_H
#define WAN_DIT_H

#include "core.h"
#include "safetensors.h"

struct wan_lora_lin;
struct wan_backend;

/* One Linear: y = x·Wᵀ + b (+ the LoRA terms, when a request binds some: see lora.h). */
typedef struct wan_dit_linear {
    wan_tensor w;    /* [N, K] view into the mapping (the patch conv is viewed as [D, Cin·pt·ph·pw]) */
    const float *b;  /* [N] f32, owned by the wan_dit                                                */
    const struct wan_lora_lin *lora; /* low-rank terms added on the fly; NULL: none (owned by lora.c) */
} wan_dit_linear;

typedef struct wan_dit_block {
    const float *sst;                 /* [6, D] scale_shift_table: shift/scale/gate (attn), shift/scale/gate (ffn) */
    wan_dit_linear q, k, v, o;        /* attn1 to_q/to_k/to_v/to_out.0: [D, D]                   */
    const float *norm_q, *norm_k;     /* attn1 RMSNorm gains over all heads: [D]                 */
    wan_dit_linear q2, k2, v2, o2;    /* attn2 (cross-attention): [D, D]                         */
    const float *norm_q2, *norm_k2;   /* [D]                                                      */
    const float *norm2_w, *norm2_b;   /* cross-attention pre-norm affine [D]; NULL: identity       */
    wan_dit_linear ff1, ff2;          /* ffn.net.0.proj [F, D], ffn.net.2 [D, F]                  */
} wan_dit_block;

typedef struct wan_dit {
    wan_transformer_config cfg;
    int64_t D, F, H, hd;              /* width, ffn width, heads, head dim (D = H·hd)              */
    int64_t Kp, Op;                   /* patch vector length Cin·pt·ph·pw, output features Cout·pt·ph·pw */
    int rope_t, rope_h, rope_w;       /* RoPE channels per axis (frame, height, width)             */
    wan_dit_linear patch;             /* [D, Kp]                                                   */
    wan_dit_linear t1, t2, tproj;     /* time MLP [D, freq], [D, D]; time_proj [6D, D]             */
    wan_dit_linear c1, c2;            /* text MLP [D, text_dim], [D, D]                            */
    wan_dit_linear out;               /* proj_out [Op, D]                                          */
    const float *sst_out;             /* [2, D] head shift/scale table                             */
    wan_dit_block *blocks;            /* [num_layers]                                              */
    float *vec;                       /* owned f32 storage of every vector above                   */
    int64_t lora_rank;                /* largest total LoRA rank of any linear (0: none): scratch size */
} wan_dit;

/* Binds the weights `w` (diffusers names) of a transformer with config `cfg`: checks every tensor's name,
 * dtype (F32/BF16/F16) and shape, converts the vectors to f32. On success the caller frees with
 * wan_dit_free; `w` must outlive the wan_dit. */
wan_status wan_dit_init(wan_dit *dit, const wan_st_set *w, const wan_transformer_config *cfg, wan_error *err);
void wan_dit_free(wan_dit *dit);

/* Clears *dit and fills cfg and the derived sizes (D, F, H, hd, Kp, Op, RoPE split) without binding any
 * weights; wan_dit_init starts with it. Benchmarks use it to wire in-memory weights (then they own
 * `vec`/`blocks` themselves and must not call wan_dit_free). */
wan_status wan_dit_set_config(wan_dit *dit, const wan_transformer_config *cfg, wan_error *err);

/* One bound tensor of a wan_dit under its diffusers name, for LoRA patching: a linear ("X.weight" and
 * "X.bias": lin set, vec = its f32 bias) or an f32 vector (norm gains, modulation tables: lin NULL). */
typedef struct wan_dit_param {
    char name[96];
    wan_dit_linear *lin;
    float *vec;                       /* f32 values owned by the wan_dit                            */
    int64_t n;                        /* elements of vec                                            */
} wan_dit_param;

/* Lists every tensor the wan_dit binds (weights as "X.weight" with lin set and vec NULL; biases, gains and
 * tables with vec set) into out[0..cap); returns how many there are (may exceed cap: call again). */
int wan_dit_params(wan_dit *dit, wan_dit_param *out, int cap);

/* Runs wan_transformer_forward's batch loop on a bound (possibly LoRA-patched) wan_dit: checks the inputs,
 * and on success fills *out_sample (owned by the caller). */
wan_status wan_dit_forward_host(const wan_dit *dit, const wan_host_tensor *hidden_states,
                                const wan_host_tensor *timestep, const wan_host_tensor *encoder_hidden_states,
                                wan_host_tensor *out_sample, int n_threads, wan_error *err);

/* Optional observer of intermediate tensors (for parity tests): called with "patch" [L, D],
 * "temb" [U, D], "timestep_proj" [U, 6D] (U = distinct timesteps), "text_emb" [Lt, D], "block.N" [L, D],
 * "proj_out" [L, Op]. The data is only valid during the call. */
typedef struct wan_dit_probe {
    void (*fn)(const char *name, const float *data, int64_t rows, int64_t cols, void *user);
    void *user;
} wan_dit_probe;

/* The activation buffers of wan_dit_forward_ws, kept between forwards so that a sampling loop allocates
 * nothing and touches no fresh pages per step: one block of backend memory laid out per forward, grown when a
 * forward needs more (more tokens, computed text rows or distinct timesteps), never shrunk; plus a small host
 * block (timestep rows, the sinusoids and RoPE tables before upload, the on-the-fly LoRA scratch, a device
 * backend's context). Start from { 0 } (or set all_ctx_rows only); the first forward ties it to its backend.
 * Free with wan_dit_ws_free before that backend. Used by one thread at a time. */
typedef struct wan_dit_ws {
    struct wan_backend *be;           /* owner of mem (NULL until the first forward)               */
    void *mem;                        /* backend memory, cap bytes                                  */
    size_t cap;
    void *host;                       /* host memory, host_cap bytes                                */
    size_t host_cap;
    int grows;                        /* allocations made so far (tests and benches check reuse)    */
    int all_ctx_rows;                 /* 1: compute every context row, no shared trailing rows (tests) */
} wan_dit_ws;

void wan_dit_ws_free(wan_dit_ws *ws); /* NULL or empty allowed; leaves *ws empty */

/* One sample on backend `be`: x [Cin, T, Hl, Wl] → out [Cout, T, Hl, Wl] (f32). x, ctx [Lt, text_dim] and out
 * are backend memory (host memory for "cpu"); t is host memory: one timestep (per_token 0) or one per token
 * (per_token 1, L = (T/pt)·(Hl/ph)·(Wl/pw) values in token order). Context rows at the end that are bitwise
 * equal to the last one (a prompt's zero padding) are computed once: the text MLP and the cross-attention K/V
 * run on the rows up to the first of them, which enters the softmax with the run's length as multiplicity
 * (the same result up to f32 rounding; a device backend's ctx is downloaded to find the run; ws->all_ctx_rows
 * turns this off). The weights of `dit` must be in be's memory (the mapped ones for "cpu", wan_dit_upload's
 * otherwise); on-the-fly LoRA terms need a host backend (else WAN_ERR_UNSUPPORTED). T, Hl, Wl must be
 * multiples of the patch. Activations come from *ws (grown as needed); the call waits for the backend
 * (be->sync) and returns its error. probe may be NULL (on a device backend each probed tensor is downloaded
 * into a temporary host buffer). */
wan_status wan_dit_forward_ws(const wan_dit *dit, struct wan_backend *be, wan_dit_ws *ws, const float *x, int T,
                              int Hl, int Wl, const float *t, int per_token, const float *ctx, int64_t Lt, float *out,
                              const wan_dit_probe *probe, wan_error *err);

/* wan_dit_forward_ws on the CPU with n_threads threads and a workspace of its own, released before returning
 * (for tests and one-off calls). All pointers are host memory. */
wan_status wan_dit_forward(const wan_dit *dit, const float *x, int T, int Hl, int Wl, const float *t, int per_token,
                           const float *ctx, int64_t Lt, float *out, int n_threads, const wan_dit_probe *probe,
                           wan_error *err);

#endif /* WAN_DIT_H */
