/* test_tokenizer.c — the umT5 tokenizer and prompt cleaning against the HF `tokenizers` core and
 * diffusers' prompt_clean (references by tools/ref/dump_tokenizer.py in tests/fixtures/tokenizer/). */
#define _POSIX_C_SOURCE 200809L
#include "test.h"

#include <stdlib.h>
#include <time.h>

#include "tokenizer.h"

#define BASE_JSON "tiny-wan22-t2v/tokenizer/tokenizer.json"
#define BASE_SPM "tiny-wan22-t2v/tokenizer/spiece.model"

/* A list of byte strings or id lists: data + offsets (n + 1 entries). */
typedef struct packed {
    wan_host_tensor data, off;
    int64_t n;
} packed;

static int packed_read(const char *file, const char *data, const char *off, wan_dtype dt, packed *p, char *err)
{
    memset(p, 0, sizeof *p);
    if (wan_safetensors_read(file, data, dt, &p->data, err, 512) != WAN_OK ||
        wan_safetensors_read(file, off, WAN_DTYPE_I64, &p->off, err, 512) != WAN_OK)
        return 0;
    p->n = wan_host_tensor_numel(&p->off) - 1;
    return 1;
}

static void packed_free(packed *p)
{
    wan_host_tensor_free(&p->data);
    wan_host_tensor_free(&p->off);
}

static const char *packed_str(const packed *p, int64_t i, size_t *len)
{
    const int64_t *o = p->off.data;
    *len = (size_t)(o[i + 1] - o[i]);
    return (const char *)p->data.data + o[i];
}

static const int64_t *packed_ids(const packed *p, int64_t i, size_t *n)
{
    const int64_t *o = p->off.data;
    *n = (size_t)(o[i + 1] - o[i]);
    return (const int64_t *)p->data.data + o[i];
}

static void print_text(const char *s, size_t n)
{
    printf("\"");
    for (size_t i = 0; i < n && i < 120; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7F || c == '"' || c == '\\')
            printf("\\x%02X", c);
        else
            putchar(c);
    }
    printf("%s\"", n > 120 ? "..." : "");
}

static void print_ids(const char *what, const int32_t *a, size_t n, const int64_t *b)
{
    printf("      %s:", what);
    for (size_t i = 0; i < n && i < 40; i++)
        printf(" %lld", a ? (long long)a[i] : (long long)b[i]);
    printf("%s\n", n > 40 ? " ..." : "");
}

/* Encodes every fixture string with `tok` (no cleaning, truncation or padding) and compares with the
 * reference ids `name`; returns the number of mismatches. */
static int compare_variant(const wan_tokenizer *tok, const char *label, const char *name, double *secs)
{
    char err[512] = "";
    const char *file = wan_test_fixture("tokenizer/tokens.safetensors");
    packed texts, ids;
    char dn[64], on[64];
    snprintf(dn, sizeof dn, "ids_%s", name);
    snprintf(on, sizeof on, "ids_off_%s", name);
    if (!packed_read(file, "text_bytes", "text_off", WAN_DTYPE_U8, &texts, err) ||
        !packed_read(file, dn, on, WAN_DTYPE_I64, &ids, err)) {
        printf("    %s\n", err);
        return -1;
    }
    int bad = 0;
    size_t n_ids = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int64_t i = 0; i < texts.n; i++) {
        size_t len, nref, n = 0;
        const char *s = packed_str(&texts, i, &len);
        const int64_t *ref = packed_ids(&ids, i, &nref);
        int32_t *got = NULL;
        wan_error e = {0};
        wan_status rc = wan_tokenizer_encode_ids(tok, s, len, &got, &n, &e);
        bool same = rc == WAN_OK && n == nref;
        for (size_t k = 0; same && k < n; k++)
            same = got[k] == ref[k];
        n_ids += nref;
        if (!same && ++bad <= 5) {
            printf("    %s: string %lld ", label, (long long)i);
            print_text(s, len);
            printf(" %s\n", rc == WAN_OK ? "" : e.msg);
            print_ids("got", got, n, NULL);
            print_ids("ref", NULL, nref, ref);
        }
        wan_free(got);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("    %-28s %lld strings, %zu ids compared, %d mismatches (%.1f us/string)\n", label,
           (long long)texts.n, n_ids, bad, 1e6 * *secs / (double)texts.n);
    packed_free(&texts);
    packed_free(&ids);
    return bad;
}

