/* model_dir.c — opening a model from a diffusers pipeline folder, a component folder, an original Wan
 * release folder or a single safetensors file; typed configs with diffusers' defaults; shape checks. */
#define _POSIX_C_SOURCE 200809L
#include "model_dir.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const float k_wan21_mean[16] = { -0.7571f, -0.7089f, -0.9113f, 0.1075f, -0.1745f, 0.9653f,
                                        -0.1517f, 1.5508f,  0.4134f,  -0.0715f, 0.5517f, -0.3632f,
                                        -0.1922f, -0.9497f, 0.2503f,  -0.2921f };
static const float k_wan21_std[16] = { 2.8184f, 1.4541f, 2.3275f, 2.6558f, 1.2196f, 1.7708f,
                                       2.6052f, 2.0743f, 3.2687f, 2.1526f, 2.8652f, 1.5579f,
                                       1.6382f, 1.1253f, 2.8251f, 1.9160f };
static const float k_wan22_mean[48] = {
    -0.2289f, -0.0052f, -0.1323f, -0.2339f, -0.2799f, 0.0174f,  0.1838f,  0.1557f,
    -0.1382f, 0.0542f,  0.2813f,  0.0891f,  0.1570f,  -0.0098f, 0.0375f,  -0.1825f,
    -0.2246f, -0.1207f, -0.0698f, 0.5109f,  0.2665f,  -0.2108f, -0.2158f, 0.2502f,
    -0.2055f, -0.0322f, 0.1109f,  0.1567f,  -0.0729f, 0.0899f,  -0.2799f, -0.1230f,
    -0.0313f, -0.1649f, 0.0117f,  0.0723f,  -0.2839f, -0.2083f, -0.0520f, 0.3748f,
    0.0152f,  0.1957f,  0.1433f,  -0.2944f, 0.3573f,  -0.0548f, -0.1681f, -0.0667f
};
static const float k_wan22_std[48] = {
    0.4765f, 1.0364f, 0.4514f, 1.1677f, 0.5313f, 0.4990f, 0.4818f, 0.5013f, 0.8158f, 1.0344f,
    0.5894f, 1.0901f, 0.6885f, 0.6165f, 0.8454f, 0.4978f, 0.5759f, 0.3523f, 0.7135f, 0.6804f,
    0.5833f, 1.4146f, 0.8986f, 0.5659f, 0.7069f, 0.5338f, 0.4889f, 0.4917f, 0.4069f, 0.4999f,
    0.6866f, 0.4093f, 0.5709f, 0.6065f, 0.6415f, 0.4944f, 0.5726f, 1.2042f, 0.5458f, 1.6887f,
    0.3971f, 1.0600f, 0.3943f, 0.5537f, 0.5444f, 0.4089f, 0.7468f, 0.7744f
};

/* ---- JSON field helpers: absent or null means "use the default" ------------------------------- */

