/* model.c — wan_model_load: layout detection, component loading, configs inferred from tensor shapes
 * when a file has none, and the model-level queries of wan.h. */
#define _POSIX_C_SOURCE 200809L
#include "model_dir.h"
#include "umt5.h"
#include "vae.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const k_component_names[WAN_COMPONENT_COUNT] = {
    "transformer", "transformer_2", "text_encoder", "tokenizer", "vae", "scheduler",
};

const char *wan_component_name(wan_component c)
{
    return ((unsigned)c < WAN_COMPONENT_COUNT) ? k_component_names[c] : "?";
}

const char *wan_layout_name(wan_layout l)
{
    switch (l) {
    case WAN_LAYOUT_DIFFUSERS_PIPELINE: return "diffusers pipeline";
    case WAN_LAYOUT_DIFFUSERS_COMPONENT: return "diffusers component";
    case WAN_LAYOUT_ORIGINAL: return "original Wan release";
    case WAN_LAYOUT_SINGLE_FILE: return "single safetensors file";
    }
    return "?";
}

wan_model_params wan_model_default_params(void)
{
    return (wan_model_params){ .validate_shapes = 1 };
}

void wan_model_free(wan_model_t *m)
{
    if (!m)
        return;
    for (int i = 0; i < WAN_COMPONENT_COUNT; i++) {
        wan_free(m->comp[i].class_name);
        wan_free(m->comp[i].path);
        wan_st_set_free(m->comp[i].weights);
    }
    wan_free(m->tokenizer_json);
    wan_free(m->spiece_model);
    wan_free(m->path);
    wan_free(m);
}

static wan_status slot_set(wan_component_slot *s, const char *cls, const char *path, wan_error *err)
{
    wan_free(s->class_name);
    wan_free(s->path);
    s->class_name = wan_strdup(cls);
    s->path = wan_strdup(path);
    if (!s->class_name || !s->path)
        return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory", path);
    s->present = 1;
    return WAN_OK;
}

/* Reads <dir>/<file> as text. */
static wan_status read_in(const char *dir, const char *file, char **text, size_t *len, char **path,
                          wan_error *err)
{
    *path = wan_path_join(dir, file);
    if (!*path)
        return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory", dir);
    wan_status rc = wan_read_file(*path, text, len, err);
    if (rc == WAN_ERR_NOT_FOUND)
        wan_err(err, rc, "%s: missing %s", dir, file);
    return rc;
}

/* ---- configs inferred from tensor shapes ------------------------------------------------------ */

static const wan_st_tensor *tensor_of(const wan_st_set *w, const char *name)
{
    const wan_st_entry *e = wan_st_set_find(w, name);
    return e ? e->t : NULL;
}

/* Every released Wan DiT has head_dim 128, which shapes alone cannot reveal. */
static wan_status infer_transformer(const wan_st_set *w, wan_transformer_config *c, wan_error *err)
{
    wan_transformer_config_default(c);
    const wan_st_tensor *pe = tensor_of(w, "patch_embedding.weight");
    const wan_st_tensor *ff = tensor_of(w, "blocks.0.ffn.net.0.proj.weight");
    const wan_st_tensor *te = tensor_of(w, "condition_embedder.text_embedder.linear_1.weight");
    const wan_st_tensor *tm = tensor_of(w, "condition_embedder.time_embedder.linear_1.weight");
    const wan_st_tensor *po = tensor_of(w, "proj_out.weight");
    if (!pe || pe->ndim != 5 || !ff || ff->ndim != 2 || !te || te->ndim != 2 || !tm || tm->ndim != 2 ||
        !po || po->ndim != 2)
        return wan_err(err, WAN_ERR_FORMAT,
                       "%s: cannot infer the transformer config: patch_embedding, blocks.0.ffn, text/time "
                       "embedder or proj_out weights are missing or misshapen", w->dir);
    int64_t D = pe->shape[0];
    c->in_channels = (int)pe->shape[1];
    for (int i = 0; i < 3; i++)
        c->patch_size[i] = (int)pe->shape[2 + i];
    c->attention_head_dim = 128;
    if (D % 128)
        return wan_err(err, WAN_ERR_FORMAT, "%s: dim %lld is not a multiple of head_dim 128", w->dir,
                       (long long)D);
    c->num_attention_heads = (int)(D / 128);
    c->ffn_dim = (int)ff->shape[0];
    c->text_dim = (int)te->shape[1];
    c->freq_dim = (int)tm->shape[1];
    int64_t per = (int64_t)c->patch_size[0] * c->patch_size[1] * c->patch_size[2];
    c->out_channels = (int)(po->shape[0] / (per ? per : 1));
    int n = 0;
    char name[64];
    for (;; n++) {
        snprintf(name, sizeof name, "blocks.%d.scale_shift_table", n);
        if (!wan_st_set_find(w, name))
            break;
    }
    c->num_layers = n;
    return WAN_OK;
}

