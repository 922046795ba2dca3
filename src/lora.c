/* lora.c — LoRA adapters for the two-expert DiT: key formats (diffusers/PEFT, original/ComfyUI, kohya/musubi),
 * scales, checks against a model, and the per-request binding that merges them into private copies of the
 * weights or adds them on the fly. Maths in pipeline.md §5 and docs/MODEL.md "## LoRA". */
#include "lora.h"
#include "cpu/gemm.h"
#include "model_dir.h"
#include "quant.h"
#include "safetensors.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define LORA_ROWS 256       /* rows of x per low-rank product on the fly */
#define MAX_REPORTED 8      /* unknown / unmatched keys named in the log, per adapter */

typedef enum key_kind { K_A, K_B, K_BIAS, K_ALPHA, K_DIFF, K_DIFF_B } key_kind;
typedef enum lora_format { F_DIFFUSERS, F_ORIGINAL, F_KOHYA } lora_format;
static const char *const k_format_name[] = { "diffusers", "original", "kohya" };

/* Everything an adapter changes in one module (or in one parameter: a .diff on a modulation table). */
typedef struct lora_mod {
    char *module;                 /* diffusers path: "blocks.0.attn1.to_q", "blocks.1.scale_shift_table" */
    const wan_st_tensor *a, *b;   /* A [r, in], B [out, r]                                             */
    const wan_st_tensor *bias;    /* PEFT lora_B.bias [out], scaled like B                             */
    const wan_st_tensor *alpha;   /* scalar                                                            */
    const wan_st_tensor *diff;    /* full delta of the weight (or of the parameter itself)             */
    const wan_st_tensor *diff_b;  /* full delta of the bias                                            */
    double scale;                 /* alpha/rank (rsLoRA alpha/sqrt(rank)), 1 without an alpha          */
} lora_mod;

struct wan_lora {
    char *path;
    wan_st_file *file;
    lora_format format;
    int n;
    lora_mod *mods;               /* sorted by module */
    int n_unknown;
};

/* ---- key names -------------------------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static bool starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* Original Wan module path -> diffusers path (pipeline.md 1.6); returns 1 when it was an original name. */
static int orig_to_diffusers(const char *stem, char *out, size_t len)
{
    char tmp[320], buf[320];
    snprintf(tmp, sizeof tmp, "%s.weight", stem);
    if (wan_dit_rename_original(tmp, buf, sizeof buf, NULL)) {
        buf[strlen(buf) - (ends_with(buf, ".weight") ? 7 : 0)] = 0;
        snprintf(out, len, "%s", buf);
        return 1;
    }
    if (wan_dit_rename_original(stem, buf, sizeof buf, NULL)) { /* head.modulation */
        snprintf(out, len, "%s", buf);
        return 1;
    }
    snprintf(out, len, "%s", stem);
    return 0;
}

/* kohya's underscored path ("blocks_0_self_attn_q") -> the dotted original path. */
static void kohya_to_dots(const char *stem, char *out, size_t len)
{
    static const char *const words[] = { "self_attn", "cross_attn", "norm_q", "norm_k", "k_img", "v_img",
                                         "time_embedding", "text_embedding", "time_projection",
                                         "patch_embedding", "img_emb" };
    snprintf(out, len, "%s", stem);
    for (char *p = out; *p; p++)
        if (*p == '_')
            *p = '.';
    for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
        char dotted[32];
        snprintf(dotted, sizeof dotted, "%s", words[i]);
        for (char *p = dotted; *p; p++)
            if (*p == '_')
                *p = '.';
        for (char *p = strstr(out, dotted); p; p = strstr(p + 1, dotted))
            memcpy(p, words[i], strlen(words[i]));
    }
}

/* Splits a file key into the diffusers module it changes and what it is; 0 for a key in no known format. */
static int parse_key(const char *key, char *module, size_t len, key_kind *kind, lora_format *fmt)
{
    static const struct { const char *suffix; key_kind kind; } sfx[] = {
        { ".lora_A.weight", K_A }, { ".lora_down.weight", K_A }, { ".lora_B.weight", K_B },
        { ".lora_up.weight", K_B }, { ".lora_B.bias", K_BIAS }, { ".alpha", K_ALPHA }, { ".diff_b", K_DIFF_B },
        { ".diff", K_DIFF },
    };
    size_t i = 0;
    while (i < sizeof sfx / sizeof *sfx && !ends_with(key, sfx[i].suffix))
        i++;
    if (i == sizeof sfx / sizeof *sfx)
        return 0;
    *kind = sfx[i].kind;
    char stem[320], dots[320];
    size_t n = strlen(key) - strlen(sfx[i].suffix);
    if (n == 0 || n >= sizeof stem)
        return 0;
    memcpy(stem, key, n);
    stem[n] = 0;
    if (starts_with(stem, "diffusion_model.")) {
        *fmt = F_ORIGINAL;
        orig_to_diffusers(stem + 16, module, len);
    } else if (starts_with(stem, "lora_unet_")) {
        *fmt = F_KOHYA;
        kohya_to_dots(stem + 10, dots, sizeof dots);
        orig_to_diffusers(dots, module, len);
    } else if (starts_with(stem, "transformer.") || starts_with(stem, "base_model.model.")) {
        *fmt = F_DIFFUSERS;
        snprintf(module, len, "%s", stem + (stem[0] == 't' ? 12 : 17));
    } else {
        *fmt = orig_to_diffusers(stem, module, len) ? F_ORIGINAL : F_DIFFUSERS;
    }
    return module[0] != 0;
}

