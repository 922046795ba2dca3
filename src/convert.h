/* convert.h — `wan convert` internals: diffusers -> original Wan tensor names (the inverses of the
 * renames applied at load), exposed for the round-trip tests. */
#ifndef WAN_CONVERT_H
#define WAN_CONVERT_H

#include "core.h"

/* Diffusers WanTransformer3DModel name -> original WanModel name (transformer.md 2), the inverse of
 * wan_dit_rename_original; returns 0 when the name is the same in both layouts (patch_embedding.*).
 * A wan_st_rename_fn. */
int wan_dit_rename_to_original(const char *name, char *buf, size_t len, void *user);

/* What the VAE inverse rename needs to know about the block structure. */
typedef struct wan_vae_names {
    int is_residual;    /* Wan2.2 VAE: nested per-level lists; Wan2.1: one flat list per coder */
    int num_res_blocks; /* resnets per encoder level (the decoder has one more)                 */
} wan_vae_names;

/* Diffusers AutoencoderKLWan name -> original Wan2.1_VAE / Wan2.2_VAE name (vae.md 5), the inverse of
 * wan_vae_rename_original. `user` points to a wan_vae_names. Returns 0 for names it does not know. */
int wan_vae_rename_to_original(const char *name, char *buf, size_t len, void *user);

#endif /* WAN_CONVERT_H */