static const cJSON *field(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

static wan_status get_int(const cJSON *o, const char *key, int *out, const char *where, wan_error *err)
{
    const cJSON *v = field(o, key);
    if (!v)
        return WAN_OK;
    if (cJSON_IsBool(v)) {
        *out = cJSON_IsTrue(v);
        return WAN_OK;
    }
    if (!cJSON_IsNumber(v) || floor(v->valuedouble) != v->valuedouble || fabs(v->valuedouble) > 1e9)
        return wan_err(err, WAN_ERR_FORMAT, "%s: field '%s' must be an integer", where, key);
    *out = (int)v->valuedouble;
    return WAN_OK;
}

static wan_status get_double(const cJSON *o, const char *key, double *out, const char *where,
                             wan_error *err)
{
    const cJSON *v = field(o, key);
    if (!v)
        return WAN_OK;
    if (!cJSON_IsNumber(v))
        return wan_err(err, WAN_ERR_FORMAT, "%s: field '%s' must be a number", where, key);
    *out = v->valuedouble;
    return WAN_OK;
}

static wan_status get_str(const cJSON *o, const char *key, char *out, size_t len, const char *where,
                          wan_error *err)
{
    const cJSON *v = field(o, key);
    if (!v)
        return WAN_OK;
    if (!cJSON_IsString(v))
        return wan_err(err, WAN_ERR_FORMAT, "%s: field '%s' must be a string", where, key);
    snprintf(out, len, "%s", v->valuestring);
    return WAN_OK;
}

/* Integer list (or a single integer, broadcast): at most cap entries; *n receives the count. */
static wan_status get_int_list(const cJSON *o, const char *key, int *out, int cap, int *n,
                               const char *where, wan_error *err)
{
    const cJSON *v = field(o, key);
    if (!v)
        return WAN_OK;
    if (cJSON_IsNumber(v)) {
        if (floor(v->valuedouble) != v->valuedouble || fabs(v->valuedouble) > 1e9)
            return wan_err(err, WAN_ERR_FORMAT, "%s: field '%s' must be an integer", where, key);
        for (int i = 0; i < cap; i++)
            out[i] = (int)v->valuedouble;
        if (n)
            *n = 1;
        return WAN_OK;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > cap)
        return wan_err(err, WAN_ERR_FORMAT, "%s: field '%s' must be a list of at most %d integers",
                       where, key, cap);
    int i = 0;
    for (const cJSON *it = v->child; it; it = it->next, i++) {
        if (cJSON_IsBool(it))
            out[i] = cJSON_IsTrue(it);
        else if (cJSON_IsNumber(it) && floor(it->valuedouble) == it->valuedouble &&
                 fabs(it->valuedouble) <= 1e9)
            out[i] = (int)it->valuedouble;
        else
            return wan_err(err, WAN_ERR_FORMAT, "%s: field '%s'[%d] must be an integer", where, key, i);
    }
    if (n)
        *n = i;
    return WAN_OK;
}

static wan_status get_float_list(const cJSON *o, const char *key, float *out, int cap, int *n,
                                 const char *where, wan_error *err)
{
    const cJSON *v = field(o, key);
    if (!v)
        return WAN_OK;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > cap)
        return wan_err(err, WAN_ERR_FORMAT, "%s: field '%s' must be a list of at most %d numbers", where,
                       key, cap);
    int i = 0;
    for (const cJSON *it = v->child; it; it = it->next, i++) {
        if (!cJSON_IsNumber(it) || !(fabs(it->valuedouble) <= FLT_MAX))
            return wan_err(err, WAN_ERR_FORMAT, "%s: field '%s'[%d] must be a finite float", where, key, i);
        out[i] = (float)it->valuedouble;
    }
    *n = i;
    return WAN_OK;
}

static wan_status parse_object(const char *json, size_t len, const char *where, cJSON **out,
                               wan_error *err)
{
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!*out)
        return wan_err(err, WAN_ERR_FORMAT, "%s: not valid JSON (near byte %zu)", where,
                       end ? (size_t)(end - json) : (size_t)0);
    if (!cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return wan_err(err, WAN_ERR_FORMAT, "%s: expected a JSON object", where);
    }
    return WAN_OK;
}

#define TRY(expr)                                                                                 \
    do {                                                                                          \
        wan_status rc_ = (expr);                                                                  \
        if (rc_ != WAN_OK) {                                                                      \
            rc = rc_;                                                                             \
            goto done;                                                                            \
        }                                                                                         \
    } while (0)

/* ---- transformer config ----------------------------------------------------------------------- */

void wan_transformer_config_default(wan_transformer_config *c)
{
    *c = (wan_transformer_config){
        .patch_size = { 1, 2, 2 }, .num_attention_heads = 40, .attention_head_dim = 128,
        .in_channels = 16, .out_channels = 16, .text_dim = 4096, .freq_dim = 256, .ffn_dim = 13824,
        .num_layers = 40, .cross_attn_norm = 1, .eps = 1e-6, .rope_max_seq_len = 1024,
    };
}

