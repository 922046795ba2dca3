/* flash_bf16.cuh — bf16 tensor-core flash attention (validated on an H200; docs/CUDA.md).
 * Included by src/cuda/attention.cu (the production path of be->attention for head dims 64 and 128) and by
 * dev/cuda/attention_forward.cu (which also times other tile configurations). Everything here has internal
 * linkage (anonymous namespace), so each including file gets its own copy of the kernels.
 *
 * FlashAttention-2 work split: a block owns BQ = WARPS·MT·16 queries of one head; warp w owns MT row tiles of 16
 * queries. The block walks the keys in tiles of BK:
 *   S = Q·Kᵀ     mma.sync m16n8k16 (bf16 in, f32 accumulators); Q and K tiles read from shared memory with
 *                ldmatrix; q was multiplied by scale·log2(e) before rounding, so S is in log2 units;
 *   softmax      online, per row: running max m and (per-thread partial) sum l in registers, p = exp2(s - m);
 *                keys past Lk are set to -inf before the max;
 *   O += P·V     the S accumulators re-packed as bf16 A fragments (no trip through shared memory), V read with
 *                ldmatrix.trans.
 * Loads (FlashAttention-2's pipeline, one buffer per operand): the K and V tiles are bf16 copies in [head][key][hd]
 * layout (k_kv_bf16 makes them in scratch) copied with cp.async; V(t) streams in during S(t) and the softmax,
 * K(t+1) during P·V(t). Q is read once per block from the f32 input (scaled, rounded). Shared memory rows are
 * padded by 16 bytes (LDS = HD + 8), which makes every ldmatrix phase (8 rows of 16 bytes) and every cp.async
 * phase conflict-free. No Lq x Lk buffer exists anywhere.
 *
 * Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16" and "ldmatrix"), g = lane/4, c = lane%4:
 *   A 16x16 (4 regs of 2 bf16, low half = lower column): a0 (g, 2c..2c+1), a1 (g+8, 2c..), a2 (g, 8+2c..),
 *     a3 (g+8, 8+2c..);
 *   B 16x8 (k x n, 2 regs): b0 (k = 2c..2c+1, n = g), b1 (k = 8+2c.., n = g);
 *   C 16x8 f32 (4 regs): c0, c1 (g, 2c + 0/1), c2, c3 (g+8, 2c + 0/1);
 *   ldmatrix.x4: lanes 8i..8i+7 give the row addresses of matrix i, and register i of lane l holds row l/4,
 *     columns 2(l%4), 2(l%4)+1 of matrix i (.trans: rows 2(l%4), 2(l%4)+1 of column l/4).
 * The address helpers below (ldm_*_off) are __host__ so that `attention_forward layout` can check them on the
 * host against these definitions. */
#ifndef WAN_CUDA_FLASH_BF16_CUH
#define WAN_CUDA_FLASH_BF16_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

