/* tokenizer.c — the umT5 tokenizer as the Hugging Face `tokenizers` core runs it for WanPipeline
 * (text.md §3): added tokens split off the raw text, the normalizer sequence (Precompiled charsmap with
 * the grapheme rule, Strip, Replace), the Metaspace pre-tokenizer, Unigram Viterbi in double precision
 * with fused unknowns and optional byte fallback, then the `$A </s>` template, truncation and padding.
 * The file parsers are in tokenizer_load.c. */
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- piece hash and prefix trie --------------------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

int32_t wan_tokenizer_piece_id(const wan_tokenizer *t, const char *s, size_t n)
{
    if (!t->hash_cap)
        return -1;
    size_t mask = t->hash_cap - 1, i = (size_t)hash_bytes(s, n) & mask;
    for (;;) {
        uint32_t v = t->hash[i];
        if (!v)
            return -1;
        int32_t id = (int32_t)v - 1;
        if (t->piece_len[id] == n && !memcmp(t->pieces + t->piece_off[id], s, n))
            return id;
        i = (i + 1) & mask;
    }
}

static wan_status build_hash(wan_tokenizer *t, wan_error *err)
{
    size_t cap = 16;
    while (cap < (size_t)t->n_vocab * 2)
        cap *= 2;
    t->hash = wan_calloc(cap, sizeof *t->hash);
    if (!t->hash)
        return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory for the vocabulary hash", t->source);
    t->hash_cap = cap;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const char *s = t->pieces + t->piece_off[id];
        size_t n = t->piece_len[id], i = (size_t)hash_bytes(s, n) & (cap - 1);
        while (t->hash[i]) {
            int32_t o = (int32_t)t->hash[i] - 1;
            if (t->piece_len[o] == n && !memcmp(t->pieces + t->piece_off[o], s, n))
                break; /* duplicate piece: the later id wins, as HashMap::insert does in HF */
            i = (i + 1) & (cap - 1);
        }
        t->hash[i] = (uint32_t)id + 1;
    }
    return WAN_OK;
}

typedef struct sort_key {
    const uint8_t *s;
    uint32_t len;
    int32_t id;
} sort_key;

static int cmp_key(const void *pa, const void *pb)
{
    const sort_key *a = pa, *b = pb;
    uint32_t m = a->len < b->len ? a->len : b->len;
    int c = m ? memcmp(a->s, b->s, m) : 0;
    if (c)
        return c;
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* Breadth-first construction from the sorted pieces: node q owns keys [lo[q], hi[q]) which share its
 * first depth[q] bytes. */
static wan_status build_trie(wan_tokenizer *t, wan_error *err)
{
    size_t n = (size_t)t->n_vocab, total = 1;
    for (size_t i = 0; i < n; i++)
        total += t->piece_len[i];
    sort_key *keys = wan_malloc((n + 1) * sizeof *keys);
    uint32_t *lo = wan_malloc(total * sizeof *lo), *hi = wan_malloc(total * sizeof *hi);
    uint32_t *depth = wan_malloc(total * sizeof *depth);
    t->trie = wan_malloc(total * sizeof *t->trie);
    if (!keys || !lo || !hi || !depth || !t->trie) {
        wan_free(keys), wan_free(lo), wan_free(hi), wan_free(depth);
        return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory for the vocabulary trie", t->source);
    }
    for (size_t i = 0; i < n; i++)
        keys[i] = (sort_key){ (const uint8_t *)t->pieces + t->piece_off[i], t->piece_len[i], (int32_t)i };
    qsort(keys, n, sizeof *keys, cmp_key);
    size_t nn = 1;
    t->trie[0] = (wan_trie_node){ 0, 0, 0, -1 };
    lo[0] = 0, hi[0] = (uint32_t)n, depth[0] = 0;
    for (size_t q = 0; q < nn; q++) {
        uint32_t a = lo[q], b = hi[q], d = depth[q];
        while (a < b && keys[a].len == d)
            t->trie[q].id = keys[a++].id; /* equal pieces are sorted by id: the last one wins */
        t->trie[q].child = (uint32_t)nn;
        while (a < b) {
            uint8_t c = keys[a].s[d];
            uint32_t e = a;
            while (e < b && keys[e].s[d] == c)
                e++;
            t->trie[nn] = (wan_trie_node){ 0, 0, c, -1 };
            lo[nn] = a, hi[nn] = e, depth[nn] = d + 1;
            nn++;
            t->trie[q].nchild++;
            a = e;
        }
    }
    t->n_trie = nn;
    wan_free(keys), wan_free(lo), wan_free(hi), wan_free(depth);
    return WAN_OK;
}

static const wan_trie_node *trie_child(const wan_tokenizer *t, const wan_trie_node *node, uint8_t c)
{
    const wan_trie_node *ch = t->trie + node->child;
    size_t a = 0, b = node->nchild;
    while (a < b) {
        size_t m = (a + b) / 2;
        if (ch[m].byte == c)
            return &ch[m];
        if (ch[m].byte < c)
            a = m + 1;
        else
            b = m;
    }
    return NULL;
}

wan_status wan_tokenizer_finish(wan_tokenizer *t, wan_error *err)
{
    if (t->n_vocab <= 0)
        return wan_err(err, WAN_ERR_FORMAT, "%s: the Unigram vocabulary is empty", t->source);
    if (t->unk_id >= t->n_vocab)
        return wan_err(err, WAN_ERR_FORMAT, "%s: unk_id %d is outside the vocabulary (%d entries)", t->source,
                       t->unk_id, t->n_vocab);
    t->min_score = t->score[0];
    for (int32_t i = 1; i < t->n_vocab; i++)
        if (t->score[i] < t->min_score)
            t->min_score = t->score[i];
    wan_status rc = build_hash(t, err);
    if (rc == WAN_OK)
        rc = build_trie(t, err);
    if (rc != WAN_OK)
        return rc;
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_id[b] = wan_tokenizer_piece_id(t, name, 6);
    }
    t->pad_id = -1;
    for (int i = 0; i < t->n_added; i++)
        if (!strcmp(t->added[i].content, "<pad>"))
            t->pad_id = t->added[i].id;
    if (t->pad_id < 0)
        t->pad_id = wan_tokenizer_piece_id(t, "<pad>", 5);
    return WAN_OK;
}

