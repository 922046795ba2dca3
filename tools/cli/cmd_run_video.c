/* cmd_run_video.c — `wan run video`: frames (or a decoded video) from a safetensors file to a video file,
 * through wan_video_postprocess + wan_video_write. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char k_usage[] =
    "usage: wan run video --in IN.safetensors --out OUT [--fps N] [--crf N] [--quality N] [--json TEXT]\n"
    "\n"
    "IN holds either `frames` U8 [F,H,W,3] or `video` F32 [3,F,H,W] / [1,3,F,H,W] in [-1,1] (the VAE\n"
    "output, turned into uint8 as diffusers' export_to_video does). OUT's extension picks the container:\n"
    ".mp4 .mkv (H.264) .webm (VP9) .webp .gif .safetensors, or no extension for a folder of PNG frames.\n"
    "--fps defaults to 16, --crf to the codec default (x264 25), --quality (WebP) to 90.\n"
    "--json writes TEXT next to OUT (OUT with its extension replaced by .json).\n";

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi)
        return 0;
    *out = (int)v;
    return 1;
}

/* Reads `frames` U8 [F,H,W,3], or `video` F32 [(1,)3,F,H,W] post-processed, into *frames (malloc). */
static wan_status load_frames(const char *in, uint8_t **frames, int *F, int *H, int *W, char *err, size_t errlen)
{
    wan_host_tensor t = { 0 };
    wan_status rc = wan_safetensors_read(in, "frames", WAN_DTYPE_U8, &t, err, errlen);
    if (rc == WAN_OK) {
        if (t.ndim != 4 || t.shape[3] != 3 || t.shape[0] < 1 || t.shape[1] < 1 || t.shape[2] < 1) {
            snprintf(err, errlen, "%s: 'frames' must be U8 [F,H,W,3]", in);
            wan_host_tensor_free(&t);
            return WAN_ERR_SHAPE;
        }
        *F = (int)t.shape[0], *H = (int)t.shape[1], *W = (int)t.shape[2];
        size_t n = (size_t)wan_host_tensor_numel(&t);
        *frames = malloc(n);
        if (*frames)
            memcpy(*frames, t.data, n);
        wan_host_tensor_free(&t);
        return *frames ? WAN_OK : WAN_ERR_NOMEM;
    }
    rc = wan_safetensors_read(in, "video", WAN_DTYPE_F32, &t, err, errlen);
    if (rc != WAN_OK) {
        snprintf(err, errlen, "%s: needs a tensor 'frames' (U8) or 'video' (F32)", in);
        return rc;
    }
    int off = t.ndim == 5 && t.shape[0] == 1;
    if (t.ndim != 4 + off || t.shape[off] != 3) {
        snprintf(err, errlen, "%s: 'video' must be F32 [3,F,H,W] or [1,3,F,H,W]", in);
        wan_host_tensor_free(&t);
        return WAN_ERR_SHAPE;
    }
    *F = (int)t.shape[off + 1], *H = (int)t.shape[off + 2], *W = (int)t.shape[off + 3];
    *frames = malloc((size_t)*F * (size_t)*H * (size_t)*W * 3);
    rc = *frames ? wan_video_postprocess(t.data, *F, *H, *W, WAN_FRAMES_TRUNCATE, *frames, err, errlen)
                 : WAN_ERR_NOMEM;
    wan_host_tensor_free(&t);
    return rc;
}

int cmd_run_video(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *json = NULL;
    int fps = 16;
    wan_video_options opts = wan_video_default_options();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(k_usage, stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "wan run video: %s needs a value\n%s", a, k_usage);
            return 2;
        }
        const char *v = argv[++i];
        int ok = 1;
        if (!strcmp(a, "--in"))
            in = v;
        else if (!strcmp(a, "--out"))
            out = v;
        else if (!strcmp(a, "--json"))
            json = v;
        else if (!strcmp(a, "--fps"))
            ok = parse_int(v, 1, 1000, &fps);
        else if (!strcmp(a, "--crf"))
            ok = parse_int(v, 0, 63, &opts.crf);
        else if (!strcmp(a, "--quality"))
            ok = parse_int(v, 0, 101, &opts.quality);
        else {
            fprintf(stderr, "wan run video: unknown option '%s'\n%s", a, k_usage);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "wan run video: bad value '%s' for %s\n", v, a);
            return 2;
        }
    }
    if (!in || !out) {
        fprintf(stderr, "wan run video: --in and --out are required\n%s", k_usage);
        return 2;
    }
    char err[1024] = "";
    uint8_t *frames = NULL;
    int F = 0, H = 0, W = 0;
    wan_status rc = load_frames(in, &frames, &F, &H, &W, err, sizeof err);
    if (rc == WAN_OK)
        rc = wan_video_write(out, frames, F, H, W, (double)fps, &opts, err, sizeof err);
    if (rc == WAN_OK && json)
        rc = wan_video_write_sidecar(out, json, err, sizeof err);
    free(frames);
    if (rc != WAN_OK) {
        fprintf(stderr, "wan run video: %s\n", err);
        return cli_exit_code(rc);
    }
    printf("wrote %s: %d frames, %dx%d, %d fps\n", out, F, W, H, fps);
    return 0;
}
