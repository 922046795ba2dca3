/* fuzz_tokenizer.c — libFuzzer target for the tokenizer. The first byte picks what the rest is:
 *   0, 1  text encoded with the tiny tokenizer.json (1: with prompt cleaning, truncation, padding)
 *   2     a tokenizer.json
 *   3     a spiece.model
 *   4     a precompiled charsmap (wrapped in a one-piece spiece.model), then a fixed text normalized
 *   5     text for prompt cleaning alone (with and without the ftfy subset)
 * The tiny tokenizer is loaded once from tests/fixtures (run from the repository root). */
#include "tokenizer.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static wan_tokenizer *g_tok;

static void encode(const wan_tokenizer *t, const char *s, size_t n, int clean)
{
    wan_encode_params p = { .max_length = clean ? 16 : 0, .pad = clean, .clean = clean, .ftfy = 1 };
    wan_tokens tk;
    char err[256];
    if (wan_tokenizer_encode(t, s, n, &p, &tk, err, sizeof err) == WAN_OK)
        wan_tokens_free(&tk);
}

/* A minimal ModelProto: pieces "a" and "<unk>" (UNKNOWN), then normalizer_spec.precompiled_charsmap. */
static void charsmap_case(const uint8_t *map, size_t n)
{
    static const uint8_t head[] = { 0x0A, 0x08, 0x0A, 0x01, 'a', 0x15, 0x00, 0x00, 0x80, 0xBF,
                                    0x0A, 0x09, 0x0A, 0x05, '<', 'u', 'n', 'k', '>', 0x18, 0x02 };
    if (n > 100000)
        return;
    uint8_t *buf = wan_malloc(sizeof head + 8 + n);
    if (!buf)
        return;
    size_t k = sizeof head;
    memcpy(buf, head, k);
    buf[k++] = 0x1A; /* field 3, length-delimited */
    size_t inner = 1 + (n < 128 ? 1 : n < 16384 ? 2 : 3) + n;
    for (size_t v = inner;; v >>= 7) {
        buf[k++] = (uint8_t)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
        if (v <= 0x7F)
            break;
    }
    buf[k++] = 0x12; /* field 2 */
    for (size_t v = n;; v >>= 7) {
        buf[k++] = (uint8_t)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
        if (v <= 0x7F)
            break;
    }
    memcpy(buf + k, map, n);
    wan_tokenizer *t = NULL;
    wan_error e;
    if (wan_tokenizer_from_spm(buf, k + n, "fuzz", 0, 1, &t, &e) == WAN_OK) {
        static const char text[] = "A ﾊﾟ e\xCC\x81 \xEF\xBC\xA1 \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD \r\n x";
        encode(t, text, sizeof text - 1, 0);
    }
    wan_tokenizer_free(t);
    wan_free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (!g_tok) {
        wan_tokenizer_t *t = NULL;
        char err[256];
        if (wan_tokenizer_load("tests/fixtures/tiny-wan22-t2v/tokenizer/tokenizer.json", &t, err, sizeof err))
            return 0;
        g_tok = t;
    }
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    wan_tokenizer *t = NULL;
    wan_error e;
    switch (data[0] % 6) {
    case 0:
    case 1:
        encode(g_tok, s, n, data[0] % 6);
        break;
    case 2:
        if (wan_tokenizer_from_json(s, n, "fuzz.json", &t, &e) == WAN_OK)
            encode(t, "fuzz </s> text", 14, 0);
        wan_tokenizer_free(t);
        break;
    case 3:
        if (wan_tokenizer_from_spm((const uint8_t *)s, n, "fuzz.model", 3, data[0] & 8, &t, &e) == WAN_OK)
            encode(t, "fuzz </s> text", 14, 0);
        wan_tokenizer_free(t);
        break;
    case 4:
        charsmap_case((const uint8_t *)s, n);
        break;
    default:
        for (int ftfy = 0; ftfy < 2; ftfy++) {
            char *out = NULL;
            char err[256];
            if (wan_prompt_clean(s, n, ftfy, &out, NULL, err, sizeof err) == WAN_OK)
                wan_string_free(out);
        }
    }
    return 0;
}
