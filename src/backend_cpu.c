/* backend_cpu.c — the "cpu" backend: the table of backend.h over the kernels of src/cpu/ (unchanged), host
 * memory from the counted allocator, and one grow-only scratch buffer. Results are those of the kernels
 * called directly. */
#include "backend.h"
#include "cpu/attention.h"
#include "cpu/gemm.h"
#include "cpu/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct cpu_state {
    float *ws;      /* scratch shared by the ops, 64-byte aligned */
    size_t ws_cap;  /* floats                                      */
} cpu_state;

/* Below this many multiply-adds a VAE convolution or frame attention runs on one thread: a fork/join costs more. */
#define CONV_SMALL_MACS 1e8
/* im2col floats per thread and row block (4 MiB): B panels of a few hundred columns or more. */
#define CONV_SCRATCH_PER_THREAD ((size_t)1 << 20)

static int ok(wan_backend *be) { return be->err.code == WAN_OK; }

/* Scratch of at least n floats, or NULL with the sticky error set. */
static float *scratch(wan_backend *be, size_t n)
{
    cpu_state *s = be->impl;
    if (n <= s->ws_cap)
        return s->ws;
    wan_free(s->ws);
    s->ws = wan_malloc((n ? n : 1) * sizeof(float));
    s->ws_cap = s->ws ? n : 0;
    if (!s->ws)
        wan_backend_fail(be, WAN_ERR_NOMEM, "out of memory for %zu MiB of scratch", n * sizeof(float) >> 20);
    return s->ws;
}

/* ---- memory ------------------------------------------------------------------------------------------- */

static void *cpu_alloc(wan_backend *be, size_t bytes)
{
    if (!ok(be))
        return NULL;
    void *p = wan_malloc(bytes ? bytes : 1);
    if (!p)
        wan_backend_fail(be, WAN_ERR_NOMEM, "out of memory allocating %zu MiB", bytes >> 20);
    return p;
}

static void cpu_free(wan_backend *be, void *p)
{
    (void)be;
    wan_free(p);
}

static void cpu_copy(wan_backend *be, void *dst, const void *src, size_t bytes)
{
    if (ok(be) && bytes)
        memmove(dst, src, bytes);
}

static void cpu_zero(wan_backend *be, void *dst, size_t bytes)
{
    if (ok(be) && bytes)
        memset(dst, 0, bytes);
}

static wan_status cpu_sync(wan_backend *be, wan_error *err)
{
    wan_status rc = be->err.code;
    if (rc != WAN_OK && err)
        *err = be->err;
    memset(&be->err, 0, sizeof be->err);
    return rc;
}

static void cpu_destroy(wan_backend *be)
{
    cpu_state *s = be->impl;
    wan_free(s->ws);
    wan_free(s);
    wan_free(be);
}

/* ---- transformer ops ------------------------------------------------------------------------------------ */

static void cpu_linear(wan_backend *be, const float *x, int64_t M, int64_t ldx, const wan_tensor *w, const float *b,
                       float *y, int64_t ldy)
{
    if (!ok(be))
        return;
    const int64_t need = wan_cpu_linear_scratch(w);
    float *ws = need ? scratch(be, (size_t)need) : NULL;
    if (need && !ws)
        return;
    wan_cpu_linear(x, M, ldx, w, b, y, ldy, ws, be->n_threads);
}

static void cpu_attention(wan_backend *be, const float *q, int64_t ldq, const float *k, int64_t ldk, const float *v,
                          int64_t ldv, float *out, int64_t ldo, int64_t Lq, int64_t Lk, int heads, int hd, float scale,
                          float last_w)
{
    if (!ok(be))
        return;
    const size_t bytes = wan_cpu_attention_scratch(Lk, heads, hd, be->n_threads);
    float *ws = scratch(be, (bytes + sizeof(float) - 1) / sizeof(float));
    if (ws)
        wan_cpu_attention(q, ldq, k, ldk, v, ldv, out, ldo, Lq, Lk, heads, hd, scale, last_w, ws, be->n_threads);
}

static void cpu_layernorm(wan_backend *be, const float *x, float *y, int64_t L, int64_t D, int64_t ld, float eps,
                          const float *w, const float *b, const float *shift, const float *scale,
                          const int32_t *tok_row, int64_t mod_ld)
{
    if (ok(be))
        wan_cpu_layernorm(x, y, L, D, ld, eps, w, b, shift, scale, tok_row, mod_ld, be->n_threads);
}

