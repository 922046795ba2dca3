/* unicode.h — UTF-8 decoding, a growable byte buffer, extended grapheme clusters (UAX #29), NFC and
 * the code-point classes the tokenizer and the prompt cleaner need. Internal; the data tables are
 * generated (src/unicode_tables.h by tools/ref/gen_unicode_tables.py). */
#ifndef WAN_UNICODE_H
#define WAN_UNICODE_H

#include "core.h"

/* ---- growable byte buffer --------------------------------------------------------------------- */

/* A NUL-terminated byte string under construction. Appends never fail loudly: on allocation failure
 * `oom` is set and later appends are ignored; check it once at the end. */
typedef struct wan_buf {
    char *p;
    size_t n, cap;
    bool oom;
} wan_buf;

void wan_buf_put(wan_buf *b, const void *s, size_t n);
/* Appends the UTF-8 encoding of cp (cp <= 0x10FFFF, not a surrogate). */
void wan_buf_putcp(wan_buf *b, uint32_t cp);
void wan_buf_free(wan_buf *b);

/* ---- UTF-8 ------------------------------------------------------------------------------------ */

/* Decodes the code point at s[0..n) (n >= 1) as Rust's String::from_utf8_lossy does: a well-formed
 * sequence gives its code point; otherwise the maximal prefix of a well-formed sequence (at least one
 * byte) is consumed and U+FFFD is returned. Returns the number of bytes consumed. */
size_t wan_utf8_next(const uint8_t *s, size_t n, uint32_t *cp);
/* Writes the UTF-8 form of cp to out; returns its length (1..4). */
int wan_utf8_put(uint32_t cp, uint8_t out[4]);
/* Decodes s[0..n) to code points (lossy, as above) into a new counted array; *out_n gets the count.
 * Returns NULL when out of memory. */
uint32_t *wan_utf8_decode_all(const char *s, size_t n, size_t *out_n);
/* Encodes cps[0..n) into a new counted NUL-terminated string; NULL when out of memory. */
char *wan_utf8_encode_all(const uint32_t *cps, size_t n, size_t *out_len);

/* ---- classes ------------------------------------------------------------------------------------ */

/* Unicode White_Space (25 code points): Rust char::is_whitespace, the `regex` module's \s. */
bool wan_uc_is_white_space(uint32_t cp);
/* Python str.isspace(): White_Space plus U+001C..U+001F (what str.strip() removes). */
bool wan_uc_is_py_space(uint32_t cp);
/* Python str.isdecimal() (what `\d` of the `re` module matches in str patterns). */
bool wan_uc_is_decimal(uint32_t cp);

/* ftfy's fix_character_width / fix_latin_ligatures maps: the replacement of cp (up to three code
 * points, 0-terminated), or NULL when cp is not mapped. */
const uint32_t *wan_uc_ftfy_width(uint32_t cp);
const uint32_t *wan_uc_ftfy_ligature(uint32_t cp);

/* ---- grapheme clusters -------------------------------------------------------------------------- */

/* Byte length of the extended grapheme cluster that starts at s[0] (n >= 1; s should be valid UTF-8,
 * invalid bytes count as single U+FFFD characters). */
size_t wan_grapheme_len(const char *s, size_t n);

/* ---- normalization ------------------------------------------------------------------------------ */

/* Canonical composition (NFC) of cps[0..n) in place into *out (new counted array, *out_n code points).
 * Returns WAN_ERR_NOMEM on allocation failure. Unicode version: WAN_UNICODE_NFC_VERSION. */
wan_status wan_uc_nfc(const uint32_t *cps, size_t n, uint32_t **out, size_t *out_n);

#endif /* WAN_UNICODE_H */
