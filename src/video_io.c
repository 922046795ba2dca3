/* video_io.c — diffusers' frame post-processing, and video files through FFmpeg's libraries.
 *
 * Post-processing (diffusers VideoProcessor.postprocess_video + export_to_video, float32):
 *   y = clamp(x * 0.5 + 0.5, 0, 1);  u8 = (uint8) (y * 255)      truncation, as export_to_video
 *                                    u8 = (uint8) rint(y * 255)  ties to even, as output_type "pil"
 * Encoding mirrors what export_to_video's imageio-ffmpeg command does (rawvideo rgb24 → swscale
 * bicubic → yuv420p, BT.601 limited range → libx264 -crf 25 -preset medium), plus +faststart. */
#define _POSIX_C_SOURCE 200809L
#include "video_io.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- post-processing -------------------------------------------------------------------------- */

wan_status wan_video_postprocess(const float *video, int F, int H, int W, wan_frames_rounding rounding,
                                 uint8_t *frames, char *errbuf, size_t errlen)
{
    wan_error err = { 0 };
    if (!video || !frames || F <= 0 || H <= 0 || W <= 0 ||
        (rounding != WAN_FRAMES_TRUNCATE && rounding != WAN_FRAMES_ROUND)) {
        wan_err(&err, WAN_ERR_INVALID_ARG, "wan_video_postprocess: bad arguments (%d frames of %dx%d)", F,
                W, H);
        wan_err_copy(&err, errbuf, errlen);
        return WAN_ERR_INVALID_ARG;
    }
    const size_t plane = (size_t)H * (size_t)W, chan = (size_t)F * plane;
#pragma omp parallel for schedule(static)
    for (int f = 0; f < F; f++) {
        for (size_t p = 0; p < plane; p++) {
            for (int c = 0; c < 3; c++) {
                float y = video[(size_t)c * chan + (size_t)f * plane + p] * 0.5f + 0.5f;
                if (!(y > 0.0f)) /* also NaN, which numpy's uint8 cast turns into 0 on x86 */
                    y = 0.0f;
                if (y > 1.0f)
                    y = 1.0f;
                float s = y * 255.0f;
                frames[((size_t)f * plane + p) * 3 + (size_t)c] =
                    (uint8_t)(rounding == WAN_FRAMES_ROUND ? rintf(s) : s);
            }
        }
    }
    return WAN_OK;
}

/* ---- formats ---------------------------------------------------------------------------------- */

typedef struct fmt_spec {
    wan_video_format fmt;
    const char *ext;
    const char *muxer;       /* libavformat muxer name                          */
    const char *encoder;     /* libavcodec encoder name                         */
    enum AVPixelFormat pix;  /* what the encoder gets                           */
    int even;                /* 4:2:0 needs even width and height               */
} fmt_spec;

static const fmt_spec k_formats[] = {
    { WAN_VIDEO_MP4, ".mp4", "mp4", "libx264", AV_PIX_FMT_YUV420P, 1 },
    { WAN_VIDEO_MKV, ".mkv", "matroska", "libx264", AV_PIX_FMT_YUV420P, 1 },
    { WAN_VIDEO_WEBM, ".webm", "webm", "libvpx-vp9", AV_PIX_FMT_YUV420P, 1 },
    { WAN_VIDEO_WEBP, ".webp", "webp", "libwebp_anim", AV_PIX_FMT_BGRA, 0 },
    { WAN_VIDEO_GIF, ".gif", "gif", "gif", AV_PIX_FMT_RGB8, 0 },
    { WAN_VIDEO_SAFETENSORS, ".safetensors", NULL, NULL, AV_PIX_FMT_NONE, 0 },
};

/* Start of the extension (the last '.' of the last path component, not its first character), or
 * NULL when there is none. */
static const char *path_ext(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    return dot && dot != base ? dot : NULL;
}