static void cpu_rmsnorm(wan_backend *be, float *x, int64_t L, int64_t D, int64_t ld, float eps, const float *w)
{
    if (ok(be))
        wan_cpu_rmsnorm(x, L, D, ld, eps, w, be->n_threads);
}

static void cpu_rope(wan_backend *be, float *x, int64_t ld, int nf, int nh, int nw, int heads, int hd, int dt, int dh,
                     const float *tab_t, const float *tab_h, const float *tab_w)
{
    if (ok(be))
        wan_cpu_rope(x, ld, nf, nh, nw, heads, hd, dt, dh, tab_t, tab_h, tab_w, be->n_threads);
}

static void cpu_gelu_tanh(wan_backend *be, float *x, int64_t n)
{
    if (ok(be))
        wan_cpu_gelu_tanh(x, n, be->n_threads);
}

static void cpu_silu(wan_backend *be, const float *x, float *y, int64_t n)
{
    if (ok(be))
        wan_cpu_silu(x, y, n);
}

static void cpu_gated_add(wan_backend *be, float *x, int64_t ldx, const float *y, int64_t ldy, int64_t L, int64_t D,
                          const float *gate, const int32_t *tok_row, int64_t mod_ld)
{
    if (ok(be))
        wan_cpu_gated_add(x, ldx, y, ldy, L, D, gate, tok_row, mod_ld, be->n_threads);
}

static void cpu_add_rows(wan_backend *be, float *y, const float *table, const float *x, int64_t U, int64_t n,
                         int64_t ldx, int64_t xn)
{
    if (!ok(be))
        return;
    for (int64_t u = 0; u < U; u++)
        for (int64_t i = 0; i < n; i++)
            y[u * n + i] = table[i] + x[u * ldx + i % xn];
}

static void cpu_patchify(wan_backend *be, const float *x, float *patches, int C, int T, int H, int W, int pt, int ph,
                         int pw)
{
    if (!ok(be))
        return;
    const int nf = T / pt, nh = H / ph, nw = W / pw;
    const int64_t L = (int64_t)nf * nh * nw, K = (int64_t)C * pt * ph * pw;
#pragma omp parallel for num_threads(be->n_threads) schedule(static) if (L * K > 65536)
    for (int64_t l = 0; l < L; l++) {
        const int w = (int)(l % nw), h = (int)((l / nw) % nh), f = (int)(l / ((int64_t)nw * nh));
        float *v = patches + l * K;
        for (int c = 0; c < C; c++)
            for (int a = 0; a < pt; a++)
                for (int b = 0; b < ph; b++)
                    for (int e = 0; e < pw; e++)
                        *v++ = x[(((int64_t)c * T + f * pt + a) * H + h * ph + b) * W + w * pw + e];
    }
}

static void cpu_unpatchify(wan_backend *be, const float *p, float *out, int C, int T, int H, int W, int pt, int ph,
                           int pw)
{
    if (!ok(be))
        return;
    const int nf = T / pt, nh = H / ph, nw = W / pw;
    const int64_t L = (int64_t)nf * nh * nw, K = (int64_t)C * pt * ph * pw;
#pragma omp parallel for num_threads(be->n_threads) schedule(static) if (L * K > 65536)
    for (int64_t l = 0; l < L; l++) {
        const int w = (int)(l % nw), h = (int)((l / nw) % nh), f = (int)(l / ((int64_t)nw * nh));
        const float *pv = p + l * K;
        for (int a = 0; a < pt; a++)
            for (int b = 0; b < ph; b++)
                for (int e = 0; e < pw; e++)
                    for (int c = 0; c < C; c++)
                        out[(((int64_t)c * T + f * pt + a) * H + h * ph + b) * W + w * pw + e] = *pv++;
    }
}

/* ---- VAE ops -------------------------------------------------------------------------------------------- */

static void cpu_conv2d_taps(wan_backend *be, const wan_conv_geom *g, int ntaps, const float *w, const float *bias,
                            const float *const *in, float *out)
{
    if (!ok(be))
        return;
    const double macs = (double)g->cout * g->cin * g->kh * g->kw * g->ho * g->wo * ntaps;
    const int nt = macs < CONV_SMALL_MACS ? 1 : be->n_threads;
    const size_t need = wan_conv_scratch_min(g);
    const size_t per = need > CONV_SCRATCH_PER_THREAD ? need : CONV_SCRATCH_PER_THREAD;
    float *ws = need ? scratch(be, (size_t)nt * per) : NULL;
    if (need && !ws)
        return;
    wan_cpu_set_threads(1); /* each OpenMP thread calls a single-threaded sgemm on its band */
    wan_conv_taps(g, ntaps, w, bias, in, out, ws, need ? ((cpu_state *)be->impl)->ws_cap : 0, nt);
}