static wan_status check_transformer_config(const wan_transformer_config *c, const char *where,
                                           wan_error *err)
{
    if (c->num_attention_heads <= 0 || c->attention_head_dim <= 0 || c->attention_head_dim % 2 ||
        c->in_channels <= 0 || c->out_channels <= 0 || c->text_dim <= 0 || c->freq_dim <= 0 ||
        c->freq_dim % 2 || c->ffn_dim <= 0 || c->num_layers <= 0 || c->patch_size[0] <= 0 ||
        c->patch_size[1] <= 0 || c->patch_size[2] <= 0 || !(c->eps > 0) || c->rope_max_seq_len <= 0)
        return wan_err(err, WAN_ERR_FORMAT,
                       "%s: transformer config out of range (heads %d, head_dim %d (even), channels "
                       "%d/%d, text_dim %d, freq_dim %d (even), ffn %d, layers %d, patch %d/%d/%d, eps %g)",
                       where, c->num_attention_heads, c->attention_head_dim, c->in_channels,
                       c->out_channels, c->text_dim, c->freq_dim, c->ffn_dim, c->num_layers,
                       c->patch_size[0], c->patch_size[1], c->patch_size[2], c->eps);
    return WAN_OK;
}

wan_status wan_parse_transformer_config(const char *json, size_t len, const char *where,
                                        wan_transformer_config *out, char *class_name, size_t cn_len,
                                        wan_error *err)
{
    cJSON *o;
    wan_status rc = parse_object(json, len, where, &o, err);
    if (rc != WAN_OK)
        return rc;
    wan_transformer_config c;
    wan_transformer_config_default(&c);
    char cls[64] = "";
    TRY(get_str(o, "_class_name", cls, sizeof cls, where, err));
    if (strcmp(cls, "WanModel") == 0) {
        /* Original WanModel names; patch_size, cross_attn_norm, qk_norm and text_dim keep their
         * defaults there (transformer.md 1). */
        int dim = 5120;
        TRY(get_int(o, "dim", &dim, where, err));
        TRY(get_int(o, "num_heads", &c.num_attention_heads, where, err));
        TRY(get_int(o, "in_dim", &c.in_channels, where, err));
        c.out_channels = c.in_channels;
        TRY(get_int(o, "out_dim", &c.out_channels, where, err));
        TRY(get_int(o, "ffn_dim", &c.ffn_dim, where, err));
        TRY(get_int(o, "freq_dim", &c.freq_dim, where, err));
        TRY(get_int(o, "num_layers", &c.num_layers, where, err));
        TRY(get_double(o, "eps", &c.eps, where, err));
        TRY(get_int(o, "text_dim", &c.text_dim, where, err));
        TRY(get_int_list(o, "patch_size", c.patch_size, 3, NULL, where, err));
        if (c.num_attention_heads <= 0 || dim % c.num_attention_heads) {
            rc = wan_err(err, WAN_ERR_FORMAT, "%s: dim %d is not a multiple of num_heads %d", where, dim,
                         c.num_attention_heads);
            goto done;
        }
        c.attention_head_dim = dim / c.num_attention_heads;
    } else if (strcmp(cls, "WanTransformer3DModel") == 0) {
        int n = 0;
        TRY(get_int_list(o, "patch_size", c.patch_size, 3, &n, where, err));
        TRY(get_int(o, "num_attention_heads", &c.num_attention_heads, where, err));
        TRY(get_int(o, "attention_head_dim", &c.attention_head_dim, where, err));
        TRY(get_int(o, "in_channels", &c.in_channels, where, err));
        c.out_channels = 0;
        TRY(get_int(o, "out_channels", &c.out_channels, where, err));
        if (c.out_channels == 0) /* null or 0 falls back to in_channels */
            c.out_channels = c.in_channels;
        TRY(get_int(o, "text_dim", &c.text_dim, where, err));
        TRY(get_int(o, "freq_dim", &c.freq_dim, where, err));
        TRY(get_int(o, "ffn_dim", &c.ffn_dim, where, err));
        TRY(get_int(o, "num_layers", &c.num_layers, where, err));
        TRY(get_int(o, "cross_attn_norm", &c.cross_attn_norm, where, err));
        TRY(get_double(o, "eps", &c.eps, where, err));
        TRY(get_int(o, "rope_max_seq_len", &c.rope_max_seq_len, where, err));
        TRY(get_int(o, "image_dim", &c.image_dim, where, err));
        TRY(get_int(o, "added_kv_proj_dim", &c.added_kv_proj_dim, where, err));
    } else {
        rc = wan_err(err, WAN_ERR_UNSUPPORTED,
                     "%s: _class_name '%s' is not a Wan transformer (WanTransformer3DModel or WanModel)",
                     where, cls);
        goto done;
    }
    TRY(check_transformer_config(&c, where, err));
    if (c.image_dim || c.added_kv_proj_dim) {
        rc = wan_err(err, WAN_ERR_UNSUPPORTED,
                     "%s: image-conditioned transformer (image_dim %d, added_kv_proj_dim %d) is not "
                     "supported yet", where, c.image_dim, c.added_kv_proj_dim);
        goto done;
    }
    *out = c;
    if (class_name)
        snprintf(class_name, cn_len, "%s", cls);
done:
    cJSON_Delete(o);
    return rc;
}

