/* flash_wgmma.cuh — flash attention for head dim 128 on Hopper (sm_90a) tensor cores with wgmma. Included by
 * src/cuda/attention.cu (be->attention on a compute-capability-9.0 device) and dev/cuda/attention_forward.cu
 * (versions 7-14). Internal linkage, like flash_bf16.cuh, whose helpers (pack_bf16, ex2, cp_async16, smem_u32)
 * it uses. Two kernels: k_flash_wgmma (cp.async loads, block barriers; below) and k_flash_tma (TMA loads and an
 * mbarrier pipeline; further down), the production kernel. Measured on an H200 (A14B self-attention, 75,600
 * tokens, docs/CUDA.md): k_flash_wgmma 234 TFLOP/s unswizzled, 383 swizzled; k_flash_tma 509 with 3 stages.
 *
 * Work split: a block of WG = 2 warpgroups (256 threads) owns 128 queries of one head; warpgroup g owns rows
 * 64g..64g+63. The block walks the keys in tiles of BK = 128:
 *   S = Q·Kᵀ    8 x wgmma.m64n128k16 (A = the warpgroup's Q rows, B = the K tile, both from shared memory);
 *               q was multiplied by scale·log2(e) before rounding, so S is in log2 units;
 *   softmax     online, per row, on the S accumulators (same per-warp fragment layout as mma.m16n8k16's C, one
 *               m16n8 tile per 8 keys: a row's 4 threads reduce with two xor-shuffles);
 *   O += P·V    8 x wgmma.m64n128k16 with A from registers: the S accumulators of keys 16kt.. re-packed as bf16
 *               (the C layout of n-tiles 2kt, 2kt+1 is the A fragment), B = Vᵀ tile from shared memory.
 * Operands in shared memory are K-major with no swizzle: 8x8 "core matrices" (8 rows of 16 bytes, 128 contiguous
 * bytes); element (r, k) of a tile with KB = 16 core matrices along k sits at byte ((r/8)·KB + k/8)·128 + (r%8)·16
 * + (k%8)·2. The descriptor's leading-dimension offset (LBO) is the distance between core matrices adjacent in k
 * (128 bytes), the stride-dimension offset (SBO) the distance between those adjacent in rows (2048 bytes); a
 * k-step of 16 moves the start address by 256 bytes. (On an H200, the same kernel with LBO and SBO swapped gave
 * wrong results: this reading of the PTX ISA is the right one.) The FW_SW128 layout below swizzles instead.
 * V is the B operand of P·V with k = key, so it must be stored [dim][key]: the conversion pass writes Vᵀ
 * (k_kvt_bf16), keys padded with zeros to a multiple of 8. K and V tiles are double-buffered with cp.async: tile
 * t+1 streams in while tile t is used. Shared memory: Q 32 KB + 2 x (K 32 KB + Vᵀ 32 KB) = 160 KB, 1 block/SM.
 * Shared-memory writes reach wgmma (the async proxy) through fence.proxy.async before the block barrier. */
#ifndef WAN_CUDA_FLASH_WGMMA_CUH
#define WAN_CUDA_FLASH_WGMMA_CUH

#include "flash_bf16.cuh"

#include <cuda.h>         /* CUtensorMap and its enums (types only: the encoder is fetched at run time) */
#include <cudaTypedefs.h> /* PFN_cuTensorMapEncodeTiled_v12000 */