static void cpu_chan_rmsnorm(wan_backend *be, const float *x, float *y, int c, int64_t hw, int n, const float *gamma,
                             int silu)
{
    if (!ok(be))
        return;
    float *ss = scratch(be, (size_t)hw);
    if (!ss)
        return;
    const size_t fs = (size_t)c * (size_t)hw;
    for (int t = 0; t < n; t++)
        wan_rms_norm_silu(x + t * fs, y + t * fs, c, (size_t)hw, gamma, silu, ss);
}

static void cpu_attention_frame(wan_backend *be, const float *qkv, float *o, int c, int npix)
{
    if (!ok(be))
        return;
    int rows = (int)(((size_t)1 << 22) / (size_t)npix); /* 16 MiB of scores per thread */
    rows = rows < 1 ? 1 : rows > npix ? npix : rows;
    const int nt = (double)c * npix * npix < CONV_SMALL_MACS ? 1 : be->n_threads;
    float *s = scratch(be, (size_t)nt * rows * npix);
    if (!s)
        return;
    wan_cpu_set_threads(1);
    wan_attention_frame(qkv, o, c, npix, s, rows, nt);
}

static void cpu_add(wan_backend *be, float *x, const float *y, int64_t n)
{
    if (!ok(be))
        return;
#pragma omp parallel for num_threads(be->n_threads) schedule(static) if (n >= (int64_t)WAN_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        x[i] += y[i];
}

static void cpu_dupup_add(wan_backend *be, float *y, const float *x, int cin, int cout, int n_in, int h, int w,
                          int ft, int fs, int trim)
{
    if (!ok(be))
        return;
    const int f3 = ft * fs * fs, rep = cout * f3 / cin, ho = h * fs, wo = w * fs;
    const size_t ihw = (size_t)h * w, total = (size_t)(n_in * ft - trim) * cout * ho * wo;
#pragma omp parallel for num_threads(be->n_threads) schedule(static) if (total >= WAN_PAR_MIN)
    for (int o = 0; o < cout; o++)
        for (int t = trim; t < n_in * ft; t++) {
            const int ti = t / ft, a = t % ft;
            float *yr = y + ((size_t)(t - trim) * cout + o) * ho * wo;
            for (int yy = 0; yy < ho; yy++)
                for (int xx = 0; xx < wo; xx++) {
                    const int j = o * f3 + a * fs * fs + (yy % fs) * fs + xx % fs;
                    yr[(size_t)yy * wo + xx] += x[((size_t)ti * cin + j / rep) * ihw + (size_t)(yy / fs) * w + xx / fs];
                }
        }
}

static void cpu_avgdown_add(wan_backend *be, float *y, const float *x, int cin, int cout, int n_in, int h, int w,
                            int ft, int fs)
{
    if (!ok(be))
        return;
    const int f3 = ft * fs * fs, g = cin * f3 / cout, pad = (ft - n_in % ft) % ft;
    const int n_out = (n_in + pad) / ft, ho = h / fs, wo = w / fs;
    const size_t ihw = (size_t)h * w, total = (size_t)n_out * cout * ho * wo * (size_t)(cin * f3 / cout);
#pragma omp parallel for num_threads(be->n_threads) schedule(static) if (total >= WAN_PAR_MIN)
    for (int o = 0; o < cout; o++)
        for (int t = 0; t < n_out; t++) {
            float *yr = y + ((size_t)t * cout + o) * ho * wo;
            for (int yy = 0; yy < ho; yy++)
                for (int xx = 0; xx < wo; xx++) {
                    float sum = 0.0f;
                    for (int j = o * g; j < o * g + g; j++) {
                        const int ci = j / f3, rest = j % f3, a = rest / (fs * fs), b = rest / fs % fs, d = rest % fs;
                        const int ti = ft * t + a - pad;
                        if (ti >= 0)
                            sum += x[((size_t)ti * cin + ci) * ihw + (size_t)(fs * yy + b) * w + fs * xx + d];
                    }
                    yr[(size_t)yy * wo + xx] += sum / (float)g;
                }
        }
}

/* ---- sampler -------------------------------------------------------------------------------------------- */

static void cpu_guide(wan_backend *be, float *cond, const float *uncond, float g, int64_t n)
{
    if (!ok(be))
        return;
#pragma omp parallel for num_threads(be->n_threads) schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++)
        cond[i] = uncond[i] + g * (cond[i] - uncond[i]);
}

