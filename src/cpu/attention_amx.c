/* attention_amx.c — the opt-in bf16 attention on AMX tiles (attention.h, wan_cpu_attention_set_bf16): per (head,
 * block of WAN_ATT_BQ queries) the same online softmax over tiles of WAN_ATT_BK keys as the f32 path, with
 * S = Q·Kᵀ and O += P·V as tdpbf16ps on 32 x 32 blocks (2 x 2 tiles of 16 x 16 f32). Operands in bf16, laid out
 * for the tiles when packed:
 *   K: [head][16-key block][d pair][16 keys][2]  — B tiles of Q·Kᵀ (rows: 16 d pairs, 16 keys each);
 *   V: [head][16-dim block][key pair][16 dims][2] — B tiles of P·V (rows: 16 key pairs, 16 dims each);
 *   Q (scale folded in) and P: [16-row block][32-value step][16 rows][32] — A tiles.
 * The softmax, O and its rescaling stay f32. Compiled with the AMX flags only here. */
#include "cpu/attention.h"
#include "cpu/attention_simd.h"
#include "cpu/gemm.h"
#include "cpu/amx.h"
#include "core.h"

#include <immintrin.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* Eight f32 as eight bf16 (round to nearest even, as the rest of the bf16 path). */
static inline void put_bf16x16(uint16_t *dst, const float *src)
{
    const __m512 v = _mm512_loadu_ps(src);
    _mm256_storeu_si256((__m256i *)dst, (__m256i)_mm512_cvtneps_pbh(v));
}

static void pack_kv_bf16(const float *k, int64_t ldk, const float *v, int64_t ldv, int64_t Lk, int64_t lkp, int heads,
                         int hd, uint16_t *Kb, uint16_t *Vb, int n_threads)
{
    const int64_t nkb = lkp / 16;
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int n = 0; n < heads; n++) {
        for (int64_t j = 0; j < lkp; j++) {
            _Alignas(64) float kr[WAN_ATT_BK], vr[WAN_ATT_BK];
            uint16_t kh[WAN_ATT_BK], vh[WAN_ATT_BK];
            if (j < Lk) {
                memcpy(kr, k + j * ldk + (int64_t)n * hd, (size_t)hd * sizeof(float));
                memcpy(vr, v + j * ldv + (int64_t)n * hd, (size_t)hd * sizeof(float));
            } else {
                memset(kr, 0, sizeof kr);
                memset(vr, 0, sizeof vr);
            }
            for (int d = 0; d < hd; d += 16) {
                put_bf16x16(kh + d, kr + d);
                put_bf16x16(vh + d, vr + d);
            }
            uint16_t *kd = Kb + ((int64_t)n * nkb + j / 16) * (hd / 2) * 32 + (j % 16) * 2;
            for (int d = 0; d < hd; d++)
                kd[(d / 2) * 32 + (d % 2)] = kh[d];
            uint16_t *vd = Vb + (int64_t)n * (hd / 16) * (lkp / 2) * 32 + (j / 2) * 32 + (j % 2);
            for (int d = 0; d < hd; d++)
                vd[(d / 16) * (lkp / 2) * 32 + (d % 16) * 2] = vh[d];
        }
    }
}

/* A-tile layout of a [WAN_ATT_BQ][cols] f32 block (row stride lds, values past `valid` columns and rows past `rows`
 * zero, times `mul`): dst[(rb·steps + s)·512 + r·32 + c] = bf16(src[(16rb + r)·lds + 32s + c]). */
static void pack_rows_bf16(const float *src, int64_t lds, int rows, int cols, int valid, float mul, uint16_t *dst)
{
    const int steps = cols / 32;
    _Alignas(64) float line[WAN_ATT_BK];
    for (int r = 0; r < WAN_ATT_BQ; r++) {
        for (int c = 0; c < cols; c++)
            line[c] = r < rows && c < valid ? src[(int64_t)r * lds + c] * mul : 0.0f;
        for (int s = 0; s < steps; s++) {
            uint16_t *d = dst + ((int64_t)(r / 16) * steps + s) * 512 + (r % 16) * 32;
            put_bf16x16(d, line + 32 * s);
            put_bf16x16(d + 16, line + 32 * s + 16);
        }
    }
}