/* ---- Precompiled charsmap (darts-clone double array) ------------------------------------------ */

wan_status wan_charsmap_init(wan_charsmap *cm, const uint8_t *blob, size_t len, const char *source, wan_error *err)
{
    if (len < 4)
        return wan_err(err, WAN_ERR_FORMAT, "%s: precompiled charsmap of %zu bytes is too short for its header",
                       source, len);
    uint32_t trie_size = (uint32_t)blob[0] | (uint32_t)blob[1] << 8 | (uint32_t)blob[2] << 16 |
                         (uint32_t)blob[3] << 24;
    if (trie_size > len - 4 || trie_size % 4)
        return wan_err(err, WAN_ERR_FORMAT,
                       "%s: precompiled charsmap: trie size %u at byte 0 does not fit the %zu-byte blob", source,
                       trie_size, len);
    cm->blob = wan_malloc(len + 1);
    if (!cm->blob)
        return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory for the charsmap", source);
    memcpy(cm->blob, blob, len);
    cm->blob[len] = 0;
    cm->blob_len = len;
    cm->units = cm->blob + 4;
    cm->n_units = trie_size / 4;
    cm->pool = (const char *)cm->blob + 4 + trie_size;
    cm->pool_len = len - 4 - trie_size;
    /* HF requires the pool to be valid UTF-8 (String::from_utf8) */
    for (size_t i = 0; i < cm->pool_len;) {
        uint32_t cp;
        size_t k = wan_utf8_next((const uint8_t *)cm->pool + i, cm->pool_len - i, &cp);
        if (cp == 0xFFFD && !(k == 3 && !memcmp(cm->pool + i, "\xEF\xBF\xBD", 3)))
            return wan_err(err, WAN_ERR_FORMAT,
                           "%s: precompiled charsmap: invalid UTF-8 in the replacement pool at byte %zu", source,
                           4 + trie_size + i);
        i += k;
    }
    return WAN_OK;
}

