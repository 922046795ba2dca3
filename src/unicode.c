/* unicode.c — UTF-8 (lossy decoding as Rust's String::from_utf8_lossy), byte buffers, UAX #29 extended
 * grapheme clusters, NFC, and the whitespace/digit classes of Rust and Python. */
#include "unicode.h"

#include <string.h>

#include "unicode_tables.h"

/* ---- buffer ----------------------------------------------------------------------------------- */

void wan_buf_put(wan_buf *b, const void *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) {
            if (cap > ((size_t)-1) / 2) {
                b->oom = true;
                return;
            }
            cap *= 2;
        }
        char *p = wan_realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void wan_buf_putcp(wan_buf *b, uint32_t cp)
{
    uint8_t u[4];
    wan_buf_put(b, u, (size_t)wan_utf8_put(cp, u));
}

void wan_buf_free(wan_buf *b)
{
    wan_free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- UTF-8 ------------------------------------------------------------------------------------ */

size_t wan_utf8_next(const uint8_t *s, size_t n, uint32_t *cp)
{
    uint8_t b0 = s[0];
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    int need;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    uint32_t v;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 1;
        v = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 2;
        v = b0 & 0x0F;
        if (b0 == 0xE0)
            lo = 0xA0;
        else if (b0 == 0xED)
            hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 3;
        v = b0 & 0x07;
        if (b0 == 0xF0)
            lo = 0x90;
        else if (b0 == 0xF4)
            hi = 0x8F;
    } else {
        *cp = 0xFFFD;
        return 1;
    }
    size_t i = 1;
    for (int k = 0; k < need; k++, i++) {
        uint8_t lo_k = k == 0 ? lo : 0x80, hi_k = k == 0 ? hi : 0xBF;
        if (i >= n || s[i] < lo_k || s[i] > hi_k) {
            *cp = 0xFFFD;
            return i;
        }
        v = (v << 6) | (s[i] & 0x3F);
    }
    *cp = v;
    return i;
}

int wan_utf8_put(uint32_t cp, uint8_t out[4])
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

uint32_t *wan_utf8_decode_all(const char *s, size_t n, size_t *out_n)
{
    uint32_t *cps = wan_malloc((n + 1) * sizeof *cps);
    if (!cps)
        return NULL;
    size_t i = 0, k = 0;
    while (i < n)
        i += wan_utf8_next((const uint8_t *)s + i, n - i, &cps[k++]);
    *out_n = k;
    return cps;
}

char *wan_utf8_encode_all(const uint32_t *cps, size_t n, size_t *out_len)
{
    wan_buf b = {0};
    wan_buf_put(&b, "", 0);
    for (size_t i = 0; i < n; i++)
        wan_buf_putcp(&b, cps[i]);
    if (b.oom) {
        wan_buf_free(&b);
        return NULL;
    }
    if (out_len)
        *out_len = b.n;
    return b.p;
}

/* ---- classes ------------------------------------------------------------------------------------ */

bool wan_uc_is_white_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

bool wan_uc_is_py_space(uint32_t c) { return wan_uc_is_white_space(c) || (c >= 0x1C && c <= 0x1F); }

static int range_lookup(const wan_uc_range8 *t, size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < t[mid].lo)
            hi = mid;
        else if (cp > t[mid].hi)
            lo = mid + 1;
        else
            return t[mid].v;
    }
    return 0;
}

#define COUNT(a) (sizeof(a) / sizeof *(a))

bool wan_uc_is_decimal(uint32_t cp) { return range_lookup(wan_uc_decimal, COUNT(wan_uc_decimal), cp) != 0; }

