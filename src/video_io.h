/* video_io.h — decoded video → uint8 frames (diffusers' post-processing) and frames → files through
 * FFmpeg's libraries (MP4/MKV H.264, WebM VP9, animated WebP, GIF, PNG folder) or safetensors. The
 * public functions are wan_video_postprocess, wan_video_write and wan_video_write_sidecar in wan.h.
 * Internal header. */
#ifndef WAN_VIDEO_IO_H
#define WAN_VIDEO_IO_H

#include "core.h"

/* The containers wan_video_write can produce. */
typedef enum wan_video_format {
    WAN_VIDEO_MP4 = 0,
    WAN_VIDEO_MKV,
    WAN_VIDEO_WEBM,
    WAN_VIDEO_WEBP,
    WAN_VIDEO_GIF,
    WAN_VIDEO_SAFETENSORS,
    WAN_VIDEO_PNG_DIR,
    WAN_VIDEO_UNKNOWN
} wan_video_format;

/* The format for a path: by extension (case-insensitive); a path whose last component has no dot,
 * or that ends in '/', is a PNG folder; any other extension is WAN_VIDEO_UNKNOWN. */
wan_video_format wan_video_format_for_path(const char *path);

#endif /* WAN_VIDEO_IO_H */
