/* cli_lora.c — parsing of the LoRA options shared by the commands that generate. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_lora_add(cli_loras *l, const char *arg)
{
    if (l->n >= CLI_MAX_LORAS) {
        fprintf(stderr, "--lora: at most %d adapters\n", CLI_MAX_LORAS);
        return 0;
    }
    char *path = l->path[l->n];
    if (snprintf(path, sizeof l->path[0], "%s", arg) >= (int)sizeof l->path[0]) {
        fprintf(stderr, "--lora: path too long\n");
        return 0;
    }
    wan_lora_use *u = &l->use[l->n];
    memset(u, 0, sizeof *u);
    u->scale = 1.0;
    u->target = WAN_LORA_DEFAULT;
    char *at = strrchr(path, '@');
    if (at) { /* a suffix that is not a target stays part of the path */
        static const struct { const char *name; wan_lora_target t; } k[] = {
            { "high", WAN_LORA_HIGH }, { "low", WAN_LORA_LOW }, { "both", WAN_LORA_BOTH } };
        for (size_t i = 0; i < sizeof k / sizeof *k; i++)
            if (strcmp(at + 1, k[i].name) == 0) {
                u->target = k[i].t;
                *at = 0;
            }
    }
    char *colon = strrchr(path, ':');
    if (colon && colon[1]) {
        char *end;
        errno = 0;
        double s = strtod(colon + 1, &end);
        if (!*end && !errno) {
            u->scale = s;
            *colon = 0;
        }
    }
    if (!path[0]) {
        fprintf(stderr, "--lora '%s': no file name\n", arg);
        return 0;
    }
    u->path = path;
    l->n++;
    return 1;
}

int cli_lora_mode(const char *s, int *mode)
{
    if (!strcmp(s, "runtime"))
        *mode = WAN_LORA_RUNTIME;
    else if (!strcmp(s, "merge"))
        *mode = WAN_LORA_MERGE;
    else if (!strcmp(s, "merge-f32"))
        *mode = WAN_LORA_MERGE_F32;
    else
        return 0;
    return 1;
}

char *cli_lora_sidecar(const cli_loras *l, char *json)
{
    static const char *const target[] = { "default (high)", "high", "low", "both" };
    char *end = json ? strrchr(json, '}') : NULL;
    if (!end || l->n == 0)
        return json;
    size_t cap = strlen(json) + 64 + (size_t)l->n * (2 * sizeof l->path[0] + 96), n = (size_t)(end - json);
    char *out = malloc(cap);
    if (!out)
        return json;
    while (n && (json[n - 1] == '\n' || json[n - 1] == ' '))
        n--;
    memcpy(out, json, n);
    n += (size_t)snprintf(out + n, cap - n, ",\n  \"loras\": [");
    for (int i = 0; i < l->n; i++) {
        char *p = cli_json_escape(l->use[i].path);
        n += (size_t)snprintf(out + n, cap - n, "%s{\"path\": \"%s\", \"strength\": %g, \"target\": \"%s\"}",
                              i ? ", " : "", p ? p : "", l->use[i].scale, target[l->use[i].target]);
        free(p);
    }
    snprintf(out + n, cap - n, "]\n}\n");
    free(json);
    return out;
}