/* ---- VAE config ------------------------------------------------------------------------------- */

void wan_vae_config_default(wan_vae_config *c)
{
    memset(c, 0, sizeof *c);
    c->base_dim = 96;
    c->z_dim = 16;
    c->n_dim_mult = 4;
    c->dim_mult[0] = 1, c->dim_mult[1] = 2, c->dim_mult[2] = 4, c->dim_mult[3] = 4;
    c->num_res_blocks = 2;
    c->temporal_downsample[0] = 0, c->temporal_downsample[1] = 1, c->temporal_downsample[2] = 1;
    c->in_channels = 3;
    c->out_channels = 3;
    c->scale_factor_temporal = 4;
    c->scale_factor_spatial = 8;
    memcpy(c->latents_mean, k_wan21_mean, sizeof k_wan21_mean);
    memcpy(c->latents_std, k_wan21_std, sizeof k_wan21_std);
}

void wan_vae_config_default_latents(wan_vae_config *c)
{
    if (c->z_dim == 48) {
        memcpy(c->latents_mean, k_wan22_mean, sizeof k_wan22_mean);
        memcpy(c->latents_std, k_wan22_std, sizeof k_wan22_std);
    } else if (c->z_dim == 16) {
        memcpy(c->latents_mean, k_wan21_mean, sizeof k_wan21_mean);
        memcpy(c->latents_std, k_wan21_std, sizeof k_wan21_std);
    }
}

static wan_status check_vae_config(const wan_vae_config *c, const char *where, wan_error *err)
{
    bool ok = c->base_dim > 0 && c->decoder_base_dim > 0 && c->z_dim > 0 &&
              c->z_dim <= WAN_VAE_MAX_Z && c->n_dim_mult >= 2 && c->num_res_blocks > 0 &&
              c->in_channels > 0 && c->out_channels > 0 && c->patch_size >= 0 &&
              c->scale_factor_temporal > 0 && c->scale_factor_spatial > 0;
    for (int i = 0; ok && i < c->n_dim_mult; i++)
        ok = c->dim_mult[i] > 0;
    if (!ok)
        return wan_err(err, WAN_ERR_FORMAT,
                       "%s: VAE config out of range (base_dim %d, decoder_base_dim %d, z_dim %d (<= %d), "
                       "%d dim_mult levels, num_res_blocks %d)",
                       where, c->base_dim, c->decoder_base_dim, c->z_dim, WAN_VAE_MAX_Z, c->n_dim_mult,
                       c->num_res_blocks);
    for (int i = 0; i < c->z_dim; i++)
        if (!(c->latents_std[i] != 0.0f) || !isfinite(c->latents_std[i]) ||
            !isfinite(c->latents_mean[i]))
            return wan_err(err, WAN_ERR_FORMAT, "%s: latents_std[%d] is zero or not finite", where, i);
    return WAN_OK;
}

