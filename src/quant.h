/* quant.h — q8_0 weights (internal): rows of a linear weight stored as int8 values with one F16 scale per block of
 * WAN_Q8_BLOCK (32) consecutive values, value = q · scale (docs/MODEL.md "Quantised weights"). wan convert
 * --quantize q8_0 writes them; the CPU GEMM converts them to f32 as it packs weight panels. */
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

#endif /* WAN_QUANT_H */
