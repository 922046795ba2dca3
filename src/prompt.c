/* prompt.c — WanPipeline's prompt_clean (text.md §2): the reproducible subset of ftfy.fix_text,
 * CPython's html.unescape (twice), str.strip(), and the `regex` module's `\s+` → " ". Works on code
 * points like Python str does. Also the default negative prompt of the official release. */
#include "tokenizer.h"

#include <string.h>

#include "html_entities.h"

#define COUNT(a) (sizeof(a) / sizeof *(a))

typedef struct u32vec {
    uint32_t *p;
    size_t n, cap;
    bool oom;
} u32vec;

static void v_put(u32vec *v, const uint32_t *s, size_t n)
{
    if (v->oom)
        return;
    if (v->n + n > v->cap || !v->p) { /* a call with n = 0 still allocates, so p is never NULL after */
        size_t cap = v->cap ? v->cap : 64;
        while (cap < v->n + n)
            cap *= 2;
        uint32_t *p = wan_realloc(v->p, cap * sizeof *p);
        if (!p) {
            v->oom = true;
            return;
        }
        v->p = p;
        v->cap = cap;
    }
    if (n)
        memcpy(v->p + v->n, s, n * sizeof *s);
    v->n += n;
}

static void v_push(u32vec *v, uint32_t c) { v_put(v, &c, 1); }

/* ---- html.unescape ---------------------------------------------------------------------------- */

static const char *entity_find(const wan_html_entity *t, size_t n, const char *name)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(t[mid].name, name);
        if (!c)
            return t[mid].value;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static void put_utf8(u32vec *v, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += wan_utf8_next((const uint8_t *)s + i, n - i, &cp);
        v_push(v, cp);
    }
}

