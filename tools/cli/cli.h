/* cli.h — the `wan` command: one function per subcommand, built on wan.h only. */
#ifndef WAN_CLI_H
#define WAN_CLI_H

#include "wan.h"

/* Each subcommand gets argv after its own name (argv[0] is the subcommand) and returns the process
 * exit code: 0 ok, 1 runtime failure, 2 bad usage. */
int cmd_info(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_serve(int argc, char **argv); /* tools/server/server.c */
int cmd_encode_prompt(int argc, char **argv);
int cmd_run_text_encoder(int argc, char **argv); /* `wan run text-encoder` */
int cmd_run_transformer(int argc, char **argv);  /* `wan run transformer` */
int cmd_run_video(int argc, char **argv);        /* `wan run video` */
int cmd_generate(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_eval(int argc, char **argv); /* `wan eval`: prompt adherence on the shapes world (tools/shapes/) */
int cmd_run_vae_decode(int argc, char **argv); /* `wan run vae-decode` */
int cmd_run_vae_encode(int argc, char **argv); /* `wan run vae-encode` */

/* Shared helpers (cli_util.c). */
void cli_log_to_stderr(wan_log_level level, const char *msg, void *user);
/* Exit code for a status: 2 for invalid arguments, 1 otherwise. */
int cli_exit_code(wan_status rc);
/* Byte offset of the first invalid UTF-8 sequence in s[0..n), or (size_t)-1 when valid. */
size_t cli_utf8_invalid_at(const char *s, size_t n);
/* JSON string escaping (quotes, backslashes, control characters); malloc'ed, NULL on failure. */
char *cli_json_escape(const char *s);
/* Seconds on the monotonic clock, for timing a command. */
double cli_now_s(void);
/* Parses a subcommand's `--key value` options, plus --help/-h (prints `usage` to stdout) and, when quiet is
 * not NULL, the flag --quiet (sets *quiet). Each pair goes to set(key, value, user), which returns 1 (taken),
 * 0 (bad value) or -1 (unknown option); errors are printed as "<cmd>: ...". Returns 0, 1 (help printed) or 2
 * (bad usage). */
int cli_parse_opts(int argc, char **argv, const char *cmd, const char *usage, int *quiet,
                   int (*set)(const char *key, const char *val, void *user), void *user);
/* Formats bytes as "1.23 GiB" into buf. */
const char *cli_bytes(int64_t n, char *buf, size_t len);

/* LoRA options (cli_lora.c): `--lora FILE[:STRENGTH][@high|@low|@both]`, repeatable, and `--lora-mode`. */
#define CLI_MAX_LORAS 16
typedef struct cli_loras {
    wan_lora_use use[CLI_MAX_LORAS];
    char path[CLI_MAX_LORAS][1024];
    int n;
} cli_loras;
/* Adds one --lora value; returns 0 and prints why on a bad value. */
int cli_lora_add(cli_loras *l, const char *arg);
/* "runtime", "merge" or "merge-f32" -> a wan_lora_mode; returns 0 for anything else. */
int cli_lora_mode(const char *s, int *mode);
/* Adds a "loras" member to the generation sidecar JSON (malloc'ed; freed and replaced); json unchanged
 * when there are none. */
char *cli_lora_sidecar(const cli_loras *l, char *json);

#endif