static wan_status infer_text_encoder(const wan_st_set *w, wan_text_encoder_config *c, wan_error *err)
{
    wan_text_encoder_config_default(c);
    const wan_st_tensor *emb = tensor_of(w, "shared.weight");
    if (!emb)
        emb = tensor_of(w, "encoder.embed_tokens.weight");
    const wan_st_tensor *rb =
        tensor_of(w, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
    const wan_st_tensor *q = tensor_of(w, "encoder.block.0.layer.0.SelfAttention.q.weight");
    const wan_st_tensor *wi = tensor_of(w, "encoder.block.0.layer.1.DenseReluDense.wi_0.weight");
    if (!emb || emb->ndim != 2 || !rb || rb->ndim != 2 || !q || q->ndim != 2 || !wi || wi->ndim != 2)
        return wan_err(err, WAN_ERR_FORMAT, "%s: cannot infer the umT5 config from the tensors", w->dir);
    c->vocab_size = (int)emb->shape[0];
    c->d_model = (int)emb->shape[1];
    c->relative_attention_num_buckets = (int)rb->shape[0];
    c->num_heads = (int)rb->shape[1];
    c->d_kv = (int)(q->shape[0] / (c->num_heads ? c->num_heads : 1));
    c->d_ff = (int)wi->shape[0];
    int n = 0;
    char name[96];
    for (;; n++) {
        snprintf(name, sizeof name, "encoder.block.%d.layer.0.SelfAttention.q.weight", n);
        if (!wan_st_set_find(w, name))
            break;
    }
    c->num_layers = n;
    return WAN_OK;
}

/* ---- components ------------------------------------------------------------------------------- */

static wan_status open_weights(wan_model_t *m, wan_component which, const char *dir, wan_error *err)
{
    wan_st_set *w;
    wan_status rc = wan_st_set_open_dir(dir, &w, err);
    if (rc != WAN_OK)
        return rc;
    m->comp[which].weights = w;
    return WAN_OK;
}

/* Renames original DiT names if the weights use them. */
static wan_status normalise_dit_names(wan_component_slot *s, wan_error *err)
{
    bool original = wan_st_set_find(s->weights, "time_projection.1.weight") ||
                    wan_st_set_find(s->weights, "model.diffusion_model.time_projection.1.weight") ||
                    wan_st_set_find(s->weights, "model.diffusion_model.patch_embedding.weight");
    if (!original)
        return WAN_OK;
    s->original_names = wan_st_set_find(s->weights, "time_projection.1.weight") != NULL ||
                        wan_st_set_find(s->weights, "model.diffusion_model.time_projection.1.weight");
    return wan_st_set_rename(s->weights, wan_dit_rename_original, NULL, err);
}

static wan_status check_vae_weights(const wan_st_set *w, const wan_vae_config *c, wan_error *err)
{
    int64_t z = c->z_dim;
    wan_tensor t;
    wan_status rc = wan_st_set_get(w, "post_quant_conv.weight", 5, (int64_t[]){ z, z, 1, 1, 1 }, &t, err);
    if (rc == WAN_OK)
        rc = wan_st_set_get(w, "decoder.conv_out.weight", 5,
                            (int64_t[]){ c->out_channels, c->decoder_base_dim, 3, 3, 3 }, &t, err);
    const wan_st_entry *e = wan_st_set_find(w, "decoder.conv_in.weight");
    if (rc == WAN_OK && (!e || e->t->ndim != 5 || e->t->shape[1] != z))
        rc = wan_err(err, e ? WAN_ERR_SHAPE : WAN_ERR_NOT_FOUND,
                     "%s: decoder.conv_in.weight must be [*, %lld, 3, 3, 3] for z_dim %lld", w->dir,
                     (long long)z, (long long)z);
    return rc;
}

static wan_status check_text_encoder_weights(const wan_st_set *w, const wan_text_encoder_config *c,
                                             wan_error *err)
{
    return wan_umt5_check_weights(w, c, err);
}

/* Parses a component's config.json into the model (cls receives the class name). */
static wan_status parse_component_config(wan_model_t *m, wan_component which, const char *text, size_t len,
                                         const char *path, char *cls, size_t cls_len, wan_error *err)
{
    switch (which) {
    case WAN_COMPONENT_TRANSFORMER:
    case WAN_COMPONENT_TRANSFORMER_2:
        return wan_parse_transformer_config(text, len, path, &m->tc[which == WAN_COMPONENT_TRANSFORMER_2], cls,
                                            cls_len, err);
    case WAN_COMPONENT_VAE:
        snprintf(cls, cls_len, "AutoencoderKLWan");
        return wan_parse_vae_config(text, len, path, &m->vae, err);
    case WAN_COMPONENT_TEXT_ENCODER:
        snprintf(cls, cls_len, "UMT5EncoderModel");
        return wan_parse_text_encoder_config(text, len, path, &m->te, err);
    default:
        return wan_err(err, WAN_ERR_INTERNAL, "%s: component %d has no weights", path, (int)which);
    }
}

/* Checks every tensor a component's config implies. */
static wan_status check_component_weights(const wan_model_t *m, wan_component which, wan_error *err)
{
    const wan_st_set *w = m->comp[which].weights;
    switch (which) {
    case WAN_COMPONENT_TRANSFORMER:
    case WAN_COMPONENT_TRANSFORMER_2:
        return wan_transformer_check_weights(w, &m->tc[which == WAN_COMPONENT_TRANSFORMER_2], err);
    case WAN_COMPONENT_VAE: return check_vae_weights(w, &m->vae, err);
    case WAN_COMPONENT_TEXT_ENCODER: return check_text_encoder_weights(w, &m->te, err);
    default: return WAN_OK;
    }
}

/* A component folder with config.json and safetensors weights (transformer, VAE or text encoder). */
static wan_status load_weights_dir(wan_model_t *m, wan_component which, const char *dir, const wan_model_params *p,
                                   wan_error *err)
{
    char *text = NULL, *path = NULL;
    size_t len = 0;
    char cls[64] = "";
    wan_status rc = read_in(dir, "config.json", &text, &len, &path, err);
    if (rc == WAN_OK)
        rc = parse_component_config(m, which, text, len, path, cls, sizeof cls, err);
    if (rc == WAN_OK)
        rc = slot_set(&m->comp[which], cls, dir, err);
    if (rc == WAN_OK)
        rc = open_weights(m, which, dir, err);
    if (rc == WAN_OK && (which == WAN_COMPONENT_TRANSFORMER || which == WAN_COMPONENT_TRANSFORMER_2))
        rc = normalise_dit_names(&m->comp[which], err);
    if (rc == WAN_OK && p->validate_shapes)
        rc = check_component_weights(m, which, err);
    wan_free(text);
    wan_free(path);
    return rc;
}

static wan_status load_scheduler_dir(wan_model_t *m, const char *dir, wan_error *err)
{
    char *text = NULL, *path = NULL;
    size_t len = 0;
    wan_status rc = read_in(dir, "scheduler_config.json", &text, &len, &path, err);
    if (rc == WAN_OK)
        rc = wan_parse_scheduler_config(text, len, path, &m->sched, err);
    if (rc == WAN_OK) {
        static const char *names[] = { "UniPCMultistepScheduler", "FlowMatchEulerDiscreteScheduler",
                                       "DPMSolverMultistepScheduler" };
        rc = slot_set(&m->comp[WAN_COMPONENT_SCHEDULER], names[m->sched.kind], dir, err);
    }
    wan_free(text);
    wan_free(path);
    return rc;
}

/* A tokenizer folder: tokenizer.json and/or spiece.model. */
static wan_status load_tokenizer_dir(wan_model_t *m, const char *dir, const char *cls, wan_error *err)
{
    char *tj = wan_path_join(dir, "tokenizer.json"), *sp = wan_path_join(dir, "spiece.model");
    if (!tj || !sp) {
        wan_free(tj);
        wan_free(sp);
        return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory", dir);
    }
    if (wan_path_is_file(tj))
        m->tokenizer_json = tj;
    else
        wan_free(tj);
    if (wan_path_is_file(sp))
        m->spiece_model = sp;
    else
        wan_free(sp);
    if (!m->tokenizer_json && !m->spiece_model)
        return wan_err(err, WAN_ERR_NOT_FOUND, "%s: neither tokenizer.json nor spiece.model is there", dir);
    return slot_set(&m->comp[WAN_COMPONENT_TOKENIZER], cls, dir, err);
}

/* ---- layouts ---------------------------------------------------------------------------------- */

static const char *const k_supported_pipelines[] = { "WanPipeline" };

/* Expected library/class per component in model_index.json. */
static bool class_ok(wan_component c, const char *cls)
{
    switch (c) {
    case WAN_COMPONENT_TRANSFORMER:
    case WAN_COMPONENT_TRANSFORMER_2: return strcmp(cls, "WanTransformer3DModel") == 0;
    case WAN_COMPONENT_TEXT_ENCODER: return strcmp(cls, "UMT5EncoderModel") == 0;
    case WAN_COMPONENT_TOKENIZER:
        return strcmp(cls, "T5TokenizerFast") == 0 || strcmp(cls, "T5Tokenizer") == 0 ||
               strcmp(cls, "AutoTokenizer") == 0;
    case WAN_COMPONENT_VAE: return strcmp(cls, "AutoencoderKLWan") == 0;
    case WAN_COMPONENT_SCHEDULER:
        return strcmp(cls, "UniPCMultistepScheduler") == 0 ||
               strcmp(cls, "FlowMatchEulerDiscreteScheduler") == 0 ||
               strcmp(cls, "DPMSolverMultistepScheduler") == 0;
    default: return false;
    }
}

static wan_status load_component(wan_model_t *m, wan_component c, const char *dir, const char *cls,
                                 const wan_model_params *p, wan_error *err)
{
    if (!wan_path_is_dir(dir))
        return wan_err(err, WAN_ERR_NOT_FOUND, "%s: component folder '%s' named by model_index.json is missing",
                       m->path, wan_component_name(c));
    switch (c) {
    case WAN_COMPONENT_TRANSFORMER:
    case WAN_COMPONENT_TRANSFORMER_2:
    case WAN_COMPONENT_TEXT_ENCODER:
    case WAN_COMPONENT_VAE: return load_weights_dir(m, c, dir, p, err);
    case WAN_COMPONENT_TOKENIZER: return load_tokenizer_dir(m, dir, cls, err);
    case WAN_COMPONENT_SCHEDULER: return load_scheduler_dir(m, dir, err);
    default: return wan_err(err, WAN_ERR_INTERNAL, "bad component %d", (int)c);
    }
}

static wan_status load_pipeline(wan_model_t *m, const wan_model_params *p, wan_error *err)
{
    char *text = NULL, *path = NULL;
    size_t len = 0;
    wan_status rc = read_in(m->path, "model_index.json", &text, &len, &path, err);
    if (rc != WAN_OK) {
        wan_free(path);
        return rc;
    }
    cJSON *o = cJSON_ParseWithLength(text, len);
    wan_free(text);
    if (!o || !cJSON_IsObject(o)) {
        rc = wan_err(err, WAN_ERR_FORMAT, "%s: not a valid JSON object", path);
        goto done;
    }
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(o, "_class_name");
    bool known = false;
    for (size_t i = 0; cJSON_IsString(cls) && i < sizeof k_supported_pipelines / sizeof *k_supported_pipelines; i++)
        known |= strcmp(cls->valuestring, k_supported_pipelines[i]) == 0;
    if (!known) {
        rc = wan_err(err, WAN_ERR_UNSUPPORTED, "%s: pipeline _class_name '%s' is not supported (WanPipeline)",
                     path, cJSON_IsString(cls) ? cls->valuestring : "(missing)");
        goto done;
    }
    const cJSON *br = cJSON_GetObjectItemCaseSensitive(o, "boundary_ratio");
    m->pipe.boundary_ratio = cJSON_IsNumber(br) ? br->valuedouble : -1.0;
    if (br && !cJSON_IsNull(br) && !cJSON_IsNumber(br)) {
        rc = wan_err(err, WAN_ERR_FORMAT, "%s: boundary_ratio must be a number or null", path);
        goto done;
    }
    if (cJSON_IsNumber(br) && !(br->valuedouble > 0.0 && br->valuedouble < 1.0)) {
        rc = wan_err(err, WAN_ERR_FORMAT, "%s: boundary_ratio %g is outside (0, 1)", path, br->valuedouble);
        goto done;
    }
    m->pipe.expand_timesteps = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "expand_timesteps"));
    for (int c = 0; c < WAN_COMPONENT_COUNT; c++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k_component_names[c]);
        if (!v)
            continue;
        const cJSON *lib = cJSON_GetArrayItem(v, 0), *kls = cJSON_GetArrayItem(v, 1);
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2) {
            rc = wan_err(err, WAN_ERR_FORMAT, "%s: '%s' must be a [library, class] pair", path,
                         k_component_names[c]);
            goto done;
        }
        if (cJSON_IsNull(lib) && cJSON_IsNull(kls))
            continue; /* absent component */
        if (!cJSON_IsString(kls) || !class_ok((wan_component)c, kls->valuestring)) {
            rc = wan_err(err, WAN_ERR_UNSUPPORTED, "%s: component '%s' has unsupported class '%s'", path,
                         k_component_names[c], cJSON_IsString(kls) ? kls->valuestring : "(not a string)");
            goto done;
        }
        char *dir = wan_path_join(m->path, k_component_names[c]);
        if (!dir) {
            rc = wan_err(err, WAN_ERR_NOMEM, "out of memory");
            goto done;
        }
        rc = load_component(m, (wan_component)c, dir, kls->valuestring, p, err);
        wan_free(dir);
        if (rc != WAN_OK)
            goto done;
    }
    if (!m->comp[WAN_COMPONENT_TRANSFORMER].present) {
        rc = wan_err(err, WAN_ERR_NOT_FOUND, "%s: the pipeline has no transformer", path);
        goto done;
    }
    if (m->comp[WAN_COMPONENT_TRANSFORMER_2].present && m->pipe.boundary_ratio < 0) {
        rc = wan_err(err, WAN_ERR_FORMAT, "%s: two experts but no boundary_ratio", path);
        goto done;
    }