namespace {

/* Tile configuration: head dim HD, WARPS warps of MT 16-row tiles each, BK keys per tile, MINB blocks per SM
 * asked of the register allocator. */
template <int HD_, int WARPS_, int MT_, int BK_, int MINB_>
struct fa_cfg {
    static constexpr int HD = HD_, WARPS = WARPS_, MT = MT_, BK = BK_, MINB = MINB_;
    static constexpr int THREADS = WARPS * 32;
    static constexpr int BQ = WARPS * MT * 16;  /* queries per block                               */
    static constexpr int LDS = HD + 8;          /* shared row stride in bf16: +16 bytes             */
    static constexpr int CH = HD / 8;           /* 16-byte chunks per row                           */
    static constexpr int SMEM = (BQ + 2 * BK) * LDS * 2; /* Q, K, V tiles, bytes                    */
    static_assert(HD % 16 == 0 && BK % 16 == 0, "head dim and key tile must be multiples of 16");
    static_assert(THREADS % CH == 0 && BK % (THREADS / CH) == 0, "a K/V tile must split evenly over the threads");
};

/* The production configurations (src/cuda/attention.cu). */
typedef fa_cfg<128, 4, 2, 64, 2> fa_cfg_hd128;
typedef fa_cfg<64, 4, 2, 64, 2> fa_cfg_hd64;

/* ---- lane addresses (element offsets in a tile of row stride lds) ------------------------------------------- */

/* ldmatrix.x4 row address of `lane` for an A operand: the 16x16 block at (r0, c0) of a row-major tile; matrices
 * (rows 0-7, cols 0-7), (rows 8-15, cols 0-7), (rows 0-7, cols 8-15), (rows 8-15, cols 8-15) are a0..a3. The same
 * address serves ldmatrix.x4.trans of a [k][n] tile (V): k rows r0.., n columns c0..: matrices (k 0-7, n 0-7),
 * (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15) are b0, b1 of n-tile c0 and b0, b1 of n-tile c0 + 8. */
__host__ __device__ inline int ldm_a_off(int lane, int r0, int c0, int lds)
{
    return (r0 + (lane & 15)) * lds + c0 + (lane >> 4) * 8;
}

/* ldmatrix.x4 (no .trans) row address of `lane` for B operands taken from an [n][k] row-major tile (K, for
 * S = Q·Kᵀ): n rows n0..n0+15, k columns c0..c0+15; matrices (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7),
 * (n 8-15, k 8-15) are b0, b1 of n-tile n0 and b0, b1 of n-tile n0 + 8. */
__host__ __device__ inline int ldm_bt_off(int lane, int n0, int c0, int lds)
{
    return (n0 + (lane & 7) + (lane >> 4) * 8) * lds + c0 + ((lane >> 3) & 1) * 8;
}

/* ---- PTX wrappers ------------------------------------------------------------------------------------------ */

__device__ __forceinline__ uint32_t smem_u32(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t (&r)[4])
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

__device__ __forceinline__ void ldsm_x4_trans(uint32_t addr, uint32_t (&r)[4])
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* d += a·b: one m16n8k16 bf16 MMA with f32 accumulation. */
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1)
{
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Two floats rounded to bf16 (nearest even) in one register: lo in bits 0-15, hi in bits 16-31 (cvt packs its
 * first source operand into the upper half). */
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi)
{
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

/* 2^x (MUFU.EX2, flush-to-zero; 2^-inf = +0). */
__device__ __forceinline__ float ex2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* 16 bytes global -> shared, asynchronous; src_bytes 0 writes 16 zero bytes and reads nothing. */
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, int src_bytes)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes)
                 : "memory");
}