wan_video_format wan_video_format_for_path(const char *path)
{
    size_t len = strlen(path);
    const char *ext = path_ext(path);
    if (len == 0)
        return WAN_VIDEO_UNKNOWN;
    if (path[len - 1] == '/' || !ext)
        return WAN_VIDEO_PNG_DIR;
    for (size_t i = 0; i < sizeof k_formats / sizeof *k_formats; i++)
        if (strcasecmp(ext, k_formats[i].ext) == 0)
            return k_formats[i].fmt;
    return WAN_VIDEO_UNKNOWN;
}

static const fmt_spec *spec_for(wan_video_format fmt)
{
    for (size_t i = 0; i < sizeof k_formats / sizeof *k_formats; i++)
        if (k_formats[i].fmt == fmt)
            return &k_formats[i];
    return NULL;
}

wan_video_options wan_video_default_options(void)
{
    return (wan_video_options){ .crf = -1, .quality = 90, .preset = NULL, .loop = 0 };
}

/* ---- FFmpeg messages → wan log ---------------------------------------------------------------- */

static void av_log_to_wan(void *avcl, int level, const char *fmt, va_list vl)
{
    if (level > AV_LOG_WARNING)
        return; /* x264's and libvpx's informational lines */
    char line[1024];
    int prefix = 1;
    va_list copy;
    va_copy(copy, vl);
    av_log_format_line2(avcl, level, fmt, copy, line, sizeof line, &prefix);
    va_end(copy);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = 0;
    if (n > 0)
        wan_log(level <= AV_LOG_ERROR ? WAN_LOG_ERROR : WAN_LOG_WARN, "ffmpeg: %s", line);
}

static pthread_once_t g_av_log_once = PTHREAD_ONCE_INIT;
static void install_av_log(void) { av_log_set_callback(av_log_to_wan); }

static const char *av_errstr(int e, char *buf, size_t len)
{
    if (av_strerror(e, buf, len) < 0)
        snprintf(buf, len, "FFmpeg error %d", e);
    return buf;
}

/* ---- one RGB frame, padded to even size when needed ------------------------------------------- */

/* Copies frame f [H, W, 3] into dst [H2, W2, 3], repeating the last column / row into the padding. */
static void pad_frame(const uint8_t *src, int H, int W, uint8_t *dst, int H2, int W2)
{
    for (int y = 0; y < H2; y++) {
        const uint8_t *s = src + (size_t)(y < H ? y : H - 1) * (size_t)W * 3;
        uint8_t *d = dst + (size_t)y * (size_t)W2 * 3;
        memcpy(d, s, (size_t)W * 3);
        for (int x = W; x < W2; x++)
            memcpy(d + (size_t)x * 3, s + (size_t)(W - 1) * 3, 3);
    }
}

/* ---- libavformat/libavcodec writer ------------------------------------------------------------ */

typedef struct av_writer {
    const char *path;
    const fmt_spec *spec;
    int W2, H2;                /* encoded size                          */
    AVFormatContext *oc;
    AVCodecContext *cc;
    AVStream *st;
    struct SwsContext *sws;
    AVFrame *frame;
    AVPacket *pkt;
    uint8_t *pad;              /* [H2, W2, 3] when padding is needed    */
    int file_created;
} av_writer;

static void writer_close(av_writer *w, int failed)
{
    if (w->oc && w->file_created && !(w->oc->oformat->flags & AVFMT_NOFILE))
        avio_closep(&w->oc->pb);
    if (failed && w->file_created)
        unlink(w->path);
    avformat_free_context(w->oc);
    avcodec_free_context(&w->cc);
    sws_freeContext(w->sws);
    av_frame_free(&w->frame);
    av_packet_free(&w->pkt);
    wan_free(w->pad);
}

static void set_int_opt(AVDictionary **d, const char *key, long v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", v);
    av_dict_set(d, key, buf, 0);
}

