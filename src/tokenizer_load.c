/* tokenizer_load.c — reading tokenizer.json (the serde format of HF `tokenizers`) and spiece.model
 * (SentencePiece ModelProto, parsed with a minimal protobuf wire-format reader), and finding them in a
 * model folder. */
#include "tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

static wan_tokenizer *tok_new(const char *source)
{
    wan_tokenizer *t = wan_calloc(1, sizeof *t);
    if (t) {
        snprintf(t->source, sizeof t->source, "%s", source ? source : "tokenizer");
        t->unk_id = -1;
        t->pad_id = -1;
        t->replacement = 0x2581;
    }
    return t;
}

/* Allocates the piece arrays for n entries holding `bytes` bytes of piece text in all. */
static wan_status alloc_pieces(wan_tokenizer *t, size_t n, size_t bytes, wan_error *err)
{
    if (n > 0x7FFFFFF0u || bytes > 0xFFFFFFF0u)
        return wan_err(err, WAN_ERR_FORMAT, "%s: vocabulary too large (%zu pieces, %zu bytes)", t->source, n, bytes);
    t->pieces = wan_malloc(bytes + n + 1);
    t->piece_off = wan_malloc((n + 1) * sizeof *t->piece_off);
    t->piece_len = wan_malloc((n + 1) * sizeof *t->piece_len);
    t->score = wan_malloc((n + 1) * sizeof *t->score);
    if (!t->pieces || !t->piece_off || !t->piece_len || !t->score)
        return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory for %zu pieces", t->source, n);
    return WAN_OK;
}

static void set_piece(wan_tokenizer *t, size_t *used, int32_t id, const char *s, size_t n, double score)
{
    t->piece_off[id] = (uint32_t)*used;
    t->piece_len[id] = (uint32_t)n;
    memcpy(t->pieces + *used, s, n);
    t->pieces[*used + n] = 0;
    *used += n + 1;
    t->score[id] = score;
}

static wan_status add_added(wan_tokenizer *t, const char *content, size_t len, int32_t id, bool normalized,
                            bool special, wan_error *err)
{
    wan_added_token *a = wan_realloc(t->added, (size_t)(t->n_added + 1) * sizeof *a);
    if (!a)
        return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory for added tokens", t->source);
    t->added = a;
    char *c = wan_malloc(len + 1);
    if (!c)
        return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory for added tokens", t->source);
    memcpy(c, content, len);
    c[len] = 0;
    t->added[t->n_added++] = (wan_added_token){ c, len, id, normalized, special };
    return WAN_OK;
}

static wan_status add_norm(wan_tokenizer *t, wan_norm_step st, wan_error *err)
{
    if (t->n_norm >= WAN_TOK_MAX_NORM) {
        wan_free(st.pattern), wan_free(st.content);
        return wan_err(err, WAN_ERR_UNSUPPORTED, "%s: more than %d normalizers", t->source, WAN_TOK_MAX_NORM);
    }
    t->norm[t->n_norm++] = st;
    return WAN_OK;
}

/* ---- tokenizer.json ---------------------------------------------------------------------------- */