static uint32_t cm_unit(const wan_charsmap *cm, uint32_t i)
{
    const uint8_t *p = cm->units + (size_t)i * 4;
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t cm_offset(uint32_t u) { return (u >> 10) << ((u & 0x200) >> 6); }

/* Replacement of the shortest key that is a prefix of s[0..n), or NULL (text.md §3.4). */
static const char *cm_transform(const wan_charsmap *cm, const uint8_t *s, size_t n, size_t *rlen)
{
    if (!cm->n_units)
        return NULL;
    uint32_t pos = cm_offset(cm_unit(cm, 0));
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (!c)
            return NULL;
        pos ^= c;
        if (pos >= cm->n_units)
            return NULL;
        uint32_t u = cm_unit(cm, pos);
        if ((u & 0x800000FFu) != c)
            return NULL;
        pos ^= cm_offset(u);
        if ((u >> 8) & 1) {
            if (pos >= cm->n_units)
                return NULL;
            uint32_t off = cm_unit(cm, pos) & 0x7FFFFFFFu;
            if (off > cm->pool_len || (off < cm->pool_len && (cm->pool[off] & 0xC0) == 0x80))
                return NULL; /* not a string start in the pool: a corrupt map, treated as no match */
            size_t e = off;
            while (e < cm->pool_len && cm->pool[e])
                e++;
            *rlen = e - off;
            return cm->pool + off;
        }
    }
    return NULL;
}

static void norm_precompiled(const wan_charsmap *cm, const char *s, size_t n, wan_buf *out)
{
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0, rl;
    while (i < n) {
        size_t g = wan_grapheme_len(s + i, n - i);
        const char *r = g < 6 ? cm_transform(cm, u + i, g, &rl) : NULL;
        if (r) {
            wan_buf_put(out, r, rl); /* the rest of the grapheme after the key is dropped (HF rule) */
        } else {
            for (size_t j = i; j < i + g;) {
                uint32_t cp;
                size_t k = wan_utf8_next(u + j, i + g - j, &cp);
                r = cm_transform(cm, u + j, k, &rl);
                if (r)
                    wan_buf_put(out, r, rl);
                else
                    wan_buf_put(out, s + j, k);
                j += k;
            }
        }
        i += g;
    }
}

/* ---- other normalizers ------------------------------------------------------------------------ */

static void norm_strip(const wan_norm_step *st, const char *s, size_t n, wan_buf *out)
{
    const uint8_t *u = (const uint8_t *)s;
    size_t a = 0, b = n;
    uint32_t cp;
    if (st->strip_left)
        while (a < b) {
            size_t k = wan_utf8_next(u + a, b - a, &cp);
            if (!wan_uc_is_white_space(cp))
                break;
            a += k;
        }
    if (st->strip_right)
        while (b > a) {
            size_t k = 1;
            while (k < b - a && (u[b - k] & 0xC0) == 0x80 && k < 4)
                k++;
            wan_utf8_next(u + b - k, k, &cp);
            if (!wan_uc_is_white_space(cp))
                break;
            b -= k;
        }
    wan_buf_put(out, s + a, b - a);
}

static void norm_replace(const wan_norm_step *st, const char *s, size_t n, wan_buf *out)
{
    size_t clen = strlen(st->content);
    if (st->regex_spaces) { /* " {2,}" */
        for (size_t i = 0; i < n;) {
            size_t e = i;
            while (e < n && s[e] == ' ')
                e++;
            if (e - i >= 2) {
                wan_buf_put(out, st->content, clen);
                i = e;
            } else {
                wan_buf_put(out, s + i, 1);
                i++;
            }
        }
        return;
    }
    size_t plen = strlen(st->pattern);
    for (size_t i = 0; i < n;) {
        if (plen && i + plen <= n && !memcmp(s + i, st->pattern, plen)) {
            wan_buf_put(out, st->content, clen);
            i += plen;
        } else {
            wan_buf_put(out, s + i, 1);
            i++;
        }
    }
}

void wan_tokenizer_normalize(const wan_tokenizer *t, const char *s, size_t n, wan_buf *out)
{
    wan_buf a = {0}, b = {0};
    wan_buf_put(&a, s, n);
    for (int k = 0; k < t->n_norm && !a.oom; k++) {
        const wan_norm_step *st = &t->norm[k];
        b.n = 0;
        wan_buf_put(&b, "", 0);
        if (st->type == WAN_NORM_PRECOMPILED)
            norm_precompiled(&t->charsmap, a.p, a.n, &b);
        else if (st->type == WAN_NORM_STRIP)
            norm_strip(st, a.p, a.n, &b);
        else
            norm_replace(st, a.p, a.n, &b);
        if (b.oom)
            a.oom = true;
        wan_buf tmp = a;
        a = b;
        b = tmp;
    }
    if (a.oom)
        out->oom = true;
    else
        wan_buf_put(out, a.p, a.n);
    wan_buf_free(&a);
    wan_buf_free(&b);
}

