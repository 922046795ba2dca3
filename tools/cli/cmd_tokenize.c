/* cmd_tokenize.c — `wan tokenize`: prompt → umT5 token ids, as WanPipeline's tokenizer call produces them. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: wan tokenize --tokenizer PATH [--max-length N] [--no-pad] [--clean] [--no-ftfy]\n"
            "                    [--mask] [--pieces] (--stdin | TEXT)\n\n"
            "PATH: a tokenizer.json, a spiece.model, or a model folder holding either (also in tokenizer/).\n"
            "Prints the ids as a JSON array (the template's </s> included).\n"
            "  --max-length N  truncate to N ids and right-pad with <pad> to N (WanPipeline: 512);\n"
            "                  default: no truncation, no padding\n"
            "  --no-pad        with --max-length: truncate only\n"
            "  --clean         run WanPipeline's prompt_clean first (ftfy subset, html.unescape x2, whitespace)\n"
            "  --no-ftfy       with --clean: skip the ftfy subset (diffusers without ftfy installed)\n"
            "  --mask          print {\"ids\": [...], \"mask\": [...]} instead\n"
            "  --pieces        print {\"ids\": [...], \"pieces\": [...]} instead\n"
            "  --stdin         read one JSON string per input line, print one result per line\n");
}

typedef struct tok_opts {
    wan_encode_params p;
    int mask, pieces;
} tok_opts;

static void print_array(const int32_t *v, int n)
{
    putchar('[');
    for (int i = 0; i < n; i++)
        printf(i ? ",%d" : "%d", (int)v[i]);
    putchar(']');
}

static int encode_one(const wan_tokenizer_t *tok, const char *text, size_t len, const tok_opts *o)
{
    char err[1024];
    wan_tokens tk;
    wan_status rc = wan_tokenizer_encode(tok, text, len, &o->p, &tk, err, sizeof err);
    if (rc != WAN_OK) {
        fprintf(stderr, "wan tokenize: %s\n", err);
        return cli_exit_code(rc);
    }
    if (!o->mask && !o->pieces) {
        print_array(tk.ids, tk.n);
    } else {
        printf("{\"ids\":");
        print_array(tk.ids, tk.n);
        if (o->mask) {
            printf(",\"mask\":");
            print_array(tk.mask, tk.n);
        }
        if (o->pieces) {
            cJSON *arr = cJSON_CreateArray();
            for (int i = 0; i < tk.n; i++) {
                const char *p = wan_tokenizer_id_to_piece(tok, tk.ids[i]);
                cJSON_AddItemToArray(arr, cJSON_CreateString(p ? p : ""));
            }
            char *s = cJSON_PrintUnformatted(arr);
            printf(",\"pieces\":%s", s ? s : "[]");
            free(s);
            cJSON_Delete(arr);
        }
        putchar('}');
    }
    putchar('\n');
    wan_tokens_free(&tk);
    return 0;
}

static int run_stdin(const wan_tokenizer_t *tok, const tok_opts *o)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    int rc = 0;
    while ((n = getline(&line, &cap, stdin)) >= 0 && !rc) {
        lineno++;
        cJSON *j = cJSON_ParseWithLength(line, (size_t)n);
        if (!cJSON_IsString(j)) {
            fprintf(stderr, "wan tokenize: stdin line %ld is not a JSON string\n", lineno);
            rc = 2;
        } else {
            rc = encode_one(tok, j->valuestring, strlen(j->valuestring), o);
        }
        cJSON_Delete(j);
    }
    free(line);
    return rc;
}

int cmd_tokenize(int argc, char **argv)
{
    const char *path = NULL, *text = NULL;
    int use_stdin = 0;
    tok_opts o = { .p = wan_encode_default_params() };
    o.p.max_length = 0;
    o.p.clean = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--tokenizer") && i + 1 < argc) {
            path = argv[++i];
        } else if (!strcmp(a, "--max-length") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v <= 0 || v > 1000000) {
                fprintf(stderr, "wan tokenize: bad --max-length '%s'\n", argv[i]);
                return 2;
            }
            o.p.max_length = (int)v;
        } else if (!strcmp(a, "--no-pad")) {
            o.p.pad = 0;
        } else if (!strcmp(a, "--clean")) {
            o.p.clean = 1;
        } else if (!strcmp(a, "--no-ftfy")) {
            o.p.ftfy = 0;
        } else if (!strcmp(a, "--mask")) {
            o.mask = 1;
        } else if (!strcmp(a, "--pieces")) {
            o.pieces = 1;
        } else if (!strcmp(a, "--stdin")) {
            use_stdin = 1;
        } else if (a[0] == '-' && a[1] && !text) {
            fprintf(stderr, "wan tokenize: unknown option '%s'\n\n", a);
            usage(stderr);
            return 2;
        } else if (!text && i == argc - 1) {
            text = a;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!path || (use_stdin == (text != NULL))) {
        usage(stderr);
        return 2;
    }
    char err[1024];
    wan_tokenizer_t *tok = NULL;
    wan_status rc = wan_tokenizer_load(path, &tok, err, sizeof err);
    if (rc != WAN_OK) {
        fprintf(stderr, "wan tokenize: %s\n", err);
        return cli_exit_code(rc);
    }
    int ret = use_stdin ? run_stdin(tok, &o) : encode_one(tok, text, strlen(text), &o);
    wan_tokenizer_free(tok);
    return ret;
}