static int b64_val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Strict standard base64 (with '=' padding) into a counted buffer. */
static wan_status b64_decode(const char *s, uint8_t **out, size_t *out_len, const char *what, wan_error *err)
{
    size_t n = strlen(s);
    uint8_t *o = wan_malloc(n / 4 * 3 + 4);
    if (!o)
        return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory decoding base64", what);
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;
    size_t i = 0;
    for (; i < n && s[i] != '='; i++) {
        int v = b64_val((unsigned char)s[i]);
        if (v < 0) {
            wan_free(o);
            return wan_err(err, WAN_ERR_FORMAT, "%s: invalid base64 character 0x%02X at offset %zu", what,
                           (unsigned char)s[i], i);
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[k++] = (uint8_t)(acc >> bits);
        }
    }
    size_t pad = n - i;
    bool ok = pad <= 2 && (n % 4 == 0) && (acc & ((1u << bits) - 1)) == 0;
    for (; i < n; i++)
        ok = ok && s[i] == '=';
    if (!ok) {
        wan_free(o);
        return wan_err(err, WAN_ERR_FORMAT, "%s: malformed base64 padding (length %zu)", what, n);
    }
    *out = o;
    *out_len = k;
    return WAN_OK;
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool jbool(const cJSON *o, const char *key, bool def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static bool jnull(const cJSON *v) { return !v || cJSON_IsNull(v); }

static wan_status parse_vocab(wan_tokenizer *t, const cJSON *model, wan_error *err)
{
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsArray(vocab))
        return wan_err(err, WAN_ERR_FORMAT, "%s: model.vocab is missing or not an array", t->source);
    size_t n = 0, bytes = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab)
    {
        const cJSON *p = cJSON_GetArrayItem(e, 0), *s = cJSON_GetArrayItem(e, 1);
        if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2 || !cJSON_IsString(p) || !cJSON_IsNumber(s))
            return wan_err(err, WAN_ERR_FORMAT, "%s: model.vocab[%zu] is not a [piece, score] pair", t->source, n);
        bytes += strlen(p->valuestring);
        n++;
    }
    wan_status rc = alloc_pieces(t, n, bytes, err);
    if (rc != WAN_OK)
        return rc;
    size_t used = 0, i = 0;
    cJSON_ArrayForEach(e, vocab)
    {
        const char *p = cJSON_GetArrayItem(e, 0)->valuestring;
        set_piece(t, &used, (int32_t)i++, p, strlen(p), cJSON_GetArrayItem(e, 1)->valuedouble);
    }
    t->n_vocab = (int32_t)n;
    return WAN_OK;
}

static wan_status parse_model(wan_tokenizer *t, const cJSON *model, wan_error *err)
{
    if (!cJSON_IsObject(model))
        return wan_err(err, WAN_ERR_FORMAT, "%s: \"model\" is missing or not an object", t->source);
    const char *type = jstr(model, "type");
    if (!type || strcmp(type, "Unigram"))
        return wan_err(err, WAN_ERR_UNSUPPORTED, "%s: model type \"%s\" is not supported (only Unigram)", t->source,
                       type ? type : "(missing)");
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_id");
    if (cJSON_IsNumber(unk)) {
        if (unk->valuedouble < 0 || unk->valuedouble > 2147483647.0 || unk->valuedouble != (double)unk->valueint)
            return wan_err(err, WAN_ERR_FORMAT, "%s: model.unk_id %g is not a valid id", t->source, unk->valuedouble);
        t->unk_id = unk->valueint;
    } else if (!jnull(unk)) {
        return wan_err(err, WAN_ERR_FORMAT, "%s: model.unk_id is neither a number nor null", t->source);
    }
    t->byte_fallback = jbool(model, "byte_fallback", false);
    return parse_vocab(t, model, err);
}

static wan_status parse_added(wan_tokenizer *t, const cJSON *root, wan_error *err)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), *e;
    if (jnull(arr))
        return WAN_OK;
    if (!cJSON_IsArray(arr))
        return wan_err(err, WAN_ERR_FORMAT, "%s: added_tokens is not an array", t->source);
    int i = 0;
    cJSON_ArrayForEach(e, arr)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        const char *content = jstr(e, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 2147483647.0 || !content)
            return wan_err(err, WAN_ERR_FORMAT, "%s: added_tokens[%d] lacks a valid id or content", t->source, i);
        if (jbool(e, "single_word", false) || jbool(e, "lstrip", false) || jbool(e, "rstrip", false))
            return wan_err(err, WAN_ERR_UNSUPPORTED,
                           "%s: added_tokens[%d] (\"%s\") uses single_word/lstrip/rstrip, which is not supported",
                           t->source, i, content);
        wan_status rc = add_added(t, content, strlen(content), id->valueint, jbool(e, "normalized", true),
                                  jbool(e, "special", false), err);
        if (rc != WAN_OK)
            return rc;
        i++;
    }
    return WAN_OK;
}