/* ---- loading ---------------------------------------------------------------------------------- */

/* PEFT's LoraConfig from the safetensors metadata diffusers writes ("transformer."-prefixed keys). */
typedef struct peft_meta {
    cJSON *root;                  /* NULL: no metadata */
    double alpha;
    bool rslora;
    const cJSON *alpha_pattern;   /* object or NULL */
} peft_meta;

static const cJSON *meta_item(const cJSON *o, const char *name)
{
    char k[96];
    snprintf(k, sizeof k, "transformer.%s", name);
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    return it ? it : cJSON_GetObjectItemCaseSensitive(o, name);
}

static wan_status parse_meta(const wan_st_file *f, peft_meta *m, wan_error *err)
{
    memset(m, 0, sizeof *m);
    if (!f->map)
        return WAN_OK;
    cJSON *h = cJSON_ParseWithLength((const char *)f->map + 8, (size_t)f->header_len);
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(h, "__metadata__");
    const cJSON *txt = cJSON_GetObjectItemCaseSensitive(md, "lora_adapter_metadata");
    if (cJSON_IsString(txt))
        m->root = cJSON_Parse(txt->valuestring);
    cJSON_Delete(h);
    if (!cJSON_IsString(txt))
        return WAN_OK;
    const cJSON *alpha = m->root ? meta_item(m->root, "lora_alpha") : NULL;
    if (!cJSON_IsNumber(alpha) || !isfinite(alpha->valuedouble)) {
        cJSON_Delete(m->root);
        m->root = NULL;
        return wan_err(err, WAN_ERR_FORMAT, "%s: __metadata__.lora_adapter_metadata is not JSON with a numeric "
                       "lora_alpha", f->path);
    }
    m->alpha = alpha->valuedouble;
    m->rslora = cJSON_IsTrue(meta_item(m->root, "use_rslora"));
    const cJSON *ap = meta_item(m->root, "alpha_pattern");
    m->alpha_pattern = cJSON_IsObject(ap) ? ap : NULL;
    for (const cJSON *it = m->alpha_pattern ? m->alpha_pattern->child : NULL; it; it = it->next) {
        const char *k = it->string;
        if (!cJSON_IsNumber(it) || strpbrk(k + (k[0] == '^'), "^$*+?()[]{}|\\")) {
            cJSON_Delete(m->root);
            m->root = NULL;
            return wan_err(err, WAN_ERR_UNSUPPORTED, "%s: alpha_pattern key '%s' is a regular expression or has "
                           "no numeric value (only literal module names are supported)", f->path, k);
        }
    }
    return WAN_OK;
}

/* PEFT's pattern rule (re.match(rf"(.*\.)?({key})$", module)) for literal keys: the whole name or a suffix
 * after a dot; a leading '^' anchors at the start. */
static double meta_alpha(const peft_meta *m, const char *module)
{
    for (const cJSON *it = m->alpha_pattern ? m->alpha_pattern->child : NULL; it; it = it->next) {
        const char *k = it->string;
        bool anchored = k[0] == '^';
        k += anchored;
        size_t n = strlen(module), kl = strlen(k);
        if (strcmp(module, k) == 0 || (!anchored && n > kl && module[n - kl - 1] == '.' &&
                                       strcmp(module + n - kl, k) == 0))
            return it->valuedouble;
    }
    return m->alpha;
}

static int cmp_mod(const void *a, const void *b)
{
    return strcmp(((const lora_mod *)a)->module, ((const lora_mod *)b)->module);
}

/* Files one tensor under its module. */
static wan_status add_key(wan_lora_t *l, const wan_st_tensor *t, wan_error *err)
{
    char module[320];
    key_kind kind;
    lora_format fmt;
    if (!parse_key(t->name, module, sizeof module, &kind, &fmt)) {
        if (++l->n_unknown <= MAX_REPORTED)
            wan_log_warn("LoRA %s: key '%s' is in no known LoRA format: ignored", l->path, t->name);
        return WAN_OK;
    }
    if (t->dtype != WAN_DTYPE_F32 && t->dtype != WAN_DTYPE_F16 && t->dtype != WAN_DTYPE_BF16)
        return wan_err(err, WAN_ERR_UNSUPPORTED, "LoRA %s: key '%s' has dtype %s (F32, F16 or BF16 expected)",
                       l->path, t->name, wan_dtype_name(t->dtype));
    if (l->n == 0) /* the format of the first known key */
        l->format = fmt;
    lora_mod *m = NULL;
    for (int i = l->n - 1; i >= 0 && i >= l->n - 8 && !m; i--) /* keys of one module sort together */
        if (strcmp(l->mods[i].module, module) == 0)
            m = &l->mods[i];
    for (int i = 0; i < l->n && !m; i++)
        if (strcmp(l->mods[i].module, module) == 0)
            m = &l->mods[i];
    if (!m) {
        m = &l->mods[l->n];
        memset(m, 0, sizeof *m);
        if (!(m->module = wan_strdup(module)))
            return wan_err(err, WAN_ERR_NOMEM, "LoRA %s: out of memory", l->path);
        l->n++;
    }
    const wan_st_tensor **slot[] = { &m->a, &m->b, &m->bias, &m->alpha, &m->diff, &m->diff_b };
    if (*slot[kind])
        return wan_err(err, WAN_ERR_FORMAT, "LoRA %s: keys '%s' and '%s' both give the same tensor of '%s'",
                       l->path, (*slot[kind])->name, t->name, module);
    *slot[kind] = t;
    return WAN_OK;
}