void wan_cpu_attention_amx(const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v, int64_t ldv,
                           float *out, int64_t ldo, int64_t Lq, int64_t Lk, int heads, int hd, float scale,
                           float last_w, void *scratch, int n_threads)
{
    const int64_t Lkt = last_w != 1.0f ? Lk - 1 : Lk;
    const int64_t lkp = round_up(Lkt > 0 ? Lkt : 1, WAN_ATT_BK), nkb = lkp / 16, vrow = (lkp / 2) * 32;
    /* the f32 path's scratch, reused: bf16 K and V take half of Kp and Vp, each thread's f32 Q and O tiles hold
     * O and the bf16 Q and P tiles, its S tile S */
    uint16_t *Kb = scratch, *Vb = Kb + (int64_t)heads * lkp * hd;
    float *tiles = (float *)scratch + 2 * (int64_t)heads * lkp * hd;
    pack_kv_bf16(k, ldk, v, ldv, Lkt, lkp, heads, hd, Kb, Vb, n_threads);
    const int64_t nqb = (Lq + WAN_ATT_BQ - 1) / WAN_ATT_BQ, ntasks = nqb * heads;
    const int64_t qtile = round_up((int64_t)WAN_ATT_BQ * hd, 16), mtile = round_up(WAN_ATT_BQ, 16);
    const int64_t per = 2 * qtile + (int64_t)WAN_ATT_BQ * WAN_ATT_BK + 2 * mtile;
#pragma omp parallel num_threads(n_threads)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        wan_amx_configure();
        float *O = tiles + (int64_t)tid * per, *QP = O + qtile, *S = QP + qtile;
        float *m = S + (int64_t)WAN_ATT_BQ * WAN_ATT_BK, *l = m + mtile;
        uint16_t *Qb = (uint16_t *)QP, *Pb = Qb + (int64_t)WAN_ATT_BQ * hd; /* both fit in one f32 Q tile */
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < ntasks; task++) {
            const int n = (int)(task / nqb);
            const int64_t i0 = (task % nqb) * WAN_ATT_BQ;
            const int rows = (int)(Lq - i0 < WAN_ATT_BQ ? Lq - i0 : WAN_ATT_BQ);
            pack_rows_bf16(q + i0 * ldq + (int64_t)n * hd, ldq, rows, hd, hd, scale, Qb);
            memset(O, 0, (size_t)WAN_ATT_BQ * hd * sizeof(float));
            for (int r = 0; r < WAN_ATT_BQ; r++)
                m[r] = -INFINITY, l[r] = 0.0f;
            const uint16_t *Kh = Kb + (int64_t)n * nkb * (hd / 2) * 32, *Vh = Vb + (int64_t)n * (hd / 16) * vrow;
            for (int64_t j0 = 0; j0 < Lkt; j0 += WAN_ATT_BK) {
                const int bk = (int)(Lkt - j0 < WAN_ATT_BK ? Lkt - j0 : WAN_ATT_BK);
                const int kblocks = (bk + 31) / 32; /* 32-key column pairs of S that hold keys */
                for (int rb = 0; rb < WAN_ATT_BQ / 16; rb += 2)
                    for (int cb = 0; cb < kblocks; cb++) {
                        const uint16_t *b = Kh + (j0 / 16 + 2 * cb) * (hd / 2) * 32;
                        amx_block_load(NULL, 0);
                        for (int s = 0; s < hd / 32; s++)
                            amx_block_step(Qb + ((int64_t)rb * (hd / 32) + s) * 512,
                                           Qb + ((int64_t)(rb + 1) * (hd / 32) + s) * 512, b + s * 16 * 32,
                                           b + (hd / 2) * 32 + s * 16 * 32, 64);
                        amx_block_store(S + (int64_t)rb * 16 * WAN_ATT_BK + cb * 32, WAN_ATT_BK);
                    }
                att_softmax_rows(S, WAN_ATT_BQ, bk, hd, O, m, l);
                pack_rows_bf16(S, WAN_ATT_BK, WAN_ATT_BQ, kblocks * 32, bk, 1.0f, Pb);
                for (int rb = 0; rb < WAN_ATT_BQ / 16; rb += 2)
                    for (int db = 0; db < hd / 16; db += 2) {
                        float *od = O + (int64_t)rb * 16 * hd + db * 16;
                        amx_block_load(od, hd);
                        for (int s = 0; s < kblocks; s++) {
                            const uint16_t *b = Vh + (int64_t)db * vrow + (j0 / 2 + s * 16) * 32;
                            amx_block_step(Pb + ((int64_t)rb * kblocks + s) * 512,
                                           Pb + ((int64_t)(rb + 1) * kblocks + s) * 512, b, b + vrow, 64);
                        }
                        amx_block_store(od, hd);
                    }
            }
            const int64_t c = (int64_t)n * hd;
            const int wk = Lkt < Lk;
            if (wk) /* the weighted last key goes through the f32 step, from the rows as given (into S) */
                for (int r = 0; r < rows; r++)
                    memcpy(S + (int64_t)r * hd, q + (i0 + r) * ldq + c, (size_t)hd * sizeof(float));
            wan_att_finish(S, rows, wk ? k + Lkt * ldk + c : NULL, wk ? v + Lkt * ldv + c : NULL, hd, scale, last_w, O,
                           m, l, out + i0 * ldo + c, ldo);
        }
    }
}