static wan_status parse_normalizer(wan_tokenizer *t, const cJSON *n, int depth, wan_error *err)
{
    if (jnull(n))
        return WAN_OK;
    const char *type = jstr(n, "type");
    if (!type || depth > 4)
        return wan_err(err, WAN_ERR_FORMAT, "%s: normalizer without a type (or nested too deeply)", t->source);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers"), *e;
        if (!cJSON_IsArray(list))
            return wan_err(err, WAN_ERR_FORMAT, "%s: Sequence normalizer without a normalizers list", t->source);
        cJSON_ArrayForEach(e, list)
        {
            wan_status rc = parse_normalizer(t, e, depth + 1, err);
            if (rc != WAN_OK)
                return rc;
        }
        return WAN_OK;
    }
    wan_norm_step st = {0};
    if (!strcmp(type, "Precompiled")) {
        const char *b64 = jstr(n, "precompiled_charsmap");
        if (!b64 || !*b64)
            return WAN_OK;
        if (t->charsmap.blob)
            return wan_err(err, WAN_ERR_UNSUPPORTED, "%s: more than one Precompiled normalizer", t->source);
        uint8_t *blob = NULL;
        size_t len = 0;
        char what[600];
        snprintf(what, sizeof what, "%s: normalizer precompiled_charsmap", t->source);
        wan_status rc = b64_decode(b64, &blob, &len, what, err);
        if (rc != WAN_OK)
            return rc;
        rc = wan_charsmap_init(&t->charsmap, blob, len, what, err);
        wan_free(blob);
        if (rc != WAN_OK)
            return rc;
        st.type = WAN_NORM_PRECOMPILED;
    } else if (!strcmp(type, "Strip")) {
        st.type = WAN_NORM_STRIP;
        st.strip_left = jbool(n, "strip_left", false);
        st.strip_right = jbool(n, "strip_right", false);
    } else if (!strcmp(type, "Replace")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
        const char *content = jstr(n, "content"), *lit = jstr(pat, "String"), *re = jstr(pat, "Regex");
        if (!content || (!lit && !re))
            return wan_err(err, WAN_ERR_FORMAT, "%s: Replace normalizer without pattern/content", t->source);
        if (re && strcmp(re, " {2,}"))
            return wan_err(err, WAN_ERR_UNSUPPORTED,
                           "%s: Replace normalizer with regex \"%s\" is not supported (only \" {2,}\")", t->source,
                           re);
        st.type = WAN_NORM_REPLACE;
        st.regex_spaces = re != NULL;
        st.pattern = wan_strdup(lit ? lit : re);
        st.content = wan_strdup(content);
        if (!st.pattern || !st.content) {
            wan_free(st.pattern), wan_free(st.content);
            return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory", t->source);
        }
    } else {
        return wan_err(err, WAN_ERR_UNSUPPORTED,
                       "%s: normalizer \"%s\" is not supported (Sequence, Precompiled, Strip, Replace are)",
                       t->source, type);
    }
    return add_norm(t, st, err);
}

static wan_status parse_metaspace(wan_tokenizer *t, const cJSON *m, wan_error *err)
{
    const char *rep = jstr(m, "replacement");
    if (!rep)
        rep = jstr(m, "str_rep");
    if (!rep || !*rep)
        return wan_err(err, WAN_ERR_FORMAT, "%s: Metaspace without a replacement", t->source);
    uint32_t cp;
    size_t k = wan_utf8_next((const uint8_t *)rep, strlen(rep), &cp);
    if (rep[k])
        return wan_err(err, WAN_ERR_UNSUPPORTED, "%s: Metaspace replacement \"%s\" is not one character",
                       t->source, rep);
    t->replacement = cp;
    const char *scheme = jstr(m, "prepend_scheme");
    if (scheme) {
        if (!strcmp(scheme, "always"))
            t->prepend = WAN_PREPEND_ALWAYS;
        else if (!strcmp(scheme, "first"))
            t->prepend = WAN_PREPEND_FIRST;
        else if (!strcmp(scheme, "never"))
            t->prepend = WAN_PREPEND_NEVER;
        else
            return wan_err(err, WAN_ERR_FORMAT, "%s: unknown Metaspace prepend_scheme \"%s\"", t->source, scheme);
    } else {
        t->prepend = jbool(m, "add_prefix_space", true) ? WAN_PREPEND_ALWAYS : WAN_PREPEND_NEVER;
    }
    t->split = jbool(m, "split", true);
    t->has_metaspace = true;
    return WAN_OK;
}

