/* vae_names.c — AutoencoderKLWan weights on disk: original Wan names -> diffusers names, and the config
 * inferred from tensor shapes when a checkpoint has no config.json (vae.md 5). */
#include "vae.h"
#include "model_dir.h"

#include <stdio.h>
#include <string.h>

/* Suffix of a residual block, original -> diffusers (vae.md 5.1). */
static const char *resblock_suffix(const char *rest, char *tmp, size_t len)
{
    static const char *const map[][2] = {
        { "residual.0.", "norm1." }, { "residual.2.", "conv1." }, { "residual.3.", "norm2." },
        { "residual.6.", "conv2." }, { "shortcut.", "conv_shortcut." },
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++) {
        size_t n = strlen(map[i][0]);
        if (!strncmp(rest, map[i][0], n)) {
            snprintf(tmp, len, "%s%s", map[i][1], rest + n);
            return tmp;
        }
    }
    return rest;
}

static bool is_resample(const char *rest)
{
    return !strncmp(rest, "resample.", 9) || !strncmp(rest, "time_conv.", 10);
}

static int put(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int put(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    return n > 0 && (size_t)n < len;
}

/* decoder.upsamples.* / encoder.downsamples.* (rest = text after "<coder>.<list>.") */
static int rename_levels(bool dec, const char *rest, int per_level, char *buf, size_t len)
{
    const char *coder = dec ? "decoder" : "encoder";
    const char *inner = dec ? "upsamples." : "downsamples.";
    char tmp[160];
    int i, j;
    const char *r = wan_name_index(rest, &i);
    if (!r)
        return 0;
    if (!strncmp(r, inner, strlen(inner))) { /* Wan2.2: nested per-level lists */
        const char *r2 = wan_name_index(r + strlen(inner), &j);
        if (!r2)
            return 0;
        if (is_resample(r2))
            return put(buf, len, "%s.%s.%d.%s.%s", coder, dec ? "up_blocks" : "down_blocks", i,
                       dec ? "upsampler" : "downsampler", r2);
        return put(buf, len, "%s.%s.%d.resnets.%d.%s", coder, dec ? "up_blocks" : "down_blocks", i, j,
                   resblock_suffix(r2, tmp, sizeof tmp));
    }
    if (!dec) /* Wan2.1 encoder: the flat list keeps its index */
        return put(buf, len, "encoder.down_blocks.%d.%s", i, resblock_suffix(r, tmp, sizeof tmp));
    int level = i / per_level, k = i % per_level;
    if (is_resample(r))
        return put(buf, len, "decoder.up_blocks.%d.upsamplers.0.%s", level, r);
    return put(buf, len, "decoder.up_blocks.%d.resnets.%d.%s", level, k, resblock_suffix(r, tmp, sizeof tmp));
}

int wan_vae_rename_original(const char *name, char *buf, size_t len, void *user)
{
    int per_level = user ? *(const int *)user : 4;
    char tmp[160];
    if (!strncmp(name, "conv1.", 6))
        return put(buf, len, "quant_conv.%s", name + 6);
    if (!strncmp(name, "conv2.", 6))
        return put(buf, len, "post_quant_conv.%s", name + 6);
    bool dec = !strncmp(name, "decoder.", 8);
    if (!dec && strncmp(name, "encoder.", 8))
        return 0;
    const char *coder = dec ? "decoder" : "encoder", *rest = name + 8;
    if (!strncmp(rest, "conv1.", 6))
        return put(buf, len, "%s.conv_in.%s", coder, rest + 6);
    if (!strncmp(rest, "head.0.", 7))
        return put(buf, len, "%s.norm_out.%s", coder, rest + 7);
    if (!strncmp(rest, "head.2.", 7))
        return put(buf, len, "%s.conv_out.%s", coder, rest + 7);
    if (!strncmp(rest, "middle.", 7)) {
        int i;
        const char *r = wan_name_index(rest + 7, &i);
        if (!r || i > 2)
            return 0;
        if (i == 1)
            return put(buf, len, "%s.mid_block.attentions.0.%s", coder, r);
        return put(buf, len, "%s.mid_block.resnets.%d.%s", coder, i / 2, resblock_suffix(r, tmp, sizeof tmp));
    }
    const char *list = dec ? "upsamples." : "downsamples.";
    if (!strncmp(rest, list, strlen(list)))
        return rename_levels(dec, rest + strlen(list), per_level, buf, len);
    return 0;
}

bool wan_vae_has_original_names(const wan_st_set *w)
{
    return !wan_st_set_find(w, "decoder.conv_in.weight") && wan_st_set_find(w, "decoder.conv1.weight");
}

wan_status wan_vae_rename_set(wan_st_set *w, wan_error *err)
{
    int per_level = 4;
    char name[96];
    for (int k = 1; k < 64; k++) {
        snprintf(name, sizeof name, "decoder.upsamples.%d.resample.1.weight", k);
        if (wan_st_set_find(w, name)) {
            per_level = k + 1; /* num_res_blocks + 1 resblocks, then the upsampler */
            break;
        }
    }
    return wan_st_set_rename(w, wan_vae_rename_original, &per_level, err);
}

static const wan_st_tensor *tensor(const wan_st_set *w, const char *name)
{
    const wan_st_entry *e = wan_st_set_find(w, name);
    return e ? e->t : NULL;
}

static int count(const wan_st_set *w, const char *fmt, int a)
{
    char name[128];
    int n = 0;
    for (;; n++) {
        snprintf(name, sizeof name, fmt, a, n);
        if (!tensor(w, name))
            return n;
    }
}

wan_status wan_vae_infer_config(const wan_st_set *w, wan_vae_config *c, wan_error *err)
{
    wan_vae_config_default(c);
    const wan_st_tensor *din = tensor(w, "decoder.conv_in.weight"), *dout = tensor(w, "decoder.conv_out.weight");
    const wan_st_tensor *ein = tensor(w, "encoder.conv_in.weight");
    if (!din || din->ndim != 5 || !dout || dout->ndim != 5)
        return wan_err(err, WAN_ERR_FORMAT,
                       "%s: cannot infer the VAE config: decoder.conv_in / decoder.conv_out missing", w->dir);
    int levels = 0;
    for (; levels < 8; levels++) {
        char name[96];
        snprintf(name, sizeof name, "decoder.up_blocks.%d.resnets.0.conv1.weight", levels);
        if (!tensor(w, name))
            break;
    }
    int nres = count(w, "decoder.up_blocks.%d.resnets.%d.conv1.weight", 0);
    if (levels < 2 || levels >= 8 || nres < 2)
        return wan_err(err, WAN_ERR_FORMAT,
                       "%s: cannot infer the VAE config: %d decoder up blocks with %d resnets", w->dir, levels,
                       nres);
    c->z_dim = (int)din->shape[1];
    c->out_channels = (int)dout->shape[0];
    c->decoder_base_dim = (int)dout->shape[1]; /* dim_mult[0] = 1, as in every released VAE */
    c->is_residual = tensor(w, "decoder.up_blocks.0.upsampler.resample.1.weight") != NULL;
    c->n_dim_mult = levels;
    c->num_res_blocks = nres - 1;
    int tdown = 0;
    for (int i = 0; i < levels; i++) {
        char name[96];
        snprintf(name, sizeof name, "decoder.up_blocks.%d.resnets.0.conv1.weight", i);
        const wan_st_tensor *t = tensor(w, name);
        if (t->ndim != 5 || t->shape[0] % c->decoder_base_dim)
            return wan_err(err, WAN_ERR_FORMAT, "%s: %s width is not a multiple of decoder_base_dim %d", w->dir,
                           name, c->decoder_base_dim);
        c->dim_mult[levels - 1 - i] = (int)(t->shape[0] / c->decoder_base_dim);
        if (i < levels - 1) {
            snprintf(name, sizeof name, c->is_residual ? "decoder.up_blocks.%d.upsampler.time_conv.weight"
                                                        : "decoder.up_blocks.%d.upsamplers.0.time_conv.weight", i);
            c->temporal_downsample[levels - 2 - i] = tensor(w, name) != NULL;
            tdown += c->temporal_downsample[levels - 2 - i];
        }
    }
    c->base_dim = ein && ein->ndim == 5 ? (int)ein->shape[0] : c->decoder_base_dim;
    c->in_channels = ein && ein->ndim == 5 ? (int)ein->shape[1] : c->out_channels;
    c->patch_size = c->out_channels == 12 ? 2 : 0;
    c->scale_factor_spatial = (1 << (levels - 1)) * (c->patch_size ? c->patch_size : 1);
    c->scale_factor_temporal = 1 << tdown;
    if (c->z_dim != 16 && c->z_dim != 48)
        return wan_err(err, WAN_ERR_UNSUPPORTED,
                       "%s: VAE with z_dim %d has no config.json and no known latents_mean/std", w->dir,
                       c->z_dim);
    wan_vae_config_default_latents(c);
    return WAN_OK;
}
