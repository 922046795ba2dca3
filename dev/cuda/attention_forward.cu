/* attention_forward.cu — multi-head attention without a mask, out = softmax(scale·q·kᵀ)·v per head, q/k/v/out
 * [L, heads·hd] f32 (backend.h: be->attention).
 *   version 1: one thread per (query, head), online softmax over every key read from global memory (reference
 *              kernel; slow).
 *   version 2: src/cuda/attention.cu through the backend with WAN_CUDA_ATTN=f32 — the f32 SIMT flash kernel, key
 *              tiles in shared memory (every head dim <= 256).
 *   version 3: src/cuda/attention.cu through the backend as configured by default — for head dims 64 and 128 the
 *              bf16 tensor-core flash kernel of src/cuda/flash_bf16.cuh (mma.sync m16n8k16, f32 accumulation,
 *              FlashAttention-2 work split; K/V rounded to bf16 into scratch in head groups); other head dims
 *              fall back to version 2's kernel.
 *   versions 4-6: candidate tile configurations of the same kernel, launched directly over all heads at once
 *              (K/V conversion included in the time; head dims 64 and 128 only):
 *              4 = the production configuration (v3 minus the head groups), 5 = 8 warps x 16 rows with 64-key
 *              tiles, 6 = 4 warps x 32 rows with 32-key tiles.
 *
 *   ./attention_forward layout           host only, no GPU: flash_bf16.cuh's ldmatrix addresses against the PTX
 *                                        fragment layouts, bank conflicts, tile coverage (exit 1 on an error)
 *   ./attention_forward validate [v]     random shapes (hd 32, 40, 64, 128; ragged Lq and Lk; cross-attention
 *                                        with 512 keys) against the CPU
 *   ./attention_forward benchmark [v]    Wan2.2-A14B self-attention (40 heads x 128, L = 75,600: 81 frames at
 *                                        1280x720) and cross-attention over 512 text rows: ms and TFLOP/s */
#include "common.h"

#include "cuda/flash_bf16.cuh"
#include "cuda/flash_wgmma.cuh"
#include "flash_experiments.cuh"

#define N_VERSIONS 17

static void cpu_attention(const float *q, const float *k, const float *v, float *o, int Lq, int Lk, int H, int hd,
                          float scale)
{
    const int ld = H * hd;
    double *s = (double *)malloc((size_t)Lk * sizeof(double));
    for (int n = 0; n < H; n++)
        for (int i = 0; i < Lq; i++) {
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < Lk; j++) {
                double d = 0;
                for (int e = 0; e < hd; e++)
                    d += (double)q[(size_t)i * ld + n * hd + e] * k[(size_t)j * ld + n * hd + e];
                s[j] = d * scale;
                mx = fmax(mx, s[j]);
            }
            for (int j = 0; j < Lk; j++)
                sum += s[j] = exp(s[j] - mx);
            for (int e = 0; e < hd; e++) {
                double a = 0;
                for (int j = 0; j < Lk; j++)
                    a += s[j] * v[(size_t)j * ld + n * hd + e];
                o[(size_t)i * ld + n * hd + e] = (float)(a / sum);
            }
        }
    free(s);
}

__global__ void attention_v1(const float *q, const float *k, const float *v, float *o, int Lq, int Lk, int H, int hd,
                             float scale)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x, n = blockIdx.y, ld = H * hd;
    if (i >= Lq)
        return;
    const float *qi = q + (size_t)i * ld + n * hd;
    float *oi = o + (size_t)i * ld + n * hd;
    float m = -INFINITY, l = 0;
    for (int e = 0; e < hd; e++)
        oi[e] = 0;
    for (int j = 0; j < Lk; j++) {
        const float *kj = k + (size_t)j * ld + n * hd, *vj = v + (size_t)j * ld + n * hd;
        float s = 0;
        for (int e = 0; e < hd; e++)
            s += qi[e] * kj[e];
        s *= scale;
        const float mn = fmaxf(m, s), a = expf(m - mn), p = expf(s - mn);
        l = l * a + p;
        for (int e = 0; e < hd; e++)
            oi[e] = oi[e] * a + p * vj[e];
        m = mn;
    }
    for (int e = 0; e < hd; e++)
        oi[e] /= l;
}

/* ---- layout: the fragment arithmetic of flash_bf16.cuh, checked on the host ------------------------------------- */

