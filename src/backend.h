/* backend.h — the compute backend seam (internal): one table of function pointers holding every op the DiT,
 * the VAE and the samplers run, plus memory management. "cpu" wraps the kernels of src/cpu/ (backend_cpu.c);
 * "cuda" (src/cuda/, built by `make cuda`) runs the same ops on an NVIDIA GPU. Model code calls
 * be->op(be, ...) and never contains #ifdef CUDA: the table is chosen at run time with wan_backend_create.
 *
 * Conventions, for every backend:
 * - Pointers passed to ops are backend memory (from be->alloc; for "cpu" that is host memory, be->host_memory
 *   is 1 and any host pointer works). Activations are f32; strides are in floats; tensors are row-major.
 * - Ops are queued in order on one stream and return nothing. The first failure (an allocation, a launch, a
 *   shape the backend does not handle) is kept in be->err ("sticky") and every later op becomes a no-op;
 *   be->sync waits for the queued work and returns that error (then clears it). Check it at least once per
 *   forward. A download is synchronous.
 * - Scratch memory is the backend's own: it grows on first use to the largest size an op needed and is
 *   reused, so a second forward of the same shapes allocates nothing.
 * - A wan_backend is used by one thread at a time (like a wan_ctx); two contexts use two backends.
 * - Modulation tables (as in cpu/ops.h): `shift`, `scale`, `gate` point at row 0 of a table whose row u starts
 *   mod_ld floats later; token l uses row tok_row[l] (tok_row, backend memory, NULL: every token uses row 0). */
#ifndef WAN_BACKEND_H
#define WAN_BACKEND_H