static int64_t numel(const wan_st_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

static float scalar_of(const wan_st_tensor *t)
{
    float v;
    wan_cpu_to_f32(t->data, t->dtype, &v, 1);
    return v;
}

/* Pairs, ranks and scales of one module. */
static wan_status finish_mod(const wan_lora_t *l, lora_mod *m, const peft_meta *meta, wan_error *err)
{
    char s1[96], s2[96];
    if (!m->a != !m->b)
        return wan_err(err, WAN_ERR_FORMAT, "LoRA %s: key '%s' has no matching %s", l->path,
                       (m->a ? m->a : m->b)->name, m->a ? "lora_B / lora_up" : "lora_A / lora_down");
    if (m->bias && !m->a)
        return wan_err(err, WAN_ERR_FORMAT, "LoRA %s: key '%s' has no lora_A/lora_B pair", l->path, m->bias->name);
    if (m->alpha && (numel(m->alpha) != 1 || !isfinite(scalar_of(m->alpha))))
        return wan_err(err, WAN_ERR_FORMAT, "LoRA %s: key '%s' is not one finite number (shape %s)", l->path,
                       m->alpha->name, wan_shape_str(m->alpha->ndim, m->alpha->shape, s1, sizeof s1));
    m->scale = 1.0;
    if (!m->a)
        return WAN_OK;
    const wan_st_tensor *a = m->a, *b = m->b;
    if (a->ndim != 2 || b->ndim != 2 || b->shape[1] != a->shape[0] || a->shape[0] < 1)
        return wan_err(err, WAN_ERR_FORMAT, "LoRA %s: '%s' %s and '%s' %s are not a rank-r pair A [r, in], "
                       "B [out, r]", l->path, a->name, wan_shape_str(a->ndim, a->shape, s1, sizeof s1), b->name,
                       wan_shape_str(b->ndim, b->shape, s2, sizeof s2));
    const double rank = (double)a->shape[0];
    if (m->alpha)
        m->scale = scalar_of(m->alpha) / rank;
    else if (meta->root)
        m->scale = meta_alpha(meta, m->module) / (meta->rslora ? sqrt(rank) : rank);
    return WAN_OK;
}

wan_status wan_lora_load(const char *path, wan_lora_t **out, char *errbuf, size_t errlen)
{
    wan_error err = { 0 };
    peft_meta meta = { 0 };
    wan_status rc;
    wan_lora_t *l = NULL;
    if (!path || !out) {
        rc = wan_err(&err, WAN_ERR_INVALID_ARG, "wan_lora_load: NULL argument");
        goto fail;
    }
    *out = NULL;
    l = wan_calloc(1, sizeof *l);
    if (!l || !(l->path = wan_strdup(path))) {
        rc = wan_err(&err, WAN_ERR_NOMEM, "LoRA %s: out of memory", path);
        goto fail;
    }
    if ((rc = wan_st_open(path, &l->file, &err)) != WAN_OK) {
        wan_err_wrap(&err, "LoRA: ");
        goto fail;
    }
    if ((rc = parse_meta(l->file, &meta, &err)) != WAN_OK)
        goto fail;
    l->mods = wan_calloc(l->file->n_tensors ? (size_t)l->file->n_tensors : 1, sizeof *l->mods);
    if (!l->mods) {
        rc = wan_err(&err, WAN_ERR_NOMEM, "LoRA %s: out of memory", path);
        goto fail;
    }
    for (int i = 0; i < l->file->n_tensors; i++)
        if ((rc = add_key(l, &l->file->tensors[i], &err)) != WAN_OK)
            goto fail;
    if (l->n_unknown > MAX_REPORTED)
        wan_log_warn("LoRA %s: %d more keys in no known format ignored", path, l->n_unknown - MAX_REPORTED);
    if (l->n == 0) {
        rc = wan_err(&err, WAN_ERR_NOT_FOUND, "LoRA %s: none of its %d keys is in a known LoRA format%s%s%s", path,
                     l->file->n_tensors, l->file->n_tensors ? " (first: '" : "",
                     l->file->n_tensors ? l->file->tensors[0].name : "", l->file->n_tensors ? "')" : "");
        goto fail;
    }
    qsort(l->mods, (size_t)l->n, sizeof *l->mods, cmp_mod);
    for (int i = 0; i < l->n; i++)
        if ((rc = finish_mod(l, &l->mods[i], &meta, &err)) != WAN_OK)
            goto fail;
    cJSON_Delete(meta.root);
    *out = l;
    return WAN_OK;
fail:
    cJSON_Delete(meta.root);
    wan_lora_free(l);
    wan_err_copy(&err, errbuf, errlen);
    return rc;
}

void wan_lora_free(wan_lora_t *l)
{
    if (!l)
        return;
    for (int i = 0; i < l->n; i++)
        wan_free(l->mods[i].module);
    wan_free(l->mods);
    wan_st_close(l->file);
    wan_free(l->path);
    wan_free(l);
}

wan_status wan_lora_get_info(const wan_lora_t *l, wan_lora_info *info)
{
    if (!l || !info)
        return WAN_ERR_INVALID_ARG;
    memset(info, 0, sizeof *info);
    info->format = k_format_name[l->format];
    info->n_unknown = l->n_unknown;
    for (int i = 0; i < l->n; i++) {
        const lora_mod *m = &l->mods[i];
        info->n_delta += (m->bias != NULL) + (m->diff != NULL) + (m->diff_b != NULL);
        if (!m->a)
            continue;
        int r = (int)m->a->shape[0];
        info->rank_min = info->n_lowrank && info->rank_min < r ? info->rank_min : r;
        info->rank_max = info->rank_max > r ? info->rank_max : r;
        info->n_lowrank++;
    }
    return WAN_OK;
}

/* ---- checks against a model ------------------------------------------------------------------- */

/* Shapes equal once leading 1s are dropped ([1, 6, D] and [6, D] describe the same table). */
static bool same_shape(int na, const int64_t *a, int nb, const int64_t *b)
{
    while (na > 1 && a[0] == 1)
        a++, na--;
    while (nb > 1 && b[0] == 1)
        b++, nb--;
    if (na != nb)
        return false;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

/* The model tensor a full delta of `m` changes: "<module>.weight", or the parameter "<module>" itself. */
static const wan_st_entry *diff_target(const wan_st_set *w, const char *module)
{
    char name[352];
    snprintf(name, sizeof name, "%s.weight", module);
    const wan_st_entry *e = wan_st_set_find(w, name);
    return e ? e : wan_st_set_find(w, module);
}

/* The shape of entry e of w in values: q4_0 weights store two a byte. */
static void value_shape(const wan_st_set *w, const wan_st_entry *e, int64_t *shape)
{
    wan_tensor view;
    memcpy(shape, e->t->shape, sizeof e->t->shape);
    if (wan_st_set_quantised(w, e, &view))
        shape[1] = view.ne[1];
}

static wan_status check_delta(const wan_lora_t *l, const wan_st_set *w, const wan_st_tensor *d, const wan_st_entry *e,
                              int *hit, wan_error *err)
{
    char s1[96], s2[96];
    int64_t es[WAN_ST_MAX_DIMS];
    if (!d)
        return WAN_OK;
    if (!e) {
        if (hit[1]++ < MAX_REPORTED)
            wan_log_warn("LoRA %s: key '%s' matches no tensor of this transformer: ignored", l->path, d->name);
        return WAN_OK;
    }
    value_shape(w, e, es);
    if (!same_shape(d->ndim, d->shape, e->t->ndim, es))
        return wan_err(err, WAN_ERR_SHAPE, "LoRA %s: key '%s' has shape %s, but the model's '%s' is %s", l->path,
                       d->name, wan_shape_str(d->ndim, d->shape, s1, sizeof s1), e->name,
                       wan_shape_str(e->t->ndim, es, s2, sizeof s2));
    hit[0]++;
    return WAN_OK;
}

/* Checks every key of `l` against one expert's weights; hit[0] counts matched tensors, hit[1] unmatched. */
static wan_status check_expert(const wan_lora_t *l, const wan_st_set *w, int *hit, wan_error *err)
{
    char name[352], s1[96], s2[96], s3[96];
    wan_status rc;
    for (int i = 0; i < l->n; i++) {
        const lora_mod *m = &l->mods[i];
        snprintf(name, sizeof name, "%s.bias", m->module);
        const wan_st_entry *bias = wan_st_set_find(w, name);
        if ((rc = check_delta(l, w, m->diff, diff_target(w, m->module), hit, err)) != WAN_OK ||
            (rc = check_delta(l, w, m->diff_b, bias, hit, err)) != WAN_OK ||
            (rc = check_delta(l, w, m->bias, bias, hit, err)) != WAN_OK)
            return rc;
        if (!m->a)
            continue;
        snprintf(name, sizeof name, "%s.weight", m->module);
        const wan_st_entry *e = wan_st_set_find(w, name);
        if (!e) {
            if (hit[1]++ < MAX_REPORTED)
                wan_log_warn("LoRA %s: key '%s' matches no linear of this transformer: ignored", l->path,
                             m->a->name);
            continue;
        }
        const int64_t r = m->a->shape[0];
        if (e->t->ndim != 2)
            return wan_err(err, WAN_ERR_UNSUPPORTED, "LoRA %s: key '%s': a low-rank pair on '%s' %s (not a Linear) "
                           "is not supported", l->path, m->a->name, e->name,
                           wan_shape_str(e->t->ndim, e->t->shape, s1, sizeof s1));
        int64_t ws[WAN_ST_MAX_DIMS];
        value_shape(w, e, ws);
        if (m->a->shape[1] != ws[1] || m->b->shape[0] != ws[0])
            return wan_err(err, WAN_ERR_SHAPE, "LoRA %s: keys '%s' %s and '%s' %s do not fit the model's '%s' %s "
                           "(expected A [%lld, %lld] and B [%lld, %lld])", l->path, m->a->name,
                           wan_shape_str(2, m->a->shape, s1, sizeof s1), m->b->name,
                           wan_shape_str(2, m->b->shape, s2, sizeof s2), e->name, wan_shape_str(2, ws, s3, sizeof s3),
                           (long long)r, (long long)ws[1], (long long)ws[0], (long long)r);
        hit[0]++;
    }
    return WAN_OK;
}

/* The experts a target means for this model as a bit mask (bit 0 high, bit 1 low). */
static wan_status target_mask(const wan_model_t *model, const wan_lora_t *l, wan_lora_target target, int *mask,
                              wan_error *err)
{
    const bool two = wan_model_weights(model, WAN_COMPONENT_TRANSFORMER_2) != NULL;
    if (!wan_model_weights(model, WAN_COMPONENT_TRANSFORMER))
        return wan_err(err, WAN_ERR_NOT_FOUND, "LoRA %s: the model %s has no transformer", l->path,
                       wan_model_path(model));
    if ((int)target < 0 || target > WAN_LORA_BOTH)
        return wan_err(err, WAN_ERR_INVALID_ARG, "LoRA %s: unknown target %d", l->path, (int)target);
    if (target == WAN_LORA_LOW && !two)
        return wan_err(err, WAN_ERR_INVALID_ARG, "LoRA %s: target 'low' needs a model with a low-noise expert "
                       "(transformer_2); %s has one expert", l->path, wan_model_path(model));
    *mask = target == WAN_LORA_DEFAULT ? 1 : two ? (int)target : 1;
    return WAN_OK;
}

static wan_status check_lora(const wan_model_t *model, const wan_lora_t *l, int mask, wan_error *err)
{
    for (int e = 0; e < 2; e++) {
        if (!(mask & (1 << e)))
            continue;
        int hit[2] = { 0, 0 };
        const wan_st_set *w = wan_model_weights(model, e ? WAN_COMPONENT_TRANSFORMER_2 : WAN_COMPONENT_TRANSFORMER);
        wan_status rc = check_expert(l, w, hit, err);
        if (rc != WAN_OK)
            return rc;
        if (hit[1] > MAX_REPORTED)
            wan_log_warn("LoRA %s: %d more keys match no tensor: ignored", l->path, hit[1] - MAX_REPORTED);
        if (hit[0] == 0)
            return wan_err(err, WAN_ERR_NOT_FOUND, "LoRA %s: none of its keys matches a tensor of the %s (first: "
                           "'%s' for '%s'): is it made for another model?", l->path,
                           e ? "low-noise expert (transformer_2)" : "transformer", l->mods[0].a ?
                           l->mods[0].a->name : l->mods[0].diff ? l->mods[0].diff->name : l->mods[0].module,
                           l->mods[0].module);
    }
    return WAN_OK;
}

wan_status wan_lora_check(const wan_model_t *model, const wan_lora_t *lora, wan_lora_target target, char *errbuf,
                          size_t errlen)
{
    wan_error err = { 0 };
    int mask = 0;
    wan_status rc = !model || !lora ? wan_err(&err, WAN_ERR_INVALID_ARG, "wan_lora_check: NULL argument")
                                    : target_mask(model, lora, target, &mask, &err);
    if (rc == WAN_OK)
        rc = check_lora(model, lora, mask, &err);
    wan_err_copy(&err, errbuf, errlen);
    return rc;
}

/* ---- the adapters of one request -------------------------------------------------------------- */

typedef struct req_use {
    const wan_lora_t *lora;
    double scale;
    int mask;                     /* experts: bit 0 high, bit 1 low */
} req_use;

struct wan_lora_request {
    const wan_model_t *model;
    int mode;
    int n;
    req_use *use;
    wan_lora_t **owned;           /* [n]: adapters loaded from a path (else NULL) */
    int expert;                   /* bound expert, -1 none */
    bool bound;                   /* dit is patched and in use */
    wan_dit dit;
    void **bufs;                  /* merged weights and low-rank terms of the binding */
    int n_bufs, cap_bufs;
};

wan_status wan_lora_request_new(const wan_model_t *model, const wan_lora_use *uses, int n, int mode,
                                wan_lora_request **out, wan_error *err)
{
    *out = NULL;
    if (n <= 0)
        return n == 0 ? WAN_OK : wan_err(err, WAN_ERR_INVALID_ARG, "n_loras %d is negative", n);
    if (!uses)
        return wan_err(err, WAN_ERR_INVALID_ARG, "n_loras %d but loras is NULL", n);
    if (mode < WAN_LORA_RUNTIME || mode > WAN_LORA_MERGE_F32)
        return wan_err(err, WAN_ERR_INVALID_ARG, "unknown lora_mode %d", mode);
    wan_lora_request *q = wan_calloc(1, sizeof *q);
    if (!q || !(q->use = wan_calloc((size_t)n, sizeof *q->use)) ||
        !(q->owned = wan_calloc((size_t)n, sizeof *q->owned))) {
        wan_lora_request_free(q);
        return wan_err(err, WAN_ERR_NOMEM, "out of memory for %d LoRAs", n);
    }
    q->model = model, q->mode = mode, q->n = n, q->expert = -1;
    wan_status rc = WAN_OK;
    for (int i = 0; i < n && rc == WAN_OK; i++) {
        const wan_lora_use *u = &uses[i];
        q->use[i].lora = u->lora;
        q->use[i].scale = u->scale;
        if (!u->lora && !u->path) {
            rc = wan_err(err, WAN_ERR_INVALID_ARG, "LoRA %d: neither a loaded adapter nor a path", i);
            break;
        }
        if (!isfinite(u->scale)) {
            rc = wan_err(err, WAN_ERR_INVALID_ARG, "LoRA %s: strength %g is not finite", u->path ? u->path : "",
                         u->scale);
            break;
        }
        if (!u->lora) {
            char msg[WAN_ERRMSG_MAX];
            if ((rc = wan_lora_load(u->path, &q->owned[i], msg, sizeof msg)) != WAN_OK) {
                wan_err(err, rc, "%s", msg);
                break;
            }
            q->use[i].lora = q->owned[i];
        }
        if ((rc = target_mask(model, q->use[i].lora, u->target, &q->use[i].mask, err)) != WAN_OK ||
            (rc = check_lora(model, q->use[i].lora, q->use[i].mask, err)) != WAN_OK)
            break;
        if (u->target == WAN_LORA_DEFAULT && wan_model_weights(model, WAN_COMPONENT_TRANSFORMER_2))
            wan_log_warn("LoRA %s: applied to the high-noise expert (transformer) only, as diffusers' "
                         "load_lora_weights; choose with the target (@high, @low, @both)", q->use[i].lora->path);
    }
    if (rc != WAN_OK) {
        wan_lora_request_free(q);
        return rc;
    }
    *out = q;
    return WAN_OK;
}

static void unbind(wan_lora_request *q)
{
    if (q->bound)
        wan_dit_free(&q->dit);
    for (int i = 0; i < q->n_bufs; i++)
        wan_free(q->bufs[i]);
    q->n_bufs = 0;
    q->bound = false;
    q->expert = -1;
}

void wan_lora_request_release(wan_lora_request *q)
{
    if (q)
        unbind(q);
}

void wan_lora_request_free(wan_lora_request *q)
{
    if (!q)
        return;
    unbind(q);
    for (int i = 0; q->owned && i < q->n; i++)
        wan_lora_free(q->owned[i]);
    wan_free(q->owned);
    wan_free(q->use);
    wan_free(q->bufs);
    wan_free(q);
}

/* An allocation owned by the binding (freed by unbind). */
static void *bind_alloc(wan_lora_request *q, size_t bytes, wan_error *err)
{
    if (q->n_bufs == q->cap_bufs) {
        int cap = q->cap_bufs ? 2 * q->cap_bufs : 64;
        void **nb = wan_realloc(q->bufs, sizeof *nb * (size_t)cap);
        if (!nb) {
            wan_err(err, WAN_ERR_NOMEM, "LoRA: out of memory");
            return NULL;
        }
        q->bufs = nb, q->cap_bufs = cap;
    }
    void *p = wan_malloc(bytes ? bytes : 1);
    if (!p)
        wan_err(err, WAN_ERR_NOMEM, "LoRA: out of memory for %zu bytes", bytes);
    else
        q->bufs[q->n_bufs++] = p;
    return p;
}

static int cmp_param(const void *a, const void *b)
{
    return strcmp(((const wan_dit_param *)a)->name, ((const wan_dit_param *)b)->name);
}

static wan_dit_param *find_param(wan_dit_param *p, int n, const char *name)
{
    wan_dit_param key;
    snprintf(key.name, sizeof key.name, "%s", name);
    return bsearch(&key, p, (size_t)n, sizeof key, cmp_param);
}

/* vec[0..n) += m · delta (converted to f32 in chunks). */
static void add_delta(float *vec, const wan_st_tensor *d, double m)
{
    float buf[1024];
    const int64_t n = numel(d);
    const size_t es = wan_dtype_size(d->dtype);
    for (int64_t i0 = 0; i0 < n; i0 += 1024) {
        const int64_t k = n - i0 < 1024 ? n - i0 : 1024;
        wan_cpu_to_f32(d->data + (size_t)i0 * es, d->dtype, buf, k);
        for (int64_t i = 0; i < k; i++)
            vec[i0 + i] += (float)m * buf[i];
    }
}

/* Per linear weight of the binding: total rank on the fly, or the f32 merge buffer. */
typedef struct lin_plan {
    int64_t rank, used;
    bool merge;
    float *wf;                    /* merged f32 [out, in] */
    wan_lora_lin *lt;             /* on-the-fly terms     */
} lin_plan;

/* Resolves the dit entry a delta of module `m` changes (".weight"/".bias" or the parameter itself). */
static wan_dit_param *delta_param(wan_dit_param *P, int nP, const char *module, const char *suffix)
{
    char name[352];
    snprintf(name, sizeof name, "%s%s", module, suffix);
    wan_dit_param *p = find_param(P, nP, name);
    return p || strcmp(suffix, ".weight") != 0 ? p : find_param(P, nP, module);
}

/* First pass: vectors are patched in place; linears get their total rank or a merge flag. */
static void plan_pass(wan_lora_request *q, wan_dit_param *P, int nP, lin_plan *lp, int bit)
{
    for (int u = 0; u < q->n; u++) {
        const req_use *ru = &q->use[u];
        if (!(ru->mask & bit) || ru->scale == 0.0)
            continue;
        for (int i = 0; i < ru->lora->n; i++) {
            const lora_mod *m = &ru->lora->mods[i];
            wan_dit_param *pb = delta_param(P, nP, m->module, ".bias");
            wan_dit_param *pw = delta_param(P, nP, m->module, ".weight");
            if (pb && pb->vec && m->diff_b)
                add_delta(pb->vec, m->diff_b, ru->scale);
            if (pb && pb->vec && m->bias)
                add_delta(pb->vec, m->bias, ru->scale * m->scale);
            if (pw && pw->vec && m->diff)
                add_delta(pw->vec, m->diff, ru->scale);
            if (pw && pw->lin && m->diff)
                lp[pw - P].merge = true;
            if (pw && pw->lin && m->a)
                lp[pw - P].rank += m->a->shape[0];
        }
    }
}

/* Allocates the merge buffers (f32 copy of W) and the on-the-fly term arrays. */
static wan_status alloc_pass(wan_lora_request *q, wan_dit_param *P, int nP, lin_plan *lp, wan_error *err)
{
    for (int i = 0; i < nP; i++) {
        if (!P[i].lin || (!lp[i].rank && !lp[i].merge))
            continue;
        const wan_tensor *w = &P[i].lin->w;
        const int64_t N = w->ne[0], K = w->ne[1], r = lp[i].rank;
        if (lp[i].merge || q->mode != WAN_LORA_RUNTIME) {
            lp[i].merge = true;
            if (!(lp[i].wf = bind_alloc(q, sizeof(float) * (size_t)(N * K), err)))
                return wan_err_wrap(err, "merging into '%s' [%lld, %lld]", P[i].name, (long long)N, (long long)K);
            for (int64_t n = 0; n < N; n++)
                wan_cpu_weight_row_to_f32(w, K, n, 0, K, lp[i].wf + n * K);
            continue;
        }
        wan_lora_lin *lt = bind_alloc(q, sizeof *lt, err);
        float *A = lt ? bind_alloc(q, sizeof(float) * (size_t)(r * K), err) : NULL;
        float *B = A ? bind_alloc(q, sizeof(float) * (size_t)(N * r), err) : NULL;
        if (!B)
            return wan_err_wrap(err, "LoRA terms of '%s' (rank %lld)", P[i].name, (long long)r);
        *lt = (wan_lora_lin){ .r = r, .in = K, .out = N, .A = A, .B = B };
        lp[i].lt = lt;
        q->dit.lora_rank = q->dit.lora_rank > r ? q->dit.lora_rank : r;
    }
    return WAN_OK;
}

/* Second pass: every low-rank pair and full weight delta into its linear's terms or merge buffer. */
static wan_status fill_pass(wan_lora_request *q, wan_dit_param *P, int nP, lin_plan *lp, int bit, wan_error *err)
{
    for (int u = 0; u < q->n; u++) {
        const req_use *ru = &q->use[u];
        if (!(ru->mask & bit) || ru->scale == 0.0)
            continue;
        for (int i = 0; i < ru->lora->n; i++) {
            const lora_mod *m = &ru->lora->mods[i];
            wan_dit_param *pw = delta_param(P, nP, m->module, ".weight");
            if (!pw || !pw->lin)
                continue;
            lin_plan *l = &lp[pw - P];
            const int64_t N = pw->lin->w.ne[0], K = pw->lin->w.ne[1];
            if (m->diff)
                add_delta(l->wf, m->diff, ru->scale);
            if (!m->a)
                continue;
            const int64_t r = m->a->shape[0];
            const float s = (float)(ru->scale * m->scale);
            if (l->merge) { /* W' = W + s·B·A in f32 */
                float *A = wan_malloc(sizeof(float) * (size_t)(r * K));
                float *B = wan_malloc(sizeof(float) * (size_t)(N * r));
                if (A && B) {
                    wan_cpu_to_f32(m->a->data, m->a->dtype, A, r * K);
                    wan_cpu_to_f32(m->b->data, m->b->dtype, B, N * r);
#ifdef _OPENMP
                    wan_cpu_set_threads(omp_get_max_threads()); /* one large product: OpenBLAS's own threads */
#endif
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)K, (int)r, s, B, (int)r, A,
                                (int)K, 1.0f, l->wf, (int)K);
                }
                wan_free(A);
                wan_free(B);
                if (!A || !B)
                    return wan_err(err, WAN_ERR_NOMEM, "LoRA %s: out of memory merging '%s'", ru->lora->path,
                                   m->a->name);
                continue;
            }
            wan_cpu_to_f32(m->a->data, m->a->dtype, l->lt->A + l->used * K, r * K);
            float row[1024];
            for (int64_t o = 0; o < N; o++) { /* B [N, r] into columns used..used+r of the [N, R] term */
                for (int64_t j0 = 0; j0 < r; j0 += 1024) {
                    const int64_t k = r - j0 < 1024 ? r - j0 : 1024;
                    wan_cpu_to_f32(m->b->data + (size_t)(o * r + j0) * wan_dtype_size(m->b->dtype), m->b->dtype,
                                   row, k);
                    for (int64_t j = 0; j < k; j++)
                        l->lt->B[o * l->lt->r + l->used + j0 + j] = s * row[j];
                }
            }
            l->used += r;
        }
    }
    return WAN_OK;
}