/* ---- ids -------------------------------------------------------------------------------------- */

typedef struct id_vec {
    int32_t *p;
    size_t n, cap;
    bool oom;
} id_vec;

static void ids_push(id_vec *v, int32_t id)
{
    if (v->oom)
        return;
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        int32_t *p = wan_realloc(v->p, cap * sizeof *p);
        if (!p) {
            v->oom = true;
            return;
        }
        v->p = p;
        v->cap = cap;
    }
    v->p[v->n++] = id;
}

/* ---- Unigram (HF Unigram::encode_optimized + tokenize) ---------------------------------------- */

typedef struct vnode {
    double score;
    int64_t start; /* -1: not reached */
    int32_t id;
} vnode;

typedef struct scratch {
    vnode *best;
    size_t cap;
    int64_t *bounds; /* backtracking: piece starts (reversed) */
    int32_t *bids;
} scratch;

static wan_status scratch_fit(scratch *sc, size_t n)
{
    if (n + 1 <= sc->cap)
        return WAN_OK;
    size_t cap = (n + 1) * 2;
    vnode *b = wan_realloc(sc->best, cap * sizeof *b);
    if (b)
        sc->best = b;
    int64_t *s = wan_realloc(sc->bounds, cap * sizeof *s);
    if (s)
        sc->bounds = s;
    int32_t *i = wan_realloc(sc->bids, cap * sizeof *i);
    if (i)
        sc->bids = i;
    if (!b || !s || !i)
        return WAN_ERR_NOMEM;
    sc->cap = cap;
    return WAN_OK;
}

/* The id(s) of one final piece s[0..n) looked up by its string, as HF `tokenize` does. */
static wan_status emit_piece(const wan_tokenizer *t, const char *s, size_t n, id_vec *out, wan_error *err)
{
    int32_t id = wan_tokenizer_piece_id(t, s, n);
    if (id >= 0) {
        ids_push(out, id);
        return WAN_OK;
    }
    if (t->byte_fallback) {
        size_t k = 0;
        while (k < n && t->byte_id[(uint8_t)s[k]] >= 0)
            k++;
        if (k == n) {
            for (k = 0; k < n; k++)
                ids_push(out, t->byte_id[(uint8_t)s[k]]);
            return WAN_OK;
        }
    }
    if (t->unk_id < 0)
        return wan_err(err, WAN_ERR_INVALID_ARG,
                       "%s: the text has a character outside the vocabulary and the model has no unk_id",
                       t->source);
    ids_push(out, t->unk_id);
    return WAN_OK;
}

static wan_status unigram(const wan_tokenizer *t, const char *s, size_t n, scratch *sc, id_vec *out,
                          wan_error *err)
{
    if (!n)
        return WAN_OK;
    if (scratch_fit(sc, n) != WAN_OK)
        return wan_err(err, WAN_ERR_NOMEM, "out of memory tokenizing %zu bytes", n);
    const uint8_t *u = (const uint8_t *)s;
    vnode *best = sc->best;
    for (size_t i = 0; i <= n; i++)
        best[i] = (vnode){ 0.0, -1, 0 };
    const double unk_score = t->min_score - 10.0;
    for (size_t pos = 0; pos < n;) {
        uint32_t cp;
        size_t mblen = wan_utf8_next(u + pos, n - pos, &cp);
        double base = best[pos].score;
        bool single = false;
        const wan_trie_node *node = t->trie;
        for (size_t e = pos; e < n; e++) {
            node = trie_child(t, node, u[e]);
            if (!node)
                break;
            if (node->id < 0)
                continue;
            size_t end = e + 1;
            double cand = base + t->score[node->id];
            if (best[end].start < 0 || cand > best[end].score)
                best[end] = (vnode){ cand, (int64_t)pos, node->id };
            if (end - pos == mblen)
                single = true;
        }
        if (!single) {
            size_t end = pos + mblen;
            double cand = base + unk_score;
            if (best[end].start < 0 || cand > best[end].score)
                best[end] = (vnode){ cand, (int64_t)pos, t->unk_id < 0 ? 0 : t->unk_id };
        }
        pos += mblen;
    }
    /* backtrack; runs of unk nodes are fused into one piece */
    size_t np = 0;
    for (int64_t end = (int64_t)n; end > 0;) {
        const vnode *nd = &best[end];
        if (nd->start < 0)
            return wan_err(err, WAN_ERR_INTERNAL, "internal error: unreachable position %lld in the lattice",
                           (long long)end);
        bool unk = t->unk_id >= 0 && nd->id == t->unk_id;
        if (unk && np > 0 && sc->bids[np - 1] == -2)
            sc->bounds[np - 1] = nd->start; /* extend the fused unknown run to the left */
        else {
            sc->bounds[np] = nd->start;
            sc->bids[np] = unk ? -2 : nd->id;
            np++;
        }
        end = nd->start;
    }
    wan_status rc = WAN_OK;
    for (size_t k = np; k > 0 && rc == WAN_OK; k--) {
        int64_t st = sc->bounds[k - 1], end = k == 1 ? (int64_t)n : sc->bounds[k - 2];
        rc = emit_piece(t, s + st, (size_t)(end - st), out, err);
    }
    return rc;
}

