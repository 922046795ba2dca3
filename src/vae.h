/* vae.h — the video VAE (AutoencoderKLWan) internals: original-name renaming, config inference from
 * tensor shapes, and a decode entry point with a per-stage debug hook for the parity tests. */
#ifndef WAN_VAE_H
#define WAN_VAE_H

#include "backend.h"
#include "core.h"
#include "safetensors.h"

/* Original Wan VAE tensor name (Wan2.1_VAE.pth / Wan2.2_VAE.pth keys, vae.md 5) -> diffusers name;
 * returns 0 when the name stays as it is. `user` points to an int: the entries per level of the flat
 * Wan2.1 decoder list `decoder.upsamples.K` (num_res_blocks + 2; NULL means 4). The nested Wan2.2 lists
 * (`decoder.upsamples.I.upsamples.J`, `encoder.downsamples.I.downsamples.J`) need no count. */
int wan_vae_rename_original(const char *name, char *buf, size_t len, void *user);

/* True when the set carries original names (decoder.conv1.weight, no decoder.conv_in.weight). */
bool wan_vae_has_original_names(const wan_st_set *w);

/* Renames a set with original names to diffusers names, finding the flat list's level size from the
 * position of the first upsampler. */
wan_status wan_vae_rename_set(wan_st_set *w, wan_error *err);

/* Infers an AutoencoderKLWan config from diffusers-named tensors: z_dim, levels and dim_mult (with
 * dim_mult[0] = 1), num_res_blocks, temporal downsampling, is_residual, decoder/encoder widths,
 * in/out channels, patch size, scale factors, and the released latents mean/std for z 16 or 48. */
wan_status wan_vae_infer_config(const wan_st_set *w, wan_vae_config *c, wan_error *err);

/* Called after each named decoder stage of each chunk ("conv_in", "mid_block", "up_blocks.N",
 * "conv_out"); x is frame-major [n][c][h][w] and valid only during the call. */
typedef void (*wan_vae_debug_fn)(const char *stage, int chunk, const float *x, int c, int n, int h, int w,
                                 void *user);

/* wan_vae_decode_frames with a debug hook (dbg may be NULL). */
wan_status wan_vae_decode_debug(const wan_model_t *model, const wan_host_tensor *z, const wan_vae_params *p,
                                wan_vae_frame_fn on_frame, void *user, wan_vae_debug_fn dbg, void *dbg_user,
                                wan_error *err);

/* wan_vae_decode_frames on backend `be` (NULL: a "cpu" table made for the call, with params->n_threads).
 * z is host memory, frames reach on_frame on the host exactly as from wan_vae_decode_frames (tiled or not,
 * clamped, in order); activations, caches and weights live in backend memory: the weights are converted to
 * f32 once per call (and, on a device, uploaded once), every chunk reuses the same buffers, and finished
 * frames are downloaded chunk by chunk. The caller keeps ownership of be: the call allocates its buffers with
 * be->alloc and frees them before returning, and leaves be without a pending error (a backend failure is
 * returned, prefixed "VAE: "). With a caller's backend the ops use be->n_threads (CPU) and params->n_threads
 * only sizes the host-side OpenMP loops. Errors: as wan_vae_decode_frames, plus the backend's
 * (WAN_ERR_NOMEM for device memory, WAN_ERR_INTERNAL for a failed launch). Thread-safety: one call at a
 * time per backend; the model may be shared. */
wan_status wan_vae_decode_be(const wan_model_t *model, wan_backend *be, const wan_host_tensor *z,
                             const wan_vae_params *p, wan_vae_frame_fn on_frame, void *user, wan_error *err);

/* wan_vae_encode on backend `be` (NULL: a "cpu" table made for the call); x and *latent_mean are host
 * memory, ownership and errors as wan_vae_encode and wan_vae_decode_be. */
wan_status wan_vae_encode_be(const wan_model_t *model, wan_backend *be, const wan_host_tensor *x,
                             const wan_vae_params *params, wan_host_tensor *latent_mean, wan_error *err);

#endif /* WAN_VAE_H */