__device__ __forceinline__ void cp_async_commit()
{
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

__device__ __forceinline__ void cp_async_wait_all()
{
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

/* ---- kernels ----------------------------------------------------------------------------------------------- */

/* K and V of heads head0 .. head0 + gridDim.y - 1 (f32, row stride ldk/ldv, head n at column n·hd) -> bf16
 * kb/vb [head - head0][key][hd]. Block (hd/2, rows): thread x converts columns 2x, 2x + 1 of one key row. */
__global__ void k_kv_bf16(const float *__restrict__ k, int64_t ldk, const float *__restrict__ v, int64_t ldv,
                          int64_t Lk, int hd, int head0, __nv_bfloat16 *__restrict__ kb, __nv_bfloat16 *__restrict__ vb)
{
    const int64_t j = (int64_t)blockIdx.x * blockDim.y + threadIdx.y;
    if (j >= Lk)
        return;
    const int d = 2 * (int)threadIdx.x;
    const int64_t col = (int64_t)(head0 + (int)blockIdx.y) * hd + d;
    const int64_t dst = ((int64_t)blockIdx.y * Lk + j) * hd + d;
    const float *ks = k + j * ldk + col, *vs = v + j * ldv + col;
    *(uint32_t *)(kb + dst) = pack_bf16(ks[0], ks[1]);
    *(uint32_t *)(vb + dst) = pack_bf16(vs[0], vs[1]);
}

/* Keys j0 .. j0 + BK - 1 of one head's bf16 [Lk][HD] rows into a [BK][LDS] tile; rows past Lk are zero-filled
 * (cp.async with 0 source bytes), so that V's padding rows can never put a NaN into P·V. Thread x copies the
 * 16-byte chunk x % CH of rows x / CH + RS·it (RS = THREADS / CH rows per pass): one base address, constant
 * steps. */
template <class C>
__device__ __forceinline__ void load_kv_tile(uint32_t tile, const __nv_bfloat16 *src, int64_t j0, int64_t Lk)
{
    constexpr int RS = C::THREADS / C::CH;
    const int r = (int)threadIdx.x / C::CH, ch = (int)threadIdx.x % C::CH;
    const __nv_bfloat16 *g = src + (j0 + r) * C::HD + ch * 8;
    const uint32_t s = tile + 2 * (r * C::LDS + ch * 8);
#pragma unroll
    for (int it = 0; it < C::BK / RS; it++) {
        const bool in = j0 + r + RS * it < Lk;
        cp_async16(s + 2 * RS * it * C::LDS, in ? g + RS * it * C::HD : src, in ? 16 : 0);
    }
}

/* out[i, (head0 + y)·HD + d] for the block's BQ queries i of head head0 + blockIdx.y (see the file comment).
 * q is f32 (row stride ldq); kb/vb the bf16 [blockIdx.y][Lk][HD] copies; qscale = scale·log2(e); lw2 is added to
 * the score of key Lk - 1 (log2 of its multiplicity, backend.h; 0: plain attention). */
template <class C>
__global__ void __launch_bounds__(C::THREADS, C::MINB)
k_flash_bf16(const float *__restrict__ q, int64_t ldq, const __nv_bfloat16 *__restrict__ kb,
             const __nv_bfloat16 *__restrict__ vb, float *__restrict__ o, int64_t ldo, int64_t Lq, int64_t Lk,
             int head0, float qscale, float lw2)
{
    constexpr int HD = C::HD, LDS = C::LDS, BK = C::BK, MT = C::MT, NT = BK / 8, DT = HD / 8;
    extern __shared__ __align__(16) unsigned char fa_smem[];
    __nv_bfloat16 *Qs = (__nv_bfloat16 *)fa_smem; /* [BQ][LDS] */
    __nv_bfloat16 *Ks = Qs + C::BQ * LDS;          /* [BK][LDS] */
    __nv_bfloat16 *Vs = Ks + BK * LDS;             /* [BK][LDS] */
    const int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    const int64_t head = head0 + (int64_t)blockIdx.y, q0 = (int64_t)blockIdx.x * C::BQ;
    const __nv_bfloat16 *kh = kb + (int64_t)blockIdx.y * Lk * HD, *vh = vb + (int64_t)blockIdx.y * Lk * HD;

    /* Q tile: scaled, rounded to bf16; rows past Lq are zeros (their scores are finite and never stored). */
    for (int i = (int)threadIdx.x; i < C::BQ * HD / 2; i += C::THREADS) {
        const int r = i / (HD / 2), d = 2 * (i % (HD / 2));
        float x0 = 0.0f, x1 = 0.0f;
        if (q0 + r < Lq) {
            const float *src = q + (q0 + r) * ldq + head * HD + d;
            x0 = src[0] * qscale;
            x1 = src[1] * qscale;
        }
        *(uint32_t *)(Qs + r * LDS + d) = pack_bf16(x0, x1);
    }
    load_kv_tile<C>(smem_u32(Ks), kh, 0, Lk);
    cp_async_commit();

    float acc[MT][DT][4], mrow[MT][2], lrow[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            mrow[mt][h] = -INFINITY;
            lrow[mt][h] = 0.0f;
        }
#pragma unroll
        for (int dt = 0; dt < DT; dt++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                acc[mt][dt][e] = 0.0f;
    }
    const int wr0 = warp * MT * 16; /* the warp's first row in the tile */
    /* shared addresses of this lane's ldmatrix rows at the tiles' origins; each use adds a constant */
    const uint32_t qa = smem_u32(Qs + ldm_a_off(lane, wr0, 0, LDS)), ka = smem_u32(Ks + ldm_bt_off(lane, 0, 0, LDS));
    const uint32_t va = smem_u32(Vs + ldm_a_off(lane, 0, 0, LDS));
    const int ntiles = (int)((Lk + BK - 1) / BK);
    for (int t = 0; t < ntiles; t++) {
        const int64_t j0 = (int64_t)t * BK;
        cp_async_wait_all();
        __syncthreads(); /* K(t) (and, the first time, Q) visible to all; every warp is done with V(t-1) */
        load_kv_tile<C>(smem_u32(Vs), vh, j0, Lk);
        cp_async_commit();

        /* S = Q·K(t)ᵀ: s[mt][nt] is the 16x8 block of rows wr0 + 16mt.., keys j0 + 8nt.. */
        float s[MT][NT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    s[mt][nt][e] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++) {
            uint32_t a[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
                ldsm_x4(qa + 2 * (16 * mt * LDS + 16 * kk), a[mt]);
#pragma unroll
            for (int nb = 0; nb < BK / 16; nb++) {
                uint32_t b[4];
                ldsm_x4(ka + 2 * (16 * nb * LDS + 16 * kk), b);
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma_bf16(s[mt][2 * nb], a[mt], b[0], b[1]);
                    mma_bf16(s[mt][2 * nb + 1], a[mt], b[2], b[3]);
                }
            }
        }
        if (j0 + BK > Lk) { /* the ragged last tile: keys past Lk get -inf before the max */
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++)
                    if (j0 + 8 * nt + 2 * (lane % 4) + e >= Lk)
#pragma unroll
                        for (int mt = 0; mt < MT; mt++)
                            s[mt][nt][e] = s[mt][nt][2 + e] = -INFINITY;
        }
        if (lw2 != 0.0f && j0 + BK >= Lk) { /* the tile of the last key: its multiplicity, in log2 units */
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++)
                    if (j0 + 8 * nt + 2 * (lane % 4) + e == Lk - 1)
#pragma unroll
                        for (int mt = 0; mt < MT; mt++) {
                            s[mt][nt][e] += lw2;
                            s[mt][nt][2 + e] += lw2;
                        }
        }

        /* Online softmax. Row h of a 16-row tile is row lane/4 + 8h; its 4 threads (lane%4) hold 2 keys per n-tile
         * each, so the row max is a max over the thread's values and two xor-shuffles. */
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                float mx = mrow[mt][h];
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
                    mx = fmaxf(mx, fmaxf(s[mt][nt][2 * h], s[mt][nt][2 * h + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                /* every tile holds a valid key, so mx is finite; the guard keeps a row that saw only -inf from
                 * computing -inf - (-inf) = NaN */
                const float base = mx == -INFINITY ? 0.0f : mx;
                const float alpha = ex2(mrow[mt][h] - base); /* 0 on the first tile (mrow = -inf) */
                mrow[mt][h] = mx;
                float sum = 0.0f;
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const float p = ex2(s[mt][nt][2 * h + e] - base);
                        s[mt][nt][2 * h + e] = p;
                        sum += p;
                    }
                lrow[mt][h] = lrow[mt][h] * alpha + sum; /* this thread's part of the row sum */
#pragma unroll
                for (int dt = 0; dt < DT; dt++) {
                    acc[mt][dt][2 * h] *= alpha;
                    acc[mt][dt][2 * h + 1] *= alpha;
                }
            }

        cp_async_wait_all();
        __syncthreads(); /* V(t) visible to all; every warp is done reading K(t) */
        if (t + 1 < ntiles) {
            load_kv_tile<C>(smem_u32(Ks), kh, j0 + BK, Lk);
            cp_async_commit();
        }

        /* O += P·V(t): the S accumulators of keys 16kt .. 16kt + 15 are the A fragment (C layout of n-tiles 2kt
         * and 2kt + 1 = A layout's columns 0-7 and 8-15). */
#pragma unroll
        for (int kt = 0; kt < BK / 16; kt++) {
            uint32_t pa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                pa[mt][0] = pack_bf16(s[mt][2 * kt][0], s[mt][2 * kt][1]);
                pa[mt][1] = pack_bf16(s[mt][2 * kt][2], s[mt][2 * kt][3]);
                pa[mt][2] = pack_bf16(s[mt][2 * kt + 1][0], s[mt][2 * kt + 1][1]);
                pa[mt][3] = pack_bf16(s[mt][2 * kt + 1][2], s[mt][2 * kt + 1][3]);
            }
#pragma unroll
            for (int dp = 0; dp < HD / 16; dp++) {
                uint32_t b[4];
                ldsm_x4_trans(va + 2 * (16 * kt * LDS + 16 * dp), b);
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma_bf16(acc[mt][2 * dp], pa[mt], b[0], b[1]);
                    mma_bf16(acc[mt][2 * dp + 1], pa[mt], b[2], b[3]);
                }
            }
        }
    }

    /* out = O / l (l summed over the row's 4 threads) */
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            float l = lrow[mt][h];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const float inv = l > 0.0f ? 1.0f / l : 0.0f;
            const int64_t row = q0 + wr0 + 16 * mt + lane / 4 + 8 * h;
            if (row < Lq) {
                float *dst = o + row * ldo + head * HD + 2 * (lane % 4);
#pragma unroll
                for (int dt = 0; dt < DT; dt++) {
                    dst[8 * dt] = acc[mt][dt][2 * h] * inv;
                    dst[8 * dt + 1] = acc[mt][dt][2 * h + 1] * inv;
                }
            }
        }
}