/* ---- pre-tokenizer ---------------------------------------------------------------------------- */

static bool starts_with_cp(const char *s, size_t n, uint32_t cp)
{
    uint32_t c;
    return n && (wan_utf8_next((const uint8_t *)s, n, &c), c == cp);
}

/* Metaspace on one word s[0..n), then Unigram on each resulting pre-token. */
static wan_status metaspace_word(const wan_tokenizer *t, const char *s, size_t n, bool first, scratch *sc,
                                 id_vec *out, wan_error *err)
{
    if (!t->has_metaspace)
        return unigram(t, s, n, sc, out, err);
    uint8_t rep[4];
    int rl = wan_utf8_put(t->replacement, rep);
    wan_buf w = {0};
    wan_buf_put(&w, "", 0);
    /* spaces become the replacement first; then prepend unless the word already starts with it */
    bool starts = n > 0 && (s[0] == ' ' || starts_with_cp(s, n, t->replacement));
    if (n > 0 && !starts && (t->prepend == WAN_PREPEND_ALWAYS || (t->prepend == WAN_PREPEND_FIRST && first)))
        wan_buf_put(&w, rep, (size_t)rl);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ')
            wan_buf_put(&w, rep, (size_t)rl);
        else
            wan_buf_put(&w, s + i, 1);
    }
    if (w.oom) {
        wan_buf_free(&w);
        return wan_err(err, WAN_ERR_NOMEM, "out of memory in the pre-tokenizer");
    }
    wan_status rc = WAN_OK;
    if (!t->split) {
        rc = unigram(t, w.p, w.n, sc, out, err);
    } else {
        size_t a = 0;
        for (size_t i = 1; i <= w.n && rc == WAN_OK; i++) {
            if (i == w.n || ((size_t)rl <= w.n - i && !memcmp(w.p + i, rep, (size_t)rl))) {
                rc = unigram(t, w.p + a, i - a, sc, out, err);
                a = i;
            }
        }
    }
    wan_buf_free(&w);
    return rc;
}

static wan_status pre_tokenize(const wan_tokenizer *t, const char *s, size_t n, bool first, scratch *sc,
                               id_vec *out, wan_error *err)
{
    if (!t->whitespace_split)
        return metaspace_word(t, s, n, first, sc, out, err);
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0;
    wan_status rc = WAN_OK;
    while (i < n && rc == WAN_OK) {
        uint32_t cp;
        size_t k = wan_utf8_next(u + i, n - i, &cp);
        if (wan_uc_is_white_space(cp)) {
            i += k;
            continue;
        }
        size_t a = i;
        while (i < n) {
            k = wan_utf8_next(u + i, n - i, &cp);
            if (wan_uc_is_white_space(cp))
                break;
            i += k;
        }
        rc = metaspace_word(t, s + a, i - a, first && a == 0, sc, out, err);
    }
    return rc;
}

/* ---- added tokens ----------------------------------------------------------------------------- */