/* The PTX ISA's fragment layouts ("Matrix Fragments for mma.m16n8k16"), g = lane/4, c = lane%4: which element of
 * the operand register `reg`, half `half` (0: bits 0-15) of `lane` holds. */
typedef struct rc { int r, c; } rc;
static rc frag_a(int lane, int reg, int half) /* A 16x16: (row, col) */
{
    return (rc){ lane / 4 + 8 * (reg % 2), 2 * (lane % 4) + half + 8 * (reg / 2) };
}
static rc frag_b(int lane, int reg, int half) /* B 16x8: (k, n) */
{
    return (rc){ 2 * (lane % 4) + half + 8 * reg, lane / 4 };
}
static rc frag_c(int lane, int e) /* C/D 16x8: (row, col) */
{
    return (rc){ lane / 4 + 8 * (e / 2), 2 * (lane % 4) + e % 2 };
}

/* ldmatrix.x4 as the PTX ISA defines it: row k of matrix i is the 8 elements at the address lane 8i + k gives;
 * register i of lane l holds row l/4, columns 2(l%4) + half of matrix i (.trans: row 2(l%4) + half, column l/4).
 * tile[e] is the (row, col) of the element at offset e. */
static void emu_ldsm(const rc *tile, const int addr[32], int trans, rc out[32][4][2])
{
    for (int i = 0; i < 4; i++)
        for (int l = 0; l < 32; l++)
            for (int h = 0; h < 2; h++) {
                const int row = trans ? 2 * (l % 4) + h : l / 4, col = trans ? l / 4 : 2 * (l % 4) + h;
                out[l][i][h] = tile[addr[8 * i + row] + col];
            }
}

/* Shared memory: the 8 lanes of each phase (16 bytes each, at byte offsets off[]) must hit 32 distinct banks and be
 * 16-byte aligned. Returns the number of violations. */
static int check_banks(const char *what, const int off[32])
{
    int bad = 0;
    for (int ph = 0; ph < 4; ph++) {
        int used[32] = { 0 };
        for (int k = 0; k < 8; k++) {
            const int b = off[8 * ph + k];
            bad += b % 16 != 0;
            for (int u = 0; u < 4; u++)
                bad += used[(b / 4 + u) % 32]++ != 0;
        }
    }
    if (bad)
        printf("  %s: %d bank conflicts or misaligned rows\n", what, bad);
    return bad;
}

/* Every fragment the kernel loads, for configuration C: Q (A operand), K (B of S = Q·Kᵀ), V (B of O += P·V, .trans),
 * P (the S accumulators re-packed as A), the cp.async tile copy. The offsets are formed as in the kernel: a lane's
 * ldm_*_off at the tile origin plus a constant per fragment. Returns the number of errors. */