static void cpu_sampler_update(wan_backend *be, const wan_sampler_update *u, const float *v, const float *x,
                               float *out, float *m1, float *m2, float *xl, int64_t n)
{
    if (!ok(be))
        return;
    const wan_sampler_update k = *u;
#pragma omp parallel for num_threads(be->n_threads) schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        if (k.kind == WAN_UPDATE_EULER) {
            out[i] = x[i] + k.dt * v[i];
            continue;
        }
        const float m = x[i] - k.sigma * v[i];
        float xc = x[i];
        if (k.kind == WAN_UPDATE_UNIPC && k.corr) {
            const float base = k.ccx * xl[i] - k.ccm * m1[i];
            float res = k.rho1 * (m - m1[i]);
            if (k.last_order == 2)
                res = k.rho0 * ((m2[i] - m1[i]) / k.crk) + res;
            xc = base - k.ccb * res;
        }
        float p;
        if (k.to_zero) {
            p = m;
        } else if (k.kind == WAN_UPDATE_UNIPC) {
            p = k.cx * xc - k.cm * m;
            if (k.order == 2)
                p = p - k.cb * (0.5f * ((m1[i] - m) / k.rk));
        } else {
            p = k.cx * x[i] - k.cm * m;
            if (k.order == 2)
                p = p - k.cd * (k.inv_r0 * (m - m1[i]));
        }
        m2[i] = m1[i];
        m1[i] = m;
        if (k.kind == WAN_UPDATE_UNIPC)
            xl[i] = xc;
        out[i] = p;
    }
}

/* ---- table ---------------------------------------------------------------------------------------------- */

wan_status wan_backend_cpu_create(int n_threads, wan_backend **out, wan_error *err)
{
    wan_backend *be = wan_calloc(1, sizeof *be);
    cpu_state *s = wan_calloc(1, sizeof *s);
    if (!be || !s) {
        wan_free(be);
        wan_free(s);
        return wan_err(err, WAN_ERR_NOMEM, "cpu backend: out of memory");
    }
#ifdef _OPENMP
    be->n_threads = n_threads > 0 ? n_threads : omp_get_max_threads();
#else
    be->n_threads = 1;
    (void)n_threads;
#endif
    be->name = "cpu";
    snprintf(be->device, sizeof be->device, "CPU, %d threads", be->n_threads);
    /* WAN_CPU_GEMM=bf16: the projections as bf16 products (process-wide, gemm.h), where the CPU has AMX or
     * AVX512-BF16, and with AMX the attention too (attention.h); the device string says which kernels, or that the
     * request was ignored. */
    const char *g = getenv("WAN_CPU_GEMM");
    if (g && !strcmp(g, "bf16")) {
        const wan_gemm_ukr *u = wan_gemm_ukr_bf16();
        const int amx = u == &wan_gemm_ukr_amx;
        if (u)
            wan_cpu_linear_set_mode(WAN_LINEAR_BF16);
        wan_cpu_attention_set_bf16(amx);
        const size_t len = strlen(be->device);
        if (u)
            snprintf(be->device + len, sizeof be->device - len, ", bf16 products (%s%s)", u->name,
                     amx ? ", attention on AMX" : "");
        else
            snprintf(be->device + len, sizeof be->device - len, ", WAN_CPU_GEMM=bf16 ignored (no AMX or AVX512-BF16)");
    }
    be->host_memory = 1;
    be->impl = s;
    be->alloc = cpu_alloc;
    be->free = cpu_free;
    be->upload = cpu_copy;
    be->download = cpu_copy;
    be->copy = cpu_copy;
    be->zero = cpu_zero;
    be->sync = cpu_sync;
    be->destroy = cpu_destroy;
    be->linear = cpu_linear;
    be->attention = cpu_attention;
    be->layernorm = cpu_layernorm;
    be->rmsnorm = cpu_rmsnorm;
    be->rope = cpu_rope;
    be->gelu_tanh = cpu_gelu_tanh;
    be->silu = cpu_silu;
    be->gated_add = cpu_gated_add;
    be->add_rows = cpu_add_rows;
    be->patchify = cpu_patchify;
    be->unpatchify = cpu_unpatchify;
    be->conv2d_taps = cpu_conv2d_taps;
    be->chan_rmsnorm = cpu_chan_rmsnorm;
    be->attention_frame = cpu_attention_frame;
    be->add = cpu_add;
    be->dupup_add = cpu_dupup_add;
    be->avgdown_add = cpu_avgdown_add;
    be->guide = cpu_guide;
    be->sampler_update = cpu_sampler_update;
    *out = be;
    return WAN_OK;
}