/* Rebinds each changed linear: the merged copy (rounded to the stored dtype for WAN_LORA_MERGE) or its terms. */
static wan_status rebind_pass(wan_lora_request *q, wan_dit_param *P, int nP, lin_plan *lp, wan_error *err)
{
    for (int i = 0; i < nP; i++) {
        wan_dit_linear *lin = P[i].lin;
        if (!lin || (!lp[i].merge && !lp[i].lt))
            continue;
        if (lp[i].lt) {
            lin->lora = lp[i].lt;
            continue;
        }
        const int64_t N = lin->w.ne[0], K = lin->w.ne[1];
        wan_dtype dt = q->mode == WAN_LORA_MERGE ? lin->w.dtype : WAN_DTYPE_F32;
        if (wan_dtype_is_f8(dt)) /* float8 has no room for W + ΔW: merged in bf16 */
            dt = WAN_DTYPE_BF16;
        void *data = lp[i].wf;
        if (lin->w.qscale && (dt == WAN_DTYPE_I8 || dt == WAN_DTYPE_U8)) { /* q8_0 / q4_0: quantised again */
            const int q4 = dt == WAN_DTYPE_U8;
            uint8_t *qv = bind_alloc(q, (size_t)(q4 ? N * K / 2 : N * K), err);
            uint16_t *qs = qv ? bind_alloc(q, sizeof(uint16_t) * (size_t)(N * K / WAN_Q8_BLOCK), err) : NULL;
            if (!qs)
                return wan_err_wrap(err, "merging into '%s'", P[i].name);
            for (int64_t n = 0; n < N; n++) {
                uint16_t *sn = qs + n * (K / WAN_Q8_BLOCK);
                if (q4)
                    wan_q4_quantize_row(lp[i].wf + n * K, K, qv + n * (K / 2), sn);
                else
                    wan_q8_quantize_row(lp[i].wf + n * K, K, (int8_t *)qv + n * K, sn);
            }
            const char *nm = lin->w.name;
            lin->w = wan_tensor_view(dt, 2, (int64_t[]){ N, K }, qv);
            lin->w.qscale = qs;
            lin->w.name = nm;
            continue;
        }
        if (dt != WAN_DTYPE_F32) {
            uint16_t *h = bind_alloc(q, sizeof(uint16_t) * (size_t)(N * K), err);
            if (!h)
                return wan_err_wrap(err, "merging into '%s'", P[i].name);
            for (int64_t k = 0; k < N * K; k++)
                h[k] = dt == WAN_DTYPE_BF16 ? wan_f32_to_bf16(lp[i].wf[k]) : wan_f32_to_f16(lp[i].wf[k]);
            data = h;
        }
        const char *nm = lin->w.name;
        lin->w = wan_tensor_view(dt, 2, (int64_t[]){ N, K }, data);
        lin->w.name = nm;
    }
    return WAN_OK;
}