wan_status wan_parse_vae_config(const char *json, size_t len, const char *where, wan_vae_config *out,
                                wan_error *err)
{
    cJSON *o;
    wan_status rc = parse_object(json, len, where, &o, err);
    if (rc != WAN_OK)
        return rc;
    wan_vae_config c;
    wan_vae_config_default(&c);
    char cls[64] = "";
    TRY(get_str(o, "_class_name", cls, sizeof cls, where, err));
    if (strcmp(cls, "AutoencoderKLWan") != 0) {
        rc = wan_err(err, WAN_ERR_UNSUPPORTED, "%s: _class_name '%s' is not AutoencoderKLWan", where, cls);
        goto done;
    }
    TRY(get_int(o, "base_dim", &c.base_dim, where, err));
    c.decoder_base_dim = 0;
    TRY(get_int(o, "decoder_base_dim", &c.decoder_base_dim, where, err));
    if (c.decoder_base_dim == 0)
        c.decoder_base_dim = c.base_dim;
    TRY(get_int(o, "z_dim", &c.z_dim, where, err));
    TRY(get_int_list(o, "dim_mult", c.dim_mult, 8, &c.n_dim_mult, where, err));
    TRY(get_int(o, "num_res_blocks", &c.num_res_blocks, where, err));
    int ntd = 0;
    TRY(get_int_list(o, "temperal_downsample", c.temporal_downsample, 8, &ntd, where, err));
    TRY(get_int(o, "is_residual", &c.is_residual, where, err));
    TRY(get_int(o, "in_channels", &c.in_channels, where, err));
    TRY(get_int(o, "out_channels", &c.out_channels, where, err));
    TRY(get_int(o, "patch_size", &c.patch_size, where, err));
    TRY(get_int(o, "scale_factor_temporal", &c.scale_factor_temporal, where, err));
    TRY(get_int(o, "scale_factor_spatial", &c.scale_factor_spatial, where, err));
    wan_vae_config_default_latents(&c);
    int nm = -1, ns = -1;
    TRY(get_float_list(o, "latents_mean", c.latents_mean, WAN_VAE_MAX_Z, &nm, where, err));
    TRY(get_float_list(o, "latents_std", c.latents_std, WAN_VAE_MAX_Z, &ns, where, err));
    if ((nm >= 0 && nm != c.z_dim) || (ns >= 0 && ns != c.z_dim) ||
        (nm < 0 && c.z_dim != 16 && c.z_dim != 48)) {
        rc = wan_err(err, WAN_ERR_FORMAT,
                     "%s: latents_mean/latents_std need z_dim = %d entries (got %d and %d)", where,
                     c.z_dim, nm, ns);
        goto done;
    }
    TRY(check_vae_config(&c, where, err));
    *out = c;
done:
    cJSON_Delete(o);
    return rc;
}

/* ---- text encoder config ---------------------------------------------------------------------- */

void wan_text_encoder_config_default(wan_text_encoder_config *c)
{
    *c = (wan_text_encoder_config){
        .vocab_size = 256384, .d_model = 4096, .d_kv = 64, .d_ff = 10240, .num_layers = 24,
        .num_heads = 64, .relative_attention_num_buckets = 32,
        .relative_attention_max_distance = 128, .layer_norm_epsilon = 1e-6, .gated_gelu = 1,
    };
}

wan_status wan_parse_text_encoder_config(const char *json, size_t len, const char *where,
                                         wan_text_encoder_config *out, wan_error *err)
{
    cJSON *o;
    wan_status rc = parse_object(json, len, where, &o, err);
    if (rc != WAN_OK)
        return rc;
    wan_text_encoder_config c;
    wan_text_encoder_config_default(&c);
    char mt[32] = "", ff[32] = "gated-gelu";
    TRY(get_str(o, "model_type", mt, sizeof mt, where, err));
    if (strcmp(mt, "umt5") != 0 && strcmp(mt, "t5") != 0) {
        rc = wan_err(err, WAN_ERR_UNSUPPORTED, "%s: model_type '%s' is not umt5", where, mt);
        goto done;
    }
    TRY(get_int(o, "vocab_size", &c.vocab_size, where, err));
    TRY(get_int(o, "d_model", &c.d_model, where, err));
    TRY(get_int(o, "d_kv", &c.d_kv, where, err));
    TRY(get_int(o, "d_ff", &c.d_ff, where, err));
    TRY(get_int(o, "num_layers", &c.num_layers, where, err));
    TRY(get_int(o, "num_heads", &c.num_heads, where, err));
    TRY(get_int(o, "relative_attention_num_buckets", &c.relative_attention_num_buckets, where, err));
    TRY(get_int(o, "relative_attention_max_distance", &c.relative_attention_max_distance, where, err));
    TRY(get_double(o, "layer_norm_epsilon", &c.layer_norm_epsilon, where, err));
    TRY(get_str(o, "feed_forward_proj", ff, sizeof ff, where, err));
    c.gated_gelu = strcmp(ff, "gated-gelu") == 0;
    if (!c.gated_gelu) {
        rc = wan_err(err, WAN_ERR_UNSUPPORTED, "%s: feed_forward_proj '%s' (umT5 uses gated-gelu)", where,
                     ff);
        goto done;
    }
    if (c.vocab_size <= 0 || c.d_model <= 0 || c.d_kv <= 0 || c.d_ff <= 0 || c.num_layers <= 0 ||
        c.num_heads <= 0 || c.relative_attention_num_buckets <= 1 ||
        c.relative_attention_max_distance <= 0 || !(c.layer_norm_epsilon > 0)) {
        rc = wan_err(err, WAN_ERR_FORMAT, "%s: text encoder config out of range", where);
        goto done;
    }
    *out = c;
done:
    cJSON_Delete(o);
    return rc;
}

