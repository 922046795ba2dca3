/* quant.c — q8_0 quantisation and conversion to f32 (see quant.h). */
#include "quant.h"

#include <math.h>

void wan_q8_quantize_row(const float *x, int64_t K, int8_t *q, uint16_t *scale)
{
    for (int64_t b = 0; b < K / WAN_Q8_BLOCK; b++) {
        const float *xb = x + b * WAN_Q8_BLOCK;
        float amax = 0.0f;
        for (int i = 0; i < WAN_Q8_BLOCK; i++)
            if (isfinite(xb[i]))
                amax = fmaxf(amax, fabsf(xb[i]));
        const uint16_t h = wan_f32_to_f16(fminf(amax / 127.0f, 65504.0f)); /* past f16's range: values saturate */
        const float s = wan_f16_to_f32(h);
        scale[b] = h;
        for (int i = 0; i < WAN_Q8_BLOCK; i++) {
            float v = isinf(xb[i]) ? copysignf(127.0f, xb[i]) : s > 0.0f ? nearbyintf(xb[i] / s) : 0.0f;
            v = v != v ? 0.0f : fminf(fmaxf(v, -127.0f), 127.0f);
            q[b * WAN_Q8_BLOCK + i] = (int8_t)v;
        }
    }
}

void wan_q8_row_to_f32(const wan_tensor *w, int64_t row, int64_t k0, int64_t n, float *dst)
{
    const int64_t K = w->ne[1], nb = K / WAN_Q8_BLOCK;
    const int8_t *q = (const int8_t *)w->data + row * K;
    for (int64_t k = k0; k < k0 + n;) {
        const int64_t b = k / WAN_Q8_BLOCK, end = (b + 1) * WAN_Q8_BLOCK < k0 + n ? (b + 1) * WAN_Q8_BLOCK : k0 + n;
        const float s = wan_q8_scale(w->qscale, row * nb + b);
        for (; k < end; k++)
            dst[k - k0] = (float)q[k] * s;
    }
}

void wan_q4_quantize_row(const float *x, int64_t K, uint8_t *q, uint16_t *scale)
{
    for (int64_t b = 0; b < K / WAN_Q8_BLOCK; b++) {
        const float *xb = x + b * WAN_Q8_BLOCK;
        float m = 0.0f;
        for (int i = 0; i < WAN_Q8_BLOCK; i++)
            if (isfinite(xb[i]) && fabsf(xb[i]) > fabsf(m))
                m = xb[i];
        const uint16_t h = wan_f32_to_f16(fmaxf(fminf(m / -8.0f, 65504.0f), -65504.0f));
        const float s = wan_f16_to_f32(h);
        scale[b] = h;
        uint8_t *qb = q + b * WAN_Q8_BLOCK / 2;
        for (int i = 0; i < WAN_Q8_BLOCK; i++) {
            float v = s != 0.0f ? (isinf(xb[i]) ? (xb[i] > 0) == (s > 0) ? 7.0f : -8.0f : nearbyintf(xb[i] / s)) : 0.0f;
            v = v != v ? 0.0f : fminf(fmaxf(v, -8.0f), 7.0f);
            const uint8_t nib = (uint8_t)((int)v + 8);
            if (i % 2)
                qb[i / 2] = (uint8_t)(qb[i / 2] | nib << 4);
            else
                qb[i / 2] = nib;
        }
    }
}

void wan_q4_row_to_f32(const wan_tensor *w, int64_t row, int64_t k0, int64_t n, float *dst)
{
    const int64_t K = w->ne[1], nb = K / WAN_Q8_BLOCK;
    const uint8_t *q = (const uint8_t *)w->data + row * (K / 2);
    for (int64_t k = k0; k < k0 + n;) {
        const int64_t b = k / WAN_Q8_BLOCK, end = (b + 1) * WAN_Q8_BLOCK < k0 + n ? (b + 1) * WAN_Q8_BLOCK : k0 + n;
        const float s = wan_q8_scale(w->qscale, row * nb + b);
        for (; k < end; k++)
            dst[k - k0] = (float)((q[k / 2] >> (4 * (k % 2)) & 15) - 8) * s;
    }
}