namespace {

constexpr int FW_HD = 128, FW_BQ = 128, FW_BK = 128, FW_THREADS = 256;
constexpr int FW_TILE = 128 * 128 * 2; /* bytes of one 128 x 128 bf16 tile */
constexpr int FW_SMEM = 5 * FW_TILE + 1024; /* Q, K[2], Vt[2], and room to align the base to 1024 bytes */

/* Byte offset of element (r, k) in a K-major, unswizzled tile of 128 columns (k). */
__host__ __device__ inline int fw_off(int r, int k)
{
    return ((r >> 3) * 16 + (k >> 3)) * 128 + (r & 7) * 16 + (k & 7) * 2;
}

/* Shared-memory layouts of a 128 x 128 operand tile (rows r, k-columns k), all K-major:
 *   FW_PLAIN    no swizzle, core matrices as above (LBO 128, SBO 2048);
 *   FW_SW128    128-byte swizzle: the tile is two 64-column halves of 128 rows x 128 bytes (16 KB each); in row
 *               r, the 16-byte chunk c (columns 8c..8c+7 of the half) is stored at chunk position c ^ (r % 8).
 *               Descriptor: SBO 1024 (8-row groups), LBO unused (16), mode 1; a k-step of 16 inside a half moves
 *               the start by 32 bytes, the second half starts 16 KB on. Tiles must be 1024-byte aligned. */
enum { FW_PLAIN = 0, FW_SW128 = 2 };

/* Byte offset of element (r, k), k a multiple of 8 (the start of a 16-byte chunk). */
template <int LAYOUT>
__host__ __device__ inline int fw_chunk_off(int r, int k)
{
    if (LAYOUT == FW_SW128)
        return (k >> 6) * 16384 + r * 128 + ((((k >> 3) & 7) ^ (r & 7)) << 4);
    return fw_off(r, k);
}

/* Descriptor of the 64- or 128-row operand whose row 0 is at row `r0` of the tile at `tile`, for k-step kk. */
template <int LAYOUT>
__device__ __forceinline__ uint64_t fw_desc(uint32_t tile, int r0, int kk)
{
    if (LAYOUT == FW_SW128) {
        const uint32_t addr = tile + (kk >> 2) * 16384 + r0 * 128 + (kk & 3) * 32;
        return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) |
               ((uint64_t)1 << 62);
    }
    const uint32_t addr = tile + (r0 >> 3) * 2048 + kk * 256;
    return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)(128 >> 4) << 16) | ((uint64_t)(2048 >> 4) << 32);
}

/* The 64 accumulator operands of an m64n128k16 wgmma: "%0, ..., %63" and c(d[0]), ..., c(d[63]). */
#define FW_REGS64                                                                                                  \
    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, "    \
    "%23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, "     \
    "%44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define FW_OPS16(c, o)                                                                                             \
    c(d[o + 0]), c(d[o + 1]), c(d[o + 2]), c(d[o + 3]), c(d[o + 4]), c(d[o + 5]), c(d[o + 6]), c(d[o + 7]),          \
        c(d[o + 8]), c(d[o + 9]), c(d[o + 10]), c(d[o + 11]), c(d[o + 12]), c(d[o + 13]), c(d[o + 14]), c(d[o + 15])
#define FW_OPS64(c) FW_OPS16(c, 0), FW_OPS16(c, 16), FW_OPS16(c, 32), FW_OPS16(c, 48)

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
/* d = (scale_d ? d : 0) + A·B, A 64x16 and B 16x128 from shared memory (descriptors). */
__device__ __forceinline__ void wgmma_ss(float (&d)[64], uint64_t da, uint64_t db, int scale_d)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
                 FW_REGS64
                 "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
                 : FW_OPS64("+f")
                 : "l"(da), "l"(db), "r"(scale_d));
}

/* d += A·B, A 64x16 from registers (the mma.m16n8k16 A fragment of each warp's 16 rows), B 16x128 from shared
 * memory. */
__device__ __forceinline__ void wgmma_rs(float (&d)[64], const uint32_t (&a)[4], uint64_t db)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
                 FW_REGS64
                 "}, {%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"
                 : FW_OPS64("+f")
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}


__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
/* Keeps every use of d after this point (the wgmma that wrote d has been waited for). */
template <int N>
__device__ __forceinline__ void fence_regs(float (&d)[N])
{
#pragma unroll
    for (int i = 0; i < N; i++)
        asm volatile("" : "+f"(d[i])::"memory");
}
#endif

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
/* The scores s of the tile of 8·NJ keys from j0 (s[4j + 2h + e]: key j0 + 8j + 2(lane%4) + e): keys past Lk get
 * -inf, key Lk - 1 gets lw2 added (its multiplicity, backend.h). Only the tile holding Lk - 1 has work to do. */
template <int NJ>
__device__ __forceinline__ void fw_mask(float (&s)[4 * NJ], int64_t j0, int64_t Lk, float lw2, int lane)
{
    if (j0 + 8 * NJ > Lk || (lw2 != 0.0f && j0 + 8 * NJ >= Lk)) {
#pragma unroll
        for (int j = 0; j < NJ; j++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int64_t key = j0 + 8 * j + 2 * (lane % 4) + e;
                if (key >= Lk)
                    s[4 * j + e] = s[4 * j + 2 + e] = -INFINITY;
                else if (key == Lk - 1) {
                    s[4 * j + e] += lw2;
                    s[4 * j + 2 + e] += lw2;
                }
            }
    }
}