done:
    cJSON_Delete(o);
    wan_free(path);
    return rc;
}

static wan_status load_original_extras(wan_model_t *m, const wan_model_params *p, double shift, wan_error *err);

/* A single component folder: dispatch on config.json's class. */
static wan_status load_component_folder(wan_model_t *m, const wan_model_params *p, wan_error *err)
{
    char *text = NULL, *path = NULL;
    size_t len = 0;
    wan_status rc = read_in(m->path, "config.json", &text, &len, &path, err);
    if (rc != WAN_OK) {
        wan_free(path);
        return rc;
    }
    cJSON *o = cJSON_ParseWithLength(text, len);
    wan_free(text);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        rc = wan_err(err, WAN_ERR_FORMAT, "%s: not a valid JSON object", path);
        wan_free(path);
        return rc;
    }
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(o, "_class_name");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(o, "model_type");
    const char *c = cJSON_IsString(cls) ? cls->valuestring : "";
    if (strcmp(c, "WanTransformer3DModel") == 0) {
        rc = load_weights_dir(m, WAN_COMPONENT_TRANSFORMER, m->path, p, err);
    } else if (strcmp(c, "WanModel") == 0) { /* an original release with the DiT at its root (TI2V-5B) */
        m->layout = WAN_LAYOUT_ORIGINAL;
        bool ti2v = cJSON_IsString(mt) && strcmp(mt->valuestring, "ti2v") == 0;
        m->pipe.expand_timesteps = ti2v;
        rc = load_weights_dir(m, WAN_COMPONENT_TRANSFORMER, m->path, p, err);
        if (rc == WAN_OK)
            rc = load_original_extras(m, p, ti2v ? 5.0 : 3.0, err);
    } else if (strcmp(c, "AutoencoderKLWan") == 0) {
        rc = load_weights_dir(m, WAN_COMPONENT_VAE, m->path, p, err);
    } else if (cJSON_IsString(mt) && (strcmp(mt->valuestring, "umt5") == 0 || strcmp(mt->valuestring, "t5") == 0)) {
        rc = load_weights_dir(m, WAN_COMPONENT_TEXT_ENCODER, m->path, p, err);
    } else {
        rc = wan_err(err, WAN_ERR_UNSUPPORTED,
                     "%s: unknown _class_name '%s' (expected WanTransformer3DModel, WanModel, "
                     "AutoencoderKLWan or a umT5 text encoder config)", path, c[0] ? c : "(missing)");
    }
    cJSON_Delete(o);
    wan_free(path);
    return rc;
}