static bool is_ascii_digit(uint32_t c) { return c >= '0' && c <= '9'; }
static bool is_ascii_hex(uint32_t c) { return is_ascii_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
static bool is_ascii_alnum(uint32_t c) { return is_ascii_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'); }

/* Numeric reference value num (0x110000 = "too large") → its replacement, CPython rules. */
static void charref_value(u32vec *out, uint32_t num)
{
    for (size_t i = 0; i < COUNT(wan_html_invalid_charrefs); i++)
        if (wan_html_invalid_charrefs[i].num == num) {
            v_push(out, wan_html_invalid_charrefs[i].cp);
            return;
        }
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) {
        v_push(out, 0xFFFD);
        return;
    }
    for (size_t i = 0; i < COUNT(wan_html_invalid_codepoints); i++)
        if (wan_html_invalid_codepoints[i] == num)
            return;
    v_push(out, num);
}

/* Matches `#[0-9]+;?` or `#[xX][0-9a-fA-F]+;?` at s[0] == '#'; returns the length or 0. */
static size_t numeric_ref(const uint32_t *s, size_t n, u32vec *out)
{
    bool hex = n > 1 && (s[1] == 'x' || s[1] == 'X');
    size_t i = hex ? 2 : 1, start = i;
    uint32_t num = 0;
    while (i < n && (hex ? is_ascii_hex(s[i]) : is_ascii_digit(s[i]))) {
        uint32_t d = is_ascii_digit(s[i]) ? s[i] - '0' : (s[i] | 0x20) - 'a' + 10;
        num = num > 0x10FFFF ? 0x110000 : num * (hex ? 16 : 10) + d;
        i++;
    }
    if (i == start)
        return 0;
    if (num > 0x10FFFF)
        num = 0x110000;
    if (i < n && s[i] == ';')
        i++;
    charref_value(out, num);
    return i;
}

static bool named_excluded(uint32_t c)
{
    return c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' || c == ';';
}

/* Matches `[^\t\n\f <&#;]{1,32};?` at s[0]; appends the replacement; returns the length (0: none). */
static size_t named_ref(const uint32_t *s, size_t n, u32vec *out)
{
    size_t e = 0;
    while (e < n && e < 32 && !named_excluded(s[e]))
        e++;
    if (!e)
        return 0;
    size_t len = e + (e < n && s[e] == ';');
    /* the table's names are ASCII: only an ASCII prefix can match */
    char name[40];
    size_t ascii = 0;
    while (ascii < len && s[ascii] < 0x80) {
        name[ascii] = (char)s[ascii];
        ascii++;
    }
    for (size_t x = len; x >= 2; x--) {
        if (x > ascii)
            continue;
        name[x] = 0;
        const char *v = entity_find(wan_html5_entities, COUNT(wan_html5_entities), name);
        if (v) {
            put_utf8(out, v);
            v_put(out, s + x, len - x);
            return len;
        }
    }
    v_push(out, '&');
    v_put(out, s, len);
    return len;
}

wan_status wan_html_unescape(const uint32_t *s, size_t n, uint32_t **out, size_t *out_n)
{
    u32vec v = {0};
    v_put(&v, s, 0);
    for (size_t i = 0; i < n;) {
        if (s[i] != '&' || i + 1 >= n) {
            v_push(&v, s[i++]);
            continue;
        }
        size_t k = s[i + 1] == '#' ? numeric_ref(s + i + 1, n - i - 1, &v) : named_ref(s + i + 1, n - i - 1, &v);
        if (k)
            i += 1 + k;
        else
            v_push(&v, s[i++]);
    }
    if (v.oom) {
        wan_free(v.p);
        return WAN_ERR_NOMEM;
    }
    *out = v.p;
    *out_n = v.n;
    return WAN_OK;
}

/* ---- the ftfy subset ---------------------------------------------------------------------------- */

/* ftfy unescape_html: `&#?[0-9A-Za-z]{1,24};` → its HTML_ENTITIES value, or for numeric references the
 * html.unescape result unless that still contains ';'. */
static void ftfy_unescape(const uint32_t *s, size_t n, u32vec *out)
{
    for (size_t i = 0; i < n;) {
        size_t j = i + 1, r = 0;
        bool hash = s[i] == '&' && j < n && s[j] == '#';
        if (s[i] == '&') {
            j += hash;
            while (j + r < n && r < 25 && is_ascii_alnum(s[j + r]))
                r++;
        }
        if (!r || r > 24 || j + r >= n || s[j + r] != ';') {
            v_push(out, s[i++]);
            continue;
        }
        size_t end = j + r + 1;
        char name[32];
        for (size_t k = 0; k < r; k++)
            name[k] = (char)s[j + k];
        name[r] = ';', name[r + 1] = 0;
        const char *val = NULL;
        if (!hash) {
            val = entity_find(wan_html5_entities, COUNT(wan_html5_entities), name);
            if (!val)
                val = entity_find(wan_ftfy_upper_entities, COUNT(wan_ftfy_upper_entities), name);
        }
        if (val) {
            put_utf8(out, val);
        } else if (hash) {
            uint32_t *u = NULL;
            size_t un = 0;
            if (wan_html_unescape(s + i, end - i, &u, &un) != WAN_OK) {
                out->oom = true;
                return;
            }
            bool semi = false;
            for (size_t k = 0; k < un; k++)
                semi |= u[k] == ';';
            if (semi)
                v_put(out, s + i, end - i);
            else
                v_put(out, u, un);
            wan_free(u);
        } else {
            v_put(out, s + i, end - i);
        }
        i = end;
    }
}

/* sloppy-windows-1252 decoding of a C1 control (html.unescape's table holds exactly that map). */
static uint32_t c1_fix(uint32_t c)
{
    for (size_t i = 0; i < COUNT(wan_html_invalid_charrefs); i++)
        if (wan_html_invalid_charrefs[i].num == c)
            return wan_html_invalid_charrefs[i].cp;
    return c;
}

static bool ftfy_control(uint32_t c)
{
    return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
           c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

/* One pass of the per-character fixers, in ftfy's order. */
static void ftfy_charfix(const uint32_t *s, size_t n, u32vec *out)
{
    u32vec a = {0}, b = {0};
    for (size_t i = 0; i < n; i++) { /* fix_c1_controls, fix_latin_ligatures, fix_character_width */
        uint32_t c = s[i] >= 0x80 && s[i] <= 0x9F ? c1_fix(s[i]) : s[i];
        const uint32_t *lig = wan_uc_ftfy_ligature(c);
        uint32_t tmp[3] = { c, 0, 0 };
        if (!lig)
            lig = tmp;
        for (int k = 0; k < 3 && lig[k]; k++) {
            const uint32_t *w = wan_uc_ftfy_width(lig[k]);
            if (w)
                for (int m = 0; m < 3 && w[m]; m++)
                    v_push(&a, w[m]);
            else
                v_push(&a, lig[k]);
        }
    }
    for (size_t i = 0; i < a.n; i++) { /* uncurl_quotes, fix_line_breaks */
        uint32_t c = a.p[i];
        if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B))
            c = '\'';
        else if (c >= 0x201C && c <= 0x201F)
            c = '"';
        else if (c == '\r' && i + 1 < a.n && a.p[i + 1] == '\n')
            continue;
        else if (c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x85)
            c = '\n';
        v_push(&b, c);
    }
    for (size_t i = 0; i < b.n; i++) { /* remove_terminal_escapes, remove_control_chars */
        if (b.p[i] == 0x1B && i + 1 < b.n && b.p[i + 1] == '[') {
            size_t j = i + 2;
            while (j < b.n && (b.p[j] == ';' || wan_uc_is_decimal(b.p[j])))
                j++;
            if (j < b.n && b.p[j] < 0x80 && ((b.p[j] | 0x20) >= 'a' && (b.p[j] | 0x20) <= 'z')) {
                i = j;
                continue;
            }
        }
        if (!ftfy_control(b.p[i]))
            v_push(out, b.p[i]);
    }
    if (a.oom || b.oom)
        out->oom = true;
    wan_free(a.p);
    wan_free(b.p);
}

