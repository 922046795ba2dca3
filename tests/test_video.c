/* test_video.c — frame post-processing against diffusers (tools/ref/dump_sampler.py) and the video
 * writers, checked by reading the files back with libavformat/libavcodec: codec, pixel format, size,
 * frame count, frame rate, and the decoded pixels of the first frame. */
#define _XOPEN_SOURCE 700
#include "test.h"

#include "core.h"
#include "video_io.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

TEST(video_postprocess_matches_diffusers)
{
    const char *path = wan_test_fixture("video/postprocess.safetensors");
    char err[512] = "";
    wan_host_tensor v = { 0 }, tr = { 0 }, rd = { 0 };
    CHECK_RC(wan_safetensors_read(path, "video", WAN_DTYPE_F32, &v, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_safetensors_read(path, "frames_trunc", WAN_DTYPE_U8, &tr, err, sizeof err), WAN_OK, err);
    CHECK_RC(wan_safetensors_read(path, "frames_round", WAN_DTYPE_U8, &rd, err, sizeof err), WAN_OK, err);
    CHECK(v.ndim == 4 && v.shape[0] == 3);
    int F = (int)v.shape[1], H = (int)v.shape[2], W = (int)v.shape[3];
    size_t n = (size_t)F * H * W * 3;
    CHECK((size_t)wan_host_tensor_numel(&tr) == n && (size_t)wan_host_tensor_numel(&rd) == n);
    uint8_t *got = malloc(n);
    CHECK(got != NULL);
    const wan_frames_rounding modes[2] = { WAN_FRAMES_TRUNCATE, WAN_FRAMES_ROUND };
    const uint8_t *refs[2] = { tr.data, rd.data };
    for (int m = 0; m < 2; m++) {
        CHECK_RC(wan_video_postprocess(v.data, F, H, W, modes[m], got, err, sizeof err), WAN_OK, err);
        size_t bad = 0;
        for (size_t i = 0; i < n; i++)
            bad += got[i] != refs[m][i];
        printf("    %s: %zu of %zu bytes differ from diffusers\n", m ? "round (pil)" : "truncate (export_to_video)",
               bad, n);
        CHECK(bad == 0);
    }
    CHECK_RC(wan_video_postprocess(v.data, 0, H, W, WAN_FRAMES_ROUND, got, err, sizeof err),
             WAN_ERR_INVALID_ARG, err);
    free(got);
    wan_host_tensor_free(&v);
    wan_host_tensor_free(&tr);
    wan_host_tensor_free(&rd);
}

/* ---- helpers ---------------------------------------------------------------------------------- */

/* A folder under /tmp for this run (created on demand; each test removes it when done). */
static const char *tmp_dir(void)
{
    static char dir[64];
    if (!dir[0])
        snprintf(dir, sizeof dir, "/tmp/wan_test_video_%d", (int)getpid());
    mkdir(dir, 0777);
    return dir;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_tmp_dir(void) { nftw(tmp_dir(), rm_entry, 8, FTW_DEPTH | FTW_PHYS); }

/* A smooth colour pattern that changes per frame (compresses well, so decoded pixels stay close). */
static uint8_t *make_frames(int F, int H, int W)
{
    uint8_t *p = malloc((size_t)F * H * W * 3);
    for (int f = 0; p && f < F; f++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                uint8_t *px = p + (((size_t)f * H + y) * W + x) * 3;
                px[0] = (uint8_t)(x * 255 / (W - 1));
                px[1] = (uint8_t)(y * 255 / (H - 1));
                px[2] = (uint8_t)((f * 40 + 60) % 256);
            }
    return p;
}

typedef struct probe {
    enum AVCodecID codec;
    int pix_fmt, width, height, packets;
    AVRational fps;
    double mean_abs_err; /* first decoded frame vs the input, per RGB byte; < 0: not decoded */
} probe;

/* Mean |decoded - want| over the first frame, after converting the decoded frame to RGB24. */
static double compare_first_frame(AVFrame *fr, const uint8_t *want, int H, int W)
{
    uint8_t *rgb = malloc((size_t)H * W * 3);
    struct SwsContext *sws = sws_getContext(fr->width, fr->height, fr->format, W, H, AV_PIX_FMT_RGB24,
                                            SWS_BICUBIC, NULL, NULL, NULL);
    double sum = -1;
    if (rgb && sws && fr->width >= W && fr->height >= H) {
        /* crop: convert at the decoded size, read the top-left W x H */
        uint8_t *full = malloc((size_t)fr->width * fr->height * 3);
        sws_freeContext(sws);
        sws = sws_getContext(fr->width, fr->height, fr->format, fr->width, fr->height, AV_PIX_FMT_RGB24,
                             SWS_BICUBIC, NULL, NULL, NULL);
        if (full && sws) {
            uint8_t *dst[4] = { full, NULL, NULL, NULL };
            int stride[4] = { fr->width * 3, 0, 0, 0 };
            sws_scale(sws, (const uint8_t *const *)fr->data, fr->linesize, 0, fr->height, dst, stride);
            sum = 0;
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W * 3; x++)
                    sum += abs((int)full[(size_t)y * fr->width * 3 + x] - (int)want[(size_t)y * W * 3 + x]);
            sum /= (double)H * W * 3;
        }
        free(full);
    }
    sws_freeContext(sws);
    free(rgb);
    return sum;
}

/* Opens a file with libavformat, counts the packets of its video stream and decodes the first frame. */
static int probe_file(const char *path, const uint8_t *first, int H, int W, probe *p)
{
    AVFormatContext *ic = NULL;
    memset(p, 0, sizeof *p);
    p->mean_abs_err = -1;
    if (avformat_open_input(&ic, path, NULL, NULL) < 0)
        return 0;
    int ok = avformat_find_stream_info(ic, NULL) >= 0;
    int si = ok ? av_find_best_stream(ic, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0) : -1;
    AVCodecContext *dc = NULL;
    AVPacket *pkt = av_packet_alloc();
    AVFrame *fr = av_frame_alloc();
    if (si >= 0) {
        AVStream *st = ic->streams[si];
        p->codec = st->codecpar->codec_id;
        p->pix_fmt = st->codecpar->format;
        p->width = st->codecpar->width;
        p->height = st->codecpar->height;
        p->fps = st->avg_frame_rate.num ? st->avg_frame_rate : st->r_frame_rate;
        const AVCodec *dec = avcodec_find_decoder(p->codec);
        dc = dec ? avcodec_alloc_context3(dec) : NULL;
        if (dc && (avcodec_parameters_to_context(dc, st->codecpar) < 0 || avcodec_open2(dc, dec, NULL) < 0))
            avcodec_free_context(&dc);
        int got = 0;
        while (av_read_frame(ic, pkt) >= 0) {
            if (pkt->stream_index == si) {
                p->packets++;
                if (dc && !got && avcodec_send_packet(dc, pkt) >= 0 && avcodec_receive_frame(dc, fr) >= 0) {
                    p->mean_abs_err = compare_first_frame(fr, first, H, W);
                    got = 1;
                }
            }
            av_packet_unref(pkt);
        }
        if (dc && !got && avcodec_send_packet(dc, NULL) >= 0 && avcodec_receive_frame(dc, fr) >= 0)
            p->mean_abs_err = compare_first_frame(fr, first, H, W);
    }
    av_frame_free(&fr);
    av_packet_free(&pkt);
    avcodec_free_context(&dc);
    avformat_close_input(&ic);
    return si >= 0;
}

/* ---- containers ------------------------------------------------------------------------------- */

TEST(video_write_mp4)
{
    enum { F = 9, H = 32, W = 48 };
    uint8_t *frames = make_frames(F, H, W);
    CHECK(frames != NULL);
    char path[128], err[512] = "";
    snprintf(path, sizeof path, "%s/clip.mp4", tmp_dir());
    CHECK_RC(wan_video_write(path, frames, F, H, W, 16.0, NULL, err, sizeof err), WAN_OK, err);
    probe p;
    CHECK(probe_file(path, frames, H, W, &p));
    printf("    %s: %s %s %dx%d, %d frames, %d/%d fps, first frame mean |err| %.2f\n", path,
           avcodec_get_name(p.codec), av_get_pix_fmt_name(p.pix_fmt), p.width, p.height, p.packets, p.fps.num,
           p.fps.den, p.mean_abs_err);
    CHECK(p.codec == AV_CODEC_ID_H264 && p.pix_fmt == AV_PIX_FMT_YUV420P);
    CHECK(p.width == W && p.height == H && p.packets == F);
    CHECK(p.fps.num == 16 && p.fps.den == 1);
    CHECK(p.mean_abs_err >= 0 && p.mean_abs_err < 8.0); /* lossy (~3), but swapped or shifted channels give > 50 */
    /* +faststart: the moov box comes before mdat */
    FILE *fp = fopen(path, "rb");
    CHECK(fp != NULL);
    unsigned char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    long moov = -1, mdat = -1;
    for (size_t i = 0; i + 4 <= n; i++) {
        if (moov < 0 && !memcmp(buf + i, "moov", 4))
            moov = (long)i;
        if (mdat < 0 && !memcmp(buf + i, "mdat", 4))
            mdat = (long)i;
    }
    CHECK(moov > 0 && (mdat < 0 || moov < mdat));
    free(frames);
    remove_tmp_dir();
}

TEST(video_write_odd_size_pads)
{
    enum { F = 3, H = 33, W = 47 };
    uint8_t *frames = make_frames(F, H, W);
    CHECK(frames != NULL);
    char path[128], err[512] = "";
    snprintf(path, sizeof path, "%s/odd.mkv", tmp_dir());
    CHECK_RC(wan_video_write(path, frames, F, H, W, 24.0, NULL, err, sizeof err), WAN_OK, err);
    probe p;
    CHECK(probe_file(path, frames, H, W, &p));
    printf("    odd 47x33 -> %dx%d %s, %d frames, first frame mean |err| %.2f\n", p.width, p.height,
           avcodec_get_name(p.codec), p.packets, p.mean_abs_err);
    CHECK(p.codec == AV_CODEC_ID_H264 && p.width == 48 && p.height == 34 && p.packets == F);
    CHECK(p.mean_abs_err >= 0 && p.mean_abs_err < 8.0);
    free(frames);
    remove_tmp_dir();
}

TEST(video_write_webm_gif_webp)
{
    enum { F = 5, H = 32, W = 48 };
    uint8_t *frames = make_frames(F, H, W);
    CHECK(frames != NULL);
    char path[128], err[512] = "";
    probe p;
    snprintf(path, sizeof path, "%s/clip.webm", tmp_dir());
    CHECK_RC(wan_video_write(path, frames, F, H, W, 16.0, NULL, err, sizeof err), WAN_OK, err);
    CHECK(probe_file(path, frames, H, W, &p));
    printf("    webm: %s %dx%d, %d frames, first frame mean |err| %.2f\n", avcodec_get_name(p.codec), p.width,
           p.height, p.packets, p.mean_abs_err);
    CHECK(p.codec == AV_CODEC_ID_VP9 && p.width == W && p.height == H && p.packets == F);
    CHECK(p.mean_abs_err >= 0 && p.mean_abs_err < 8.0);

    snprintf(path, sizeof path, "%s/clip.gif", tmp_dir());
    CHECK_RC(wan_video_write(path, frames, F, H, W, 10.0, NULL, err, sizeof err), WAN_OK, err);
    CHECK(probe_file(path, frames, H, W, &p));
    printf("    gif: %s %dx%d, %d frames, first frame mean |err| %.2f\n", avcodec_get_name(p.codec), p.width,
           p.height, p.packets, p.mean_abs_err);
    CHECK(p.codec == AV_CODEC_ID_GIF && p.width == W && p.height == H && p.packets == F);
    CHECK(p.mean_abs_err >= 0 && p.mean_abs_err < 30.0); /* 256 fixed colours, dithered (~19) */

    /* FFmpeg 5 cannot decode animated WebP: check the RIFF structure instead */
    snprintf(path, sizeof path, "%s/CLIP.WEBP", tmp_dir());
    CHECK_RC(wan_video_write(path, frames, F, H, W, 16.0, NULL, err, sizeof err), WAN_OK, err);
    FILE *fp = fopen(path, "rb");
    CHECK(fp != NULL);
    static unsigned char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    int anmf = 0, anim = 0;
    for (size_t i = 12; i + 4 <= n; i++) {
        anmf += !memcmp(buf + i, "ANMF", 4);
        anim |= !memcmp(buf + i, "ANIM", 4);
    }
    printf("    webp: %zu bytes, ANIM %d, %d ANMF frames\n", n, anim, anmf);
    CHECK(n > 12 && !memcmp(buf, "RIFF", 4) && !memcmp(buf + 8, "WEBP", 4) && anim && anmf == F);
    free(frames);
    remove_tmp_dir();
}

TEST(video_write_png_dir_and_safetensors)
{
    enum { F = 3, H = 10, W = 14 };
    uint8_t *frames = make_frames(F, H, W);
    CHECK(frames != NULL);
    char dir[128], path[192], err[512] = "";
    snprintf(dir, sizeof dir, "%s/frames", tmp_dir());
    CHECK_RC(wan_video_write(dir, frames, F, H, W, 16.0, NULL, err, sizeof err), WAN_OK, err);
    for (int f = 0; f < F; f++) { /* PNG is lossless: every pixel comes back */
        snprintf(path, sizeof path, "%s/frame_%05d.png", dir, f);
        probe p;
        CHECK_MSG(probe_file(path, frames + (size_t)f * H * W * 3, H, W, &p), "%s", path);
        CHECK(p.codec == AV_CODEC_ID_PNG && p.width == W && p.height == H && p.mean_abs_err == 0.0);
    }
    snprintf(path, sizeof path, "%s/frame_%05d.png", dir, F);
    CHECK(access(path, F_OK) != 0);

    snprintf(path, sizeof path, "%s/frames.safetensors", tmp_dir());
    CHECK_RC(wan_video_write(path, frames, F, H, W, 16.0, NULL, err, sizeof err), WAN_OK, err);
    wan_host_tensor t = { 0 };
    CHECK_RC(wan_safetensors_read(path, "frames", WAN_DTYPE_U8, &t, err, sizeof err), WAN_OK, err);
    CHECK(t.ndim == 4 && t.shape[0] == F && t.shape[1] == H && t.shape[2] == W && t.shape[3] == 3);
    CHECK(memcmp(t.data, frames, (size_t)F * H * W * 3) == 0);
    wan_host_tensor_free(&t);
    free(frames);
    remove_tmp_dir();
}

TEST(video_write_errors_and_sidecar)
{
    enum { F = 2, H = 16, W = 16 };
    uint8_t *frames = make_frames(F, H, W);
    CHECK(frames != NULL);
    char path[160], err[512] = "";
    size_t before = wan_mem_current();
    const char *bad = "/nonexistent-wan-dir/sub/out.mp4";
    CHECK_RC(wan_video_write(bad, frames, F, H, W, 16.0, NULL, err, sizeof err), WAN_ERR_IO, err);
    printf("    unwritable: %s\n", err);
    CHECK(strstr(err, bad) != NULL && strstr(err, "No such file or directory") != NULL);
    CHECK_RC(wan_video_write("/nonexistent-wan-dir/sub/frames", frames, F, H, W, 16.0, NULL, err, sizeof err),
             WAN_ERR_IO, err);
    CHECK(strstr(err, "/nonexistent-wan-dir/sub/frames") != NULL);
    CHECK_RC(wan_video_write("out.avi", frames, F, H, W, 16.0, NULL, err, sizeof err), WAN_ERR_UNSUPPORTED, err);
    CHECK(strstr(err, ".mp4") != NULL);
    CHECK_RC(wan_video_write("out.mp4", frames, F, H, W, 0.0, NULL, err, sizeof err), WAN_ERR_INVALID_ARG, err);
    CHECK_RC(wan_video_write("out.mp4", NULL, F, H, W, 16.0, NULL, err, sizeof err), WAN_ERR_INVALID_ARG, err);
    CHECK(wan_mem_current() == before);
    CHECK(wan_video_format_for_path("a/b.c/clip") == WAN_VIDEO_PNG_DIR);
    CHECK(wan_video_format_for_path("clip.Mp4") == WAN_VIDEO_MP4);
    CHECK(wan_video_format_for_path("dir/") == WAN_VIDEO_PNG_DIR);

    /* sidecar: extension replaced, or appended for a folder */
    snprintf(path, sizeof path, "%s/side.mp4", tmp_dir());
    CHECK_RC(wan_video_write_sidecar(path, "{\"seed\": 42}", err, sizeof err), WAN_OK, err);
    snprintf(path, sizeof path, "%s/side.json", tmp_dir());
    char *text = NULL;
    size_t len = 0;
    wan_error e = { 0 };
    CHECK(wan_read_file(path, &text, &len, &e) == WAN_OK);
    CHECK(!strcmp(text, "{\"seed\": 42}\n"));
    wan_free(text);
    snprintf(path, sizeof path, "%s/framesdir/", tmp_dir());
    CHECK_RC(wan_video_write_sidecar(path, "{}", err, sizeof err), WAN_OK, err);
    snprintf(path, sizeof path, "%s/framesdir.json", tmp_dir());
    CHECK(access(path, F_OK) == 0);
    CHECK_RC(wan_video_write_sidecar("/nonexistent-wan-dir/x.mp4", "{}", err, sizeof err), WAN_ERR_IO, err);
    CHECK(strstr(err, "/nonexistent-wan-dir/x.json") != NULL);
    free(frames);
    remove_tmp_dir();
}