/* First of the candidate files that exists under dir, or NULL. */
static char *first_file(const char *dir, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char *p = wan_path_join(dir, names[i]);
        if (p && wan_path_is_file(p))
            return p;
        wan_free(p);
    }
    return NULL;
}

static wan_status load_single_file_vae(wan_model_t *m, const char *file, const wan_model_params *p,
                                       wan_error *err);
static wan_status load_single_file_text_encoder(wan_model_t *m, const char *file, const wan_model_params *p,
                                                wan_error *err);

/* The scheduler diffusers' converter writes for an original release (pipeline.md 1.5): UniPC with flow
 * sigmas and flow_shift 3 (T2V) or 5 (TI2V-5B). The official scripts use other shifts (12 for A14B T2V):
 * pass --shift to reproduce them. */
static wan_status original_scheduler(wan_model_t *m, double shift, wan_error *err)
{
    wan_scheduler_config_default(&m->sched);
    m->sched.use_flow_sigmas = 1;
    m->sched.flow_shift = shift;
    snprintf(m->sched.prediction_type, sizeof m->sched.prediction_type, "flow_prediction");
    return slot_set(&m->comp[WAN_COMPONENT_SCHEDULER], "UniPCMultistepScheduler", m->path, err);
}

/* The files next to the DiT of an original release: the VAE and the umT5 encoder as .safetensors or as
 * the released .pth pickles, the tokenizer folder google/umt5-xxl/, and the scheduler the diffusers
 * converter would write. */