#ifdef __cplusplus /* the CUDA backend's .cu files include this header; core.h has no guards of its own */
extern "C" {
#endif

#include "core.h"
#include "cpu/conv3d.h"

typedef struct wan_backend wan_backend;

/* Coefficients of one sampler update, computed on the host by the scheduler (sampler.c), applied by
 * be->sampler_update to every element. With m = x - sigma·v (the x0 prediction):
 *   EULER: out = x + dt·v.
 *   DPM:   out = m when to_zero, else cx·x - cm·m (order 1) or cx·x - cm·m - cd·(inv_r0·(m - m1)) (order 2);
 *          then m2 = m1, m1 = m.
 *   UNIPC: corrector (corr): xc = ccx·xl - ccm·m1 - ccb·r with r = rho1·(m - m1) + (last_order 2:
 *          rho0·((m2 - m1)/crk)); else xc = x. Predictor: out = m when to_zero, else cx·xc - cm·m (order 1)
 *          or cx·xc - cm·m - cb·(0.5·((m1 - m)/rk)) (order 2); then m2 = m1, m1 = m, xl = xc.
 * Each expression is evaluated in f32 in exactly this order (sampler.c's loops; no FMA contraction). */
typedef enum wan_update_kind { WAN_UPDATE_EULER = 0, WAN_UPDATE_DPM, WAN_UPDATE_UNIPC } wan_update_kind;
typedef struct wan_sampler_update {
    wan_update_kind kind;
    float sigma, dt;           /* sigma_i; EULER: sigma_{i+1} - sigma_i                            */
    int order, to_zero;        /* predictor order (1, 2); the step ends at sigma 0                  */
    float cx, cm, cb, rk;      /* predictor (UNIPC; DPM uses cx, cm)                               */
    float cd, inv_r0;          /* DPM order 2                                                      */
    int corr, last_order;      /* UNIPC corrector on, and the order it corrects                    */
    float ccx, ccm, ccb, crk, rho0, rho1; /* UNIPC corrector                                       */
} wan_sampler_update;

struct wan_backend {
    const char *name;          /* "cpu" or "cuda"                                                   */
    char device[128];          /* what it runs on, for logs ("NVIDIA H100 80GB HBM3, sm_90, 79 GiB") */
    int host_memory;           /* 1: backend memory is host memory (weights can be used in place)    */
    int n_threads;             /* CPU: OpenMP team size of the ops                                   */
    wan_error err;             /* first error since the last sync (code WAN_OK: none)                */
    void *impl;                /* the backend's private state                                       */

    /* ---- memory and synchronisation --------------------------------------------------------------- */
    /* `bytes` of backend memory, 256-byte aligned, contents undefined; NULL (and the sticky error) on
     * failure. */
    void *(*alloc)(wan_backend *be, size_t bytes);
    void (*free)(wan_backend *be, void *p); /* NULL is a no-op */
    void (*upload)(wan_backend *be, void *dst, const void *src, size_t bytes);   /* host -> backend */
    void (*download)(wan_backend *be, void *dst, const void *src, size_t bytes); /* backend -> host, waits */
    void (*copy)(wan_backend *be, void *dst, const void *src, size_t bytes);     /* backend -> backend */
    void (*zero)(wan_backend *be, void *dst, size_t bytes);
    /* Waits for every queued op; returns the sticky error (copied into err, which may be NULL) and clears
     * it. */
    wan_status (*sync)(wan_backend *be, wan_error *err);
    /* Releases the backend's scratch and handles (not the memory the caller allocated) and be itself. */
    void (*destroy)(wan_backend *be);

    /* ---- transformer ops ---------------------------------------------------------------------------- */
    /* y[m, n] = sum_k x[m, k]·W[n, k] + b[n] (cpu/gemm.h): W is the [N, K] weight view `w` in its stored dtype
     * (F32/BF16/F16) in backend memory, b [N] f32 or NULL; x row stride ldx, y row stride ldy; y must not
     * overlap x. CUDA: BF16 weights multiply bf16-rounded activations with f32 accumulation (cuBLASLt) unless
     * WAN_CUDA_GEMM=f32; F32 weights use f32 (TF32 off). */
    void (*linear)(wan_backend *be, const float *x, int64_t M, int64_t ldx, const wan_tensor *w, const float *b,
                   float *y, int64_t ldy);
    /* out[i, n·hd + d] = sum_j softmax_j(scale·<q_i, k_j>)·v[j, n·hd + d] per head n < heads, no mask
     * (cpu/attention.h): self-attention (Lk = Lq, q and k already normed and RoPE'd) and cross-attention
     * over the text rows (Lk = Lt). Never forms the Lq x Lk score matrix. Lk >= 1. The last key has multiplicity
     * last_w >= 1 (it stands for last_w identical keys: softmax weight last_w·e^s; 1: plain attention), so
     * cross-attention needs one row for a context's trailing run of identical rows. CUDA: head dims 64 and 128
     * run on bf16 tensor cores (q, k, v and the probabilities rounded to bf16, f32 accumulation) unless
     * WAN_CUDA_ATTN=f32; other head dims (<= 256) always in f32; last_w enters as + log2(last_w) on the score. */
    void (*attention)(wan_backend *be, const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v,
                      int64_t ldv, float *out, int64_t ldo, int64_t Lq, int64_t Lk, int heads, int hd, float scale,
                      float last_w);
    /* y[l] = ((x[l] - mean)/sqrt(var + eps)·w + b)·(1 + scale_l) + shift_l over D floats (wan_cpu_layernorm):
     * w, b NULL: no affine; shift, scale NULL: no modulation. x and y may be the same. */
    void (*layernorm)(wan_backend *be, const float *x, float *y, int64_t L, int64_t D, int64_t ld, float eps,
                      const float *w, const float *b, const float *shift, const float *scale,
                      const int32_t *tok_row, int64_t mod_ld);
    /* x[l] = x[l]/sqrt(mean(x[l]^2) + eps)·w over all D = heads·hd floats of a row, in place. */
    void (*rmsnorm)(wan_backend *be, float *x, int64_t L, int64_t D, int64_t ld, float eps, const float *w);
    /* RoPE in place (wan_cpu_rope): token l = (f·nh + h)·nw + w; interleaved pairs; the tables are
     * wan_cpu_rope_table's, in backend memory. */
    void (*rope)(wan_backend *be, float *x, int64_t ld, int nf, int nh, int nw, int heads, int hd, int dt, int dh,
                 const float *tab_t, const float *tab_h, const float *tab_w);
    void (*gelu_tanh)(wan_backend *be, float *x, int64_t n);             /* in place, tanh approximation */
    void (*silu)(wan_backend *be, const float *x, float *y, int64_t n);  /* may be in place               */
    /* x[l] += gate_l·y[l] (gate NULL: x[l] += y[l]) over D floats. */
    void (*gated_add)(wan_backend *be, float *x, int64_t ldx, const float *y, int64_t ldy, int64_t L, int64_t D,
                      const float *gate, const int32_t *tok_row, int64_t mod_ld);
    /* Modulation tables: y[u·n + i] = table[i] + x[u·ldx + i % xn] for u < U, i < n (blocks: n = xn = ldx =
     * 6D, x = timestep_proj; head: n = 2D, xn = ldx = D, x = temb). */
    void (*add_rows)(wan_backend *be, float *y, const float *table, const float *x, int64_t U, int64_t n,
                     int64_t ldx, int64_t xn);
    /* Patch gather of the stride = kernel Conv3d: x [C, T, H, W] -> patches [L, C·pt·ph·pw] (channel-major
     * inside a patch vector, token order (f, h, w)). */
    void (*patchify)(wan_backend *be, const float *x, float *patches, int C, int T, int H, int W, int pt, int ph,
                     int pw);
    /* Its inverse for the head: p [L, pt·ph·pw·C] (channel innermost) -> out [C, T, H, W]. */
    void (*unpatchify)(wan_backend *be, const float *p, float *out, int C, int T, int H, int W, int pt, int ph,
                       int pw);

    /* ---- VAE ops (frames are [C, H, W]; a chunk is frame-major [n][C][H][W]) ----------------------------- */
    /* out[cout, ho·wo] = bias + sum over taps a with in[a] != NULL of W[a] (*) in[a] (wan_conv_taps): a causal
     * 3D convolution is one call with its three temporal taps as frame pointers (cache or chunk; NULL: the
     * zero frame), nearest x2 upsampling is g->up2, the downsampler is stride 2 with right/bottom padding.
     * w: f32 [ntaps][cout][cin·kh·kw] in backend memory; `in` is a host array of ntaps backend pointers. */
    void (*conv2d_taps)(wan_backend *be, const wan_conv_geom *g, int ntaps, const float *w, const float *bias,
                        const float *const *in, float *out);
    /* Channel RMS norm (+ SiLU when silu) of n frames [c, hw]: y = x / max(||x[:, p]||_2, 1e-12)·sqrt(c)·gamma[c]
     * (wan_rms_norm_silu); in place allowed. */
    void (*chan_rmsnorm)(wan_backend *be, const float *x, float *y, int c, int64_t hw, int n, const float *gamma,
                         int silu);
    /* Single-head attention over the npix pixels of one frame (wan_attention_frame): qkv [3c, npix] (q, k, v
     * channel-major), o [c, npix]. */
    void (*attention_frame)(wan_backend *be, const float *qkv, float *o, int c, int npix);
    void (*add)(wan_backend *be, float *x, const float *y, int64_t n); /* x[i] += y[i] */
    /* y += DupUp3D(x) (Wan2.2 decoder shortcut, vae.md 2.8): x [n_in][cin][h][w], y [n_in·ft - trim][cout]
     * [h·fs][w·fs]; output frame t - trim, channel o, pixel (yy, xx) adds x[t/ft][j/rep][yy/fs][xx/fs] with
     * j = o·ft·fs² + (t%ft)·fs² + (yy%fs)·fs + xx%fs, rep = cout·ft·fs²/cin, for t in [trim, n_in·ft). */
    void (*dupup_add)(wan_backend *be, float *y, const float *x, int cin, int cout, int n_in, int h, int w, int ft,
                      int fs, int trim);
    /* y += AvgDown3D(x) (Wan2.2 encoder shortcut, vae.md 2.9): x [n_in][cin][h][w] with pad = (ft - n_in%ft)%ft
     * zero frames in front, y [(n_in + pad)/ft][cout][h/fs][w/fs] gets the mean of g = cin·ft·fs²/cout values. */
    void (*avgdown_add)(wan_backend *be, float *y, const float *x, int cin, int cout, int n_in, int h, int w,
                        int ft, int fs);

    /* ---- sampler ------------------------------------------------------------------------------------ */
    /* cond[i] = uncond[i] + g·(cond[i] - uncond[i]) (classifier-free guidance, three f32 ops in this order). */
    void (*guide)(wan_backend *be, float *cond, const float *uncond, float g, int64_t n);
    /* One scheduler update of n elements (wan_sampler_update above): v the model output, x the sample, out the
     * next sample (may alias v or x); m1, m2 (DPM, UNIPC) and xl (UNIPC) the history, updated in place. */
    void (*sampler_update)(wan_backend *be, const wan_sampler_update *u, const float *v, const float *x,
                           float *out, float *m1, float *m2, float *xl, int64_t n);
};

/* Creates backend `name`: "cpu" (n_threads <= 0: the OpenMP default), "cuda" or "cuda:N" (device N). Errors:
 * WAN_ERR_INVALID_ARG for an unknown name; WAN_ERR_UNSUPPORTED when this build has no CUDA ("built without
 * CUDA: rebuild with make cuda") or no CUDA device is usable (the message gives the driver's reason);
 * WAN_ERR_NOMEM. On success the caller frees with wan_backend_free. Thread-safe. */
wan_status wan_backend_create(const char *name, int n_threads, wan_backend **out, wan_error *err);
void wan_backend_free(wan_backend *be); /* NULL is a no-op */

/* wan_backend_create for a user's device string (wan_generate_params.device): NULL or "" is "cpu". */
wan_status wan_backend_for_device(const char *device, int n_threads, wan_backend **out, wan_error *err);

/* Sets the sticky error unless one is already set (for backend implementations). */
void wan_backend_fail(wan_backend *be, wan_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The backends' constructors (wan_backend_create picks one). In a build without CUDA, wan_backend_cuda_create
 * (src/cuda_stub.c) returns WAN_ERR_UNSUPPORTED. */
wan_status wan_backend_cpu_create(int n_threads, wan_backend **out, wan_error *err);
wan_status wan_backend_cuda_create(int device, wan_backend **out, wan_error *err);

/* ---- weights resident in backend memory --------------------------------------------------------------- */

struct wan_dit;

/* Uploads every weight of a bound expert to backend memory once, in its stored dtype (q8_0 and float8 weights as
 * BF16, converted on the host), as one allocation:
 * *dst is a copy of *src whose tensors and vectors point there (blocks array: a host copy). The caller
 * releases it with wan_dit_release before uploading the other expert (one expert resident at a time);
 * never wan_dit_free it. Errors: WAN_ERR_UNSUPPORTED when a linear carries on-the-fly LoRA terms (merge
 * the adapter first), WAN_ERR_NOMEM (host or device), and the backend's upload errors. */
wan_status wan_dit_upload(const struct wan_dit *src, wan_backend *be, struct wan_dit *dst, wan_error *err);
void wan_dit_release(wan_backend *be, struct wan_dit *dst);

/* Bytes wan_dit_upload allocates for `src` (to decide whether both experts fit). */
size_t wan_dit_upload_bytes(const struct wan_dit *src);

#ifdef __cplusplus
}
#endif

#endif /* WAN_BACKEND_H */
