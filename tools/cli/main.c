/* main.c — `wan`: dispatch to the subcommands. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} k_commands[] = {
    { "info", cmd_info, "info PATH                 describe a model folder or safetensors file" },
    { "encode-prompt", cmd_encode_prompt, "encode-prompt ...         prompt -> prompt_embeds with the umT5 encoder" },
    { "generate", cmd_generate, "generate --model DIR --prompt TEXT [-o out.mp4] ...  text to video" },
    { "convert", cmd_convert, "convert SRC DST [--dtype bf16] [--quantize q8_0] [--layout diffusers|original]  rewrite a model" },
    { "run", cmd_run, "run COMPONENT ...         run one network on tensors from a safetensors file" },
    { "tokenize", cmd_tokenize, "tokenize --tokenizer PATH  prompt -> umT5 token ids (JSON)" },
    { "eval", cmd_eval, "eval --model DIR [...]    prompt adherence of a shapes-world model (tools/shapes/)" },
    { "serve", cmd_serve, "serve --model DIR [...]   HTTP video generation service (OpenAI Videos API)" },
};

static void usage(FILE *f)
{
    fprintf(f, "wan %s — Wan2.x text-to-video inference in C\n\nusage:\n", wan_version());
    for (size_t i = 0; i < sizeof k_commands / sizeof *k_commands; i++)
        fprintf(f, "  wan %s\n", k_commands[i].help);
    fprintf(f, "\nRun 'wan COMMAND --help' for the options of a command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("wan %s\n", wan_version());
        return 0;
    }
    wan_log_set(cli_log_to_stderr, NULL, WAN_LOG_WARN);
    for (size_t i = 0; i < sizeof k_commands / sizeof *k_commands; i++)
        if (!strcmp(argv[1], k_commands[i].name))
            return k_commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "wan: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
