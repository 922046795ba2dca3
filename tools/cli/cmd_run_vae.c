/* cmd_run_vae.c — `wan run vae-decode` / `wan run vae-encode`: the video VAE on tensors from a
 * safetensors file (z -> sample, x -> latent_dist_mean). */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int usage(FILE *f, int decode)
{
    if (decode)
        fprintf(f,
                "usage: wan run vae-decode --model PATH --in IN.safetensors --out OUT.safetensors [--tiled]\n"
                "                          [--tile PX] [--tile-stride PX] [--threads N]\n"
                "  --model        a pipeline folder, a vae/ component folder, or one VAE .safetensors file\n"
                "                 (diffusers or original Wan names)\n"
                "  --in           z F32 [B,z_dim,T,h,w]: the de-normalised latent vae.decode takes\n"
                "  --out          writes sample F32 [B,3,1+4(T-1),H,W] in [-1,1]\n"
                "  --tiled        diffusers' tiled decode (enable_tiling)\n"
                "  --tile         tile size in pixels (default 256); --tile-stride: stride (default 192)\n"
                "  --threads      worker threads (default: all)\n");
    else
        fprintf(f,
                "usage: wan run vae-encode --model PATH --in IN.safetensors --out OUT.safetensors [--threads N]\n"
                "  --model        a pipeline folder, a vae/ component folder, or one VAE .safetensors file\n"
                "  --in           x F32 [B,3,F,H,W] in [-1,1]\n"
                "  --out          writes latent_dist_mean F32 [B,z_dim,1+(F-1)/4,H/s,W/s]\n"
                "  --threads      worker threads (default: all)\n");
    return f == stdout ? 0 : 2;
}

static int run(int argc, char **argv, int decode)
{
    const char *name = decode ? "vae-decode" : "vae-encode";
    const char *model_path = NULL, *in = NULL, *outp = NULL;
    wan_vae_params p = wan_vae_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return usage(stdout, decode);
        if (decode && !strcmp(a, "--tiled")) {
            p.tiled = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "wan run %s: %s needs a value (or is unknown)\n", name, a);
            return usage(stderr, decode);
        }
        if (!strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "--in")) in = v;
        else if (!strcmp(a, "--out")) outp = v;
        else if (!strcmp(a, "--threads")) p.n_threads = atoi(v);
        else if (decode && !strcmp(a, "--tile")) p.tile_sample_min_height = p.tile_sample_min_width = atoi(v);
        else if (decode && !strcmp(a, "--tile-stride"))
            p.tile_sample_stride_height = p.tile_sample_stride_width = atoi(v);
        else {
            fprintf(stderr, "wan run %s: unknown option %s\n", name, a);
            return usage(stderr, decode);
        }
        i++;
    }
    if (!model_path || !in || !outp)
        return usage(stderr, decode);

    char err[1024] = "";
    wan_model_t *m = NULL;
    wan_host_tensor x = { 0 }, out = { 0 };
    wan_status rc = wan_model_load(model_path, NULL, &m, err, sizeof err);
    if (rc == WAN_OK)
        rc = wan_safetensors_read(in, decode ? "z" : "x", WAN_DTYPE_F32, &x, err, sizeof err);
    double t0 = cli_now_s();
    if (rc == WAN_OK)
        rc = decode ? wan_vae_decode(m, &x, &p, &out, err, sizeof err)
                    : wan_vae_encode(m, &x, &p, &out, err, sizeof err);
    double dt = cli_now_s() - t0;
    if (rc == WAN_OK)
        rc = wan_safetensors_write(outp, &out, 1, err, sizeof err);
    if (rc == WAN_OK) {
        char b[32];
        fprintf(stderr, "wan run %s: %s [%lld, %lld, %lld, %lld, %lld] in %.3f s (peak %s) -> %s\n", name,
                out.name, (long long)out.shape[0], (long long)out.shape[1], (long long)out.shape[2],
                (long long)out.shape[3], (long long)out.shape[4], dt, cli_bytes((int64_t)wan_mem_peak(), b, sizeof b),
                outp);
    } else {
        fprintf(stderr, "wan run %s: %s\n", name, err);
    }
    wan_host_tensor_free(&x);
    wan_host_tensor_free(&out);
    wan_model_free(m);
    return cli_exit_code(rc);
}

int cmd_run_vae_decode(int argc, char **argv)
{
    return run(argc, argv, 1);
}

int cmd_run_vae_encode(int argc, char **argv)
{
    return run(argc, argv, 0);
}