/* The online softmax of one key tile on the S accumulators s (s[4j + 2h + e]: row 16·warp + lane/4 + 8h of the
 * warpgroup, key j0 + 8j + 2(lane%4) + e), in place: s becomes P (unnormalised, exp2 of s - the running max);
 * mrow/lrow are the running max and this thread's part of the row sum; acc is rescaled. Keys past Lk get -inf;
 * key Lk - 1 gets lw2 added. Then P is packed into the A fragments of the eight 16-key steps of P·V. */
__device__ __forceinline__ void fw_softmax(float (&s)[64], float (&acc)[64], float (&mrow)[2], float (&lrow)[2],
                                           uint32_t (&pa)[8][4], int64_t j0, int64_t Lk, float lw2, int lane)
{
    fw_mask<16>(s, j0, Lk, lw2, lane);
#pragma unroll
    for (int h = 0; h < 2; h++) {
        float mx = mrow[h];
#pragma unroll
        for (int j = 0; j < 16; j++)
            mx = fmaxf(mx, fmaxf(s[4 * j + 2 * h], s[4 * j + 2 * h + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float base = mx == -INFINITY ? 0.0f : mx;
        const float alpha = ex2(mrow[h] - base);
        mrow[h] = mx;
        float sum = 0.0f;
#pragma unroll
        for (int j = 0; j < 16; j++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const float p = ex2(s[4 * j + 2 * h + e] - base);
                s[4 * j + 2 * h + e] = p;
                sum += p;
            }
        lrow[h] = lrow[h] * alpha + sum;
#pragma unroll
        for (int j = 0; j < 16; j++) {
            acc[4 * j + 2 * h] *= alpha;
            acc[4 * j + 2 * h + 1] *= alpha;
        }
    }
#pragma unroll
    for (int kt = 0; kt < 8; kt++) {
        pa[kt][0] = pack_bf16(s[8 * kt + 0], s[8 * kt + 1]);
        pa[kt][1] = pack_bf16(s[8 * kt + 2], s[8 * kt + 3]);
        pa[kt][2] = pack_bf16(s[8 * kt + 4], s[8 * kt + 5]);
        pa[kt][3] = pack_bf16(s[8 * kt + 6], s[8 * kt + 7]);
    }
}

/* out rows row0 + 16·warp + lane/4 + 8h (< Lq) of head `head`: acc / (row sum over the row's 4 threads). */
__device__ __forceinline__ void fw_store(const float (&acc)[64], const float (&lrow)[2], float *o, int64_t ldo,
                                         int64_t row0, int64_t Lq, int64_t head, int warp, int lane)
{
#pragma unroll
    for (int h = 0; h < 2; h++) {
        float l = lrow[h];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        const int64_t row = row0 + 16 * warp + lane / 4 + 8 * h;
        if (row < Lq) {
            float *dst = o + row * ldo + head * FW_HD + 2 * (lane % 4);
#pragma unroll
            for (int j = 0; j < 16; j++)
                *(float2 *)(dst + 8 * j) = make_float2(acc[4 * j + 2 * h] * inv, acc[4 * j + 2 * h + 1] * inv);
        }
    }
}
#endif

/* K (f32, row stride ldk, head n at column n·128) of heads head0.. -> kb [head][key][128] bf16, and V -> vt
 * [head][dim][Lkp] bf16 (transposed; keys Lk..Lkp-1 zero). Block (32, 8) transposes a 32-key x 32-dim tile; grid
 * (Lkp/32 rounded up, 4, heads). */
__global__ void k_kvt_bf16(const float *__restrict__ k, int64_t ldk, const float *__restrict__ v, int64_t ldv,
                           int64_t Lk, int64_t Lkp, int head0, __nv_bfloat16 *__restrict__ kb,
                           __nv_bfloat16 *__restrict__ vt)
{
    __shared__ float tile[32][33];
    const int64_t j0 = (int64_t)blockIdx.x * 32;
    const int d0 = (int)blockIdx.y * 32, h = (int)blockIdx.z;
    const int64_t col = (int64_t)(head0 + h) * FW_HD + d0 + threadIdx.x;
    for (int r = (int)threadIdx.y; r < 32; r += 8) {
        const int64_t j = j0 + r;
        float x = 0.0f;
        if (j < Lk) {
            x = v[j * ldv + col];
            kb[((int64_t)h * Lk + j) * FW_HD + d0 + threadIdx.x] = __float2bfloat16_rn(k[j * ldk + col]);
        }
        tile[r][threadIdx.x] = x;
    }
    __syncthreads();
    for (int r = (int)threadIdx.y; r < 32; r += 8) { /* r: dim d0 + r; threadIdx.x: key j0 + x */
        const int64_t j = j0 + threadIdx.x;
        if (j < Lkp)
            vt[((int64_t)h * FW_HD + d0 + r) * Lkp + j] = __float2bfloat16_rn(tile[threadIdx.x][r]);
    }
}

/* The 16-byte chunk (row r, columns 8c..8c+7) that loader thread slot i of a 128 x 128 tile copies, chosen so that
 * each 8-lane phase writes 128 contiguous (FW_PLAIN: one core matrix) or one permuted 128-byte row (FW_SW128) of
 * shared memory: conflict-free (checked by `attention_forward layout`). */
template <int LAYOUT>
__host__ __device__ __forceinline__ void fw_chunk_rc(int i, int &r, int &c)
{
    if (LAYOUT == FW_SW128)
        r = i >> 4, c = i & 15;
    else
        r = (i & 7) + (i >> 7) * 8, c = (i >> 3) & 15;
}

/* Copies one 128 x 128 tile into LAYOUT with cp.async. `src` is row 0 column 0 of the tile, rows `ld` elements
 * apart; rows >= rows_ok or columns >= cols_ok are zero-filled (`any`: a valid address that is not read). */
template <int LAYOUT>
__device__ __forceinline__ void fw_load_tile(uint32_t dst, const __nv_bfloat16 *src, int64_t ld, int64_t rows_ok,
                                             int64_t cols_ok, const __nv_bfloat16 *any)
{
#pragma unroll
    for (int it = 0; it < 2048 / FW_THREADS; it++) {
        int r, c;
        fw_chunk_rc<LAYOUT>((int)threadIdx.x + it * FW_THREADS, r, c);
        const bool in = r < rows_ok && 8 * c < cols_ok;
        cp_async16(dst + fw_chunk_off<LAYOUT>(r, 8 * c), in ? src + r * ld + 8 * c : any, in ? 16 : 0);
    }
}

/* The block's 128 query rows of `head` (f32, scaled by qscale, rounded to bf16) into the Q tile at `sm` in
 * LAYOUT, by 256 threads; rows past Lq are zeros. Chunk i (16 bytes) as fw_chunk_rc. */
template <int LAYOUT>
__device__ __forceinline__ void fw_load_q(unsigned char *sm, const float *q, int64_t ldq, int64_t q0, int64_t Lq,
                                          int64_t head, float qscale, int tid)
{
    for (int i = tid; i < 2048; i += 256) {
        int r, c;
        fw_chunk_rc<LAYOUT>(i, r, c);
        uint32_t w[4] = { 0, 0, 0, 0 };
        if (q0 + r < Lq) {
            const float4 *src = (const float4 *)(q + (q0 + r) * ldq + head * FW_HD + 8 * c);
            const float4 a = src[0], b = src[1];
            w[0] = pack_bf16(a.x * qscale, a.y * qscale), w[1] = pack_bf16(a.z * qscale, a.w * qscale);
            w[2] = pack_bf16(b.x * qscale, b.y * qscale), w[3] = pack_bf16(b.z * qscale, b.w * qscale);
        }
        *(uint4 *)(sm + fw_chunk_off<LAYOUT>(r, 8 * c)) = make_uint4(w[0], w[1], w[2], w[3]);
    }
}

template <int LAYOUT>
__global__ void __launch_bounds__(FW_THREADS, 1)
k_flash_wgmma(const float *__restrict__ q, int64_t ldq, const __nv_bfloat16 *__restrict__ kb,
              const __nv_bfloat16 *__restrict__ vt, float *__restrict__ o, int64_t ldo, int64_t Lq, int64_t Lk,
              int64_t Lkp, int head0, float qscale, float lw2)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ __align__(1024) unsigned char fw_smem_raw[];
    unsigned char *fw_smem = fw_smem_raw + ((1024 - (smem_u32(fw_smem_raw) & 1023)) & 1023); /* 1024-aligned */
    const uint32_t sQ = smem_u32(fw_smem), sK = sQ + FW_TILE, sV = sQ + 3 * FW_TILE;
    const int tid = (int)threadIdx.x, wg = tid / 128, warp = (tid % 128) / 32, lane = tid % 32;
    const int64_t head = head0 + (int64_t)blockIdx.y, q0 = (int64_t)blockIdx.x * FW_BQ;
    const __nv_bfloat16 *kh = kb + (int64_t)blockIdx.y * Lk * FW_HD, *vh = vt + (int64_t)blockIdx.y * FW_HD * Lkp;

    /* Q: scaled, rounded, K-major; rows past Lq are zeros. Chunk i: row r, columns 8c.. as in fw_load_tile. */
    fw_load_q<LAYOUT>(fw_smem, q, ldq, q0, Lq, head, qscale, tid);
    fw_load_tile<LAYOUT>(sK, kh, FW_HD, Lk, FW_HD, kh);
    fw_load_tile<LAYOUT>(sV, vh, Lkp, FW_HD, Lkp, vh);
    cp_async_commit();

    float acc[64], s[64];
    float mrow[2] = { -INFINITY, -INFINITY }, lrow[2] = { 0.0f, 0.0f };
#pragma unroll
    for (int i = 0; i < 64; i++)
        acc[i] = s[i] = 0.0f;
    const int ntiles = (int)((Lk + FW_BK - 1) / FW_BK);
    for (int t = 0; t < ntiles; t++) {
        const int64_t j0 = (int64_t)t * FW_BK;
        const int buf = t & 1;
        if (t + 1 < ntiles) { /* tile t+1 into the other buffer (free: the barrier ending t-1 has passed) */
            const int64_t j1 = j0 + FW_BK;
            fw_load_tile<LAYOUT>(sK + (buf ^ 1) * FW_TILE, kh + j1 * FW_HD, FW_HD, Lk - j1, FW_HD, kh);
            fw_load_tile<LAYOUT>(sV + (buf ^ 1) * FW_TILE, vh + j1, Lkp, FW_HD, Lkp - j1, vh);
            cp_async_commit();
            asm volatile("cp.async.wait_group 1;\n" ::: "memory");
        } else {
            cp_async_wait_all();
        }
        fence_proxy_async();
        __syncthreads(); /* tile t (and Q) written by every thread, visible to wgmma */

        const uint32_t kt0 = sK + buf * FW_TILE, vt0 = sV + buf * FW_TILE;
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < FW_HD / 16; kk++)
            wgmma_ss(s, fw_desc<LAYOUT>(sQ, 64 * wg, kk), fw_desc<LAYOUT>(kt0, 0, kk), kk > 0);
        wgmma_commit();
        wgmma_wait0();
        fence_regs(s);

        /* s[4j + 2h + e]: row 16·warp + lane/4 + 8h of the warpgroup, key j0 + 8j + 2(lane%4) + e */
        uint32_t pa[8][4];
        fw_softmax(s, acc, mrow, lrow, pa, j0, Lk, lw2, lane);
        wgmma_fence();
#pragma unroll
        for (int kt = 0; kt < 8; kt++)
            wgmma_rs(acc, pa[kt], fw_desc<LAYOUT>(vt0, 0, kt));
        wgmma_commit();
        wgmma_wait0();
        fence_regs(acc);
        __syncthreads(); /* every warpgroup is done with buffer `buf` before tile t+2 overwrites it */
    }

    fw_store(acc, lrow, o, ldo, q0 + 64 * wg, Lq, head, warp, lane);
#else
    __trap(); /* launched only on compute capability 9.0, which runs the sm_90a code */
#endif
}

/* Vᵀ's row length: the keys padded with zeros to a multiple of 8 (16-byte copies). */
inline int64_t fw_keys_padded(int64_t Lk)
{
    return (Lk + 7) / 8 * 8;
}

/* Scratch bytes per head of fw_kv_prepare: K rows and Vᵀ. */
inline size_t fw_bytes_per_head(int64_t Lk)
{
    return (size_t)(Lk + fw_keys_padded(Lk)) * FW_HD * 2;
}

/* K/V of heads head0 .. head0 + nh - 1 -> kb [nh][Lk][128], vt [nh][128][Lkp] (Lkp = Lk rounded up to 8). */
inline cudaError_t fw_kv_prepare(const float *k, int64_t ldk, const float *v, int64_t ldv, int64_t Lk, int head0,
                                 int nh, __nv_bfloat16 *kb, __nv_bfloat16 *vt, cudaStream_t st)
{
    const int64_t Lkp = fw_keys_padded(Lk);
    k_kvt_bf16<<<dim3((unsigned)((Lkp + 31) / 32), FW_HD / 32, (unsigned)nh), dim3(32, 8), 0, st>>>(
        k, ldk, v, ldv, Lk, Lkp, head0, kb, vt);
    return cudaGetLastError();
}

template <int LAYOUT>
cudaError_t fw_launch(const float *q, int64_t ldq, const __nv_bfloat16 *kb, const __nv_bfloat16 *vt, float *o,
                      int64_t ldo, int64_t Lq, int64_t Lk, int head0, int nh, float qscale, float lw2,
                      cudaStream_t st)
{
    cudaError_t e = cudaFuncSetAttribute(k_flash_wgmma<LAYOUT>, cudaFuncAttributeMaxDynamicSharedMemorySize, FW_SMEM);
    if (e != cudaSuccess)
        return e;
    const dim3 grid((unsigned)((Lq + FW_BQ - 1) / FW_BQ), (unsigned)nh);
    k_flash_wgmma<LAYOUT><<<grid, FW_THREADS, FW_SMEM, st>>>(q, ldq, kb, vt, o, ldo, Lq, Lk, fw_keys_padded(Lk), head0,
                                                           qscale, lw2);
    return cudaGetLastError();
}

/* ---- version 2: TMA loads, mbarrier pipeline, warpgroup ping-pong ------------------------------------------ *
 * k_flash_tma has the same work split and arithmetic as k_flash_wgmma<FW_SW128>, but the two warpgroups never
 * wait for each other at a block barrier. Thread 0 issues the K and Vᵀ tiles as TMA copies (cp.async.bulk.tensor,
 * 128-byte swizzle: the FW_SW128 layout) into STAGES buffers, each guarded by a "full" mbarrier (the copy's byte
 * count) and an "empty" mbarrier (one arrival per warp once its P·V of that buffer is complete). The first STAGES
 * tiles are issued at the start; at the end of warpgroup 0's iteration t, buffer (t-1) % STAGES (which warpgroup 1,
 * running up to half an iteration behind, has released by then) is refilled with tile t - 1 + STAGES. With
 * PINGPONG, named barriers make the warpgroups take turns to issue their GEMMs, so that one's softmax runs while
 * the other's GEMMs do. With PIPE, S(t+1) is issued together with P·V(t) (FlashAttention-3's schedule): each
 * warpgroup alternates one softmax and one pair of GEMMs. (A separate producer warp would cap the block at 168
 * registers per thread: ptxas allocates for whole warpgroups.) */
constexpr int FT_THREADS = 256;

template <int STAGES>
struct ft_smem {
    static constexpr int BYTES = FW_TILE * (1 + 2 * STAGES) + 1024 + 16 * STAGES; /* + alignment + mbarriers */
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ void mbar_init(uint32_t bar, int count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar)
{
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, int parity)
{
    uint32_t done;
    do {
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     "selp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done) : "r"(bar), "r"(parity) : "memory");
    } while (!done);
}
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const CUtensorMap *map, int c0, int c1, int c2, uint32_t bar)
{
    asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes "
                 "[%0], [%1, {%2, %3, %4}], "
                 "[%5];\n" ::"r"(dst), "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(c2), "r"(bar) : "memory");
}
__device__ __forceinline__ void bar_sync(int id, int n)
{
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
__device__ __forceinline__ void bar_arrive(int id, int n)
{
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
#endif

/* kmap: the bf16 K of the head group as [nh][Lk][128] (box 64 x 128 x 1); vmap: Vᵀ as [nh][128][Lkp] (box 64 x 128
 * x 1); both 128-byte swizzled, zero-filled out of bounds. Other arguments as k_flash_wgmma. */
template <int STAGES, bool PINGPONG, bool PIPE>
__global__ void __launch_bounds__(FT_THREADS, 1)
k_flash_tma(const __grid_constant__ CUtensorMap kmap, const __grid_constant__ CUtensorMap vmap,
            const float *__restrict__ q, int64_t ldq, float *__restrict__ o, int64_t ldo, int64_t Lq, int64_t Lk,
            int head0, float qscale, float lw2)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ __align__(1024) unsigned char ft_smem_raw[];
    unsigned char *sm = ft_smem_raw + ((1024 - (smem_u32(ft_smem_raw) & 1023)) & 1023);
    const uint32_t sQ = smem_u32(sm), sKV = sQ + FW_TILE; /* stage i: K at sKV + 2i·TILE, Vᵀ one tile on */
    const uint32_t full = sQ + FW_TILE * (1 + 2 * STAGES), empty = full + 8 * STAGES;
    const int tid = (int)threadIdx.x, lane = tid % 32;
    const int hl = (int)blockIdx.y;
    const int64_t head = head0 + (int64_t)hl, q0 = (int64_t)blockIdx.x * FW_BQ;
    const int ntiles = (int)((Lk + FW_BK - 1) / FW_BK);
    /* tile t into buffer t % STAGES (thread 0 only) */
    auto issue = [&](int t) {
        const int st = t % STAGES, j0 = t * FW_BK;
        const uint32_t kdst = sKV + 2 * st * FW_TILE, vdst = kdst + FW_TILE, fb = full + 8 * st;
        mbar_expect_tx(fb, 2 * FW_TILE);
        tma_load_3d(kdst, &kmap, 0, j0, hl, fb);
        tma_load_3d(kdst + FW_TILE / 2, &kmap, 64, j0, hl, fb);
        tma_load_3d(vdst, &vmap, j0, 0, hl, fb);
        tma_load_3d(vdst + FW_TILE / 2, &vmap, j0 + 64, 0, hl, fb);
    };
    if (tid == 0) {
        for (int i = 0; i < STAGES; i++) {
            mbar_init(full + 8 * i, 1);
            mbar_init(empty + 8 * i, 8);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
        for (int t = 0; t < STAGES && t < ntiles; t++)
            issue(t);
    }

    const int wg = tid / 128, wwarp = (tid / 32) % 4;
    fw_load_q<FW_SW128>(sm, q, ldq, q0, Lq, head, qscale, tid);
    fence_proxy_async();
    __syncthreads(); /* Q complete; the mbarriers initialised */
    if (PINGPONG && wg == 1)
        bar_arrive(2, 256); /* warpgroup 0 goes first */

    float acc[64], s[64];
    float mrow[2] = { -INFINITY, -INFINITY }, lrow[2] = { 0.0f, 0.0f };
#pragma unroll
    for (int i = 0; i < 64; i++)
        acc[i] = s[i] = 0.0f;
    /* S = Q·K(t)ᵀ into s: issue only (the caller commits and waits) */
    auto issue_s = [&](int t) {
        const uint32_t kt0 = sKV + 2 * (t % STAGES) * FW_TILE;
#pragma unroll
        for (int kk = 0; kk < FW_HD / 16; kk++)
            wgmma_ss(s, fw_desc<FW_SW128>(sQ, 64 * wg, kk), fw_desc<FW_SW128>(kt0, 0, kk), kk > 0);
    };
    /* after tile t: release its buffer; thread 0 refills the buffer of tile t - 1 */
    auto release = [&](int t) {
        if (lane == 0)
            mbar_arrive(empty + 8 * (t % STAGES)); /* this warp's reads of the buffer are complete */
        if (tid == 0 && t >= 1 && t - 1 + STAGES < ntiles) {
            mbar_wait(empty + 8 * ((t - 1) % STAGES), ((t - 1) / STAGES) & 1);
            issue(t - 1 + STAGES);
        }
    };
    if (PIPE) { /* S(t+1) is issued with P·V(t), so one warpgroup's softmax overlaps the other's two GEMMs */
        mbar_wait(full, 0);
        wgmma_fence();
        issue_s(0);
        wgmma_commit();
        wgmma_wait0();
        fence_regs(s);
        for (int t = 0; t < ntiles; t++) {
            const uint32_t vt0 = sKV + 2 * (t % STAGES) * FW_TILE + FW_TILE;
            uint32_t pa[8][4];
            fw_softmax(s, acc, mrow, lrow, pa, (int64_t)t * FW_BK, Lk, lw2, lane);
            if (t + 1 < ntiles)
                mbar_wait(full + 8 * ((t + 1) % STAGES), ((t + 1) / STAGES) & 1);
            if (PINGPONG)
                bar_sync(2 + wg, 256);
            wgmma_fence();
#pragma unroll
            for (int kt = 0; kt < 8; kt++)
                wgmma_rs(acc, pa[kt], fw_desc<FW_SW128>(vt0, 0, kt));
            if (t + 1 < ntiles)
                issue_s(t + 1);
            wgmma_commit();
            if (PINGPONG)
                bar_arrive(2 + (wg ^ 1), 256);
            wgmma_wait0();
            fence_regs(acc);
            fence_regs(s);
            release(t);
        }
    }
    for (int t = 0; !PIPE && t < ntiles; t++) {
        const int st = t % STAGES;
        const int64_t j0 = (int64_t)t * FW_BK;
        const uint32_t vt0 = sKV + 2 * st * FW_TILE + FW_TILE;
        mbar_wait(full + 8 * st, (t / STAGES) & 1);
        if (PINGPONG)
            bar_sync(2 + wg, 256);
        wgmma_fence();
        issue_s(t);
        wgmma_commit();
        if (PINGPONG)
            bar_arrive(2 + (wg ^ 1), 256);
        wgmma_wait0();
        fence_regs(s);

        uint32_t pa[8][4];
        fw_softmax(s, acc, mrow, lrow, pa, j0, Lk, lw2, lane);
        wgmma_fence();
#pragma unroll
        for (int kt = 0; kt < 8; kt++)
            wgmma_rs(acc, pa[kt], fw_desc<FW_SW128>(vt0, 0, kt));
        wgmma_commit();
        wgmma_wait0();
        fence_regs(acc);
        release(t);
    }
    if (PINGPONG && wg == 0)
        bar_sync(2, 256); /* the arrival warpgroup 1 made after its last S */

    fw_store(acc, lrow, o, ldo, q0 + 64 * wg, Lq, head, wwarp, lane);
#else
    __trap();
#endif
}

/* cuTensorMapEncodeTiled, from the driver through the runtime (no link against libcuda); NULL if unavailable. */
inline PFN_cuTensorMapEncodeTiled_v12000 ft_encoder()
{
    static PFN_cuTensorMapEncodeTiled_v12000 fn = NULL;
    if (!fn) {
        void *p = NULL;
        cudaDriverEntryPointQueryResult qr;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &qr) ==
                cudaSuccess && qr == cudaDriverEntryPointSuccess)
            fn = (PFN_cuTensorMapEncodeTiled_v12000)p;
    }
    return fn;
}

/* A 3-D bf16 tensor [d2][d1][d0] (d0 contiguous) with 64 x box1 x 1 boxes, 128-byte swizzle. */
inline bool ft_map(CUtensorMap *m, const void *base, uint64_t d0, uint64_t d1, uint64_t d2, uint32_t box1 = 128)
{
    PFN_cuTensorMapEncodeTiled_v12000 enc = ft_encoder();
    if (!enc)
        return false;
    const cuuint64_t dims[3] = { d0, d1, d2 }, strides[2] = { d0 * 2, d0 * d1 * 2 };
    const cuuint32_t box[3] = { 64, box1, 1 }, es[3] = { 1, 1, 1 };
    return enc(m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, (void *)base, dims, strides, box, es,
               CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

/* k_flash_tma over heads head0 .. head0 + nh - 1; kb/vt from fw_kv_prepare for the same heads. Returns
 * cudaErrorNotSupported when the driver's encoder refuses the K/Vᵀ tensor maps, else the launch's error. */
template <int STAGES, bool PINGPONG, bool PIPE>
cudaError_t ft_launch(const float *q, int64_t ldq, const __nv_bfloat16 *kb, const __nv_bfloat16 *vt, float *o,
                      int64_t ldo, int64_t Lq, int64_t Lk, int head0, int nh, float qscale, float lw2,
                      cudaStream_t st)
{
    const int64_t Lkp = fw_keys_padded(Lk);
    CUtensorMap km, vm;
    if (!ft_map(&km, kb, FW_HD, (uint64_t)Lk, (uint64_t)nh) || !ft_map(&vm, vt, (uint64_t)Lkp, FW_HD, (uint64_t)nh))
        return cudaErrorNotSupported;
    const int smem = ft_smem<STAGES>::BYTES;
    cudaError_t e = cudaFuncSetAttribute(k_flash_tma<STAGES, PINGPONG, PIPE>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         smem);
    if (e != cudaSuccess)
        return e;
    const dim3 grid((unsigned)((Lq + FW_BQ - 1) / FW_BQ), (unsigned)nh);
    k_flash_tma<STAGES, PINGPONG, PIPE><<<grid, FT_THREADS, smem, st>>>(km, vm, q, ldq, o, ldo, Lq, Lk, head0,
                                                                        qscale, lw2);
    return cudaGetLastError();
}

} /* namespace */

#endif /* WAN_CUDA_FLASH_WGMMA_CUH */