static wan_tokenizer *load_json(const char *rel)
{
    char err[512] = "";
    wan_tokenizer_t *t = NULL;
    if (wan_tokenizer_load(wan_test_fixture(rel), &t, err, sizeof err) != WAN_OK)
        printf("    load %s: %s\n", rel, err);
    return t;
}

static wan_tokenizer *load_spm(int extra_ids, int legacy)
{
    char *buf = NULL;
    size_t len = 0;
    wan_tokenizer *t = NULL;
    wan_error e = {0};
    if (wan_read_file(wan_test_fixture(BASE_SPM), &buf, &len, &e) == WAN_OK &&
        wan_tokenizer_from_spm((const uint8_t *)buf, len, "spiece.model", extra_ids, legacy, &t, &e) != WAN_OK)
        printf("    %s\n", e.msg);
    wan_free(buf);
    return t;
}

TEST(tokenizer_json_variants)
{
    static const struct { const char *file, *name; } v[] = {
        { BASE_JSON, "base" },           { "tokenizer/tok_bf1.json", "bf1" },
        { "tokenizer/tok_first.json", "first" }, { "tokenizer/tok_x0.json", "x0" },
        { "tokenizer/tok_old.json", "old" },
    };
    int total_bad = 0;
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        wan_tokenizer *t = load_json(v[i].file);
        CHECK(t);
        double secs;
        char label[64];
        snprintf(label, sizeof label, "tokenizer.json %s:", v[i].name);
        int bad = compare_variant(t, label, v[i].name, &secs);
        wan_tokenizer_free(t);
        CHECK(bad >= 0);
        total_bad += bad;
    }
    CHECK_MSG(total_bad == 0, "%d mismatching strings", total_bad);
}

TEST(tokenizer_spiece_model)
{
    /* spiece.model rebuilt as T5Converter does = the converter's tokenizer.json (legacy: always/first) */
    static const struct { int legacy; const char *name; } v[] = { { 1, "base" }, { 0, "first" } };
    int total_bad = 0;
    for (size_t i = 0; i < 2; i++) {
        wan_tokenizer *t = load_spm(10, v[i].legacy);
        CHECK(t);
        double secs;
        char label[64];
        snprintf(label, sizeof label, "spiece.model legacy=%d:", v[i].legacy);
        int bad = compare_variant(t, label, v[i].name, &secs);
        wan_tokenizer_free(t);
        CHECK(bad >= 0);
        total_bad += bad;
    }
    /* loading through the public API reads extra_ids/legacy from tokenizer_config.json beside it */
    char err[512] = "";
    wan_tokenizer_t *t = NULL;
    CHECK_RC(wan_tokenizer_load(wan_test_fixture(BASE_SPM), &t, err, sizeof err), WAN_OK, err);
    CHECK(wan_tokenizer_vocab_size(t) == 610);
    CHECK(!strcmp(wan_tokenizer_id_to_piece(t, 609), "<extra_id_0>"));
    wan_tokenizer_free(t);
    CHECK_MSG(total_bad == 0, "%d mismatching strings", total_bad);
}

static int g_warnings;
static void count_warn(wan_log_level level, const char *msg, void *user)
{
    (void)msg, (void)user;
    if (level == WAN_LOG_WARN)
        g_warnings++;
}

