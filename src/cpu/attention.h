/* attention.h — multi-head softmax attention on the CPU, streaming over keys (internal).
 *
 * Flash-style: for each (head, block of WAN_ATT_BQ queries) a thread walks the keys in blocks of WAN_ATT_BK,
 * keeping a running max, a running sum and an unnormalised output per query (online softmax, all f32).
 * Memory is linear in the token counts: packed copies of K and V (Lk·H·hd floats each, rounded up to a
 * key block) plus a fixed tile set per thread. The Lq×Lk score matrix is never formed. */
#ifndef WAN_CPU_ATTENTION_H
#define WAN_CPU_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#define WAN_ATT_BQ 96  /* queries per tile (a multiple of the 6-row micro-kernel)  */
#define WAN_ATT_BK 128 /* keys per tile (a multiple of the 16-key packed panel)     */
#define WAN_ATT_KP 16  /* keys per packed K panel                                 */

/* Bytes of scratch wan_cpu_attention needs. */
size_t wan_cpu_attention_scratch(int64_t Lk, int heads, int hd, int n_threads);

/* out[i, n·hd + d] = sum_j softmax_j(scale · <q_i, k_j>) · v[j, n·hd + d] for each head n < heads, without a
 * mask. q is [Lq, *] with row stride ldq, k and v are [Lk, *] with strides ldk/ldv, out [Lq, *] with stride
 * ldo (floats); head n occupies columns n·hd .. n·hd+hd-1 of each. `scratch` holds
 * wan_cpu_attention_scratch(Lk, heads, hd, n_threads) bytes, 64-byte aligned. Lk >= 1.
 * last_w is the multiplicity of the last key: it stands for last_w identical keys (its softmax weight is
 * last_w·exp(s - max) and the sum counts it last_w times), so a context whose trailing rows are equal needs
 * only one of them. 1: plain attention (the tile kernels alone); otherwise the last key is one scalar
 * online-softmax step after the tiles. */
void wan_cpu_attention(const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v, int64_t ldv,
                       float *out, int64_t ldo, int64_t Lq, int64_t Lk, int heads, int hd, float scale,
                       float last_w, void *scratch, int n_threads);

/* One key tile for one query tile (the inner step; exposed for the ISA files and op tests).
 * Q: [bq][hd] (bq a multiple of 6), Kp: the tile's packed panels [bk/16 rounded up][hd][16] (zero-padded),
 * V: [bk][hd] contiguous, S: [bq][WAN_ATT_BK] scratch, O: [bq][hd] running output, m/l: [bq] running max
 * and sum. Updates O, m, l. */
typedef void (*wan_att_tile_fn)(const float *Q, int bq, const float *Kp, const float *V, int bk, int hd,
                                float scale, float *S, float *O, float *m, float *l);
void wan_att_tile_generic(const float *Q, int bq, const float *Kp, const float *V, int bk, int hd, float scale,
                          float *S, float *O, float *m, float *l);
/* Requires hd % 16 == 0. */
void wan_att_tile_avx2(const float *Q, int bq, const float *Kp, const float *V, int bk, int hd, float scale,
                       float *S, float *O, float *m, float *l);
/* Requires hd % 32 == 0 and AVX-512 (wan_cpu_use_avx512). */
void wan_att_tile_avx512(const float *Q, int bq, const float *Kp, const float *V, int bk, int hd, float scale,
                         float *S, float *O, float *m, float *l);

/* Forces the tile kernel (NULL: choose by CPU). For op tests; not thread-safe with a running attention. */
void wan_cpu_attention_force_tile(wan_att_tile_fn fn);

/* Opt-in bf16 products (WAN_CPU_GEMM=bf16): on a CPU with AMX and for head dim 128 (every Wan model's; the
 * per-thread tiles of the f32 path hold the bf16 Q and P tiles only from there), wan_cpu_attention runs Q·Kᵀ and
 * P·V on AMX tiles, with q (scale folded in), k, v and the probabilities rounded to bf16 and f32 sums; the online
 * softmax stays f32. Process-wide; off by default, and when a tile kernel is forced. */
void wan_cpu_attention_set_bf16(int on);

/* The AMX path of wan_cpu_attention (attention_amx.c): the same contract, scratch included. */
void wan_cpu_attention_amx(const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v, int64_t ldv,
                           float *out, int64_t ldo, int64_t Lq, int64_t Lk, int heads, int hd, float scale,
                           float last_w, void *scratch, int n_threads);

/* The end of one (head, query block) of either path: when `key` is not NULL, one more online-softmax step over that
 * single key of weight w (it stands for w identical keys; s = scale·<q, key> for the rows of Q, [rows][hd]), then
 * dst[r·ldo + d] = O[r][d] / l[r] for r < rows, d < hd. */
void wan_att_finish(const float *Q, int rows, const float *key, const float *val, int hd, float scale, float w,
                    float *O, float *m, float *l, float *dst, int64_t ldo);

#endif /* WAN_CPU_ATTENTION_H */