template <class C>
static int check_layout(void)
{
    const int LDS = C::LDS, rows = C::BQ > C::BK ? C::BQ : C::BK;
    const int qbase = 0, kbase = C::BQ * LDS * 2, vbase = (C::BQ + C::BK) * LDS * 2; /* byte offsets */
    rc *tile = (rc *)malloc((size_t)rows * LDS * sizeof(rc));
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < LDS; c++)
            tile[r * LDS + c] = (rc){ r, c < C::HD ? c : -1000 }; /* padding columns must never be read */
    int err = 0, addr[32], boff[32];
    rc f[32][4][2];
    char what[96];
    for (int w = 0; w < C::WARPS; w++)
        for (int mt = 0; mt < C::MT; mt++)
            for (int kk = 0; kk < C::HD / 16; kk++) {
                const int wr0 = w * C::MT * 16;
                for (int l = 0; l < 32; l++) {
                    addr[l] = ldm_a_off(l, wr0, 0, LDS) + 16 * mt * LDS + 16 * kk;
                    boff[l] = qbase + 2 * addr[l];
                }
                emu_ldsm(tile, addr, 0, f);
                for (int l = 0; l < 32; l++)
                    for (int i = 0; i < 4; i++)
                        for (int h = 0; h < 2; h++) {
                            const rc want = frag_a(l, i, h), got = f[l][i][h];
                            err += got.r != wr0 + 16 * mt + want.r || got.c != 16 * kk + want.c;
                        }
                snprintf(what, sizeof what, "Q warp %d mt %d kk %d", w, mt, kk);
                err += check_banks(what, boff);
            }
    for (int nb = 0; nb < C::BK / 16; nb++)
        for (int kk = 0; kk < C::HD / 16; kk++) {
            for (int l = 0; l < 32; l++) {
                addr[l] = ldm_bt_off(l, 0, 0, LDS) + 16 * nb * LDS + 16 * kk;
                boff[l] = kbase + 2 * addr[l];
            }
            emu_ldsm(tile, addr, 0, f);
            for (int l = 0; l < 32; l++)
                for (int j = 0; j < 4; j++) /* registers 2t, 2t + 1: b0, b1 of key n-tile 16nb + 8t */
                    for (int h = 0; h < 2; h++) {
                        const rc want = frag_b(l, j % 2, h), got = f[l][j][h];
                        err += got.r != 16 * nb + 8 * (j / 2) + want.c || got.c != 16 * kk + want.r;
                    }
            snprintf(what, sizeof what, "K nb %d kk %d", nb, kk);
            err += check_banks(what, boff);
        }
    for (int kt = 0; kt < C::BK / 16; kt++)
        for (int dp = 0; dp < C::HD / 16; dp++) {
            for (int l = 0; l < 32; l++) {
                addr[l] = ldm_a_off(l, 0, 0, LDS) + 16 * kt * LDS + 16 * dp;
                boff[l] = vbase + 2 * addr[l];
            }
            emu_ldsm(tile, addr, 1, f);
            for (int l = 0; l < 32; l++)
                for (int j = 0; j < 4; j++) /* registers 2t, 2t + 1: b0, b1 of dim n-tile 16dp + 8t */
                    for (int h = 0; h < 2; h++) {
                        const rc want = frag_b(l, j % 2, h), got = f[l][j][h];
                        err += got.r != 16 * kt + want.r || got.c != 16 * dp + 8 * (j / 2) + want.c;
                    }
            snprintf(what, sizeof what, "V kt %d dp %d", kt, dp);
            err += check_banks(what, boff);
        }
    /* P: pa[j] = pack(s[2kt + j/2][2(j%2)], s[2kt + j/2][2(j%2) + 1]) (the kernel's packing); s[nt][e] holds the C
     * element (row, 8nt + col) of frag_c, which must be A's element of keys 16kt.. */
    for (int kt = 0; kt < C::BK / 16; kt++)
        for (int l = 0; l < 32; l++)
            for (int j = 0; j < 4; j++)
                for (int h = 0; h < 2; h++) {
                    const int nt = 2 * kt + j / 2, e = 2 * (j % 2) + h;
                    const rc s = frag_c(l, e), want = frag_a(l, j, h);
                    err += s.r != want.r || 8 * nt + s.c != 16 * kt + want.c;
                }
    /* cp.async: chunk ch of row r + RS·it per thread (load_kv_tile); every 16-byte chunk of the tile exactly once */
    {
        const int RS = C::THREADS / C::CH;
        int *seen = (int *)calloc((size_t)C::BK * C::CH, sizeof(int));
        for (int w = 0; w < C::WARPS; w++)
            for (int it = 0; it < C::BK / RS; it++) {
                for (int l = 0; l < 32; l++) {
                    const int t = 32 * w + l, r = t / C::CH + RS * it, ch = t % C::CH;
                    seen[r * C::CH + ch]++;
                    boff[l] = kbase + 2 * (r * LDS + ch * 8);
                }
                snprintf(what, sizeof what, "cp.async warp %d pass %d", w, it);
                err += check_banks(what, boff);
            }
        for (int i = 0; i < C::BK * C::CH; i++)
            err += seen[i] != 1;
        free(seen);
    }
    /* the C layout's row of element e is lane/4 + 8(e/2) and its column 2(lane%4) + e%2 (masking, store) */
    for (int l = 0; l < 32; l++)
        for (int e = 0; e < 4; e++) {
            const rc c = frag_c(l, e);
            err += c.r != l / 4 + 8 * (e / 2) || c.c != 2 * (l % 4) + e % 2;
        }
    printf("  hd %3d, %d warps x %d rows, %3d-key tiles: %d KB shared, %s\n", C::HD, C::WARPS, 16 * C::MT, C::BK,
           C::SMEM / 1024, err ? "ERRORS" : "ok");
    free(tile);
    return err;
}