/* Longest added token (of the requested kind) that starts at s[0..n); -1 if none. */
static int added_match(const wan_tokenizer *t, const char *s, size_t n, bool normalized)
{
    int best = -1;
    size_t best_len = 0;
    for (int i = 0; i < t->n_added; i++) {
        const wan_added_token *a = &t->added[i];
        if (a->normalized != normalized || !a->len || a->len > n || a->len <= best_len)
            continue;
        if (!memcmp(s, a->content, a->len)) {
            best = i;
            best_len = a->len;
        }
    }
    return best;
}

/* Splits s[0..n) on added tokens (leftmost-longest, non-overlapping); the parts between them go to
 * `part` (normalize or pre-tokenize), the tokens to their ids. */
typedef wan_status (*part_fn)(const wan_tokenizer *t, const char *s, size_t n, bool first, scratch *sc,
                              id_vec *out, wan_error *err);

static wan_status split_added(const wan_tokenizer *t, const char *s, size_t n, bool first, bool normalized,
                              part_fn part, scratch *sc, id_vec *out, wan_error *err)
{
    size_t a = 0;
    wan_status rc = WAN_OK;
    for (size_t i = 0; i < n && rc == WAN_OK;) {
        int m = added_match(t, s + i, n - i, normalized);
        if (m < 0) {
            i++;
            continue;
        }
        if (i > a)
            rc = part(t, s + a, i - a, first && a == 0, sc, out, err);
        ids_push(out, t->added[m].id);
        i += t->added[m].len;
        a = i;
    }
    if (rc == WAN_OK && a < n)
        rc = part(t, s + a, n - a, first && a == 0, sc, out, err);
    return rc;
}

static wan_status normalize_part(const wan_tokenizer *t, const char *s, size_t n, bool first, scratch *sc,
                                 id_vec *out, wan_error *err)
{
    wan_buf nb = {0};
    wan_buf_put(&nb, "", 0);
    wan_tokenizer_normalize(t, s, n, &nb);
    if (nb.oom) {
        wan_buf_free(&nb);
        return wan_err(err, WAN_ERR_NOMEM, "out of memory in the normalizer");
    }
    wan_status rc = split_added(t, nb.p, nb.n, first, true, pre_tokenize, sc, out, err);
    wan_buf_free(&nb);
    return rc;
}

wan_status wan_tokenizer_encode_ids(const wan_tokenizer *t, const char *text, size_t len, int32_t **ids,
                                    size_t *n, wan_error *err)
{
    *ids = NULL;
    *n = 0;
    /* invalid UTF-8 → U+FFFD (String::from_utf8_lossy) */
    wan_buf clean = {0};
    wan_buf_put(&clean, "", 0);
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = wan_utf8_next((const uint8_t *)text + i, len - i, &cp);
        if (cp == 0xFFFD)
            wan_buf_putcp(&clean, cp);
        else
            wan_buf_put(&clean, text + i, k);
        i += k;
    }
    id_vec out = {0};
    scratch sc = {0};
    for (int i = 0; i < t->n_before; i++)
        ids_push(&out, t->before[i]);
    wan_status rc = clean.oom ? wan_err(err, WAN_ERR_NOMEM, "out of memory copying the text")
                              : split_added(t, clean.p, clean.n, true, false, normalize_part, &sc, &out, err);
    for (int i = 0; i < t->n_after; i++)
        ids_push(&out, t->after[i]);
    if (rc == WAN_OK && out.oom)
        rc = wan_err(err, WAN_ERR_NOMEM, "out of memory for the token ids");
    wan_buf_free(&clean);
    wan_free(sc.best), wan_free(sc.bounds), wan_free(sc.bids);
    if (rc != WAN_OK) {
        wan_free(out.p);
        return rc;
    }
    *ids = out.p;
    *n = out.n;
    return WAN_OK;
}

/* ---- public API ------------------------------------------------------------------------------- */

void wan_tokenizer_free(wan_tokenizer_t *t)
{
    if (!t)
        return;
    wan_free(t->pieces), wan_free(t->piece_off), wan_free(t->piece_len), wan_free(t->score);
    wan_free(t->hash), wan_free(t->trie);
    for (int i = 0; i < t->n_norm; i++)
        wan_free(t->norm[i].pattern), wan_free(t->norm[i].content);
    wan_free(t->charsmap.blob);
    for (int i = 0; i < t->n_added; i++)
        wan_free(t->added[i].content);
    wan_free(t->added);
    wan_free(t);
}

