/* cmd_encode_prompt.c — the text side on its own: `wan encode-prompt` (prompt -> prompt_embeds as
 * WanPipeline.encode_prompt) and `wan run text-encoder` (input_ids/attention_mask -> last_hidden_state). */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Value of option argv[*i] (advancing *i), or NULL with a message when it is the last argument. */
static const char *opt_value(int argc, char **argv, int *i, const char *cmd)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "wan %s: %s needs a value\n", cmd, argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

static int parse_threads(const char *s, int *out, const char *cmd)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == 0 || *end || v < 0 || v > 4096) {
        fprintf(stderr, "wan %s: --threads wants an integer in [0, 4096], got '%s'\n", cmd, s);
        return 0;
    }
    *out = (int)v;
    return 1;
}

/* ---- wan run text-encoder ------------------------------------------------------------------- */

static const char k_run_usage[] =
    "usage: wan run text-encoder --model PATH --in IN.safetensors --out OUT.safetensors [--threads N]\n"
    "\n"
    "IN holds input_ids [1,S] (integers) and optionally attention_mask [1,S] (default: all ones).\n"
    "OUT gets last_hidden_state F32 [1,S,d_model] (transformers' UMT5EncoderModel output, padding rows\n"
    "included) and, when the mask is ones then zeros, prompt_embeds F32 [1,S,d_model] as WanPipeline's\n"
    "_get_t5_prompt_embeds (encoded on the real tokens, rows from the mask sum on exactly zero).\n";

/* L when mask is 1..1 0..0 (L >= 1), else 0. */
static int mask_prefix_len(const int64_t *mask, int64_t S)
{
    int64_t L = 0;
    while (L < S && mask[L])
        L++;
    for (int64_t j = L; j < S; j++)
        if (mask[j])
            return 0;
    return (int)L;
}

static int run_text_encoder(const char *model_path, const char *in, const char *out, int n_threads)
{
    char err[1024];
    wan_model_t *m = NULL;
    wan_host_tensor ids = { 0 }, mask = { 0 }, res[2];
    memset(res, 0, sizeof res);
    int n_out = 0;
    wan_status rc = wan_safetensors_read(in, "input_ids", WAN_DTYPE_I64, &ids, err, sizeof err);
    if (rc == WAN_OK && (ids.ndim != 2 || ids.shape[0] != 1 || ids.shape[1] < 1 || ids.shape[1] > 1 << 20)) {
        snprintf(err, sizeof err, "%s: input_ids must be [1, S] with 1 <= S", in);
        rc = WAN_ERR_SHAPE;
    }
    int64_t S = rc == WAN_OK ? ids.shape[1] : 0;
    if (rc == WAN_OK) {
        wan_status mr = wan_safetensors_read(in, "attention_mask", WAN_DTYPE_I64, &mask, err, sizeof err);
        if (mr == WAN_OK && wan_host_tensor_numel(&mask) != S) {
            snprintf(err, sizeof err, "%s: attention_mask must have the shape of input_ids [1, %lld]", in,
                     (long long)S);
            rc = WAN_ERR_SHAPE;
        } else if (mr != WAN_OK && mr != WAN_ERR_NOT_FOUND) {
            rc = mr;
        }
    }
    if (rc == WAN_OK)
        rc = wan_model_load(model_path, NULL, &m, err, sizeof err);
    if (rc == WAN_OK)
        rc = wan_text_encoder_forward(m, ids.data, mask.data, (int)S, &res[n_out], n_threads, err, sizeof err);
    if (rc == WAN_OK) {
        n_out++;
        int L = mask.data ? mask_prefix_len(mask.data, S) : (int)S;
        if (L > 0) {
            rc = wan_text_encode_ids(m, ids.data, L, (int)S, &res[n_out], n_threads, err, sizeof err);
            n_out += rc == WAN_OK;
        } else {
            fprintf(stderr, "wan run text-encoder: attention_mask is not ones then zeros; prompt_embeds skipped\n");
        }
    }
    if (rc == WAN_OK)
        rc = wan_safetensors_write(out, res, n_out, err, sizeof err);
    if (rc != WAN_OK)
        fprintf(stderr, "wan run text-encoder: %s\n", err);
    for (int i = 0; i < 2; i++)
        wan_host_tensor_free(&res[i]);
    wan_host_tensor_free(&ids);
    wan_host_tensor_free(&mask);
    wan_model_free(m);
    return cli_exit_code(rc);
}

int cmd_run_text_encoder(int argc, char **argv)
{
    const char *model = NULL, *in = NULL, *out = NULL;
    int n_threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(k_run_usage, stdout);
            return 0;
        }
        if (strcmp(a, "--model") && strcmp(a, "--in") && strcmp(a, "--out") && strcmp(a, "--threads")) {
            fprintf(stderr, "wan run text-encoder: unknown option '%s'\n%s", a, k_run_usage);
            return 2;
        }
        if (!(v = opt_value(argc, argv, &i, "run text-encoder")))
            return 2;
        if (!strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "--in"))
            in = v;
        else if (!strcmp(a, "--out"))
            out = v;
        else if (!parse_threads(v, &n_threads, "run text-encoder"))
            return 2;
    }
    if (!model || !in || !out) {
        fprintf(stderr, "wan run text-encoder: --model, --in and --out are required\n%s", k_run_usage);
        return 2;
    }
    return run_text_encoder(model, in, out, n_threads);
}

/* ---- wan encode-prompt ---------------------------------------------------------------------- */