/* Encoder private options from the user's settings. */
static void encoder_options(const fmt_spec *spec, const wan_video_options *o, AVDictionary **d)
{
    if (!strcmp(spec->encoder, "libx264")) {
        set_int_opt(d, "crf", o->crf >= 0 ? o->crf : 25);
        av_dict_set(d, "preset", o->preset ? o->preset : "medium", 0);
    } else if (!strcmp(spec->encoder, "libvpx-vp9")) {
        set_int_opt(d, "crf", o->crf >= 0 ? o->crf : 31);
        av_dict_set(d, "b", "0", 0); /* constant quality */
        av_dict_set(d, "deadline", "good", 0);
        av_dict_set(d, "cpu-used", "4", 0);
        av_dict_set(d, "row-mt", "1", 0);
    } else if (!strcmp(spec->encoder, "libwebp_anim")) {
        if (o->quality > 100)
            av_dict_set(d, "lossless", "1", 0);
        else
            set_int_opt(d, "quality", o->quality < 0 ? 0 : o->quality);
    }
}

static wan_status writer_open(av_writer *w, double fps, const wan_video_options *o, wan_error *err)
{
    char eb[128];
    const AVCodec *codec = avcodec_find_encoder_by_name(w->spec->encoder);
    if (!codec)
        return wan_err(err, WAN_ERR_UNSUPPORTED, "%s: this FFmpeg build has no '%s' encoder (needed for %s)",
                       w->path, w->spec->encoder, w->spec->ext);
    int e = avformat_alloc_output_context2(&w->oc, NULL, w->spec->muxer, w->path);
    if (e < 0 || !w->oc)
        return wan_err(err, WAN_ERR_UNSUPPORTED, "%s: no '%s' muxer in this FFmpeg build: %s", w->path,
                       w->spec->muxer, av_errstr(e, eb, sizeof eb));
    w->st = avformat_new_stream(w->oc, NULL);
    w->cc = avcodec_alloc_context3(codec);
    w->frame = av_frame_alloc();
    w->pkt = av_packet_alloc();
    if (!w->st || !w->cc || !w->frame || !w->pkt)
        return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory setting up the encoder", w->path);
    AVRational rate = av_d2q(fps, 1000000);
    w->cc->width = w->W2;
    w->cc->height = w->H2;
    w->cc->pix_fmt = w->spec->pix;
    w->cc->time_base = av_inv_q(rate);
    w->cc->framerate = rate;
    if (w->spec->pix == AV_PIX_FMT_YUV420P) {
        w->cc->color_range = AVCOL_RANGE_MPEG; /* what swscale's default RGB->YUV produces */
        w->cc->colorspace = AVCOL_SPC_SMPTE170M;
    }
    if (w->oc->oformat->flags & AVFMT_GLOBALHEADER)
        w->cc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    AVDictionary *copts = NULL;
    encoder_options(w->spec, o, &copts);
    e = avcodec_open2(w->cc, codec, &copts);
    av_dict_free(&copts);
    if (e < 0)
        return wan_err(err, WAN_ERR_UNSUPPORTED, "%s: cannot open the %s encoder for %dx%d: %s", w->path,
                       w->spec->encoder, w->W2, w->H2, av_errstr(e, eb, sizeof eb));
    e = avcodec_parameters_from_context(w->st->codecpar, w->cc);
    if (e < 0)
        return wan_err(err, WAN_ERR_INTERNAL, "%s: %s", w->path, av_errstr(e, eb, sizeof eb));
    w->st->time_base = w->cc->time_base;
    w->st->avg_frame_rate = rate;
    w->frame->format = w->spec->pix;
    w->frame->width = w->W2;
    w->frame->height = w->H2;
    if (av_frame_get_buffer(w->frame, 0) < 0)
        return wan_err(err, WAN_ERR_NOMEM, "%s: out of memory for a %dx%d frame", w->path, w->W2, w->H2);
    w->sws = sws_getContext(w->W2, w->H2, AV_PIX_FMT_RGB24, w->W2, w->H2, w->spec->pix, SWS_BICUBIC, NULL,
                            NULL, NULL);
    if (!w->sws)
        return wan_err(err, WAN_ERR_UNSUPPORTED, "%s: swscale cannot convert rgb24 to %s", w->path,
                       av_get_pix_fmt_name(w->spec->pix));
    if (!(w->oc->oformat->flags & AVFMT_NOFILE)) {
        e = avio_open(&w->oc->pb, w->path, AVIO_FLAG_WRITE);
        if (e < 0)
            return wan_err(err, WAN_ERR_IO, "cannot create '%s': %s", w->path, av_errstr(e, eb, sizeof eb));
        w->file_created = 1;
    }
    AVDictionary *mopts = NULL;
    if (w->spec->fmt == WAN_VIDEO_MP4)
        av_dict_set(&mopts, "movflags", "+faststart", 0);
    if (w->spec->fmt == WAN_VIDEO_WEBP || w->spec->fmt == WAN_VIDEO_GIF)
        set_int_opt(&mopts, "loop", o->loop < 0 ? 0 : o->loop);
    e = avformat_write_header(w->oc, &mopts);
    av_dict_free(&mopts);
    if (e < 0)
        return wan_err(err, WAN_ERR_IO, "%s: cannot write the %s header: %s", w->path, w->spec->muxer,
                       av_errstr(e, eb, sizeof eb));
    return WAN_OK;
}