static wan_status parse_pre_tokenizer(wan_tokenizer *t, const cJSON *p, wan_error *err)
{
    if (jnull(p))
        return WAN_OK;
    const char *type = jstr(p, "type");
    if (type && !strcmp(type, "Metaspace"))
        return parse_metaspace(t, p, err);
    if (!type || strcmp(type, "Sequence"))
        return wan_err(err, WAN_ERR_UNSUPPORTED, "%s: pre-tokenizer \"%s\" is not supported (Metaspace is)",
                       t->source, type ? type : "(missing)");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers"), *e;
    int i = 0;
    cJSON_ArrayForEach(e, list)
    {
        const char *et = jstr(e, "type");
        wan_status rc = WAN_OK;
        if (et && !strcmp(et, "WhitespaceSplit") && i == 0)
            t->whitespace_split = true;
        else if (et && !strcmp(et, "Metaspace") && !t->has_metaspace)
            rc = parse_metaspace(t, e, err);
        else
            rc = wan_err(err, WAN_ERR_UNSUPPORTED,
                         "%s: pre-tokenizer Sequence item %d \"%s\" is not supported (WhitespaceSplit then "
                         "Metaspace are)", t->source, i, et ? et : "(missing)");
        if (rc != WAN_OK)
            return rc;
        i++;
    }
    if (t->whitespace_split && t->prepend == WAN_PREPEND_FIRST)
        return wan_err(err, WAN_ERR_UNSUPPORTED,
                       "%s: WhitespaceSplit + Metaspace with prepend_scheme \"first\" is not supported", t->source);
    return WAN_OK;
}

static wan_status parse_post(wan_tokenizer *t, const cJSON *p, wan_error *err)
{
    if (jnull(p))
        return WAN_OK;
    const char *type = jstr(p, "type");
    if (!type || strcmp(type, "TemplateProcessing"))
        return wan_err(err, WAN_ERR_UNSUPPORTED,
                       "%s: post-processor \"%s\" is not supported (TemplateProcessing is)", t->source,
                       type ? type : "(missing)");
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(p, "single"), *e;
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(p, "special_tokens");
    if (!cJSON_IsArray(single))
        return wan_err(err, WAN_ERR_FORMAT, "%s: TemplateProcessing without a \"single\" template", t->source);
    bool seen_a = false;
    cJSON_ArrayForEach(e, single)
    {
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(e, "Sequence");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
        if (seq) {
            if (seen_a)
                return wan_err(err, WAN_ERR_UNSUPPORTED, "%s: template with two sequences", t->source);
            seen_a = true;
            continue;
        }
        const char *name = jstr(sp, "id");
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(specials, name ? name : ""),
                                                            "ids"), *x;
        if (!name || !cJSON_IsArray(ids))
            return wan_err(err, WAN_ERR_FORMAT, "%s: template special token \"%s\" has no ids", t->source,
                           name ? name : "(missing)");
        cJSON_ArrayForEach(x, ids)
        {
            int *cnt = seen_a ? &t->n_after : &t->n_before;
            int32_t *dst = seen_a ? t->after : t->before;
            if (!cJSON_IsNumber(x) || x->valuedouble < 0 || *cnt >= WAN_TOK_MAX_TEMPLATE)
                return wan_err(err, WAN_ERR_FORMAT, "%s: bad id list of template token \"%s\"", t->source, name);
            dst[(*cnt)++] = x->valueint;
        }
    }
    return WAN_OK;
}

wan_status wan_tokenizer_from_json(const char *json, size_t len, const char *source, wan_tokenizer **out,
                                   wan_error *err)
{
    *out = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root)
        return wan_err(err, WAN_ERR_FORMAT, "%s: invalid JSON near byte %zu", source,
                       end && end >= json ? (size_t)(end - json) : (size_t)0);
    wan_tokenizer *t = tok_new(source);
    wan_status rc = t ? WAN_OK : wan_err(err, WAN_ERR_NOMEM, "%s: out of memory", source);
    if (rc == WAN_OK && !cJSON_IsObject(root))
        rc = wan_err(err, WAN_ERR_FORMAT, "%s: the top level is not a JSON object", source);
    if (rc == WAN_OK)
        rc = parse_model(t, cJSON_GetObjectItemCaseSensitive(root, "model"), err);
    if (rc == WAN_OK)
        rc = parse_added(t, root, err);
    if (rc == WAN_OK)
        rc = parse_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), 0, err);
    if (rc == WAN_OK)
        rc = parse_pre_tokenizer(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), err);
    if (rc == WAN_OK)
        rc = parse_post(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), err);
    if (rc == WAN_OK)
        rc = wan_tokenizer_finish(t, err);
    cJSON_Delete(root);
    if (rc != WAN_OK) {
        wan_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return WAN_OK;
}