/* ---- scheduler config ------------------------------------------------------------------------- */

void wan_scheduler_config_default(wan_scheduler_config *c)
{
    *c = (wan_scheduler_config){ .kind = WAN_SCHEDULER_UNIPC, .num_train_timesteps = 1000,
                                 .flow_shift = 1.0, .solver_order = 2, .use_flow_sigmas = 0,
                                 .lower_order_final = 1, .predict_x0 = 1 };
    snprintf(c->prediction_type, sizeof c->prediction_type, "epsilon");
    snprintf(c->solver_type, sizeof c->solver_type, "bh2");
    snprintf(c->final_sigmas_type, sizeof c->final_sigmas_type, "zero");
}

wan_status wan_parse_scheduler_config(const char *json, size_t len, const char *where,
                                      wan_scheduler_config *out, wan_error *err)
{
    cJSON *o;
    wan_status rc = parse_object(json, len, where, &o, err);
    if (rc != WAN_OK)
        return rc;
    wan_scheduler_config c;
    wan_scheduler_config_default(&c);
    char cls[64] = "";
    TRY(get_str(o, "_class_name", cls, sizeof cls, where, err));
    if (strcmp(cls, "UniPCMultistepScheduler") == 0) {
        c.kind = WAN_SCHEDULER_UNIPC;
        TRY(get_double(o, "flow_shift", &c.flow_shift, where, err));
    } else if (strcmp(cls, "FlowMatchEulerDiscreteScheduler") == 0) {
        c.kind = WAN_SCHEDULER_EULER;
        snprintf(c.prediction_type, sizeof c.prediction_type, "flow_prediction");
        c.use_flow_sigmas = 1;
        TRY(get_double(o, "shift", &c.flow_shift, where, err));
    } else if (strcmp(cls, "DPMSolverMultistepScheduler") == 0) {
        c.kind = WAN_SCHEDULER_DPMPP;
        snprintf(c.solver_type, sizeof c.solver_type, "midpoint");
        TRY(get_double(o, "flow_shift", &c.flow_shift, where, err));
    } else {
        rc = wan_err(err, WAN_ERR_UNSUPPORTED,
                     "%s: scheduler _class_name '%s' is not supported (UniPCMultistepScheduler, "
                     "FlowMatchEulerDiscreteScheduler, DPMSolverMultistepScheduler)", where, cls);
        goto done;
    }
    TRY(get_int(o, "num_train_timesteps", &c.num_train_timesteps, where, err));
    TRY(get_int(o, "solver_order", &c.solver_order, where, err));
    TRY(get_int(o, "use_flow_sigmas", &c.use_flow_sigmas, where, err));
    TRY(get_int(o, "lower_order_final", &c.lower_order_final, where, err));
    TRY(get_int(o, "predict_x0", &c.predict_x0, where, err));
    TRY(get_str(o, "prediction_type", c.prediction_type, sizeof c.prediction_type, where, err));
    TRY(get_str(o, "solver_type", c.solver_type, sizeof c.solver_type, where, err));
    TRY(get_str(o, "final_sigmas_type", c.final_sigmas_type, sizeof c.final_sigmas_type, where, err));
    if (c.num_train_timesteps <= 0 || !(c.flow_shift > 0) || c.solver_order < 1 || c.solver_order > 3) {
        rc = wan_err(err, WAN_ERR_FORMAT,
                     "%s: scheduler config out of range (num_train_timesteps %d, shift %g, order %d)",
                     where, c.num_train_timesteps, c.flow_shift, c.solver_order);
        goto done;
    }
    *out = c;
done:
    cJSON_Delete(o);
    return rc;
}

