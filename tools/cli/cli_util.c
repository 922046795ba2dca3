/* cli_util.c — helpers shared by the subcommands. */
#include "cli.h"

#include <stdio.h>

void cli_log_to_stderr(wan_log_level level, const char *msg, void *user)
{
    (void)user;
    static const char *tag[] = { "error", "warning", "info", "debug" };
    fprintf(stderr, "wan: %s: %s\n", tag[level], msg);
}

int cli_exit_code(wan_status rc)
{
    return rc == WAN_OK ? 0 : rc == WAN_ERR_INVALID_ARG ? 2 : 1;
}

const char *cli_bytes(int64_t n, char *buf, size_t len)
{
    static const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    double v = (double)n;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, len, u ? "%.2f %s" : "%.0f %s", v, unit[u]);
    return buf;
}