TEST(tokenizer_truncate_pad)
{
    char err[512] = "";
    const char *file = wan_test_fixture("tokenizer/tokens.safetensors");
    packed texts;
    wan_host_tensor sel = {0};
    CHECK_RC(packed_read(file, "text_bytes", "text_off", WAN_DTYPE_U8, &texts, err) ? WAN_OK : WAN_ERR_IO, WAN_OK,
             err);
    CHECK_RC(wan_safetensors_read(file, "pad_sel", WAN_DTYPE_I64, &sel, err, sizeof err), WAN_OK, err);
    wan_tokenizer_t *t = NULL;
    CHECK_RC(wan_tokenizer_load(wan_test_fixture("tiny-wan22-t2v"), &t, err, sizeof err), WAN_OK, err);
    CHECK(wan_tokenizer_pad_id(t) == 0);
    int bad = 0, truncated = 0, compared = 0;
    wan_log_set(count_warn, NULL, WAN_LOG_WARN);
    g_warnings = 0;
    for (int L = 16; L <= 512; L *= 32) {
        char nm[32], nk[32];
        wan_host_tensor ids = {0}, mask = {0};
        snprintf(nm, sizeof nm, "pad%d_ids", L);
        snprintf(nk, sizeof nk, "pad%d_mask", L);
        if (wan_safetensors_read(file, nm, WAN_DTYPE_I64, &ids, err, sizeof err) != WAN_OK ||
            wan_safetensors_read(file, nk, WAN_DTYPE_I64, &mask, err, sizeof err) != WAN_OK) {
            printf("    %s\n", err);
            bad++;
            break;
        }
        wan_encode_params p = { .max_length = L, .pad = 1, .clean = 0 };
        for (int64_t r = 0; r < sel.shape[0]; r++) {
            size_t len;
            const char *s = packed_str(&texts, ((int64_t *)sel.data)[r], &len);
            wan_tokens tk;
            if (wan_tokenizer_encode(t, s, len, &p, &tk, err, sizeof err) != WAN_OK) {
                printf("    %s\n", err);
                bad++;
                continue;
            }
            const int64_t *ri = (const int64_t *)ids.data + r * L, *rm = (const int64_t *)mask.data + r * L;
            int same = tk.n == L, real = 0;
            for (int k = 0; same && k < L; k++) {
                same = tk.ids[k] == ri[k] && tk.mask[k] == rm[k];
                real += (int)rm[k];
            }
            same = same && tk.n_real == real;
            truncated += tk.truncated;
            compared++;
            if (!same && ++bad <= 3) {
                printf("    pad %d, string %lld ", L, (long long)r);
                print_text(s, len);
                printf("\n");
                print_ids("got", tk.ids, (size_t)tk.n, NULL);
                print_ids("ref", NULL, (size_t)L, ri);
            }
            wan_tokens_free(&tk);
        }
        wan_host_tensor_free(&ids);
        wan_host_tensor_free(&mask);
    }
    wan_log_set(NULL, NULL, WAN_LOG_WARN);
    printf("    %d padded/truncated encodings (16 and 512) compared, %d truncated (%d warnings), %d mismatches\n",
           compared, truncated, g_warnings, bad);
    /* the empty prompt is [</s>, <pad> x 511] */
    wan_tokens e;
    CHECK_RC(wan_tokenizer_encode(t, "", 0, NULL, &e, err, sizeof err), WAN_OK, err);
    CHECK(e.n == 512 && e.n_real == 1 && e.ids[0] == 1 && e.ids[1] == 0 && e.mask[0] == 1 && e.mask[1] == 0);
    wan_tokens_free(&e);
    wan_tokenizer_free(t);
    packed_free(&texts);
    wan_host_tensor_free(&sel);
    CHECK(bad == 0);
    CHECK(truncated > 0 && g_warnings == truncated);
}