/* ---- original DiT names ----------------------------------------------------------------------- */

int wan_dit_rename_original(const char *name, char *buf, size_t len, void *user)
{
    (void)user;
    static const char *prefix = "model.diffusion_model.";
    const char *orig = name;
    if (strncmp(name, prefix, strlen(prefix)) == 0)
        name += strlen(prefix);
    /* Whole-prefix renames of top-level modules. */
    static const char *const top[][2] = {
        { "time_embedding.0.", "condition_embedder.time_embedder.linear_1." },
        { "time_embedding.2.", "condition_embedder.time_embedder.linear_2." },
        { "text_embedding.0.", "condition_embedder.text_embedder.linear_1." },
        { "text_embedding.2.", "condition_embedder.text_embedder.linear_2." },
        { "time_projection.1.", "condition_embedder.time_proj." },
        { "head.head.", "proj_out." },
    };
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++) {
        size_t n = strlen(top[i][0]);
        if (strncmp(name, top[i][0], n) == 0) {
            snprintf(buf, len, "%s%s", top[i][1], name + n);
            return 1;
        }
    }
    if (strcmp(name, "head.modulation") == 0) {
        snprintf(buf, len, "scale_shift_table");
        return 1;
    }
    int blk, off = 0;
    if (sscanf(name, "blocks.%d.%n", &blk, &off) == 1 && off > 0) {
        const char *rest = name + off;
        static const char *const blockmap[][2] = {
            { "modulation", "scale_shift_table" },
            { "self_attn.q.", "attn1.to_q." },
            { "self_attn.k.", "attn1.to_k." },
            { "self_attn.v.", "attn1.to_v." },
            { "self_attn.o.", "attn1.to_out.0." },
            { "self_attn.norm_q.", "attn1.norm_q." },
            { "self_attn.norm_k.", "attn1.norm_k." },
            { "cross_attn.q.", "attn2.to_q." },
            { "cross_attn.k.", "attn2.to_k." },
            { "cross_attn.v.", "attn2.to_v." },
            { "cross_attn.o.", "attn2.to_out.0." },
            { "cross_attn.norm_q.", "attn2.norm_q." },
            { "cross_attn.norm_k.", "attn2.norm_k." },
            { "norm3.", "norm2." }, /* the affine cross-attention pre-norm */
            { "norm2.", "norm3." },
            { "ffn.0.", "ffn.net.0.proj." },
            { "ffn.2.", "ffn.net.2." },
        };
        for (size_t i = 0; i < sizeof blockmap / sizeof blockmap[0]; i++) {
            size_t n = strlen(blockmap[i][0]);
            if (strncmp(rest, blockmap[i][0], n) == 0) {
                snprintf(buf, len, "blocks.%d.%s%s", blk, blockmap[i][1], rest + n);
                return 1;
            }
        }
    }
    if (name != orig) { /* only the prefix was stripped */
        snprintf(buf, len, "%s", name);
        return 1;
    }
    return 0;
}

/* ---- transformer weight checks ---------------------------------------------------------------- */

