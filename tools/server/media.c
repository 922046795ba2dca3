/* media.c — the files a finished job leaves: the MP4 (through wan_video_write), a PNG thumbnail of the
 * first frame and a PNG spritesheet, each written atomically (temporary name, fsync, rename). */
#define _GNU_SOURCE
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <zlib.h>

static int fsync_dir_of(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    int fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* path + ".tmp-XXXXXXXX" with a random suffix. */
static void temp_name(const char *path, const char *ext, char *out, size_t len)
{
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, 0) != sizeof r)
        r = (uint32_t)getpid();
    snprintf(out, len, "%s.tmp-%08x%s", path, r, ext);
}

static int fsync_and_rename(const char *tmp, const char *path)
{
    int fd = open(tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    if (rc || rename(tmp, path))
        return -1;
    return fsync_dir_of(path);
}

int srv_write_atomic(const char *path, const void *data, size_t len)
{
    char tmp[4200];
    temp_name(path, "", tmp, sizeof tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            errno = e ? e : EIO;
            return -1;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) || close(fd) || rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    return fsync_dir_of(path);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Appends one PNG chunk (length, type, data, CRC) at buf + *pos. */
static void png_chunk(uint8_t *buf, size_t *pos, const char *type, const uint8_t *data, uint32_t n)
{
    uint8_t *p = buf + *pos;
    put32(p, n);
    memcpy(p + 4, type, 4);
    if (n)
        memcpy(p + 8, data, n);
    uLong crc = crc32(0L, p + 4, n + 4);
    put32(p + 8 + n, (uint32_t)crc);
    *pos += 12 + (size_t)n;
}

/* Encodes an RGB image [h, w, 3] as PNG into a malloc'd buffer. Returns NULL on failure. */
static uint8_t *png_encode(const uint8_t *rgb, int w, int h, size_t *out_len)
{
    size_t row = (size_t)w * 3, raw_len = (row + 1) * (size_t)h;
    uint8_t *raw = malloc(raw_len);
    if (!raw)
        return NULL;
    for (int y = 0; y < h; y++) {
        raw[y * (row + 1)] = 0; /* filter: none */
        memcpy(raw + y * (row + 1) + 1, rgb + (size_t)y * row, row);
    }
    uLongf zlen = compressBound((uLong)raw_len);
    uint8_t *png = malloc(zlen + 64);
    if (!png) {
        free(raw);
        return NULL;
    }
    static const uint8_t sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
    memcpy(png, sig, 8);
    size_t pos = 8;
    uint8_t ihdr[13];
    put32(ihdr, (uint32_t)w);
    put32(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8; /* bit depth */
    ihdr[9] = 2; /* colour type: RGB */
    ihdr[10] = ihdr[11] = ihdr[12] = 0;
    png_chunk(png, &pos, "IHDR", ihdr, 13);
    /* IDAT is compressed straight into place after its 8-byte chunk header. */
    if (compress2(png + pos + 8, &zlen, raw, (uLong)raw_len, 6) != Z_OK) {
        free(raw);
        free(png);
        return NULL;
    }
    free(raw);
    put32(png + pos, (uint32_t)zlen);
    memcpy(png + pos + 4, "IDAT", 4);
    put32(png + pos + 8 + zlen, (uint32_t)crc32(0L, png + pos + 4, (uInt)zlen + 4));
    pos += 12 + zlen;
    png_chunk(png, &pos, "IEND", NULL, 0);
    *out_len = pos;
    return png;
}

static int write_png(const char *path, const uint8_t *rgb, int w, int h)
{
    size_t n;
    uint8_t *png = png_encode(rgb, w, h, &n);
    if (!png) {
        errno = ENOMEM;
        return -1;
    }
    int rc = srv_write_atomic(path, png, n);
    free(png);
    return rc;
}

/* Up to 8 frames side by side, each scaled (nearest neighbour) to at most 160 pixels wide. */
static int write_spritesheet(const char *path, const wan_video *v)
{
    int n = v->num_frames < 8 ? v->num_frames : 8;
    int tw = v->width > 160 ? 160 : v->width;
    int th = (int)((int64_t)v->height * tw / v->width);
    if (th < 1)
        th = 1;
    int W = tw * n;
    uint8_t *img = malloc((size_t)W * th * 3);
    if (!img) {
        errno = ENOMEM;
        return -1;
    }
    for (int k = 0; k < n; k++) {
        int f = n > 1 ? (int)((int64_t)k * (v->num_frames - 1) / (n - 1)) : 0;
        const uint8_t *src = v->frames + (size_t)f * v->height * v->width * 3;
        for (int y = 0; y < th; y++) {
            int sy = (int)((int64_t)y * v->height / th);
            for (int x = 0; x < tw; x++) {
                int sx = (int)((int64_t)x * v->width / tw);
                memcpy(img + ((size_t)y * W + (size_t)k * tw + x) * 3,
                       src + ((size_t)sy * v->width + sx) * 3, 3);
            }
        }
    }
    int rc = write_png(path, img, W, th);
    free(img);
    return rc;
}

int srv_write_outputs(const wan_video *v, int fps, const char *path, const char *thumb, const char *sheet,
                      char *err, size_t errlen)
{
    if (write_png(thumb, v->frames, v->width, v->height) || write_spritesheet(sheet, v)) {
        snprintf(err, errlen, "cannot write a thumbnail next to %s: %s", path, strerror(errno));
        return -1;
    }
    char tmp[4200];
    temp_name(path, ".mp4", tmp, sizeof tmp);
    wan_video_options o = wan_video_default_options();
    if (wan_video_write(tmp, v->frames, v->num_frames, v->height, v->width, fps, &o, err, errlen) != WAN_OK)
        return -1;
    if (fsync_and_rename(tmp, path)) {
        snprintf(err, errlen, "cannot move the video into place at %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}