/* ---- spiece.model (protobuf) ------------------------------------------------------------------ */

typedef struct pb_reader {
    const uint8_t *p;
    size_t n, pos;
    size_t base; /* absolute offset of p[0] in the file, for messages */
    const char *source;
} pb_reader;

typedef struct pb_field {
    uint32_t num;
    int wire;
    uint64_t v;        /* varint / fixed value                      */
    const uint8_t *s;  /* length-delimited payload                  */
    size_t len;
    size_t at;         /* absolute offset of the field's tag        */
} pb_field;

static wan_status pb_varint(pb_reader *r, uint64_t *v, wan_error *err)
{
    uint64_t x = 0;
    size_t start = r->pos;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->pos >= r->n)
            return wan_err(err, WAN_ERR_FORMAT, "%s: truncated varint at byte %zu", r->source, r->base + start);
        uint8_t b = r->p[r->pos++];
        if (shift == 63 && b > 1)
            return wan_err(err, WAN_ERR_FORMAT, "%s: varint overflow at byte %zu", r->source, r->base + start);
        x |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return WAN_OK;
        }
    }
    return wan_err(err, WAN_ERR_FORMAT, "%s: varint longer than 10 bytes at byte %zu", r->source, r->base + start);
}

/* Reads the next field; returns WAN_OK with f->num == 0 at the end of the message. */
static wan_status pb_next(pb_reader *r, pb_field *f, wan_error *err)
{
    memset(f, 0, sizeof *f);
    if (r->pos >= r->n)
        return WAN_OK;
    f->at = r->base + r->pos;
    uint64_t tag;
    wan_status rc = pb_varint(r, &tag, err);
    if (rc != WAN_OK)
        return rc;
    f->wire = (int)(tag & 7);
    if ((tag >> 3) == 0 || (tag >> 3) > 0x1FFFFFFF)
        return wan_err(err, WAN_ERR_FORMAT, "%s: invalid field number %llu at byte %zu", r->source,
                       (unsigned long long)(tag >> 3), f->at);
    f->num = (uint32_t)(tag >> 3);
    switch (f->wire) {
    case 0:
        return pb_varint(r, &f->v, err);
    case 1:
    case 5: {
        size_t k = f->wire == 1 ? 8 : 4;
        if (r->n - r->pos < k)
            return wan_err(err, WAN_ERR_FORMAT, "%s: truncated fixed%zu field %u at byte %zu", r->source, k * 8,
                           f->num, f->at);
        for (size_t i = 0; i < k; i++)
            f->v |= (uint64_t)r->p[r->pos + i] << (8 * i);
        r->pos += k;
        return WAN_OK;
    }
    case 2: {
        uint64_t len;
        rc = pb_varint(r, &len, err);
        if (rc != WAN_OK)
            return rc;
        if (len > r->n - r->pos)
            return wan_err(err, WAN_ERR_FORMAT,
                           "%s: field %u at byte %zu claims %llu bytes but only %zu remain", r->source, f->num,
                           f->at, (unsigned long long)len, r->n - r->pos);
        f->s = r->p + r->pos;
        f->len = (size_t)len;
        r->pos += (size_t)len;
        return WAN_OK;
    }
    default:
        return wan_err(err, WAN_ERR_FORMAT, "%s: unsupported wire type %d (field %u) at byte %zu", r->source,
                       f->wire, f->num, f->at);
    }
}

static pb_reader pb_sub(const pb_reader *r, const pb_field *f)
{
    return (pb_reader){ f->s, f->len, 0, (size_t)(f->s - r->p) + r->base, r->source };
}