wan_status wan_transformer_check_weights(const wan_st_set *w, const wan_transformer_config *c,
                                         wan_error *err)
{
    const int64_t D = (int64_t)c->num_attention_heads * c->attention_head_dim;
    const int64_t F = c->ffn_dim, Cin = c->in_channels;
    const int64_t Op = (int64_t)c->out_channels * c->patch_size[0] * c->patch_size[1] * c->patch_size[2];
    struct { const char *name; int nd; int64_t s[5]; } top[] = {
        { "patch_embedding.weight", 5, { D, Cin, c->patch_size[0], c->patch_size[1], c->patch_size[2] } },
        { "patch_embedding.bias", 1, { D } },
        { "condition_embedder.time_embedder.linear_1.weight", 2, { D, c->freq_dim } },
        { "condition_embedder.time_embedder.linear_1.bias", 1, { D } },
        { "condition_embedder.time_embedder.linear_2.weight", 2, { D, D } },
        { "condition_embedder.time_embedder.linear_2.bias", 1, { D } },
        { "condition_embedder.time_proj.weight", 2, { 6 * D, D } },
        { "condition_embedder.time_proj.bias", 1, { 6 * D } },
        { "condition_embedder.text_embedder.linear_1.weight", 2, { D, c->text_dim } },
        { "condition_embedder.text_embedder.linear_1.bias", 1, { D } },
        { "condition_embedder.text_embedder.linear_2.weight", 2, { D, D } },
        { "condition_embedder.text_embedder.linear_2.bias", 1, { D } },
        { "proj_out.weight", 2, { Op, D } },
        { "proj_out.bias", 1, { Op } },
        { "scale_shift_table", 3, { 1, 2, D } },
    };
    wan_tensor t;
    wan_status rc;
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        if ((rc = top[i].nd == 2 ? wan_st_set_get_weight(w, top[i].name, top[i].s[0], top[i].s[1], &t, err)
                                 : wan_st_set_get(w, top[i].name, top[i].nd, top[i].s, &t, err)) != WAN_OK)
            return rc;
    struct { const char *suffix; int nd; int64_t s[3]; } blk[] = {
        { "scale_shift_table", 3, { 1, 6, D } },
        { "attn1.to_q.weight", 2, { D, D } },     { "attn1.to_q.bias", 1, { D } },
        { "attn1.to_k.weight", 2, { D, D } },     { "attn1.to_k.bias", 1, { D } },
        { "attn1.to_v.weight", 2, { D, D } },     { "attn1.to_v.bias", 1, { D } },
        { "attn1.to_out.0.weight", 2, { D, D } }, { "attn1.to_out.0.bias", 1, { D } },
        { "attn1.norm_q.weight", 1, { D } },      { "attn1.norm_k.weight", 1, { D } },
        { "attn2.to_q.weight", 2, { D, D } },     { "attn2.to_q.bias", 1, { D } },
        { "attn2.to_k.weight", 2, { D, D } },     { "attn2.to_k.bias", 1, { D } },
        { "attn2.to_v.weight", 2, { D, D } },     { "attn2.to_v.bias", 1, { D } },
        { "attn2.to_out.0.weight", 2, { D, D } }, { "attn2.to_out.0.bias", 1, { D } },
        { "attn2.norm_q.weight", 1, { D } },      { "attn2.norm_k.weight", 1, { D } },
        { "norm2.weight", 1, { D } },             { "norm2.bias", 1, { D } },
        { "ffn.net.0.proj.weight", 2, { F, D } }, { "ffn.net.0.proj.bias", 1, { F } },
        { "ffn.net.2.weight", 2, { D, F } },      { "ffn.net.2.bias", 1, { D } },
    };
    for (int b = 0; b < c->num_layers; b++) {
        for (size_t i = 0; i < sizeof blk / sizeof blk[0]; i++) {
            if (!c->cross_attn_norm && strncmp(blk[i].suffix, "norm2.", 6) == 0)
                continue;
            char name[128];
            snprintf(name, sizeof name, "blocks.%d.%s", b, blk[i].suffix);
            if ((rc = blk[i].nd == 2 ? wan_st_set_get_weight(w, name, blk[i].s[0], blk[i].s[1], &t, err)
                                     : wan_st_set_get(w, name, blk[i].nd, blk[i].s, &t, err)) != WAN_OK)
                return rc;
        }
    }
    char name[64];
    snprintf(name, sizeof name, "blocks.%d.scale_shift_table", c->num_layers);
    if (wan_st_set_find(w, name))
        return wan_err(err, WAN_ERR_SHAPE, "%s: has a block %d but the config says num_layers %d",
                       w->dir, c->num_layers, c->num_layers);
    return WAN_OK;
}