static const uint32_t *map3_lookup(const wan_uc_map3 *t, size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t[mid].cp == cp)
            return t[mid].to;
        if (t[mid].cp < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const uint32_t *wan_uc_ftfy_width(uint32_t cp) { return map3_lookup(wan_ftfy_width, COUNT(wan_ftfy_width), cp); }

const uint32_t *wan_uc_ftfy_ligature(uint32_t cp)
{
    return map3_lookup(wan_ftfy_ligatures, COUNT(wan_ftfy_ligatures), cp);
}

/* ---- grapheme clusters (UAX #29 extended, with GB9c and GB11) ---------------------------------- */

enum { INCB_NONE = 0, INCB_CONSONANT = 1, INCB_EXTEND = 2, INCB_LINKER = 3 };

/* True when there is no boundary between a character of class `prev` and one of class `cur`, by the
 * pairwise rules GB3..GB9b (the context rules GB9c, GB11, GB12/13 are handled by the caller). */
static bool gb_pair_joins(int prev, int cur)
{
    if (prev == WAN_GCB_CR && cur == WAN_GCB_LF)
        return true; /* GB3 */
    if (prev == WAN_GCB_CR || prev == WAN_GCB_LF || prev == WAN_GCB_CONTROL)
        return false; /* GB4 */
    if (cur == WAN_GCB_CR || cur == WAN_GCB_LF || cur == WAN_GCB_CONTROL)
        return false; /* GB5 */
    if (prev == WAN_GCB_L &&
        (cur == WAN_GCB_L || cur == WAN_GCB_V || cur == WAN_GCB_LV || cur == WAN_GCB_LVT))
        return true; /* GB6 */
    if ((prev == WAN_GCB_LV || prev == WAN_GCB_V) && (cur == WAN_GCB_V || cur == WAN_GCB_T))
        return true; /* GB7 */
    if ((prev == WAN_GCB_LVT || prev == WAN_GCB_T) && cur == WAN_GCB_T)
        return true; /* GB8 */
    if (cur == WAN_GCB_EXTEND || cur == WAN_GCB_ZWJ || cur == WAN_GCB_SPACINGMARK)
        return true; /* GB9, GB9a */
    if (prev == WAN_GCB_PREPEND)
        return true; /* GB9b */
    return false;
}

/* Grapheme properties of cp (printable ASCII is Other: skip the search). */
static int gprop(uint32_t cp)
{
    if (cp >= 0x20 && cp < 0x7F)
        return 0;
    return range_lookup(wan_uc_grapheme, COUNT(wan_uc_grapheme), cp);
}

size_t wan_grapheme_len(const char *s, size_t n)
{
    const uint8_t *u = (const uint8_t *)s;
    uint32_t cp;
    size_t i = wan_utf8_next(u, n, &cp);
    int v = gprop(cp);
    int prev = v & 15;
    int emoji = (v & 16) ? 1 : 0;  /* GB11: 1 = ExtPict Extend*, 2 = ... ZWJ */
    int incb = ((v >> 5) == INCB_CONSONANT) ? 1 : 0; /* GB9c: 1 = Consonant [Ext]*, 2 = ... Linker seen */
    int ri = prev == WAN_GCB_REGIONAL_INDICATOR ? 1 : 0;
    while (i < n) {
        size_t len = wan_utf8_next(u + i, n - i, &cp);
        v = gprop(cp);
        int cur = v & 15, pict = (v >> 4) & 1, cb = v >> 5;
        bool join = gb_pair_joins(prev, cur);
        if (!join && prev != WAN_GCB_CR && prev != WAN_GCB_LF && prev != WAN_GCB_CONTROL) {
            if (incb == 2 && cb == INCB_CONSONANT)
                join = true; /* GB9c */
            else if (emoji == 2 && pict)
                join = true; /* GB11 */
            else if (prev == WAN_GCB_REGIONAL_INDICATOR && cur == WAN_GCB_REGIONAL_INDICATOR && (ri & 1))
                join = true; /* GB12, GB13 */
        }
        if (!join)
            break;
        /* update the context states with the character just joined */
        if (pict)
            emoji = 1;
        else if (emoji == 1 && cur == WAN_GCB_EXTEND)
            emoji = 1;
        else if (emoji == 1 && cur == WAN_GCB_ZWJ)
            emoji = 2;
        else
            emoji = 0;
        if (cb == INCB_CONSONANT)
            incb = 1;
        else if (incb && cb == INCB_LINKER)
            incb = 2;
        else if (!(incb && cb == INCB_EXTEND))
            incb = 0;
        ri = cur == WAN_GCB_REGIONAL_INDICATOR ? ri + 1 : 0;
        prev = cur;
        i += len;
    }
    return i;
}

/* ---- NFC --------------------------------------------------------------------------------------- */

enum { HANGUL_S = 0xAC00, HANGUL_L = 0x1100, HANGUL_V = 0x1161, HANGUL_T = 0x11A7, HANGUL_NV = 21,
       HANGUL_NT = 28, HANGUL_N = 11172 };

static int ccc_of(uint32_t cp) { return cp < 0x300 ? 0 : range_lookup(wan_uc_ccc, COUNT(wan_uc_ccc), cp); }

static const wan_uc_decomp *decomp_of(uint32_t cp)
{
    if (cp < wan_uc_decomps[0].cp)
        return NULL;
    size_t lo = 0, hi = COUNT(wan_uc_decomps);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (wan_uc_decomps[mid].cp == cp)
            return &wan_uc_decomps[mid];
        if (wan_uc_decomps[mid].cp < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static uint32_t compose_pair(uint32_t a, uint32_t b)
{
    if (a >= HANGUL_L && a < HANGUL_L + 19 && b >= HANGUL_V && b < HANGUL_V + HANGUL_NV)
        return HANGUL_S + ((a - HANGUL_L) * HANGUL_NV + (b - HANGUL_V)) * HANGUL_NT;
    if (a >= HANGUL_S && a < HANGUL_S + HANGUL_N && (a - HANGUL_S) % HANGUL_NT == 0 && b > HANGUL_T &&
        b < HANGUL_T + HANGUL_NT)
        return a + (b - HANGUL_T);
    size_t lo = 0, hi = COUNT(wan_uc_compose);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const wan_uc_pair *p = &wan_uc_compose[mid];
        if (p->a == a && p->b == b)
            return p->c;
        if (p->a < a || (p->a == a && p->b < b))
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

wan_status wan_uc_nfc(const uint32_t *cps, size_t n, uint32_t **out, size_t *out_n)
{
    /* a full canonical decomposition is at most 4 code points per input code point (Unicode 14) */
    size_t cap = n * 4 + 1;
    uint32_t *d = wan_malloc(cap * sizeof *d);
    if (!d)
        return WAN_ERR_NOMEM;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = cps[i];
        if (c >= HANGUL_S && c < HANGUL_S + HANGUL_N) {
            uint32_t s = c - HANGUL_S;
            d[m++] = HANGUL_L + s / (HANGUL_NV * HANGUL_NT);
            d[m++] = HANGUL_V + (s % (HANGUL_NV * HANGUL_NT)) / HANGUL_NT;
            if (s % HANGUL_NT)
                d[m++] = HANGUL_T + s % HANGUL_NT;
            continue;
        }
        const wan_uc_decomp *e = decomp_of(c);
        if (!e) {
            d[m++] = c;
            continue;
        }
        for (int k = 0; k < e->len && m < cap; k++)
            d[m++] = wan_uc_decomp_pool[e->off + k];
    }
    /* canonical ordering: stable sort of each run of non-starters by combining class (linear time, so
     * a prompt made of thousands of combining marks stays cheap) */
    uint8_t *cc = wan_malloc(m + 1);
    uint32_t *tmp = wan_malloc((m + 1) * sizeof *tmp);
    if (!cc || !tmp) {
        wan_free(cc), wan_free(tmp), wan_free(d);
        return WAN_ERR_NOMEM;
    }
    for (size_t i = 0; i < m; i++)
        cc[i] = (uint8_t)ccc_of(d[i]);
    for (size_t a = 0; a < m;) {
        if (!cc[a]) {
            a++;
            continue;
        }
        size_t b = a;
        while (b < m && cc[b])
            b++;
        if (b - a <= 8) { /* short run: insertion sort */
            for (size_t i = a + 1; i < b; i++) {
                uint32_t c = d[i];
                uint8_t k = cc[i];
                size_t j = i;
                for (; j > a && cc[j - 1] > k; j--) {
                    d[j] = d[j - 1];
                    cc[j] = cc[j - 1];
                }
                d[j] = c;
                cc[j] = k;
            }
        } else {
            size_t start[257] = {0};
            for (size_t i = a; i < b; i++)
                start[cc[i] + 1]++;
            for (int k = 0; k < 256; k++)
                start[k + 1] += start[k];
            for (size_t i = a; i < b; i++)
                tmp[start[cc[i]]++] = d[i];
            memcpy(d + a, tmp, (b - a) * sizeof *d);
            for (size_t i = a; i < b; i++)
                cc[i] = (uint8_t)ccc_of(d[i]);
        }
        a = b;
    }
    /* canonical composition */
    size_t o = 0;
    long sp = -1;
    int last_cc = 0;
    for (size_t i = 0; i < m; i++) {
        uint32_t c = d[i];
        int ci = cc[i];
        if (sp >= 0) {
            bool adjacent = (long)o - 1 == sp;
            if (adjacent || (last_cc != 0 && last_cc < ci)) {
                uint32_t p = compose_pair(d[sp], c);
                if (p) {
                    d[sp] = p;
                    continue;
                }
            }
        }
        if (ci == 0) {
            sp = (long)o;
            last_cc = 0;
        } else {
            last_cc = ci;
        }
        d[o++] = c;
    }
    wan_free(cc);
    wan_free(tmp);
    *out = d;
    *out_n = o;
    return WAN_OK;
}