static wan_status pb_expect(const pb_reader *r, const pb_field *f, int wire, const char *what, wan_error *err)
{
    if (f->wire == wire)
        return WAN_OK;
    return wan_err(err, WAN_ERR_FORMAT, "%s: %s (field %u) at byte %zu has wire type %d, expected %d", r->source,
                   what, f->num, f->at, f->wire, wire);
}

typedef struct spm_piece {
    const uint8_t *s;
    size_t len;
    float score;
    int type;
} spm_piece;

typedef struct spm_model {
    spm_piece *pieces;
    size_t n, cap;
    int64_t unk_id;
    int model_type;
    const uint8_t *charsmap;
    size_t charsmap_len;
} spm_model;

static wan_status spm_piece_msg(pb_reader *r, spm_piece *pc, wan_error *err)
{
    pb_field f;
    *pc = (spm_piece){ (const uint8_t *)"", 0, 0.0f, 1 };
    for (;;) {
        wan_status rc = pb_next(r, &f, err);
        if (rc != WAN_OK || !f.num)
            return rc;
        if (f.num == 1) {
            if ((rc = pb_expect(r, &f, 2, "piece", err)) != WAN_OK)
                return rc;
            pc->s = f.s;
            pc->len = f.len;
        } else if (f.num == 2) {
            if ((rc = pb_expect(r, &f, 5, "score", err)) != WAN_OK)
                return rc;
            uint32_t u = (uint32_t)f.v;
            memcpy(&pc->score, &u, 4);
        } else if (f.num == 3) {
            if ((rc = pb_expect(r, &f, 0, "type", err)) != WAN_OK)
                return rc;
            pc->type = (int)(int32_t)f.v;
        }
    }
}

static wan_status spm_trainer_msg(pb_reader *r, spm_model *m, wan_error *err)
{
    pb_field f;
    for (;;) {
        wan_status rc = pb_next(r, &f, err);
        if (rc != WAN_OK || !f.num)
            return rc;
        if (f.num == 3 || f.num == 40) {
            if ((rc = pb_expect(r, &f, 0, f.num == 3 ? "model_type" : "unk_id", err)) != WAN_OK)
                return rc;
            if (f.num == 3)
                m->model_type = (int)(int32_t)f.v;
            else
                m->unk_id = (int32_t)f.v;
        }
    }
}

static wan_status spm_normalizer_msg(pb_reader *r, spm_model *m, wan_error *err)
{
    pb_field f;
    for (;;) {
        wan_status rc = pb_next(r, &f, err);
        if (rc != WAN_OK || !f.num)
            return rc;
        if (f.num == 2) {
            if ((rc = pb_expect(r, &f, 2, "precompiled_charsmap", err)) != WAN_OK)
                return rc;
            m->charsmap = f.s;
            m->charsmap_len = f.len;
        }
    }
}

static wan_status spm_parse(pb_reader *r, spm_model *m, wan_error *err)
{
    pb_field f;
    m->unk_id = 0; /* proto2 default of TrainerSpec.unk_id */
    m->model_type = 1;
    for (;;) {
        wan_status rc = pb_next(r, &f, err);
        if (rc != WAN_OK || !f.num)
            return rc;
        if (f.num < 1 || f.num > 3)
            continue;
        if ((rc = pb_expect(r, &f, 2, "ModelProto field", err)) != WAN_OK)
            return rc;
        pb_reader sub = pb_sub(r, &f);
        if (f.num == 1) {
            if (m->n == m->cap) {
                size_t cap = m->cap ? m->cap * 2 : 1024;
                spm_piece *p = wan_realloc(m->pieces, cap * sizeof *p);
                if (!p)
                    return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory for pieces", r->source);
                m->pieces = p;
                m->cap = cap;
            }
            rc = spm_piece_msg(&sub, &m->pieces[m->n++], err);
        } else if (f.num == 2) {
            rc = spm_trainer_msg(&sub, m, err);
        } else {
            rc = spm_normalizer_msg(&sub, m, err);
        }
        if (rc != WAN_OK)
            return rc;
    }
}