static wan_status load_original_extras(wan_model_t *m, const wan_model_params *p, double shift, wan_error *err)
{
    static const char *const vaes[] = { "Wan2.1_VAE.safetensors", "Wan2.2_VAE.safetensors", "Wan2.1_VAE.pth",
                                        "Wan2.2_VAE.pth" };
    char *vae = first_file(m->path, vaes, sizeof vaes / sizeof *vaes);
    if (vae) {
        wan_status rc = load_single_file_vae(m, vae, p, err);
        wan_free(vae);
        if (rc != WAN_OK)
            return rc;
    }
    static const char *const t5[] = { "models_t5_umt5-xxl-enc-bf16.safetensors", "models_t5_umt5-xxl-enc-bf16.pth" };
    char *te = first_file(m->path, t5, sizeof t5 / sizeof *t5);
    if (te) {
        wan_status rc = load_single_file_text_encoder(m, te, p, err);
        wan_free(te);
        if (rc != WAN_OK)
            return rc;
    }
    char *tok = wan_path_join(m->path, "google/umt5-xxl");
    if (tok && wan_path_is_dir(tok)) {
        wan_status rc = load_tokenizer_dir(m, tok, "T5TokenizerFast", err);
        if (rc != WAN_OK) {
            wan_free(tok);
            return rc;
        }
    }
    wan_free(tok);
    return original_scheduler(m, shift, err);
}