/* Sends one frame (NULL flushes) and writes every packet the encoder hands back. */
static wan_status writer_send(av_writer *w, AVFrame *frame, wan_error *err)
{
    char eb[128];
    int e = avcodec_send_frame(w->cc, frame);
    if (e < 0)
        return wan_err(err, WAN_ERR_INTERNAL, "%s: %s encoder refused a frame: %s", w->path, w->spec->encoder,
                       av_errstr(e, eb, sizeof eb));
    for (;;) {
        e = avcodec_receive_packet(w->cc, w->pkt);
        if (e == AVERROR(EAGAIN) || e == AVERROR_EOF)
            return WAN_OK;
        if (e < 0)
            return wan_err(err, WAN_ERR_INTERNAL, "%s: %s encoder failed: %s", w->path, w->spec->encoder,
                           av_errstr(e, eb, sizeof eb));
        av_packet_rescale_ts(w->pkt, w->cc->time_base, w->st->time_base);
        w->pkt->stream_index = w->st->index;
        e = av_interleaved_write_frame(w->oc, w->pkt);
        if (e < 0)
            return wan_err(err, WAN_ERR_IO, "%s: write failed: %s", w->path, av_errstr(e, eb, sizeof eb));
    }
}

static wan_status write_av(const char *path, const fmt_spec *spec, const uint8_t *frames, int F, int H,
                           int W, double fps, const wan_video_options *o, wan_error *err)
{
    av_writer w = { .path = path, .spec = spec, .W2 = W, .H2 = H };
    if (spec->even) {
        w.W2 = W + (W & 1);
        w.H2 = H + (H & 1);
    }
    wan_status rc = writer_open(&w, fps, o, err);
    if (rc == WAN_OK && (w.W2 != W || w.H2 != H)) {
        w.pad = wan_malloc((size_t)w.W2 * (size_t)w.H2 * 3);
        if (!w.pad)
            rc = wan_err(err, WAN_ERR_NOMEM, "%s: out of memory for padding", path);
    }
    const size_t fbytes = (size_t)H * (size_t)W * 3;
    for (int f = 0; rc == WAN_OK && f < F; f++) {
        const uint8_t *rgb = frames + (size_t)f * fbytes;
        if (w.pad) {
            pad_frame(rgb, H, W, w.pad, w.H2, w.W2);
            rgb = w.pad;
        }
        if (av_frame_make_writable(w.frame) < 0) {
            rc = wan_err(err, WAN_ERR_NOMEM, "%s: out of memory for frame %d", path, f);
            break;
        }
        const uint8_t *src[4] = { rgb, NULL, NULL, NULL };
        const int src_stride[4] = { w.W2 * 3, 0, 0, 0 };
        sws_scale(w.sws, src, src_stride, 0, w.H2, w.frame->data, w.frame->linesize);
        w.frame->pts = f;
        rc = writer_send(&w, w.frame, err);
    }
    if (rc == WAN_OK)
        rc = writer_send(&w, NULL, err);
    if (rc == WAN_OK) {
        char eb[128];
        int e = av_write_trailer(w.oc);
        if (e < 0)
            rc = wan_err(err, WAN_ERR_IO, "%s: cannot finish the file: %s", path, av_errstr(e, eb, sizeof eb));
    }
    if (rc == WAN_OK && w.file_created) {
        char eb[128];
        int e = avio_closep(&w.oc->pb);
        if (e < 0)
            rc = wan_err(err, WAN_ERR_IO, "%s: close failed: %s", path, av_errstr(e, eb, sizeof eb));
    }
    writer_close(&w, rc != WAN_OK);
    return rc;
}

