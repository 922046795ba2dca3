/* cli_util.c — helpers shared by the subcommands. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

size_t cli_utf8_invalid_at(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = u[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + len > n)
            return i;
        unsigned cp = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
        for (size_t k = 1; k < len; k++) {
            if ((u[i + k] & 0xc0) != 0x80)
                return i;
            cp = (cp << 6) | (u[i + k] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += len;
    }
    return (size_t)-1;
}

char *cli_json_escape(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(6 * n + 1), *q = o;
    if (!o)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            *q++ = '\\';
            *q++ = (char)*p;
        } else if (*p < 0x20) {
            q += sprintf(q, "\\u%04x", *p);
        } else {
            *q++ = (char)*p;
        }
    }
    *q = 0;
    return o;
}

int cli_parse_opts(int argc, char **argv, const char *cmd, const char *usage, int *quiet,
                   int (*set)(const char *key, const char *val, void *user), void *user)
{
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "--help") || !strcmp(k, "-h")) {
            fputs(usage, stdout);
            return 1;
        }
        if (quiet && !strcmp(k, "--quiet")) {
            *quiet = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "%s: %s needs a value\n\n%s", cmd, k, usage);
            return 2;
        }
        const char *v = argv[++i];
        const int r = set(k, v, user);
        if (r < 0) {
            fprintf(stderr, "%s: unknown option '%s'\n\n%s", cmd, k, usage);
            return 2;
        }
        if (r == 0) {
            fprintf(stderr, "%s: bad value '%s' for %s\n", cmd, v, k);
            return 2;
        }
    }
    return 0;
}

double cli_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