wan_status wan_lora_request_bind(wan_lora_request *q, int expert, wan_error *err)
{
    if (!q)
        return WAN_OK;
    unbind(q);
    q->expert = expert;
    const int bit = 1 << expert;
    bool any = false;
    for (int u = 0; u < q->n; u++)
        any |= (q->use[u].mask & bit) && q->use[u].scale != 0.0;
    if (!any)
        return WAN_OK;
    const wan_component c = expert ? WAN_COMPONENT_TRANSFORMER_2 : WAN_COMPONENT_TRANSFORMER;
    wan_status rc = wan_dit_init(&q->dit, wan_model_weights(q->model, c),
                                 wan_model_transformer_config(q->model, expert), err);
    if (rc != WAN_OK)
        return rc;
    q->bound = true;
    const int nP = wan_dit_params(&q->dit, NULL, 0);
    wan_dit_param *P = wan_malloc(sizeof *P * (size_t)nP);
    lin_plan *lp = wan_calloc((size_t)nP, sizeof *lp);
    if (!P || !lp) {
        rc = wan_err(err, WAN_ERR_NOMEM, "LoRA: out of memory");
        goto done;
    }
    wan_dit_params(&q->dit, P, nP);
    qsort(P, (size_t)nP, sizeof *P, cmp_param);
    plan_pass(q, P, nP, lp, bit);
    if ((rc = alloc_pass(q, P, nP, lp, err)) == WAN_OK && (rc = fill_pass(q, P, nP, lp, bit, err)) == WAN_OK)
        rc = rebind_pass(q, P, nP, lp, err);
done:
    wan_free(P);
    wan_free(lp);
    if (rc != WAN_OK)
        unbind(q);
    return rc;
}

