/* quant.h — q8_0 and q4_0 weights (internal): rows of a linear weight stored as 8-bit (4-bit) integers with one F16
 * scale per block of WAN_Q8_BLOCK (32) consecutive values, value = q · scale (docs/MODEL.md "Quantised weights").
 * wan convert --quantize q8_0|q4_0 writes them; the CPU GEMM converts them to f32 as it packs weight panels. */
#ifndef WAN_QUANT_H
#define WAN_QUANT_H

#include "core.h"

#include <string.h>

/* Scale i of a q8_0 scale array (F16 at any alignment), as f32. */
static inline float wan_q8_scale(const uint16_t *qscale, int64_t i)
{
    uint16_t h;
    memcpy(&h, qscale + i, sizeof h);
    return wan_f16_to_f32(h);
}

/* Quantises K values of x (K a multiple of WAN_Q8_BLOCK) to q8_0: per block, scale = f16(max|x| / 127) and
 * q = x / scale rounded to nearest even, clamped to ±127 (0 for an all-zero block or one whose scale rounds to 0).
 * The scale comes from the finite values; NaN quantises to 0 and ±inf to ±127. Writes K values to q and
 * K / WAN_Q8_BLOCK scales (native F16 bit patterns) to scale. */
void wan_q8_quantize_row(const float *x, int64_t K, int8_t *q, uint16_t *scale);

/* Values k0 <= k < k0 + n of row `row` of the q8_0 weight w (dtype I8 with qscale, any k0 and n) as f32. */
void wan_q8_row_to_f32(const wan_tensor *w, int64_t row, int64_t k0, int64_t n, float *dst);

/* q4_0: the same blocks of WAN_Q8_BLOCK values with one F16 scale each, values 4-bit: byte j of a row holds values
 * 2j (low nibble) and 2j + 1 (high nibble), each stored as q + 8 with q in [-8, 7]; value = q · scale. The scale is
 * f16(m / -8) where m is the block's value of largest magnitude, so that m itself is q = -8 (the scale may be
 * negative); q = x / scale rounded to nearest even, clamped to [-8, 7]. A q4_0 weight is a wan_tensor of dtype U8
 * with qscale set, ne [N, K] counting values (K / 2 bytes a row). */
static inline bool wan_tensor_is_q4(const wan_tensor *w) { return w->qscale && w->dtype == WAN_DTYPE_U8; }

/* Quantises K values of x (K a multiple of WAN_Q8_BLOCK) to q4_0: K / 2 bytes to q, K / WAN_Q8_BLOCK scales to scale.
 * The scale comes from the finite values; NaN quantises to 0, ±inf to the end of the range of its sign. */
void wan_q4_quantize_row(const float *x, int64_t K, uint8_t *q, uint16_t *scale);

/* Values k0 <= k < k0 + n of row `row` of the q4_0 weight w as f32 (any k0 and n). */
void wan_q4_row_to_f32(const wan_tensor *w, int64_t row, int64_t k0, int64_t n, float *dst);

#endif /* WAN_QUANT_H */