/* ---- launchers (on `st`; they return the launch's error) ------------------------------------------------------ */

/* K/V of heads head0 .. head0 + nh - 1 to bf16 (k_kv_bf16). hd even, <= 1024. */
inline cudaError_t fa_kv_to_bf16(const float *k, int64_t ldk, const float *v, int64_t ldv, int64_t Lk, int hd,
                                 int head0, int nh, __nv_bfloat16 *kb, __nv_bfloat16 *vb, cudaStream_t st)
{
    const dim3 block((unsigned)(hd / 2), (unsigned)(256 / (hd / 2) > 0 ? 256 / (hd / 2) : 1));
    const dim3 grid((unsigned)((Lk + block.y - 1) / block.y), (unsigned)nh);
    k_kv_bf16<<<grid, block, 0, st>>>(k, ldk, v, ldv, Lk, hd, head0, kb, vb);
    return cudaGetLastError();
}

/* Attention of heads head0 .. head0 + nh - 1 with configuration C (C::HD == the head dim); kb/vb from
 * fa_kv_to_bf16 for the same heads; lw2 = log2 of the last key's multiplicity (0: plain attention). */
template <class C>
cudaError_t fa_launch(const float *q, int64_t ldq, const __nv_bfloat16 *kb, const __nv_bfloat16 *vb, float *o,
                      int64_t ldo, int64_t Lq, int64_t Lk, int head0, int nh, float qscale, float lw2,
                      cudaStream_t st)
{
    cudaError_t e = cudaFuncSetAttribute(k_flash_bf16<C>, cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM);
    if (e != cudaSuccess)
        return e;
    const dim3 grid((unsigned)((Lq + C::BQ - 1) / C::BQ), (unsigned)nh);
    k_flash_bf16<C><<<grid, C::THREADS, C::SMEM, st>>>(q, ldq, kb, vb, o, ldo, Lq, Lk, head0, qscale, lw2);
    return cudaGetLastError();
}

} /* namespace */

#endif /* WAN_CUDA_FLASH_BF16_CUH */
