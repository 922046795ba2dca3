/* convert_names.c — diffusers -> original Wan tensor names for the DiT and the VAE (the inverses of
 * wan_dit_rename_original and wan_vae_rename_original; the umT5 inverse lives beside its table in umt5.c). */
#include "convert.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int put(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int put(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    return n > 0 && (size_t)n < len;
}

/* Replaces the first matching prefix of `s` from map[i][0] with map[i][1]; NULL when none matches. */
static const char *swap_prefix(const char *s, const char *const (*map)[2], size_t n, const char **rest)
{
    for (size_t i = 0; i < n; i++) {
        size_t k = strlen(map[i][0]);
        if (!strncmp(s, map[i][0], k)) {
            *rest = s + k;
            return map[i][1];
        }
    }
    return NULL;
}

int wan_dit_rename_to_original(const char *name, char *buf, size_t len, void *user)
{
    (void)user;
    static const char *const top[][2] = {
        { "condition_embedder.time_embedder.linear_1.", "time_embedding.0." },
        { "condition_embedder.time_embedder.linear_2.", "time_embedding.2." },
        { "condition_embedder.text_embedder.linear_1.", "text_embedding.0." },
        { "condition_embedder.text_embedder.linear_2.", "text_embedding.2." },
        { "condition_embedder.time_proj.", "time_projection.1." },
        { "proj_out.", "head.head." },
    };
    const char *rest, *to;
    if ((to = swap_prefix(name, top, sizeof top / sizeof *top, &rest)))
        return put(buf, len, "%s%s", to, rest);
    if (!strcmp(name, "scale_shift_table"))
        return put(buf, len, "head.modulation");
    int blk, off = 0;
    if (sscanf(name, "blocks.%d.%n", &blk, &off) != 1 || off == 0)
        return 0;
    static const char *const block[][2] = {
        { "scale_shift_table", "modulation" },
        { "attn1.to_q.", "self_attn.q." },
        { "attn1.to_k.", "self_attn.k." },
        { "attn1.to_v.", "self_attn.v." },
        { "attn1.to_out.0.", "self_attn.o." },
        { "attn1.norm_q.", "self_attn.norm_q." },
        { "attn1.norm_k.", "self_attn.norm_k." },
        { "attn2.to_q.", "cross_attn.q." },
        { "attn2.to_k.", "cross_attn.k." },
        { "attn2.to_v.", "cross_attn.v." },
        { "attn2.to_out.0.", "cross_attn.o." },
        { "attn2.norm_q.", "cross_attn.norm_q." },
        { "attn2.norm_k.", "cross_attn.norm_k." },
        { "norm2.", "norm3." }, /* diffusers' affine cross-attention pre-norm is the original norm3 */
        { "norm3.", "norm2." },
        { "ffn.net.0.proj.", "ffn.0." },
        { "ffn.net.2.", "ffn.2." },
    };
    if ((to = swap_prefix(name + off, block, sizeof block / sizeof *block, &rest)))
        return put(buf, len, "blocks.%d.%s%s", blk, to, rest);
    return 0;
}

/* Residual block suffix, diffusers -> original; the suffix unchanged when it is none of them. */
static const char *resblock_suffix(const char *rest, char *tmp, size_t len)
{
    static const char *const map[][2] = {
        { "norm1.", "residual.0." }, { "conv1.", "residual.2." }, { "norm2.", "residual.3." },
        { "conv2.", "residual.6." }, { "conv_shortcut.", "shortcut." },
    };
    const char *r, *to = swap_prefix(rest, map, sizeof map / sizeof *map, &r);
    if (!to)
        return rest;
    snprintf(tmp, len, "%s%s", to, r);
    return tmp;
}

/* decoder.up_blocks.* / encoder.down_blocks.* (rest = text after "up_blocks." / "down_blocks."). */
static int rename_blocks(bool dec, const char *rest, const wan_vae_names *v, char *buf, size_t len)
{
    const char *coder = dec ? "decoder" : "encoder", *list = dec ? "upsamples" : "downsamples";
    char tmp[160];
    int lvl, k;
    const char *r = wan_name_index(rest, &lvl);
    if (!r)
        return 0;
    if (!dec && !v->is_residual) /* the Wan2.1 encoder keeps one flat list with the same indices */
        return put(buf, len, "encoder.downsamples.%d.%s", lvl, resblock_suffix(r, tmp, sizeof tmp));
    const char *r2;
    if (!strncmp(r, "resnets.", 8) && (r2 = wan_name_index(r + 8, &k))) {
        if (v->is_residual)
            return put(buf, len, "%s.%s.%d.%s.%d.%s", coder, list, lvl, list, k, resblock_suffix(r2, tmp, sizeof tmp));
        return put(buf, len, "decoder.upsamples.%d.%s", lvl * (v->num_res_blocks + 2) + k,
                   resblock_suffix(r2, tmp, sizeof tmp));
    }
    /* the resampler sits after the resnets of its level: num_res_blocks + 1 of them in the decoder,
     * num_res_blocks in the encoder */
    int at = dec ? v->num_res_blocks + 1 : v->num_res_blocks;
    if (v->is_residual && !strncmp(r, dec ? "upsampler." : "downsampler.", dec ? 10 : 12))
        return put(buf, len, "%s.%s.%d.%s.%d.%s", coder, list, lvl, list, at, r + (dec ? 10 : 12));
    if (!v->is_residual && dec && !strncmp(r, "upsamplers.0.", 13))
        return put(buf, len, "decoder.upsamples.%d.%s", lvl * (v->num_res_blocks + 2) + at, r + 13);
    return 0;
}

int wan_vae_rename_to_original(const char *name, char *buf, size_t len, void *user)
{
    const wan_vae_names *v = user;
    char tmp[160];
    if (!strncmp(name, "quant_conv.", 11))
        return put(buf, len, "conv1.%s", name + 11);
    if (!strncmp(name, "post_quant_conv.", 16))
        return put(buf, len, "conv2.%s", name + 16);
    bool dec = !strncmp(name, "decoder.", 8);
    if (!dec && strncmp(name, "encoder.", 8))
        return 0;
    const char *coder = dec ? "decoder" : "encoder", *rest = name + 8;
    static const char *const simple[][2] = {
        { "conv_in.", "conv1." }, { "norm_out.", "head.0." }, { "conv_out.", "head.2." },
        { "mid_block.attentions.0.", "middle.1." },
    };
    const char *r, *to = swap_prefix(rest, simple, sizeof simple / sizeof *simple, &r);
    if (to)
        return put(buf, len, "%s.%s%s", coder, to, r);
    int i;
    if (!strncmp(rest, "mid_block.resnets.", 18) && (r = wan_name_index(rest + 18, &i)) && i <= 1)
        return put(buf, len, "%s.middle.%d.%s", coder, 2 * i, resblock_suffix(r, tmp, sizeof tmp));
    const char *blocks = dec ? "up_blocks." : "down_blocks.";
    if (!strncmp(rest, blocks, strlen(blocks)))
        return rename_blocks(dec, rest + strlen(blocks), v, buf, len);
    return 0;
}