/* ftfy fix_and_explain on one segment with fix_encoding off: repeat the fixers until nothing changes. */
static wan_status ftfy_segment(const uint32_t *s, size_t n, bool unescape, u32vec *out)
{
    u32vec cur = {0};
    v_put(&cur, s, n);
    for (int iter = 0; !cur.oom; iter++) {
        u32vec a = {0}, b = {0};
        if (unescape)
            ftfy_unescape(cur.p, cur.n, &a);
        else
            v_put(&a, cur.p, cur.n);
        if (!a.oom)
            ftfy_charfix(a.p, a.n, &b);
        uint32_t *nfc = NULL;
        size_t nn = 0;
        wan_status rc = (a.oom || b.oom) ? WAN_ERR_NOMEM : wan_uc_nfc(b.p, b.n, &nfc, &nn);
        wan_free(a.p);
        wan_free(b.p);
        if (rc != WAN_OK) {
            wan_free(cur.p);
            return rc;
        }
        bool same = nn == cur.n && !memcmp(nfc, cur.p, nn * sizeof *nfc);
        wan_free(cur.p);
        cur = (u32vec){ nfc, nn, nn, false };
        if (same || iter > 1000)
            break;
    }
    v_put(out, cur.p, cur.n);
    wan_free(cur.p);
    return cur.oom ? WAN_ERR_NOMEM : WAN_OK;
}

/* ftfy.fix_text: segments end after each '\n' (or every 1,000,000 code points); "auto" HTML unescaping
 * is switched off for a segment containing '<' and, as ftfy's loop reassigns its config, for every
 * segment after it. */