/* flash_wgmma.cuh's operand tiles: every 16-byte chunk of a 128 x 128 bf16 tile has its own aligned slot; the
 * swizzled layout is the TMA's 128-byte swizzle (address bits 4-6 XOR bits 7-9 within each 16 KB half); each
 * 8-thread phase of the loaders (fw_chunk_rc) writes 8 different bank groups. */
template <int LAYOUT>
static int check_wgmma_layout(const char *name)
{
    static unsigned char used[FW_TILE / 16];
    memset(used, 0, sizeof used);
    int bad = 0;
    for (int r = 0; r < 128; r++)
        for (int c = 0; c < 16; c++) {
            const int off = fw_chunk_off<LAYOUT>(r, 8 * c);
            int want = ((r >> 3) * 16 + c) * 128 + (r & 7) * 16; /* core matrices of 8 rows x 16 bytes */
            if (LAYOUT == FW_SW128) {
                const int u = (c >> 3) * 16384 + r * 128 + (c & 7) * 16;
                want = u ^ (((u >> 7) & 7) << 4);
            }
            if (off != want || off % 16 || off < 0 || off >= FW_TILE || used[off / 16]++)
                bad++;
        }
    for (int i0 = 0; i0 < 2048; i0 += 8) {
        int groups = 0;
        for (int i = i0; i < i0 + 8; i++) {
            int r, c;
            fw_chunk_rc<LAYOUT>(i, r, c);
            groups |= 1 << ((fw_chunk_off<LAYOUT>(r, 8 * c) / 16) % 8);
        }
        bad += groups != 0xff;
    }
    printf("  flash_wgmma %s: %s\n", name, bad ? "MISMATCH" : "ok");
    return bad != 0;
}

static int layout_all(void)
{
    int err = 0;
    err += check_wgmma_layout<FW_PLAIN>("unswizzled core matrices");
    err += check_wgmma_layout<FW_SW128>("128-byte swizzle");
    err += check_layout<fa_cfg_hd128>();
    err += check_layout<fa_cfg_hd64>();
    err += check_layout<fa_cfg<128, 8, 1, 64, 1>>();
    err += check_layout<fa_cfg<64, 8, 1, 64, 2>>();
    err += check_layout<fa_cfg<128, 4, 2, 32, 2>>();
    err += check_layout<fa_cfg<64, 4, 2, 32, 2>>();
    return err ? 1 : 0;
}

/* ---- versions ---------------------------------------------------------------------------------------------------- */

typedef struct run {
    wan_backend *be, *be32; /* default; WAN_CUDA_ATTN=f32 */
    int version, Lq, Lk, H, hd;
    float *q, *k, *v, *o;
    __nv_bfloat16 *kb, *vb; /* versions 4-6: bf16 K and V of every head */
} run;

/* Versions 4-6: K/V to bf16, then configuration C128 or C64 (by head dim) over all heads in one launch. */
template <class C128, class C64>
static void candidate(run *r, float qscale)
{
    const int ld = r->H * r->hd;
    CUDA_CHECK(fa_kv_to_bf16(r->k, ld, r->v, ld, r->Lk, r->hd, 0, r->H, r->kb, r->vb, 0));
    if (r->hd == 128)
        CUDA_CHECK(fa_launch<C128>(r->q, ld, r->kb, r->vb, r->o, ld, r->Lq, r->Lk, 0, r->H, qscale, 0.0f, 0));
    else
        CUDA_CHECK(fa_launch<C64>(r->q, ld, r->kb, r->vb, r->o, ld, r->Lq, r->Lk, 0, r->H, qscale, 0.0f, 0));
}

