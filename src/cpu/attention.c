/* attention.c — flash-style attention driver (packing, tiling, threads) and the portable tile kernel. */
#include "cpu/attention.h"
#include "cpu/gemm.h"
#include "cpu/ops.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static wan_att_tile_fn g_forced;
static int g_bf16;

void wan_cpu_attention_force_tile(wan_att_tile_fn fn) { g_forced = fn; }
void wan_cpu_attention_set_bf16(int on) { g_bf16 = on; }

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* Floats of per-thread tiles, each part rounded to 16 floats so that every part stays 64-byte aligned. */
static int64_t thread_floats(int hd)
{
    return 2 * round_up((int64_t)WAN_ATT_BQ * hd, 16) + (int64_t)WAN_ATT_BQ * WAN_ATT_BK +
           2 * round_up(WAN_ATT_BQ, 16);
}

size_t wan_cpu_attention_scratch(int64_t Lk, int heads, int hd, int n_threads)
{
    const int64_t lkp = round_up(Lk, WAN_ATT_BK);
    if (n_threads < 1)
        n_threads = 1;
    return (size_t)(2 * (int64_t)heads * lkp * hd + (int64_t)n_threads * thread_floats(hd)) * sizeof(float);
}

void wan_att_tile_generic(const float *Q, int bq, const float *Kp, const float *V, int bk, int hd, float scale,
                          float *S, float *O, float *m, float *l)
{
    for (int r = 0; r < bq; r++) {
        const float *qr = Q + (int64_t)r * hd;
        float *sr = S + (int64_t)r * WAN_ATT_BK;
        for (int j = 0; j < bk; j++) {
            const float *panel = Kp + (int64_t)(j / WAN_ATT_KP) * hd * WAN_ATT_KP + j % WAN_ATT_KP;
            float s = 0.0f;
            for (int d = 0; d < hd; d++)
                s += qr[d] * panel[d * WAN_ATT_KP];
            sr[j] = s * scale;
        }
        float mx = sr[0];
        for (int j = 1; j < bk; j++)
            mx = sr[j] > mx ? sr[j] : mx;
        const float mnew = mx > m[r] ? mx : m[r];
        const float alpha = expf(m[r] - mnew); /* m = -inf at the first tile gives 0 */
        float sum = 0.0f;
        for (int j = 0; j < bk; j++) {
            sr[j] = expf(sr[j] - mnew);
            sum += sr[j];
        }
        l[r] = l[r] * alpha + sum;
        m[r] = mnew;
        float *orow = O + (int64_t)r * hd;
        for (int d = 0; d < hd; d++)
            orow[d] *= alpha;
        for (int j = 0; j < bk; j++) {
            const float p = sr[j], *vr = V + (int64_t)j * hd;
            for (int d = 0; d < hd; d++)
                orow[d] += p * vr[d];
        }
    }
}

/* Kp[n][panel][d][16] and Vp[n][j][d] from the strided k and v; keys past Lk are zero. */
static void pack_kv(const float *k, int64_t ldk, const float *v, int64_t ldv, int64_t Lk, int64_t lkp, int heads,
                    int hd, float *Kp, float *Vp, int n_threads)
{
    const int64_t npanels = lkp / WAN_ATT_KP;
#pragma omp parallel for num_threads(n_threads) schedule(static) collapse(2) if (Lk * hd * heads > 65536)
    for (int n = 0; n < heads; n++) {
        for (int64_t p = 0; p < npanels; p++) {
            float *dk = Kp + ((int64_t)n * npanels + p) * hd * WAN_ATT_KP;
            float *dv = Vp + ((int64_t)n * lkp + p * WAN_ATT_KP) * hd;
            for (int jj = 0; jj < WAN_ATT_KP; jj++) {
                const int64_t j = p * WAN_ATT_KP + jj;
                if (j < Lk) {
                    const float *kr = k + j * ldk + (int64_t)n * hd;
                    for (int d = 0; d < hd; d++)
                        dk[d * WAN_ATT_KP + jj] = kr[d];
                    memcpy(dv + (int64_t)jj * hd, v + j * ldv + (int64_t)n * hd, (size_t)hd * sizeof(float));
                } else {
                    for (int d = 0; d < hd; d++)
                        dk[d * WAN_ATT_KP + jj] = 0.0f;
                    memset(dv + (int64_t)jj * hd, 0, (size_t)hd * sizeof(float));
                }
            }
        }
    }
}

/* One online-softmax step over a single key of weight w (it stands for w identical keys) for rows 0..rows-1 of Q
 * ([rows][hd]): s = scale·<q, key>, m_new = max(m, s), O = O·e^(m - m_new) + w·e^(s - m_new)·val, likewise l. */