/* What T5Converter writes for the model (text.md §3.10). */
static wan_status spm_build(wan_tokenizer *t, const spm_model *m, int extra_ids, int legacy, wan_error *err)
{
    if (m->model_type != 1)
        return wan_err(err, WAN_ERR_UNSUPPORTED, "%s: SentencePiece model_type %d is not Unigram (1)", t->source,
                       m->model_type);
    if (!m->n)
        return wan_err(err, WAN_ERR_FORMAT, "%s: the SentencePiece model has no pieces", t->source);
    if (extra_ids < 0 || extra_ids > 100000)
        return wan_err(err, WAN_ERR_INVALID_ARG, "%s: bad extra_ids %d", t->source, extra_ids);
    size_t n = m->n + (size_t)extra_ids, bytes = 32 * (size_t)extra_ids;
    for (size_t i = 0; i < m->n; i++)
        bytes += m->pieces[i].len;
    wan_status rc = alloc_pieces(t, n, bytes, err);
    if (rc != WAN_OK)
        return rc;
    size_t used = 0;
    for (size_t i = 0; i < m->n; i++)
        set_piece(t, &used, (int32_t)i, (const char *)m->pieces[i].s, m->pieces[i].len, (double)m->pieces[i].score);
    for (int k = 0; k < extra_ids; k++) {
        char name[32];
        int len = snprintf(name, sizeof name, "<extra_id_%d>", extra_ids - 1 - k);
        set_piece(t, &used, (int32_t)(m->n + (size_t)k), name, (size_t)len, 0.0);
    }
    t->n_vocab = (int32_t)n;
    if (m->unk_id < 0 || m->unk_id >= (int64_t)n)
        return wan_err(err, WAN_ERR_FORMAT, "%s: trainer_spec.unk_id %lld is outside the %zu pieces", t->source,
                       (long long)m->unk_id, n);
    t->unk_id = (int32_t)m->unk_id;
    /* added tokens: CONTROL and USER_DEFINED pieces, the UNKNOWN piece, the sentinels */
    for (size_t i = 0; i < m->n && rc == WAN_OK; i++) {
        int ty = m->pieces[i].type;
        if (ty == 2 || ty == 3 || ty == 4)
            rc = add_added(t, (const char *)m->pieces[i].s, m->pieces[i].len, (int32_t)i, false, ty != 4, err);
    }
    for (int k = 0; k < extra_ids && rc == WAN_OK; k++) {
        int32_t id = (int32_t)m->n + k;
        rc = add_added(t, t->pieces + t->piece_off[id], t->piece_len[id], id, false, true, err);
    }
    if (rc != WAN_OK)
        return rc;
    if (m->charsmap_len) {
        rc = wan_charsmap_init(&t->charsmap, m->charsmap, m->charsmap_len, t->source, err);
        if (rc == WAN_OK)
            rc = add_norm(t, (wan_norm_step){ .type = WAN_NORM_PRECOMPILED }, err);
    }
    if (rc == WAN_OK)
        rc = add_norm(t, (wan_norm_step){ .type = WAN_NORM_STRIP, .strip_right = true }, err);
    if (rc == WAN_OK) {
        wan_norm_step st = { .type = WAN_NORM_REPLACE, .regex_spaces = true };
        st.pattern = wan_strdup(" {2,}");
        st.content = wan_strdup("\xE2\x96\x81");
        if (!st.pattern || !st.content) {
            wan_free(st.pattern), wan_free(st.content);
            return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory", t->source);
        }
        rc = add_norm(t, st, err);
    }
    if (rc != WAN_OK)
        return rc;
    t->has_metaspace = true;
    t->split = true;
    t->prepend = legacy ? WAN_PREPEND_ALWAYS : WAN_PREPEND_FIRST;
    rc = wan_tokenizer_finish(t, err);
    if (rc != WAN_OK)
        return rc;
    int32_t eos = wan_tokenizer_piece_id(t, "</s>", 4); /* spm piece_to_id: unknown → unk_id */
    t->after[t->n_after++] = eos >= 0 ? eos : t->unk_id;
    return WAN_OK;
}