const wan_dit *wan_lora_request_dit(const wan_lora_request *q, int expert)
{
    return q && q->bound && q->expert == expert ? &q->dit : NULL;
}

wan_status wan_lora_forward(const wan_lora_request *q, const wan_model_t *model, int expert,
                            const wan_host_tensor *hidden_states, const wan_host_tensor *timestep,
                            const wan_host_tensor *encoder_hidden_states, wan_host_tensor *out_sample,
                            int n_threads, char *errbuf, size_t errlen)
{
    if (!q || !q->bound || q->expert != expert)
        return wan_transformer_forward(model, expert, hidden_states, timestep, encoder_hidden_states, out_sample,
                                       n_threads, errbuf, errlen);
    wan_error err = { 0 };
    wan_status rc = wan_dit_forward_host(&q->dit, hidden_states, timestep, encoder_hidden_states, out_sample,
                                         n_threads, &err);
    wan_err_copy(&err, errbuf, errlen);
    return rc;
}

/* ---- the on-the-fly kernel -------------------------------------------------------------------- */

int64_t wan_lora_lin_scratch(int64_t r, int n_threads) { return LORA_ROWS * r * (n_threads > 0 ? n_threads : 1); }

void wan_lora_lin_apply(const wan_lora_lin *l, const float *x, int64_t M, int64_t ldx, float *y, int64_t ldy,
                        float *scratch, int n_threads)
{
    const int64_t nch = (M + LORA_ROWS - 1) / LORA_ROWS;
    const int nt = n_threads > 0 ? n_threads : 1;
    wan_cpu_set_threads(1);
#pragma omp parallel for num_threads(nt) schedule(static) if (nch > 1 && nt > 1)
    for (int64_t c = 0; c < nch; c++) {
#ifdef _OPENMP
        float *t = scratch + (int64_t)omp_get_thread_num() * LORA_ROWS * l->r;
#else
        float *t = scratch;
#endif
        const int64_t m0 = c * LORA_ROWS, rows = M - m0 < LORA_ROWS ? M - m0 : LORA_ROWS;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)l->r, (int)l->in, 1.0f, x + m0 * ldx,
                    (int)ldx, l->A, (int)l->in, 0.0f, t, (int)l->r);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)l->out, (int)l->r, 1.0f, t, (int)l->r,
                    l->B, (int)l->r, 1.0f, y + m0 * ldy, (int)ldy);
    }
}
