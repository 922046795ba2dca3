/* conv3d.h — CPU kernels of the video VAE: per-frame 2D convolutions whose temporal taps are given as
 * separate frame pointers (so a causal 3D convolution never copies its cache), channel RMS norm + SiLU,
 * single-head attention over the pixels of a frame (internal).
 *
 * Layout: a frame is [C, H, W] row-major, W fastest. Convolutions are im2col over a block of output rows
 * followed by OpenBLAS sgemm; a 1x1 stride-1 convolution reads its input directly. Multithreaded with
 * OpenMP (im2col, norms) and OpenBLAS (GEMM). */
#ifndef WAN_CPU_CONV3D_H
#define WAN_CPU_CONV3D_H

#include <stddef.h>

/* Loops over fewer elements than this run on one thread: a fork/join barrier costs more, and can cost a
 * whole time slice on a busy machine. */
#define WAN_PAR_MIN ((size_t)1 << 19)

/* Geometry of one 2D convolution applied to a frame. Out-of-range input reads are zero. */
typedef struct wan_conv_geom {
    int cin, cout;
    int h, w;     /* logical input size (after the optional x2 nearest upsample)                 */
    int kh, kw;   /* kernel size                                                                 */
    int stride;   /* 1 or 2                                                                      */
    int pad;      /* zero rows/columns before the input (top/left); the bottom/right side pads
                   * as far as the kernel reaches (symmetric "same" padding when pad=(k-1)/2,
                   * right/bottom only when pad=0)                                               */
    int up2;      /* 1: the stored input is [cin, h/2, w/2], read through nearest x2 upsampling  */
    int ho, wo;   /* output size: (h + 2*pad - kh)/stride + 1 for "same"; set by wan_conv_geom_make */
} wan_conv_geom;

/* Fills g; `same` selects symmetric padding (pad = (k-1)/2 on every side) versus right/bottom-only
 * padding of one (the VAE downsampler: ZeroPad2d((0,1,0,1)) then an unpadded conv). */
wan_conv_geom wan_conv_geom_make(int cin, int cout, int h, int w, int k, int stride, int same, int up2);

/* Scratch floats wan_conv_taps needs at least (0 for a 1x1 stride-1 convolution without upsampling). */
size_t wan_conv_scratch_min(const wan_conv_geom *g);

/* out[cout, ho*wo] = bias + sum over taps a with in[a] != NULL of W[a] (*) in[a].
 * w: [ntaps][cout][cin*kh*kw] (each tap a cross-correlation kernel, PyTorch order inside); bias [cout];
 * in[a]: [cin, h, w] (or [cin, h/2, w/2] with up2). Runs on nt OpenMP threads, each taking a band of
 * output rows and calling sgemm itself (so OpenBLAS should be single-threaded meanwhile). `scratch` holds
 * scratch_floats >= nt * wan_conv_scratch_min floats, split evenly between the threads; more scratch
 * means larger row blocks. */
void wan_conv_taps(const wan_conv_geom *g, int ntaps, const float *w, const float *bias,
                   const float *const *in, float *out, float *scratch, size_t scratch_floats, int nt);

/* Channel RMS norm then SiLU (silu=0: norm only) over one frame [c, hw], in place allowed:
 * y = x / max(||x[:, p]||_2, 1e-12) * sqrt(c) * gamma[c], then y * sigmoid(y). `ss` holds hw floats. */
void wan_rms_norm_silu(const float *x, float *y, int c, size_t hw, const float *gamma, int silu, float *ss);

/* Single-head self-attention over the n = hw tokens of one frame, head dim c (vae.md 2.5 without the
 * norm and projections): o[:, i] = sum_j softmax_j(q[:, i] . k[:, j] / sqrt(c)) v[:, j].
 * qkv: [3c, n] (q, k, v stacked), o: [c, n]. Blocks of `rows` queries are spread over nt OpenMP threads
 * (single-threaded sgemm in each); `s` holds nt*rows*n floats. */
void wan_attention_frame(const float *qkv, float *o, int c, int n, float *s, int rows, int nt);

#endif /* WAN_CPU_CONV3D_H */