wan_status wan_tokenizer_from_spm(const uint8_t *buf, size_t len, const char *source, int extra_ids, int legacy,
                                  wan_tokenizer **out, wan_error *err)
{
    *out = NULL;
    pb_reader r = { buf, len, 0, 0, source ? source : "spiece.model" };
    spm_model m = {0};
    wan_status rc = spm_parse(&r, &m, err);
    wan_tokenizer *t = NULL;
    if (rc == WAN_OK) {
        t = tok_new(source);
        rc = t ? spm_build(t, &m, extra_ids, legacy, err) : wan_err(err, WAN_ERR_NOMEM, "out of memory");
    }
    wan_free(m.pieces);
    if (rc != WAN_OK) {
        wan_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return WAN_OK;
}

/* ---- files and folders ------------------------------------------------------------------------ */

/* extra_ids and legacy from a tokenizer_config.json next to a spiece.model (defaults 0 and true). */
static void read_spm_config(const char *spm_path, int *extra_ids, int *legacy)
{
    *extra_ids = 0;
    *legacy = 1;
    char *dir = wan_strdup(spm_path);
    if (!dir)
        return;
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    char *cfg = wan_path_join(slash ? dir : ".", "tokenizer_config.json");
    char *text = NULL;
    size_t len = 0;
    if (cfg && wan_path_is_file(cfg) && wan_read_file(cfg, &text, &len, NULL) == WAN_OK) {
        cJSON *o = cJSON_ParseWithLength(text, len);
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "extra_ids");
        if (cJSON_IsNumber(e) && e->valueint >= 0)
            *extra_ids = e->valueint;
        *legacy = jbool(o, "legacy", true);
        cJSON_Delete(o);
    } else {
        wan_log_info("%s: no tokenizer_config.json beside it; assuming extra_ids 0, legacy true", spm_path);
    }
    wan_free(text);
    wan_free(cfg);
    wan_free(dir);
}

static wan_status load_file(const char *path, wan_tokenizer **out, wan_error *err)
{
    char *buf = NULL;
    size_t len = 0;
    wan_status rc = wan_read_file(path, &buf, &len, err);
    if (rc != WAN_OK)
        return rc;
    size_t i = 0;
    while (i < len && (buf[i] == ' ' || buf[i] == '\n' || buf[i] == '\r' || buf[i] == '\t'))
        i++;
    if (i < len && buf[i] == '{') {
        rc = wan_tokenizer_from_json(buf, len, path, out, err);
    } else {
        int extra_ids, legacy;
        read_spm_config(path, &extra_ids, &legacy);
        rc = wan_tokenizer_from_spm((const uint8_t *)buf, len, path, extra_ids, legacy, out, err);
    }
    wan_free(buf);
    return rc;
}

wan_status wan_tokenizer_load(const char *path, wan_tokenizer_t **out, char *errbuf, size_t errlen)
{
    wan_error err = {0};
    wan_status rc;
    if (!path || !out) {
        rc = wan_err(&err, WAN_ERR_INVALID_ARG, "wan_tokenizer_load: NULL path or output");
        wan_err_copy(&err, errbuf, errlen);
        return rc;
    }
    *out = NULL;
    if (!wan_path_is_dir(path)) {
        rc = wan_path_is_file(path) ? load_file(path, out, &err)
                                    : wan_err(&err, WAN_ERR_NOT_FOUND, "%s: no such file or folder", path);
    } else {
        static const char *const cands[] = { "tokenizer.json", "tokenizer/tokenizer.json", "spiece.model",
                                             "tokenizer/spiece.model" };
        rc = wan_err(&err, WAN_ERR_NOT_FOUND,
                     "%s: no tokenizer.json or spiece.model in the folder or in its tokenizer/ subfolder", path);
        for (size_t i = 0; i < sizeof cands / sizeof *cands; i++) {
            char *p = wan_path_join(path, cands[i]);
            if (!p) {
                rc = wan_err(&err, WAN_ERR_NOMEM, "out of memory");
                break;
            }
            bool found = wan_path_is_file(p);
            if (found)
                rc = load_file(p, out, &err);
            wan_free(p);
            if (found)
                break;
        }
    }
    if (rc != WAN_OK)
        wan_err_copy(&err, errbuf, errlen);
    return rc;
}