/* Original Wan release: experts in high_noise_model/ and low_noise_model/, VAE and umT5 at the root. */
static wan_status load_original(wan_model_t *m, const wan_model_params *p, wan_error *err)
{
    static const char *const experts[2] = { "high_noise_model", "low_noise_model" };
    m->pipe.boundary_ratio = 0.875; /* the official A14B T2V boundary */
    for (int e = 0; e < 2; e++) {
        char *dir = wan_path_join(m->path, experts[e]);
        if (!dir)
            return wan_err(err, WAN_ERR_NOMEM, "out of memory");
        wan_status rc = wan_path_is_dir(dir) ? load_weights_dir(m, e ? WAN_COMPONENT_TRANSFORMER_2 : WAN_COMPONENT_TRANSFORMER, dir, p, err)
                                             : wan_err(err, WAN_ERR_NOT_FOUND, "%s: missing %s/", m->path,
                                                       experts[e]);
        wan_free(dir);
        if (rc != WAN_OK)
            return rc;
    }
    return load_original_extras(m, p, 3.0, err);
}

/* ---- single files ----------------------------------------------------------------------------- */

/* A VAE in one file, under diffusers names or the original Wan2.1_VAE / Wan2.2_VAE names (renamed);
 * the config comes from the tensor shapes. */
static wan_status load_single_file_vae(wan_model_t *m, const char *file, const wan_model_params *p,
                                       wan_error *err)
{
    wan_component_slot *s = &m->comp[WAN_COMPONENT_VAE];
    wan_status rc = wan_st_set_open_file(file, &s->weights, err);
    if (rc == WAN_OK && !wan_st_set_find(s->weights, "decoder.conv_in.weight") &&
        wan_st_set_find(s->weights, "decoder.conv1.weight")) {
        s->original_names = 1;
        rc = wan_vae_rename_set(s->weights, err);
    }
    if (rc == WAN_OK)
        rc = wan_vae_infer_config(s->weights, &m->vae, err);
    if (rc == WAN_OK)
        rc = slot_set(s, "AutoencoderKLWan", file, err);
    if (rc == WAN_OK && p->validate_shapes)
        rc = check_vae_weights(s->weights, &m->vae, err);
    return rc;
}

/* A umT5 encoder in one file, under transformers names or the original Wan T5 names (renamed). */
static wan_status load_single_file_text_encoder(wan_model_t *m, const char *file, const wan_model_params *p,
                                                wan_error *err)
{
    wan_component_slot *s = &m->comp[WAN_COMPONENT_TEXT_ENCODER];
    wan_status rc = wan_st_set_open_file(file, &s->weights, err);
    if (rc == WAN_OK && wan_st_set_find(s->weights, "token_embedding.weight")) {
        s->original_names = 1;
        rc = wan_st_set_rename(s->weights, wan_umt5_rename_original, NULL, err);
    }
    if (rc == WAN_OK)
        rc = infer_text_encoder(s->weights, &m->te, err);
    if (rc == WAN_OK)
        rc = slot_set(s, "UMT5EncoderModel", file, err);
    if (rc == WAN_OK && p->validate_shapes)
        rc = check_text_encoder_weights(s->weights, &m->te, err);
    return rc;
}