static const char k_usage[] =
    "usage: wan encode-prompt --model PATH (--prompt TEXT | --ids N,N,...) --out OUT.safetensors\n"
    "                         [--negative-prompt TEXT | --negative-ids N,N,...] [--max-length N] [--threads N]\n"
    "\n"
    "Writes prompt_embeds F32 [1,max_length,text_dim] as WanPipeline.encode_prompt (cleaned, tokenized,\n"
    "encoded on the real tokens, zero-padded; max_length 512), and negative_prompt_embeds when a negative\n"
    "prompt is given (--negative-prompt \"\" is the empty prompt, diffusers' default).\n"
    "--ids gives the token ids directly (the tokenizer's output up to and including </s>, no padding).\n";

/* Parses "1,2,3" into a malloc'd array. */
static int64_t *parse_ids(const char *s, int *n)
{
    int cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    int64_t *ids = malloc(sizeof *ids * (size_t)cap);
    if (!ids)
        return NULL;
    *n = 0;
    const char *p = s;
    for (;;) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || v < 0) {
            free(ids);
            return NULL;
        }
        ids[(*n)++] = v;
        if (*end == 0)
            return ids;
        if (*end != ',') {
            free(ids);
            return NULL;
        }
        p = end + 1;
    }
}

typedef struct encode_args {
    const char *model, *out, *prompt, *negative, *ids, *negative_ids;
    int max_length, n_threads;
} encode_args;

static int parse_encode_args(int argc, char **argv, encode_args *a)
{
    const char *c = "encode-prompt";
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            fputs(k_usage, stdout);
            return 0;
        }
        static const char *const known[] = { "--model", "--out", "--prompt", "--negative-prompt", "--ids",
                                             "--negative-ids", "--max-length", "--threads" };
        size_t k = 0;
        while (k < sizeof known / sizeof *known && strcmp(o, known[k]))
            k++;
        if (k == sizeof known / sizeof *known) {
            fprintf(stderr, "wan %s: unknown option '%s'\n%s", c, o, k_usage);
            return 2;
        }
        if (!(v = opt_value(argc, argv, &i, c)))
            return 2;
        const char **dst[] = { &a->model, &a->out, &a->prompt, &a->negative, &a->ids, &a->negative_ids };
        if (k < 6) {
            *dst[k] = v;
        } else if (k == 6) {
            char *end;
            long n = strtol(v, &end, 10);
            if (!*v || *end || n < 1 || n > 1 << 16) {
                fprintf(stderr, "wan %s: --max-length wants an integer in [1, 65536], got '%s'\n", c, v);
                return 2;
            }
            a->max_length = (int)n;
        } else if (!parse_threads(v, &a->n_threads, c)) {
            return 2;
        }
    }
    if (!a->model || !a->out || !a->prompt == !a->ids || (a->negative && a->negative_ids)) {
        fprintf(stderr, "wan %s: --model, --out and exactly one of --prompt / --ids are required (and at most "
                "one of --negative-prompt / --negative-ids)\n%s", c, k_usage);
        return 2;
    }
    if (a->prompt && a->negative_ids) {
        fprintf(stderr, "wan %s: --negative-ids goes with --ids, --negative-prompt with --prompt\n", c);
        return 2;
    }
    return -1;
}

/* Encodes one id list ("1,2,3") into *out. */
static wan_status encode_id_list(const wan_model_t *m, const char *list, const encode_args *a, wan_host_tensor *out,
                                 char *err, size_t errlen)
{
    int n = 0;
    int64_t *ids = parse_ids(list, &n);
    if (!ids) {
        snprintf(err, errlen, "--ids/--negative-ids: '%s' is not a comma-separated list of token ids", list);
        return WAN_ERR_INVALID_ARG;
    }
    wan_status rc = wan_text_encode_ids(m, ids, n, a->max_length, out, a->n_threads, err, errlen);
    free(ids);
    return rc;
}

int cmd_encode_prompt(int argc, char **argv)
{
    encode_args a = { .max_length = 512 };
    int code = parse_encode_args(argc, argv, &a);
    if (code >= 0)
        return code;
    char err[1024];
    wan_model_t *m = NULL;
    wan_host_tensor res[2];
    memset(res, 0, sizeof res);
    int n_out = 0;
    wan_status rc = wan_model_load(a.model, NULL, &m, err, sizeof err);
    if (rc == WAN_OK && a.ids) {
        rc = encode_id_list(m, a.ids, &a, &res[n_out], err, sizeof err);
        n_out += rc == WAN_OK;
        if (rc == WAN_OK && a.negative_ids) {
            rc = encode_id_list(m, a.negative_ids, &a, &res[n_out], err, sizeof err);
            n_out += rc == WAN_OK;
        }
    } else if (rc == WAN_OK) {
        rc = wan_encode_prompt(m, NULL, a.prompt, a.negative, a.max_length, &res[0], a.negative ? &res[1] : NULL,
                               a.n_threads, err, sizeof err);
        n_out = rc == WAN_OK ? 1 + (a.negative != NULL) : 0;
    }
    if (n_out == 2)
        snprintf(res[1].name, sizeof res[1].name, "negative_prompt_embeds");
    if (n_out >= 1)
        snprintf(res[0].name, sizeof res[0].name, "prompt_embeds");
    if (rc == WAN_OK)
        rc = wan_safetensors_write(a.out, res, n_out, err, sizeof err);
    if (rc != WAN_OK)
        fprintf(stderr, "wan encode-prompt: %s\n", err);
    for (int i = 0; i < 2; i++)
        wan_host_tensor_free(&res[i]);
    wan_model_free(m);
    return cli_exit_code(rc);
}
