/* cmd_convert.c — `wan convert SRC DST`: rewrite a model as a diffusers WanPipeline folder (or in the
 * original Wan layout), optionally in another dtype, with sharded safetensors. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: wan convert SRC DST [--dtype f32|bf16|f16] [--shard-size 5GB] [--layout diffusers|original]\n"
            "                   [--quantize q8_0|q4_0] [--quiet]\n"
            "  SRC  any model `wan info` reads: a diffusers folder, an original Wan release (.safetensors or\n"
            "       .pth files), a single .safetensors or .pth file\n"
            "  DST  the folder to create (must not exist); written as DST.tmp-XXXXXX, then renamed\n"
            "  --dtype       convert every float tensor (default: keep each tensor's dtype); a q8_0 model is\n"
            "                written back as floats of this dtype unless --quantize is given too\n"
            "  --quantize    q8_0: the linear weights of the transformer and text encoder blocks as int8 with\n"
            "                one F16 scale per 32 values (~8.5 bits a weight; a wan.c format; CUDA gets it as bf16);\n"
            "                q4_0: 4-bit values, ~4.5 bits a weight, coarser: where q8_0 does not fit in memory\n"
            "  --shard-size  largest shard, e.g. 5GB (default), 500MB, 2GiB\n"
            "  --layout      diffusers (default: WanPipeline.from_pretrained loads it) or original (the Wan\n"
            "                release layout: high_noise_model/, low_noise_model/, Wan2.x_VAE, umT5, google/)\n");
}

/* "5GB", "500MB", "2GiB", "123" (bytes) -> bytes; -1 when malformed. */
static int64_t parse_size(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v > 0))
        return -1;
    static const struct {
        const char *unit;
        double mul;
    } units[] = { { "", 1 },      { "B", 1 },      { "KB", 1e3 },         { "MB", 1e6 },
                  { "GB", 1e9 },  { "TB", 1e12 },  { "KIB", 1024.0 },     { "MIB", 1048576.0 },
                  { "GIB", 1073741824.0 }, { "TIB", 1099511627776.0 } };
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        if (!strcasecmp(end, units[i].unit)) {
            double b = v * units[i].mul;
            return b >= 1 && b < 9e18 ? (int64_t)b : -1;
        }
    return -1;
}

int cmd_convert(int argc, char **argv)
{
    const char *src = NULL, *dst = NULL;
    wan_convert_params p = wan_convert_default_params();
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            quiet = 1;
        } else if (!strcmp(a, "--dtype") && v) {
            i++;
            if (!strcasecmp(v, "f32") || !strcasecmp(v, "fp32") || !strcasecmp(v, "float32"))
                p.dtype = WAN_DTYPE_F32;
            else if (!strcasecmp(v, "bf16") || !strcasecmp(v, "bfloat16"))
                p.dtype = WAN_DTYPE_BF16;
            else if (!strcasecmp(v, "f16") || !strcasecmp(v, "fp16") || !strcasecmp(v, "float16"))
                p.dtype = WAN_DTYPE_F16;
            else {
                fprintf(stderr, "wan convert: --dtype '%s': use f32, bf16 or f16\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--quantize") && v) {
            i++;
            if (!strcasecmp(v, "q8_0") || !strcasecmp(v, "q8"))
                p.quantize = WAN_QUANT_Q8_0;
            else if (!strcasecmp(v, "q4_0") || !strcasecmp(v, "q4"))
                p.quantize = WAN_QUANT_Q4_0;
            else if (!strcasecmp(v, "none"))
                p.quantize = WAN_QUANT_NONE;
            else {
                fprintf(stderr, "wan convert: --quantize '%s': use q8_0, q4_0 (or none)\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--shard-size") && v) {
            i++;
            if ((p.shard_bytes = parse_size(v)) <= 0) {
                fprintf(stderr, "wan convert: --shard-size '%s': use a size such as 5GB, 500MB or 2GiB\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--layout") && v) {
            i++;
            if (!strcmp(v, "diffusers"))
                p.layout = WAN_CONVERT_DIFFUSERS;
            else if (!strcmp(v, "original"))
                p.layout = WAN_CONVERT_ORIGINAL;
            else {
                fprintf(stderr, "wan convert: --layout '%s': use diffusers or original\n", v);
                return 2;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "wan convert: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!src) {
            src = a;
        } else if (!dst) {
            dst = a;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!src || !dst) {
        usage(stderr);
        return 2;
    }
    if (!quiet)
        wan_log_set(cli_log_to_stderr, NULL, WAN_LOG_INFO);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char err[1024];
    wan_model_t *m = NULL;
    wan_status rc = wan_model_load(src, NULL, &m, err, sizeof err);
    if (rc != WAN_OK) {
        fprintf(stderr, "wan convert: %s\n", err);
        return cli_exit_code(rc);
    }
    rc = wan_model_convert(m, dst, &p, err, sizeof err);
    wan_model_free(m);
    if (rc != WAN_OK) {
        fprintf(stderr, "wan convert: %s\n", err);
        return cli_exit_code(rc);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (!quiet)
        fprintf(stderr, "wan convert: wrote %s (%s layout) in %.2f s\n", dst,
                p.layout == WAN_CONVERT_DIFFUSERS ? "diffusers" : "original",
                (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    return 0;
}
