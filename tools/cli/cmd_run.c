/* cmd_run.c — `wan run COMPONENT ...`: one network on tensors from a safetensors file. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} k_run[] = {
    { "text-encoder", cmd_run_text_encoder,
      "text-encoder --model PATH --in IN.safetensors --out OUT.safetensors   umT5: input_ids -> last_hidden_state" },
    { "transformer", cmd_run_transformer,
      "transformer --model PATH [--expert high|low] --in IN.safetensors --out OUT.safetensors [--threads N] "
      "[--device cpu|cuda|cuda:N]   "
      "DiT: hidden_states, timestep, encoder_hidden_states -> sample" },
    { "video", cmd_run_video,
      "video --in IN.safetensors --out OUT.mp4|.webm|.webp|.gif|DIR [--fps N] [--crf N]   "
      "frames U8 [F,H,W,3] or VAE output F32 [3,F,H,W] -> video file" },
    { "vae-decode", cmd_run_vae_decode,
      "vae-decode --model PATH --in IN.safetensors --out OUT.safetensors [--tiled]   VAE: z -> sample" },
    { "vae-encode", cmd_run_vae_encode,
      "vae-encode --model PATH --in IN.safetensors --out OUT.safetensors   VAE: x -> latent_dist_mean" },
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