static wan_status load_single_file(wan_model_t *m, const wan_model_params *p, wan_error *err)
{
    wan_st_set *w;
    wan_status rc = wan_st_set_open_file(m->path, &w, err);
    if (rc != WAN_OK)
        return rc;
    bool dit = wan_st_set_find(w, "patch_embedding.weight") || wan_st_set_find(w, "head.modulation") ||
               wan_st_set_find(w, "model.diffusion_model.patch_embedding.weight");
    bool vae = wan_st_set_find(w, "decoder.conv_in.weight") || wan_st_set_find(w, "decoder.conv1.weight");
    bool te = wan_st_set_find(w, "shared.weight") || wan_st_set_find(w, "encoder.embed_tokens.weight") ||
              wan_st_set_find(w, "token_embedding.weight");
    if (dit) {
        wan_component_slot *s = &m->comp[WAN_COMPONENT_TRANSFORMER];
        s->weights = w;
        rc = normalise_dit_names(s, err);
        if (rc == WAN_OK)
            rc = infer_transformer(w, &m->tc[0], err);
        if (rc == WAN_OK)
            rc = slot_set(s, "WanTransformer3DModel", m->path, err);
        if (rc == WAN_OK && p->validate_shapes)
            rc = wan_transformer_check_weights(w, &m->tc[0], err);
        return rc;
    }
    if (vae) {
        wan_st_set_free(w);
        return load_single_file_vae(m, m->path, p, err);
    }
    if (te) {
        wan_st_set_free(w);
        return load_single_file_text_encoder(m, m->path, p, err);
    }
    wan_st_set_free(w);
    return wan_err(err, WAN_ERR_UNSUPPORTED,
                   "%s: not a Wan transformer, VAE or umT5 checkpoint (no patch_embedding.weight, "
                   "decoder.conv_in.weight, shared.weight or token_embedding.weight)", m->path);
}

/* ---- public entry points ---------------------------------------------------------------------- */

wan_status wan_model_load(const char *path, const wan_model_params *params, wan_model_t **out,
                          char *errbuf, size_t errlen)
{
    wan_error err = { 0 };
    wan_model_params p = params ? *params : wan_model_default_params();
    if (out)
        *out = NULL;
    if (!path || !out) {
        wan_err(&err, WAN_ERR_INVALID_ARG, "wan_model_load: path and out must not be NULL");
        wan_err_copy(&err, errbuf, errlen);
        return err.code;
    }
    wan_model_t *m = wan_calloc(1, sizeof *m);
    if (!m || !(m->path = wan_strdup(path))) {
        wan_free(m);
        wan_err(&err, WAN_ERR_NOMEM, "%s: out of memory", path);
        wan_err_copy(&err, errbuf, errlen);
        return err.code;
    }
    m->pipe.boundary_ratio = -1.0;
    wan_scheduler_config_default(&m->sched);
    wan_status rc;
    char *probe = NULL;
    if (wan_path_is_file(path)) {
        m->layout = WAN_LAYOUT_SINGLE_FILE;
        rc = load_single_file(m, &p, &err);
    } else if (!wan_path_is_dir(path)) {
        rc = wan_err(&err, WAN_ERR_NOT_FOUND, "%s: no such file or folder", path);
    } else if (wan_path_is_file((probe = wan_path_join(path, "model_index.json")))) {
        m->layout = WAN_LAYOUT_DIFFUSERS_PIPELINE;
        rc = load_pipeline(m, &p, &err);
    } else if (wan_free(probe), wan_path_is_dir((probe = wan_path_join(path, "high_noise_model")))) {
        m->layout = WAN_LAYOUT_ORIGINAL;
        rc = load_original(m, &p, &err);
    } else if (wan_free(probe), wan_path_is_file((probe = wan_path_join(path, "config.json")))) {
        m->layout = WAN_LAYOUT_DIFFUSERS_COMPONENT;
        rc = load_component_folder(m, &p, &err);
    } else {
        rc = wan_err(&err, WAN_ERR_NOT_FOUND,
                     "%s: not a model folder (no model_index.json, config.json or high_noise_model/)", path);
    }
    wan_free(probe);
    if (rc != WAN_OK) {
        wan_err_copy(&err, errbuf, errlen);
        wan_model_free(m);
        return rc;
    }
    wan_err_copy(&(wan_error){ 0 }, errbuf, errlen);
    *out = m;
    return WAN_OK;
}

wan_layout wan_model_layout(const wan_model_t *m) { return m->layout; }
const char *wan_model_path(const wan_model_t *m) { return m->path; }

const wan_st_set *wan_model_weights(const wan_model_t *m, wan_component c)
{
    return ((unsigned)c < WAN_COMPONENT_COUNT) ? m->comp[c].weights : NULL;
}

void wan_model_release_component(const wan_model_t *m, wan_component c)
{
    if (m && (unsigned)c < WAN_COMPONENT_COUNT)
        wan_st_set_release(m->comp[c].weights);
}


