/* cmd_run.c — `wan run COMPONENT ...`: one network on tensors from a safetensors file. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} k_run[] = {
    { NULL, NULL, NULL }, /* sentinel; components add their lines above it */
};

int cmd_run(int argc, char **argv)
{
    if (argc >= 2)
        for (size_t i = 0; k_run[i].name; i++)
            if (!strcmp(argv[1], k_run[i].name))
                return k_run[i].fn(argc - 1, argv + 1);
    FILE *f = (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) ? stdout : stderr;
    fprintf(f, "usage:\n");
    for (size_t i = 0; k_run[i].name; i++)
        fprintf(f, "  wan run %s\n", k_run[i].help);
    return f == stdout ? 0 : 2;
}