/* Versions 7-17: K and Vᵀ to bf16, then one of the Hopper kernels over all heads in one launch. */
static void hopper_version(run *r, float qscale)
{
    const int ld = r->H * r->hd;
    CUDA_CHECK(fw_kv_prepare(r->k, ld, r->v, ld, r->Lk, 0, r->H, r->kb, r->vb, 0));
#define HOPPER_ARGS r->q, ld, r->kb, r->vb, r->o, ld, r->Lq, r->Lk, 0, r->H, qscale, 0.0f, (cudaStream_t)0
    cudaError_t e;
    switch (r->version) {
    case 7: e = fw_launch<FW_PLAIN>(HOPPER_ARGS); break;
    case 8: e = fw_launch<FW_SW128>(HOPPER_ARGS); break;
    case 9: e = ft_launch<2, false, false>(HOPPER_ARGS); break;
    case 10: e = ft_launch<2, true, false>(HOPPER_ARGS); break;
    case 11: e = ft_launch<3, false, false>(HOPPER_ARGS); break;
    case 12: e = ft_launch<3, true, false>(HOPPER_ARGS); break;
    case 13: e = ft_launch<3, false, true>(HOPPER_ARGS); break;
    case 14: e = ft_launch<3, true, true>(HOPPER_ARGS); break;
    case 15: e = f6_launch<4>(HOPPER_ARGS); break;
    case 16: e = f6_launch<6>(HOPPER_ARGS); break;
    default: e = fr_launch(HOPPER_ARGS); break;
    }
#undef HOPPER_ARGS
    CUDA_CHECK(e);
}

static int has_version(const run *r, int ver)
{
    if (ver >= 7) {
        int dev = 0, major = 0, minor = 0;
        cudaGetDevice(&dev);
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
        return r->hd == 128 && major == 9 && minor == 0;
    }
    return ver <= 3 || r->hd == 64 || r->hd == 128;
}

static void forward(void *arg)
{
    run *r = (run *)arg;
    const float scale = 1.0f / sqrtf((float)r->hd), qscale = scale * 1.4426950408889634f;
    const int ld = r->H * r->hd;
    wan_backend *be = r->version == 2 ? r->be32 : r->be;
    switch (r->version) {
    case 1:
        attention_v1<<<dim3((r->Lq + 127) / 128, r->H), 128>>>(r->q, r->k, r->v, r->o, r->Lq, r->Lk, r->H, r->hd,
                                                              scale);
        CUDA_CHECK(cudaGetLastError());
        break;
    case 2:
    case 3:
        be->attention(be, r->q, ld, r->k, ld, r->v, ld, r->o, ld, r->Lq, r->Lk, r->H, r->hd, scale, 1.0f);
        backend_sync(be);
        break;
    case 4: candidate<fa_cfg_hd128, fa_cfg_hd64>(r, qscale); break;
    case 5: candidate<fa_cfg<128, 8, 1, 64, 1>, fa_cfg<64, 8, 1, 64, 2>>(r, qscale); break;
    case 6: candidate<fa_cfg<128, 4, 2, 32, 2>, fa_cfg<64, 4, 2, 32, 2>>(r, qscale); break;
    default: hopper_version(r, qscale); break;
    }
}

static run make_run(wan_backend *be, wan_backend *be32, int Lq, int Lk, int H, int hd, float qamp, float **hq,
                    float **hk, float **hv)
{
    run r = { be, be32, 0, Lq, Lk, H, hd, NULL, NULL, NULL, NULL, NULL, NULL };
    const size_t nq = (size_t)Lq * H * hd, nk = (size_t)Lk * H * hd;
    *hq = make_random(nq, qamp, 1u), *hk = make_random(nk, 1.0f, 2u), *hv = make_random(nk, 1.0f, 3u);
    r.q = (float *)to_device(*hq, nq * 4), r.k = (float *)to_device(*hk, nk * 4), r.v = (float *)to_device(*hv, nk * 4);
    CUDA_CHECK(cudaMalloc(&r.o, nq * 4));
    CUDA_CHECK(cudaMalloc(&r.kb, nk * 2));
    CUDA_CHECK(cudaMalloc(&r.vb, (size_t)fw_keys_padded(Lk) * H * hd * 2)); /* versions 7-17: Vᵀ, keys padded */
    return r;
}

static void free_run(run *r)
{
    cudaFree(r->q), cudaFree(r->k), cudaFree(r->v), cudaFree(r->o), cudaFree(r->kb), cudaFree(r->vb);
}

/* Versions 3 (for head dims 64 and 128) to 6 round q, k, v and p to bf16 (relative error 2^-9 each): 1e-2 of the
 * output's scale, as for the bf16 GEMM; the f32 kernels 2e-5 (summation order, exp ulps). */
static double tolerance(const run *r, int ver)
{
    return ver >= 3 && (r->hd == 64 || r->hd == 128) ? 1e-2 : 2e-5;
}