wan_status wan_model_component_info(const wan_model_t *m, wan_component c, wan_component_info *info)
{
    if (!m || !info || (unsigned)c >= WAN_COMPONENT_COUNT)
        return WAN_ERR_INVALID_ARG;
    memset(info, 0, sizeof *info);
    const wan_component_slot *s = &m->comp[c];
    info->present = s->present;
    if (!s->present)
        return WAN_OK;
    info->class_name = s->class_name;
    info->path = s->path;
    info->original_names = s->original_names;
    if (s->weights) {
        info->n_files = s->weights->n_files;
        for (int i = 0; i < s->weights->n; i++) {
            const wan_st_tensor *t = s->weights->entries[i].t;
            int64_t n = 1;
            for (int d = 0; d < t->ndim; d++)
                n *= t->shape[d];
            info->n_tensors++;
            const wan_st_entry *e = &s->weights->entries[i];
            wan_tensor view;
            if (wan_st_set_aux_owner(s->weights, e, &view)) /* scales are not parameters */
                n = 0;
            else if (wan_st_set_quantised(s->weights, e, &view)) /* q4_0 stores two values a byte */
                n = wan_tensor_numel(&view);
            info->n_params += n;
            info->n_bytes += (int64_t)(t->end - t->begin);
            info->bytes_by_dtype[t->dtype] += (int64_t)(t->end - t->begin);
        }
    }
    return WAN_OK;
}

const wan_transformer_config *wan_model_transformer_config(const wan_model_t *m, int expert)
{
    if (expert < 0 || expert > 1)
        return NULL;
    return m->comp[expert ? WAN_COMPONENT_TRANSFORMER_2 : WAN_COMPONENT_TRANSFORMER].present ? &m->tc[expert]
                                                                                            : NULL;
}

const wan_vae_config *wan_model_vae_config(const wan_model_t *m)
{
    return m->comp[WAN_COMPONENT_VAE].present ? &m->vae : NULL;
}

const wan_text_encoder_config *wan_model_text_encoder_config(const wan_model_t *m)
{
    return m->comp[WAN_COMPONENT_TEXT_ENCODER].present ? &m->te : NULL;
}

const wan_scheduler_config *wan_model_scheduler_config(const wan_model_t *m)
{
    return m->comp[WAN_COMPONENT_SCHEDULER].present ? &m->sched : NULL;
}

const wan_pipeline_config *wan_model_pipeline_config(const wan_model_t *m) { return &m->pipe; }

/* Peak = the largest stage (text encoder, one expert, VAE) + that stage's activations. Weights count
 * at 2 bytes per parameter (bf16 compute copies of f32 files, or the mapped bf16 pages). */
int64_t wan_model_estimate_memory(const wan_model_t *m, int width, int height, int frames)
{
    const wan_transformer_config *tc = wan_model_transformer_config(m, 0);
    if (!tc || width <= 0 || height <= 0 || frames <= 0)
        return 0;
    wan_component_info ti, vi, ei;
    wan_model_component_info(m, WAN_COMPONENT_TRANSFORMER, &ti);
    wan_model_component_info(m, WAN_COMPONENT_VAE, &vi);
    wan_model_component_info(m, WAN_COMPONENT_TEXT_ENCODER, &ei);
    int vs = m->comp[WAN_COMPONENT_VAE].present ? m->vae.scale_factor_spatial : 8;
    int vt = m->comp[WAN_COMPONENT_VAE].present ? m->vae.scale_factor_temporal : 4;
    int64_t T = (frames - 1) / vt + 1, h = height / vs, w = width / vs;
    int64_t L = (T / tc->patch_size[0]) * (h / tc->patch_size[1]) * (w / tc->patch_size[2]);
    int64_t D = (int64_t)tc->num_attention_heads * tc->attention_head_dim;
    /* residual, normed input, q, k, v, attention out, FFN hidden (F wide), text K/V of both passes */
    int64_t dit_act = 4 * (L * D * 7 + L * tc->ffn_dim + 4 * 512 * D) + 2 * 4 * T * h * w * tc->in_channels;
    int64_t dit = ti.n_bytes + dit_act; /* weights used in place from the mapping, at their stored size */
    int64_t te = ei.present ? ei.n_bytes + 4 * 512 * (int64_t)m->te.d_ff * 2 : 0;
    /* VAE: the widest full-resolution activations of one 4-frame chunk, a few buffers, plus cache */
    int64_t dec_w = m->comp[WAN_COMPONENT_VAE].present ? m->vae.decoder_base_dim : 96;
    int64_t vae = vi.present ? vi.n_params * 4 + 4 * 6 * 4 * (int64_t)height * width * dec_w : 0;
    int64_t frames_out = 4 * (int64_t)frames * height * width * 3;
    int64_t peak = dit;
    if (te > peak)
        peak = te;
    if (vae > peak)
        peak = vae;
    return peak + frames_out;
}