static wan_status ftfy_fix_text(const uint32_t *s, size_t n, u32vec *out)
{
    bool unescape = true;
    for (size_t pos = 0; pos < n;) {
        size_t e = pos;
        while (e < n && s[e] != '\n' && e - pos < 1000000)
            e++;
        if (e < n && s[e] == '\n' && e - pos < 1000000)
            e++;
        for (size_t i = pos; i < e && unescape; i++)
            if (s[i] == '<')
                unescape = false;
        wan_status rc = ftfy_segment(s + pos, e - pos, unescape, out);
        if (rc != WAN_OK)
            return rc;
        pos = e;
    }
    return out->oom ? WAN_ERR_NOMEM : WAN_OK;
}

/* ---- whitespace ------------------------------------------------------------------------------- */

static void py_strip(const uint32_t *s, size_t n, size_t *a, size_t *b)
{
    *a = 0, *b = n;
    while (*a < *b && wan_uc_is_py_space(s[*a]))
        (*a)++;
    while (*b > *a && wan_uc_is_py_space(s[*b - 1]))
        (*b)--;
}

wan_status wan_prompt_clean_impl(const char *text, size_t len, bool ftfy, char **out, size_t *out_len,
                                 wan_error *err)
{
    size_t n = 0, n1 = 0, n2 = 0;
    uint32_t *s = wan_utf8_decode_all(text, len, &n), *h1 = NULL, *h2 = NULL;
    u32vec f = {0}, w = {0};
    wan_status rc = s ? WAN_OK : WAN_ERR_NOMEM;
    if (rc == WAN_OK && ftfy) {
        rc = ftfy_fix_text(s, n, &f);
        if (rc == WAN_OK) {
            wan_free(s);
            s = f.p, n = f.n, f.p = NULL;
        }
    }
    if (rc == WAN_OK)
        rc = wan_html_unescape(s, n, &h1, &n1);
    if (rc == WAN_OK)
        rc = wan_html_unescape(h1, n1, &h2, &n2);
    if (rc == WAN_OK) {
        size_t a, b;
        py_strip(h2, n2, &a, &b); /* basic_clean's strip */
        for (size_t i = a; i < b;) {
            if (wan_uc_is_white_space(h2[i])) {
                while (i < b && wan_uc_is_white_space(h2[i]))
                    i++;
                v_push(&w, ' ');
            } else {
                v_push(&w, h2[i++]);
            }
        }
        v_put(&w, h2, 0);
        py_strip(w.p, w.n, &a, &b);
        *out = w.oom ? NULL : wan_utf8_encode_all(w.p + a, b - a, out_len);
        if (!*out)
            rc = WAN_ERR_NOMEM;
    }
    wan_free(s), wan_free(f.p), wan_free(h1), wan_free(h2), wan_free(w.p);
    if (rc != WAN_OK)
        return wan_err(err, rc, "out of memory cleaning a prompt of %zu bytes", len);
    return WAN_OK;
}

wan_status wan_prompt_clean(const char *text, size_t len, int ftfy, char **out, size_t *out_len, char *errbuf,
                            size_t errlen)
{
    wan_error err = {0};
    if (!out || (!text && len && len != WAN_STRLEN)) {
        wan_err(&err, WAN_ERR_INVALID_ARG, "wan_prompt_clean: NULL text or output");
        wan_err_copy(&err, errbuf, errlen);
        return err.code;
    }
    *out = NULL;
    if (!text)
        text = "", len = 0;
    if (len == WAN_STRLEN)
        len = strlen(text);
    size_t dummy;
    wan_status rc = wan_prompt_clean_impl(text, len, ftfy != 0, out, out_len ? out_len : &dummy, &err);
    if (rc != WAN_OK)
        wan_err_copy(&err, errbuf, errlen);
    return rc;
}

void wan_string_free(char *s) { wan_free(s); }

/* Wan2.2 wan/configs/shared_config.py sample_neg_prompt (137 code points, 403 bytes; text.md §2.4). */
const char *wan_default_negative_prompt(void)
{
    return "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
           "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，"
           "形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走";
}
