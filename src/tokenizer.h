/* tokenizer.h — internal interface of the umT5 tokenizer: the Hugging Face `tokenizers` pipeline that
 * WanPipeline runs (added tokens → normalizers → Metaspace → Unigram → template), driven by
 * tokenizer.json or rebuilt from spiece.model as transformers' T5Converter does (text.md §3). */
#ifndef WAN_TOKENIZER_H
#define WAN_TOKENIZER_H

#include "core.h"
#include "unicode.h"

/* ---- the loaded tokenizer (immutable after load) ---------------------------------------------- */

enum { WAN_NORM_PRECOMPILED = 1, WAN_NORM_STRIP, WAN_NORM_REPLACE };
enum { WAN_PREPEND_ALWAYS = 0, WAN_PREPEND_FIRST, WAN_PREPEND_NEVER };

#define WAN_TOK_MAX_NORM 16
#define WAN_TOK_MAX_TEMPLATE 8

typedef struct wan_norm_step {
    int type;
    bool strip_left, strip_right; /* Strip                                                        */
    bool regex_spaces;            /* Replace: pattern is the regex " {2,}" (else a literal string) */
    char *pattern, *content;      /* Replace: literal pattern (when !regex_spaces) and replacement */
} wan_norm_step;

/* The darts-clone double array + NUL-separated replacement pool of a Precompiled normalizer. */
typedef struct wan_charsmap {
    uint8_t *blob;        /* owned copy of the whole charsmap                      */
    size_t blob_len;
    const uint8_t *units; /* trie units, little-endian u32 (points into blob)      */
    uint32_t n_units;
    const char *pool;     /* replacement strings (points into blob)                */
    size_t pool_len;
} wan_charsmap;

/* Vocabulary prefix trie: children of a node are contiguous and sorted by byte. */
typedef struct wan_trie_node {
    uint32_t child;  /* index of the first child                 */
    uint16_t nchild; /* number of children (0..256)              */
    uint8_t byte;    /* label of the edge into this node         */
    int32_t id;      /* piece id ending here, -1 if none         */
} wan_trie_node;

typedef struct wan_added_token {
    char *content;
    size_t len;
    int32_t id;
    bool normalized; /* matched on the normalized text instead of the raw text */
    bool special;
} wan_added_token;

typedef struct wan_tokenizer wan_tokenizer; /* = wan_tokenizer_t of wan.h */

struct wan_tokenizer {
    char source[512];   /* where it came from, for messages                                   */
    int32_t n_vocab;
    char *pieces;       /* all piece strings, each NUL-terminated                              */
    uint32_t *piece_off;
    uint32_t *piece_len;
    double *score;
    double min_score;
    int32_t unk_id;     /* -1: none                                                            */
    bool byte_fallback;
    int32_t byte_id[256]; /* id of "<0xHH>", -1 when absent                                    */
    uint32_t *hash;     /* open addressing: id + 1 of each distinct piece, 0 = empty slot       */
    size_t hash_cap;
    wan_trie_node *trie;
    size_t n_trie;

    int n_norm;
    wan_norm_step norm[WAN_TOK_MAX_NORM];
    wan_charsmap charsmap; /* used by the Precompiled step (at most one)                      */

    bool has_metaspace;
    uint32_t replacement;  /* Metaspace replacement character (U+2581)                        */
    int prepend;           /* WAN_PREPEND_*                                                   */
    bool split;            /* Metaspace split                                                 */
    bool whitespace_split; /* a WhitespaceSplit pre-tokenizer runs before Metaspace           */

    int n_added;
    wan_added_token *added;

    int n_before, n_after; /* template `… $A …`: special ids before and after the sequence   */
    int32_t before[WAN_TOK_MAX_TEMPLATE], after[WAN_TOK_MAX_TEMPLATE];
    int32_t pad_id;        /* id of "<pad>", -1 when absent                                   */
};

/* Parses a tokenizer.json held in memory (`source` names it in messages). */
wan_status wan_tokenizer_from_json(const char *json, size_t len, const char *source, wan_tokenizer **out,
                                   wan_error *err);
/* Parses a SentencePiece model held in memory and builds what T5Converter would write for it, with
 * `extra_ids` sentinel tokens and prepend scheme "always" (legacy = 1) or "first" (legacy = 0). */
wan_status wan_tokenizer_from_spm(const uint8_t *buf, size_t len, const char *source, int extra_ids, int legacy,
                                  wan_tokenizer **out, wan_error *err);

/* Shared by both loaders (tokenizer.c): builds the piece hash, the trie, byte ids and min score after
 * pieces/scores are filled. */
wan_status wan_tokenizer_finish(wan_tokenizer *t, wan_error *err);
/* Looks a piece up by its bytes; -1 when absent (the last of duplicate pieces wins, as in HF). */
int32_t wan_tokenizer_piece_id(const wan_tokenizer *t, const char *s, size_t n);
/* Validates and installs a Precompiled charsmap (copied). */
wan_status wan_charsmap_init(wan_charsmap *cm, const uint8_t *blob, size_t len, const char *source, wan_error *err);

/* Encodes text[0..len) (any bytes; invalid UTF-8 becomes U+FFFD) into the ids of the sequence plus the
 * template's special tokens, without truncation or padding. *ids is a counted allocation. */
wan_status wan_tokenizer_encode_ids(const wan_tokenizer *t, const char *text, size_t len, int32_t **ids,
                                    size_t *n, wan_error *err);

/* Applies the normalizer sequence to s[0..n) (valid UTF-8) into out. Exposed for tests. */
void wan_tokenizer_normalize(const wan_tokenizer *t, const char *s, size_t n, wan_buf *out);

/* ---- prompt cleaning (prompt.c) ----------------------------------------------------------------- */

/* WanPipeline's prompt_clean on text[0..len): [ftfy subset] → html.unescape twice → strip → `\s+` → " "
 * → strip. Returns a counted NUL-terminated string in *out. */
wan_status wan_prompt_clean_impl(const char *text, size_t len, bool ftfy, char **out, size_t *out_len,
                                 wan_error *err);
/* CPython html.unescape on code points, appended to *out / *out_n (counted, may be realloc'd). */
wan_status wan_html_unescape(const uint32_t *s, size_t n, uint32_t **out, size_t *out_n);

#endif /* WAN_TOKENIZER_H */