static int validate_all(wan_backend *be, wan_backend *be32, int version)
{
    /* Lq, Lk, heads, hd, q amplitude (x 100): ragged last query and key tiles, single keys, several tiles of each,
     * 512 text keys, and large scores (q x 4) for the online softmax's rescaling */
    const int shapes[][5] = { { 1, 1, 1, 32, 100 },     { 70, 300, 2, 128, 100 }, { 33, 17, 3, 40, 100 },
                              { 129, 64, 2, 64, 100 },  { 64, 512, 1, 128, 100 }, { 1, 1, 1, 128, 100 },
                              { 1, 1, 2, 64, 100 },     { 127, 65, 1, 128, 100 }, { 200, 1000, 2, 128, 100 },
                              { 257, 77, 3, 64, 100 },  { 300, 512, 2, 128, 100 }, { 150, 700, 2, 128, 400 },
                              { 130, 129, 2, 64, 400 } };
    int failed = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        float *hq, *hk, *hv;
        run r = make_run(be, be32, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], shapes[s][4] / 100.0f, &hq,
                         &hk, &hv);
        float *ref = (float *)malloc((size_t)r.Lq * r.H * r.hd * 4);
        cpu_attention(hq, hk, hv, ref, r.Lq, r.Lk, r.H, r.hd, 1.0f / sqrtf((float)r.hd));
        for (int ver = 1; ver <= N_VERSIONS; ver++) {
            if ((version && ver != version) || !has_version(&r, ver))
                continue;
            char name[96];
            snprintf(name, sizeof name, "v%d Lq %d Lk %d heads %d hd %d q x%.0f", ver, r.Lq, r.Lk, r.H, r.hd,
                     shapes[s][4] / 100.0);
            r.version = ver;
            CUDA_CHECK(cudaMemset(r.o, 0xff, (size_t)r.Lq * r.H * r.hd * 4)); /* NaNs: every output must be written */
            forward(&r);
            CUDA_CHECK(cudaDeviceSynchronize());
            failed += !validate(name, r.o, ref, (size_t)r.Lq * r.H * r.hd, tolerance(&r, ver));
        }
        free(ref), free(hq), free(hk), free(hv);
        free_run(&r);
    }
    return failed;
}

static void benchmark_all(wan_backend *be, wan_backend *be32, int version)
{
    const int Ls[2] = { 75600, 512 }; /* self-attention; cross-attention over the text rows */
    for (int c = 0; c < 2; c++) {
        float *hq, *hk, *hv;
        run r = make_run(be, be32, 75600, Ls[c], 40, 128, 1.0f, &hq, &hk, &hv);
        const double flop = 4.0 * r.Lq * (double)r.Lk * r.H * r.hd;
        printf("%s: Lq %d, Lk %d, 40 heads x 128\n", c ? "cross-attention" : "self-attention", r.Lq, r.Lk);
        for (int ver = N_VERSIONS; ver >= 1; ver--) {
            if ((version && ver != version) || !has_version(&r, ver))
                continue;
            r.version = ver;
            r.Lq = ver == 1 ? 1024 : 75600; /* version 1 takes minutes at full size: fewer queries */
            const double ms = time_ms(forward, &r, ver <= 2 ? 1 : 3);
            printf("  v%d: Lq %d: %.2f ms, %.1f TFLOP/s\n", ver, r.Lq, ms, flop * r.Lq / 75600.0 / ms * 1e-9);
        }
        free(hq), free(hk), free(hv);
        free_run(&r);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "layout")) {
        printf("flash_wgmma.cuh tile layouts and flash_bf16.cuh fragment layouts (host check, no GPU):\n");
        return layout_all();
    }
    int version;
    const int val = parse_mode(argc, argv, &version, N_VERSIONS);
    wan_backend *be = cuda_backend(), *be32 = NULL;
    wan_error err;
    memset(&err, 0, sizeof err);
    setenv("WAN_CUDA_ATTN", "f32", 1);
    if (wan_backend_create("cuda", 0, &be32, &err) != WAN_OK)
        return fprintf(stderr, "%s\n", err.msg), 1;
    int failed = 0;
    if (val)
        failed = validate_all(be, be32, version);
    else
        benchmark_all(be, be32, version);
    wan_backend_free(be32);
    wan_backend_free(be);
    return failed ? 1 : 0;
}
