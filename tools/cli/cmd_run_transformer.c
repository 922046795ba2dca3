/* cmd_run_transformer.c — `wan run transformer`: one DiT forward on tensors from a safetensors file. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int usage(FILE *f)
{
    fprintf(f,
            "usage: wan run transformer --model DIR [--expert high|low] --in IN.safetensors --out OUT.safetensors\n"
            "                           [--threads N] [--device cpu|cuda|cuda:N]\n"
            "  --model    a pipeline folder, a transformer component folder, or an original Wan expert folder\n"
            "  --expert   high: `transformer` (default), low: `transformer_2`\n"
            "  --in       hidden_states F32 [B,C,F,H,W], timestep [B] or [B,tokens] (any int or float dtype),\n"
            "             encoder_hidden_states [B,L,text_dim]\n"
            "  --out      writes sample F32 [B,C,F,H,W]\n"
            "  --threads  worker threads (default: all)\n"
            "  --device   where the forward runs: cpu (default), cuda or cuda:N (a `make cuda` build)\n");
    return f == stdout ? 0 : 2;
}

int cmd_run_transformer(int argc, char **argv)
{
    const char *model_dir = NULL, *in = NULL, *outp = NULL, *expert_s = "high", *device = NULL;
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return usage(stdout);
        if (!v) {
            fprintf(stderr, "wan run transformer: %s needs a value (or is unknown)\n", a);
            return usage(stderr);
        }
        if (!strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--expert")) expert_s = v;
        else if (!strcmp(a, "--in")) in = v;
        else if (!strcmp(a, "--out")) outp = v;
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--device")) device = v;
        else {
            fprintf(stderr, "wan run transformer: unknown option %s\n", a);
            return usage(stderr);
        }
        i++;
    }
    if (!model_dir || !in || !outp)
        return usage(stderr);
    int expert = !strcmp(expert_s, "high") ? 0 : !strcmp(expert_s, "low") ? 1 : -1;
    if (expert < 0) {
        fprintf(stderr, "wan run transformer: --expert must be high or low, not '%s'\n", expert_s);
        return 2;
    }

    char err[1024] = "";
    wan_model_t *m = NULL;
    wan_host_tensor x = { 0 }, t = { 0 }, ctx = { 0 }, out = { 0 };
    wan_status rc = wan_model_load(model_dir, NULL, &m, err, sizeof err);
    if (rc == WAN_OK)
        rc = wan_safetensors_read(in, "hidden_states", WAN_DTYPE_F32, &x, err, sizeof err);
    if (rc == WAN_OK) {
        rc = wan_safetensors_read(in, "timestep", WAN_DTYPE_I64, &t, err, sizeof err);
        if (rc == WAN_ERR_SHAPE) /* stored as a float dtype */
            rc = wan_safetensors_read(in, "timestep", WAN_DTYPE_F32, &t, err, sizeof err);
    }
    if (rc == WAN_OK)
        rc = wan_safetensors_read(in, "encoder_hidden_states", WAN_DTYPE_F32, &ctx, err, sizeof err);
    double t0 = cli_now_s();
    if (rc == WAN_OK)
        rc = wan_transformer_forward_device(device, m, expert, &x, &t, &ctx, &out, threads, err, sizeof err);
    double dt = cli_now_s() - t0;
    if (rc == WAN_OK)
        rc = wan_safetensors_write(outp, &out, 1, err, sizeof err);
    if (rc == WAN_OK)
        fprintf(stderr, "wan run transformer: %s expert, sample [%lld, %lld, %lld, %lld, %lld] in %.3f s -> %s\n",
                expert ? "low-noise" : "high-noise", (long long)out.shape[0], (long long)out.shape[1],
                (long long)out.shape[2], (long long)out.shape[3], (long long)out.shape[4], dt, outp);
    else
        fprintf(stderr, "wan run transformer: %s\n", err);
    wan_host_tensor_free(&x);
    wan_host_tensor_free(&t);
    wan_host_tensor_free(&ctx);
    wan_host_tensor_free(&out);
    wan_model_free(m);
    return cli_exit_code(rc);
}