/* ---- PNG folder and safetensors --------------------------------------------------------------- */

static wan_status write_png_dir(const char *dir, const uint8_t *frames, int F, int H, int W, wan_error *err)
{
    char eb[128];
    if (mkdir(dir, 0777) != 0 && !(errno == EEXIST && wan_path_is_dir(dir)))
        return wan_err(err, WAN_ERR_IO, "cannot create the folder '%s': %s", dir, strerror(errno));
    const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_PNG);
    if (!codec)
        return wan_err(err, WAN_ERR_UNSUPPORTED, "%s: this FFmpeg build has no PNG encoder", dir);
    AVCodecContext *cc = avcodec_alloc_context3(codec);
    AVFrame *frame = av_frame_alloc();
    AVPacket *pkt = av_packet_alloc();
    wan_status rc = WAN_OK;
    if (!cc || !frame || !pkt) {
        rc = wan_err(err, WAN_ERR_NOMEM, "%s: out of memory setting up the PNG encoder", dir);
        goto done;
    }
    cc->width = W;
    cc->height = H;
    cc->pix_fmt = AV_PIX_FMT_RGB24;
    cc->time_base = (AVRational){ 1, 1 };
    cc->thread_count = 1; /* one packet per frame, no frame-thread delay */
    int e = avcodec_open2(cc, codec, NULL);
    if (e < 0) {
        rc = wan_err(err, WAN_ERR_UNSUPPORTED, "%s: cannot open the PNG encoder: %s", dir,
                     av_errstr(e, eb, sizeof eb));
        goto done;
    }
    for (int f = 0; rc == WAN_OK && f < F; f++) {
        frame->format = AV_PIX_FMT_RGB24;
        frame->width = W;
        frame->height = H;
        frame->data[0] = (uint8_t *)frames + (size_t)f * (size_t)H * (size_t)W * 3;
        frame->linesize[0] = W * 3;
        frame->pts = f;
        e = avcodec_send_frame(cc, frame);
        if (e >= 0)
            e = avcodec_receive_packet(cc, pkt);
        if (e < 0) {
            rc = wan_err(err, WAN_ERR_INTERNAL, "%s: PNG encoder failed on frame %d: %s", dir, f,
                         av_errstr(e, eb, sizeof eb));
            break;
        }
        char *name = wan_asprintf("%s/frame_%05d.png", dir, f);
        FILE *fp = name ? fopen(name, "wb") : NULL;
        if (!fp || fwrite(pkt->data, 1, (size_t)pkt->size, fp) != (size_t)pkt->size) {
            rc = name ? wan_err(err, WAN_ERR_IO, "cannot write '%s': %s", name, strerror(errno))
                      : wan_err(err, WAN_ERR_NOMEM, "%s: out of memory", dir);
        }
        if (fp && fclose(fp) != 0 && rc == WAN_OK)
            rc = wan_err(err, WAN_ERR_IO, "cannot write '%s': %s", name, strerror(errno));
        wan_free(name);
        av_packet_unref(pkt);
    }
done:
    avcodec_free_context(&cc);
    av_frame_free(&frame);
    av_packet_free(&pkt);
    return rc;
}

