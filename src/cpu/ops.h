/* ops.h — element-wise and per-row CPU ops of the DiT: norms with modulation, RoPE, activations, gated
 * residuals (internal). All data f32, rows of D floats with a row stride; n_threads is the OpenMP team size.
 *
 * Modulation vectors: `shift`, `scale`, `gate` point at row 0 of a table whose row u starts mod_ld floats
 * later; token l uses row tok_row[l] (tok_row NULL: every token uses row 0). This covers the scalar
 * timestep (one row) and the per-token timestep (one row per distinct t) with one code path. */
#ifndef WAN_CPU_OPS_H
#define WAN_CPU_OPS_H

#include <stdint.h>

/* 1 when the AVX2 kernels of this family may run on this CPU (cached after the first call). */
int wan_cpu_use_avx2(void);
/* 1 when the AVX-512 kernels may run (cached likewise). */
int wan_cpu_use_avx512(void);

/* y[l] = ((x[l] - mean) / sqrt(var + eps) · w + b) · (1 + scale_l) + shift_l over D floats (biased variance).
 * w, b NULL: no affine; shift/scale NULL: no modulation. x and y may be the same. */
void wan_cpu_layernorm(const float *x, float *y, int64_t L, int64_t D, int64_t ld, float eps, const float *w,
                       const float *b, const float *shift, const float *scale, const int32_t *tok_row,
                       int64_t mod_ld, int n_threads);

/* x[l] = x[l] / sqrt(mean(x[l]²) + eps) · w, in place over D floats of each row. */
void wan_cpu_rmsnorm(float *x, int64_t L, int64_t D, int64_t ld, float eps, const float *w, int n_threads);

/* x[l] += gate_l · y[l] (gate NULL: x[l] += y[l]) over D floats. */
void wan_cpu_gated_add(float *x, int64_t ldx, const float *y, int64_t ldy, int64_t L, int64_t D,
                       const float *gate, const int32_t *tok_row, int64_t mod_ld, int n_threads);

/* In place: x = x · sigmoid(2·sqrt(2/pi)·(x + 0.044715·x³)), i.e. GELU with the tanh approximation. */
void wan_cpu_gelu_tanh(float *x, int64_t n, int n_threads);

/* y = x · sigmoid(x) (may be in place). */
void wan_cpu_silu(const float *x, float *y, int64_t n);

/* RoPE table of one axis: tab[(p · (dim/2) + j) · 2 + {0,1}] = {cos, sin}(p · theta^(-2j/dim)) for
 * p < n_pos, computed in double and rounded to f32. */
void wan_cpu_rope_table(float *tab, int n_pos, int dim, double theta);

/* Rotates interleaved channel pairs (2m, 2m+1) of every head of every token in place. Token l is the grid
 * point (f, h, w) with l = (f·nh + h)·nw + w; pair m < dt/2 uses tab_t at f, then dh/2 pairs tab_h at h, then
 * the rest tab_w at w (tables from wan_cpu_rope_table with dims dt, dh, dw; dt + dh + dw = hd). */
void wan_cpu_rope(float *x, int64_t ld, int nf, int nh, int nw, int heads, int hd, int dt, int dh,
                  const float *tab_t, const float *tab_h, const float *tab_w, int n_threads);

/* AVX2 versions (ops_avx2.c); only called when wan_cpu_use_avx2(). */
void wan_cpu_gelu_tanh_avx2(float *x, int64_t n);
/* Σ (x[i] - c)^p over i < n (p = 1 or 2), accumulated in double. */
double wan_cpu_row_sum_avx2(const float *x, int64_t n, double c, int p);
/* y[i] = ((x[i] - mu)·rstd·w[i] + b[i])·(1 + scale[i]) + shift[i] (w NULL: no affine, b NULL: no bias; scale NULL:
 * no modulation); x and y may be the same. */
void wan_cpu_norm_row_avx2(const float *x, float *y, int64_t n, float mu, float rstd, const float *w,
                           const float *b, const float *scale, const float *shift);

#endif /* WAN_CPU_OPS_H */