TEST(tokenizer_prompt_clean)
{
    char err[512] = "";
    const char *file = wan_test_fixture("tokenizer/clean.safetensors");
    packed in, ref_ftfy, ref_plain;
    CHECK_RC(packed_read(file, "in_bytes", "in_off", WAN_DTYPE_U8, &in, err) ? WAN_OK : WAN_ERR_IO, WAN_OK, err);
    CHECK_RC(packed_read(file, "ftfy_bytes", "ftfy_off", WAN_DTYPE_U8, &ref_ftfy, err) ? WAN_OK : WAN_ERR_IO, WAN_OK,
             err);
    CHECK_RC(packed_read(file, "plain_bytes", "plain_off", WAN_DTYPE_U8, &ref_plain, err) ? WAN_OK : WAN_ERR_IO,
             WAN_OK, err);
    int bad = 0;
    for (int ftfy = 0; ftfy < 2; ftfy++) {
        const packed *ref = ftfy ? &ref_ftfy : &ref_plain;
        for (int64_t i = 0; i < in.n; i++) {
            size_t len, rlen, olen = 0;
            const char *s = packed_str(&in, i, &len), *r = packed_str(ref, i, &rlen);
            char *out = NULL;
            if (wan_prompt_clean(s, len, ftfy, &out, &olen, err, sizeof err) != WAN_OK) {
                printf("    %s\n", err);
                bad++;
                continue;
            }
            if ((olen != rlen || memcmp(out, r, rlen)) && ++bad <= 6) {
                printf("    ftfy=%d string %lld ", ftfy, (long long)i);
                print_text(s, len);
                printf("\n      got ");
                print_text(out, olen);
                printf("\n      ref ");
                print_text(r, rlen);
                printf("\n");
            }
            wan_string_free(out);
        }
    }
    printf("    prompt_clean: %lld strings x (ftfy on, off) compared with diffusers, %d mismatches\n",
           (long long)in.n, bad);
    packed_free(&in), packed_free(&ref_ftfy), packed_free(&ref_plain);
    CHECK(bad == 0);
    /* the official default negative prompt: 137 code points, 403 bytes */
    const char *neg = wan_default_negative_prompt();
    size_t cps = 0;
    for (const char *p = neg; *p; p++)
        cps += ((unsigned char)*p & 0xC0) != 0x80;
    CHECK(strlen(neg) == 403 && cps == 137);
}

TEST(tokenizer_invalid_utf8)
{
    /* invalid bytes are replaced by U+FFFD, one per maximal ill-formed subpart (from_utf8_lossy) */
    wan_tokenizer *t = load_json(BASE_JSON);
    CHECK(t);
    static const struct { const char *bad, *good; } c[] = {
        { "a\xC3(b", "a\xEF\xBF\xBD(b" },
        { "\xF0\x9F\x98x", "\xEF\xBF\xBDx" },
        { "\xED\xA0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" },
        { "\xE2\x82", "\xEF\xBF\xBD" },
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        int32_t *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        wan_error e = {0};
        CHECK_RC(wan_tokenizer_encode_ids(t, c[i].bad, strlen(c[i].bad), &a, &na, &e), WAN_OK, e.msg);
        CHECK_RC(wan_tokenizer_encode_ids(t, c[i].good, strlen(c[i].good), &b, &nb, &e), WAN_OK, e.msg);
        int same = na == nb && !memcmp(a, b, na * sizeof *a);
        wan_free(a), wan_free(b);
        CHECK_MSG(same, "case %zu", i);
    }
    wan_tokenizer_free(t);
}

/* Every load of a damaged file must fail cleanly (or succeed), never crash; returns the failures. */
static int try_json(const char *text, size_t len, const char *want_in_msg)
{
    wan_tokenizer *t = NULL;
    wan_error e = {0};
    wan_status rc = wan_tokenizer_from_json(text, len, "bad.json", &t, &e);
    wan_tokenizer_free(t);
    if (want_in_msg && (rc == WAN_OK || !strstr(e.msg, want_in_msg))) {
        printf("    expected an error mentioning \"%s\", got %d: %s\n", want_in_msg, rc, e.msg);
        return 1;
    }
    return 0;
}

TEST(tokenizer_corrupt_json)
{
    char *buf = NULL;
    size_t len = 0;
    wan_error e = {0};
    CHECK_RC(wan_read_file(wan_test_fixture("tokenizer/tok_x0.json"), &buf, &len, &e), WAN_OK, e.msg);
    int bad = 0;
    bad += try_json(buf, len / 2, "invalid JSON near byte");
    bad += try_json("{}", 2, "\"model\" is missing");
    bad += try_json("[1]", 3, "top level");
    bad += try_json("{\"model\":{\"type\":\"BPE\",\"vocab\":{}}}", 35, "not supported");
    bad += try_json("{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\"]]}}", 44, "model.vocab[0]");
    bad += try_json("{\"model\":{\"type\":\"Unigram\",\"unk_id\":5,\"vocab\":[[\"a\",0]]}}", 58, "unk_id 5");
    bad += try_json("{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", 39, "empty");
    const char *bad_b64 = "{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",0]]},\"normalizer\":"
                          "{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"AAA*\"}}";
    bad += try_json(bad_b64, strlen(bad_b64), "invalid base64 character");
    const char *bad_map = "{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",0]]},\"normalizer\":"
                          "{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"/wAAAA==\"}}";
    bad += try_json(bad_map, strlen(bad_map), "trie size");
    const char *nfkc = "{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",0]]},\"normalizer\":{\"type\":\"NFKC\"}}";
    bad += try_json(nfkc, strlen(nfkc), "NFKC");
    /* every truncation of the file and scattered byte damage: errors, never crashes */
    for (size_t cut = 0; cut < len; cut += len / 97 + 1)
        bad += try_json(buf, cut, NULL);
    srand(7);
    for (int k = 0; k < 40; k++) {
        size_t at = (size_t)rand() % len;
        char keep = buf[at];
        buf[at] = (char)(rand() & 0xFF);
        bad += try_json(buf, len, NULL);
        buf[at] = keep;
    }
    wan_free(buf);
    CHECK(bad == 0);
}