int wan_tokenizer_vocab_size(const wan_tokenizer_t *t)
{
    int n = t->n_vocab;
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id >= n)
            n = t->added[i].id + 1;
    return n;
}

const char *wan_tokenizer_id_to_piece(const wan_tokenizer_t *t, int32_t id)
{
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id == id)
            return t->added[i].content;
    if (id < 0 || id >= t->n_vocab)
        return NULL;
    return t->pieces + t->piece_off[id];
}

int32_t wan_tokenizer_pad_id(const wan_tokenizer_t *t) { return t->pad_id; }

void wan_tokens_free(wan_tokens *tk)
{
    if (!tk)
        return;
    wan_free(tk->ids);
    wan_free(tk->mask);
    memset(tk, 0, sizeof *tk);
}

static wan_status finish_tokens(const wan_tokenizer *t, int32_t *ids, size_t n, const wan_encode_params *p,
                                wan_tokens *out, wan_error *err)
{
    size_t n_special = (size_t)(t->n_before + t->n_after), n_content = n - n_special;
    size_t keep = n_content;
    out->n_untruncated = (int64_t)n;
    if (p->max_length > 0 && n > (size_t)p->max_length) {
        keep = (size_t)p->max_length > n_special ? (size_t)p->max_length - n_special : 0;
        wan_log_warn("prompt has %zu tokens (with special tokens); truncated to %d as the reference does", n,
                     p->max_length);
        out->truncated = 1;
    }
    size_t len = keep + n_special, total = len;
    if (p->pad && p->max_length > 0 && (size_t)p->max_length > total)
        total = (size_t)p->max_length;
    if (total > len && t->pad_id < 0)
        return wan_err(err, WAN_ERR_INVALID_ARG, "%s: padding asked for but the tokenizer has no <pad> token",
                       t->source);
    out->ids = wan_malloc(total * sizeof *out->ids + 1);
    out->mask = wan_malloc(total * sizeof *out->mask + 1);
    if (!out->ids || !out->mask)
        return wan_err(err, WAN_ERR_NOMEM, "out of memory for %zu token ids", total);
    size_t o = 0;
    for (int i = 0; i < t->n_before; i++)
        out->ids[o++] = ids[i];
    for (size_t i = 0; i < keep; i++)
        out->ids[o++] = ids[(size_t)t->n_before + i];
    for (int i = 0; i < t->n_after; i++)
        out->ids[o++] = ids[(size_t)t->n_before + n_content + (size_t)i];
    for (size_t i = 0; i < total; i++) {
        out->mask[i] = i < len;
        if (i >= len)
            out->ids[i] = t->pad_id;
    }
    out->n = (int)total;
    out->n_real = (int)len;
    return WAN_OK;
}

wan_encode_params wan_encode_default_params(void)
{
    wan_encode_params p = { .max_length = 512, .pad = 1, .clean = 1, .ftfy = 1 };
    return p;
}

wan_status wan_tokenizer_encode(const wan_tokenizer_t *t, const char *text, size_t len, const wan_encode_params *params,
                                wan_tokens *out, char *errbuf, size_t errlen)
{
    wan_error err = {0};
    wan_encode_params p = params ? *params : wan_encode_default_params();
    if (!t || !out || (!text && len)) {
        wan_err(&err, WAN_ERR_INVALID_ARG, "wan_tokenizer_encode: NULL tokenizer, output or text");
        wan_err_copy(&err, errbuf, errlen);
        return err.code;
    }
    memset(out, 0, sizeof *out);
    if (len == WAN_STRLEN)
        len = strlen(text);
    char *cleaned = NULL;
    size_t clen = 0;
    wan_status rc = WAN_OK;
    if (p.clean) {
        rc = wan_prompt_clean_impl(text ? text : "", len, p.ftfy != 0, &cleaned, &clen, &err);
        text = cleaned;
        len = clen;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    if (rc == WAN_OK)
        rc = wan_tokenizer_encode_ids(t, text ? text : "", len, &ids, &n, &err);
    if (rc == WAN_OK)
        rc = finish_tokens(t, ids, n, &p, out, &err);
    wan_free(ids);
    wan_free(cleaned);
    if (rc != WAN_OK) {
        wan_tokens_free(out);
        wan_err_copy(&err, errbuf, errlen);
    }
    return rc;
}
