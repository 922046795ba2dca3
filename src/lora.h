/* lora.h — LoRA adapters for the DiT (internal): the parsed adapter file, the per-request set of adapters
 * bound to one expert at a time, and the on-the-fly low-rank kernel the DiT's linears call.
 *
 * Ownership: a wan_lora_t (the file, read-only) may be shared; a wan_lora_request belongs to one wan_generate
 * call. Binding an expert makes a private wan_dit over the model's mapped weights and patches only that copy:
 * f32 vectors (biases, norms, modulation tables) in place, changed matrices as private merged copies
 * (WAN_LORA_MERGE*) or as low-rank terms the linear adds on the fly (WAN_LORA_RUNTIME). */
#ifndef WAN_LORA_H
#define WAN_LORA_H

#include "core.h"
#include "dit.h"

/* The low-rank terms of one linear, all adapters concatenated: y += (x·Aᵀ)·Bᵀ with the strengths and
 * alpha/rank scales folded into B. */
typedef struct wan_lora_lin {
    int64_t r;       /* total rank                  */
    int64_t in, out;
    float *A;        /* [r, in]                     */
    float *B;        /* [out, r], scaled            */
} wan_lora_lin;

/* Floats of scratch wan_lora_lin_apply needs for total rank r and n_threads threads. */
int64_t wan_lora_lin_scratch(int64_t r, int n_threads);

/* y[m, :] += (x[m, :]·Aᵀ)·Bᵀ for m < M (x row stride ldx, y row stride ldy), in row chunks over n_threads
 * OpenMP threads, each calling single-threaded OpenBLAS. */
void wan_lora_lin_apply(const wan_lora_lin *l, const float *x, int64_t M, int64_t ldx, float *y, int64_t ldy,
                        float *scratch, int n_threads);

/* The adapters of one request. */
typedef struct wan_lora_request wan_lora_request;

/* Loads the adapters given by path, resolves default targets and checks every adapter against the experts it
 * targets (wan_lora_check). n == 0 gives *out = NULL and WAN_OK. */
wan_status wan_lora_request_new(const wan_model_t *model, const wan_lora_use *uses, int n, int mode,
                                wan_lora_request **out, wan_error *err);

/* Binds the request's adapters for `expert` (0 high, 1 low), releasing the previous binding first (its merged
 * copies are freed before the new ones are made). An expert no adapter targets binds nothing. req may be
 * NULL (nothing to do). */
wan_status wan_lora_request_bind(wan_lora_request *req, int expert, wan_error *err);

/* Drops the binding (the merged copies and terms); the adapters stay loaded. NULL allowed. */
void wan_lora_request_release(wan_lora_request *req);

/* wan_transformer_forward through the request: with the bound expert's patched wan_dit when the request has
 * adapters for `expert` (bound by wan_lora_request_bind), else the plain model. req may be NULL. */
wan_status wan_lora_forward(const wan_lora_request *req, const wan_model_t *model, int expert,
                            const wan_host_tensor *hidden_states, const wan_host_tensor *timestep,
                            const wan_host_tensor *encoder_hidden_states, wan_host_tensor *out_sample,
                            int n_threads, char *errbuf, size_t errlen);

/* The bound expert's patched wan_dit when the request has adapters for `expert` (bound by
 * wan_lora_request_bind), else NULL (run the plain model). Borrowed until the next bind or release. */
const wan_dit *wan_lora_request_dit(const wan_lora_request *req, int expert);

/* Frees the request, its binding and the adapters it loaded. NULL allowed. */
void wan_lora_request_free(wan_lora_request *req);

#endif /* WAN_LORA_H */