static wan_status write_safetensors(const char *path, const uint8_t *frames, int F, int H, int W,
                                    wan_error *err)
{
    wan_host_tensor t = { .dtype = WAN_DTYPE_U8, .ndim = 4, .shape = { F, H, W, 3 },
                          .data = (void *)frames };
    snprintf(t.name, sizeof t.name, "frames");
    char msg[WAN_ERRMSG_MAX];
    wan_status rc = wan_safetensors_write(path, &t, 1, msg, sizeof msg);
    if (rc != WAN_OK)
        return wan_err(err, rc, "%s", msg);
    return WAN_OK;
}

/* ---- public ----------------------------------------------------------------------------------- */

wan_status wan_video_write(const char *path, const uint8_t *frames, int F, int H, int W, double fps,
                           const wan_video_options *opts, char *errbuf, size_t errlen)
{
    wan_error err = { 0 };
    wan_status rc;
    wan_video_options o = opts ? *opts : wan_video_default_options();
    if (!path || !*path || !frames || F <= 0 || H <= 0 || W <= 0 || !(fps > 0) || !isfinite(fps)) {
        rc = wan_err(&err, WAN_ERR_INVALID_ARG,
                     "wan_video_write: bad arguments (path '%s', %d frames of %dx%d at %g fps)",
                     path ? path : "(null)", F, W, H, fps);
        goto done;
    }
    pthread_once(&g_av_log_once, install_av_log);
    wan_video_format fmt = wan_video_format_for_path(path);
    if (fmt == WAN_VIDEO_UNKNOWN) {
        rc = wan_err(&err, WAN_ERR_UNSUPPORTED,
                     "%s: unknown video extension (use .mp4, .mkv, .webm, .webp, .gif, .safetensors, or a "
                     "path without extension for a folder of PNG frames)", path);
    } else if (fmt == WAN_VIDEO_PNG_DIR) {
        rc = write_png_dir(path, frames, F, H, W, &err);
    } else if (fmt == WAN_VIDEO_SAFETENSORS) {
        rc = write_safetensors(path, frames, F, H, W, &err);
    } else {
        rc = write_av(path, spec_for(fmt), frames, F, H, W, fps, &o, &err);
    }
done:
    if (rc != WAN_OK)
        wan_err_copy(&err, errbuf, errlen);
    return rc;
}

wan_status wan_video_write_sidecar(const char *output_path, const char *json, char *errbuf, size_t errlen)
{
    wan_error err = { 0 };
    wan_status rc = WAN_OK;
    char *path = NULL, *tmp = NULL;
    FILE *fp = NULL;
    if (!output_path || !*output_path || !json) {
        rc = wan_err(&err, WAN_ERR_INVALID_ARG, "wan_video_write_sidecar: NULL or empty argument");
        goto done;
    }
    size_t len = strlen(output_path);
    while (len > 1 && output_path[len - 1] == '/')
        len--; /* "out/" -> "out.json" */
    const char *ext = path_ext(output_path);
    size_t stem = ext && (size_t)(ext - output_path) < len ? (size_t)(ext - output_path) : len;
    path = wan_asprintf("%.*s.json", (int)stem, output_path);
    tmp = path ? wan_asprintf("%s.tmp", path) : NULL;
    if (!path || !tmp) {
        rc = wan_err(&err, WAN_ERR_NOMEM, "out of memory");
        goto done;
    }
    fp = fopen(tmp, "wb");
    size_t n = strlen(json);
    if (!fp || fwrite(json, 1, n, fp) != n || (n > 0 && json[n - 1] != '\n' && fputc('\n', fp) == EOF)) {
        rc = wan_err(&err, WAN_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
        goto done;
    }
    int closed = fclose(fp);
    fp = NULL;
    if (closed != 0 || rename(tmp, path) != 0) {
        rc = wan_err(&err, WAN_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
        goto done;
    }
done:
    if (fp)
        fclose(fp);
    if (rc != WAN_OK && tmp)
        unlink(tmp);
    wan_free(path);
    wan_free(tmp);
    if (rc != WAN_OK)
        wan_err_copy(&err, errbuf, errlen);
    return rc;
}