static void weighted_key(const float *Q, int rows, const float *key, const float *val, int hd, float scale, float w,
                         float *O, float *m, float *l)
{
    for (int r = 0; r < rows; r++) {
        const float *qr = Q + (int64_t)r * hd;
        float acc[8] = { 0 }, s = 0.0f; /* 8 partial sums: independent adds, and gcc vectorises them */
        int d = 0;
        for (; d + 8 <= hd; d += 8)
            for (int j = 0; j < 8; j++)
                acc[j] += qr[d + j] * key[d + j];
        for (; d < hd; d++)
            s += qr[d] * key[d];
        for (int j = 0; j < 8; j++)
            s += acc[j];
        s *= scale;
        const float mnew = s > m[r] ? s : m[r];
        const float alpha = expf(m[r] - mnew), p = w * expf(s - mnew); /* alpha 0 when no key came before */
        l[r] = l[r] * alpha + p;
        m[r] = mnew;
        float *orow = O + (int64_t)r * hd;
        for (int d = 0; d < hd; d++)
            orow[d] = orow[d] * alpha + p * val[d];
    }
}

void wan_att_finish(const float *Q, int rows, const float *key, const float *val, int hd, float scale, float w,
                    float *O, float *m, float *l, float *dst, int64_t ldo)
{
    if (key)
        weighted_key(Q, rows, key, val, hd, scale, w, O, m, l);
    for (int r = 0; r < rows; r++) {
        const float inv = 1.0f / l[r];
        for (int d = 0; d < hd; d++)
            dst[r * ldo + d] = O[(int64_t)r * hd + d] * inv;
    }
}

void wan_cpu_attention(const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v, int64_t ldv,
                       float *out, int64_t ldo, int64_t Lq, int64_t Lk, int heads, int hd, float scale,
                       float last_w, void *scratch, int n_threads)
{
    if (n_threads < 1)
        n_threads = 1;
    if (g_bf16 && !g_forced && hd == 128 && wan_gemm_ukr_bf16() == &wan_gemm_ukr_amx) {
        wan_cpu_attention_amx(q, ldq, k, ldk, v, ldv, out, ldo, Lq, Lk, heads, hd, scale, last_w, scratch, n_threads);
        return;
    }
    const int64_t Lkt = last_w != 1.0f ? Lk - 1 : Lk; /* keys of the tiles; a weighted last key comes after */
    const int64_t lkp = round_up(Lkt, WAN_ATT_BK);
    float *Kp = scratch, *Vp = Kp + (int64_t)heads * lkp * hd, *tiles = Vp + (int64_t)heads * lkp * hd;
    pack_kv(k, ldk, v, ldv, Lkt, lkp, heads, hd, Kp, Vp, n_threads);

    wan_att_tile_fn tile = g_forced                                   ? g_forced
                           : (wan_cpu_use_avx512() && hd % 32 == 0) ? wan_att_tile_avx512
                           : (wan_cpu_use_avx2() && hd % 16 == 0)   ? wan_att_tile_avx2
                                                                    : wan_att_tile_generic;
    const int64_t nqb = (Lq + WAN_ATT_BQ - 1) / WAN_ATT_BQ, ntasks = nqb * heads;
    const int64_t nkb = lkp / WAN_ATT_BK;
    const int64_t qtile = round_up((int64_t)WAN_ATT_BQ * hd, 16), mtile = round_up(WAN_ATT_BQ, 16);
#pragma omp parallel num_threads(n_threads)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *Q = tiles + (int64_t)tid * thread_floats(hd), *O = Q + qtile, *S = O + qtile;
        float *m = S + (int64_t)WAN_ATT_BQ * WAN_ATT_BK, *l = m + mtile;
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < ntasks; task++) {
            const int n = (int)(task / nqb);
            const int64_t i0 = (task % nqb) * WAN_ATT_BQ;
            const int rows = (int)(Lq - i0 < WAN_ATT_BQ ? Lq - i0 : WAN_ATT_BQ);
            const int bq = (rows + 5) / 6 * 6;
            for (int r = 0; r < bq; r++) {
                if (r < rows)
                    memcpy(Q + (int64_t)r * hd, q + (i0 + r) * ldq + (int64_t)n * hd, (size_t)hd * sizeof(float));
                else
                    memset(Q + (int64_t)r * hd, 0, (size_t)hd * sizeof(float));
                m[r] = -INFINITY;
                l[r] = 0.0f;
            }
            memset(O, 0, (size_t)bq * hd * sizeof(float));
            for (int64_t kb = 0; kb < nkb; kb++) {
                const int64_t j0 = kb * WAN_ATT_BK;
                const int bk = (int)(Lkt - j0 < WAN_ATT_BK ? Lkt - j0 : WAN_ATT_BK);
                if (bk <= 0)
                    break;
                const float *kt = Kp + ((int64_t)n * (lkp / WAN_ATT_KP) + j0 / WAN_ATT_KP) * hd * WAN_ATT_KP;
                const float *vt = Vp + ((int64_t)n * lkp + j0) * hd;
                tile(Q, bq, kt, vt, bk, hd, scale, S, O, m, l);
            }
            const int64_t c = (int64_t)n * hd;
            const int wk = Lkt < Lk;
            wan_att_finish(Q, rows, wk ? k + Lkt * ldk + c : NULL, wk ? v + Lkt * ldv + c : NULL, hd, scale, last_w, O,
                           m, l, out + i0 * ldo + c, ldo);
        }
    }
}