TEST(tokenizer_corrupt_spiece)
{
    char *buf = NULL;
    size_t len = 0;
    wan_error e = {0};
    CHECK_RC(wan_read_file(wan_test_fixture(BASE_SPM), &buf, &len, &e), WAN_OK, e.msg);
    wan_tokenizer *t = NULL;
    /* a cut inside the first piece: a clear error with the byte offset */
    wan_status rc = wan_tokenizer_from_spm((const uint8_t *)buf, 7, "cut.model", 0, 1, &t, &e);
    CHECK(rc == WAN_ERR_FORMAT && t == NULL);
    printf("    truncated: %s\n", e.msg);
    CHECK(strstr(e.msg, "byte"));
    rc = wan_tokenizer_from_spm((const uint8_t *)"\x0B\x00", 2, "group.model", 0, 1, &t, &e);
    CHECK(rc == WAN_ERR_FORMAT && strstr(e.msg, "wire type"));
    rc = wan_tokenizer_from_spm((const uint8_t *)"", 0, "empty.model", 0, 1, &t, &e);
    CHECK(rc == WAN_ERR_FORMAT && strstr(e.msg, "no pieces"));
    int ok = 0, failed = 0;
    for (size_t cut = 0; cut < len; cut += len / 211 + 1) {
        rc = wan_tokenizer_from_spm((const uint8_t *)buf, cut, "cut.model", 10, 1, &t, &e);
        rc == WAN_OK ? ok++ : failed++;
        wan_tokenizer_free(t);
        t = NULL;
    }
    srand(11);
    for (int k = 0; k < 60; k++) {
        size_t at = (size_t)rand() % len;
        char keep = buf[at];
        buf[at] = (char)(rand() & 0xFF);
        rc = wan_tokenizer_from_spm((const uint8_t *)buf, len, "flip.model", 10, 1, &t, &e);
        if (rc == WAN_OK) {
            int32_t *ids = NULL;
            size_t n = 0;
            wan_tokenizer_encode_ids(t, "A cat 一只猫 ﾊﾟ 👍🏽", 28, &ids, &n, &e);
            wan_free(ids);
        }
        wan_tokenizer_free(t);
        t = NULL;
        buf[at] = keep;
    }
    printf("    %d truncated copies loaded, %d rejected\n", ok, failed);
    wan_free(buf);
    char err[256];
    wan_tokenizer_t *tk = NULL;
    CHECK(wan_tokenizer_load("/nonexistent/tokenizer.json", &tk, err, sizeof err) == WAN_ERR_NOT_FOUND && !tk);
}

TEST(tokenizer_speed)
{
    wan_tokenizer_t *t = NULL;
    char err[512] = "";
    CHECK_RC(wan_tokenizer_load(wan_test_fixture(BASE_JSON), &t, err, sizeof err), WAN_OK, err);
    const char *neg = wan_default_negative_prompt();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int reps = 200;
    for (int i = 0; i < reps; i++) {
        wan_tokens tk;
        CHECK_RC(wan_tokenizer_encode(t, neg, WAN_STRLEN, NULL, &tk, err, sizeof err), WAN_OK, err);
        if (i == 0)
            printf("    default negative prompt: %d tokens\n", tk.n_real);
        wan_tokens_free(&tk);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("    clean + encode + pad to 512: %.1f us per prompt (%d reps)\n", 1e6 * s / reps, reps);
    wan_tokenizer_free(t);
}
