/* model_dir.h — model folders: layout detection, typed configs, weight sets (internal). */
#ifndef WAN_MODEL_DIR_H
#define WAN_MODEL_DIR_H

#include "core.h"
#include "safetensors.h"

/* One component of a loaded model. */
typedef struct wan_component_slot {
    int present;
    char *class_name;
    char *path;             /* folder or file it was read from */
    wan_st_set *weights;    /* NULL for the tokenizer and the scheduler */
    int original_names;     /* weights carried original Wan names (renamed to diffusers at load) */
} wan_component_slot;

struct wan_model {
    char *path;
    wan_layout layout;
    wan_pipeline_config pipe;
    wan_transformer_config tc[2];
    wan_vae_config vae;
    wan_text_encoder_config te;
    wan_scheduler_config sched;
    wan_component_slot comp[WAN_COMPONENT_COUNT];
    char *tokenizer_json;   /* path or NULL */
    char *spiece_model;     /* path or NULL */
};

/* Weights of a component, under diffusers names whatever the layout on disk; NULL when absent. */
const wan_st_set *wan_model_weights(const wan_model_t *m, wan_component c);

/* Lets the pages of a component's mapped weights go (the pipeline calls it for the text encoder after
 * encoding and for an expert once its steps are done). The weights stay usable. */
void wan_model_release_component(const wan_model_t *m, wan_component c);

/* Parsers for one config.json each (exposed for tests and fuzzing). `json` is the file text, `where`
 * names it in messages. Absent and null fields take diffusers' defaults. */
wan_status wan_parse_transformer_config(const char *json, size_t len, const char *where,
                                        wan_transformer_config *out, char *class_name, size_t cn_len,
                                        wan_error *err);
wan_status wan_parse_vae_config(const char *json, size_t len, const char *where, wan_vae_config *out,
                                wan_error *err);
wan_status wan_parse_text_encoder_config(const char *json, size_t len, const char *where,
                                         wan_text_encoder_config *out, wan_error *err);
wan_status wan_parse_scheduler_config(const char *json, size_t len, const char *where,
                                      wan_scheduler_config *out, wan_error *err);

/* Defaults (diffusers constructor defaults). */
void wan_transformer_config_default(wan_transformer_config *c);
void wan_vae_config_default(wan_vae_config *c);
/* Sets latents_mean/std to the released Wan2.1 (z_dim 16) or Wan2.2 (z_dim 48) lists. */
void wan_vae_config_default_latents(wan_vae_config *c);
void wan_text_encoder_config_default(wan_text_encoder_config *c);
void wan_scheduler_config_default(wan_scheduler_config *c);

/* Original Wan DiT tensor name -> diffusers name (pipeline.md 1.6); 0 when the name is unchanged.
 * An optional "model.diffusion_model." prefix is stripped. */
int wan_dit_rename_original(const char *name, char *buf, size_t len, void *user);

/* Checks every tensor a WanTransformer3DModel with config c must have (names and shapes). */
wan_status wan_transformer_check_weights(const wan_st_set *w, const wan_transformer_config *c,
                                         wan_error *err);

#endif /* WAN_MODEL_DIR_H */
