/* flash_experiments.cuh — Hopper attention kernels that were measured and lost (workbench only, versions 15-17
 * of attention_forward; numbers in docs/PERFORMANCE.md, analysis in docs/CUDA.md "Attention on Hopper"). They use
 * src/cuda/flash_wgmma.cuh's helpers and are kept as starting points for the next attempt at in-warpgroup overlap:
 *   k_flash_tma64   64-key tiles, two S register sets: S(t+1) runs under softmax(t) (383 TFLOP/s on an H200);
 *   k_flash_ring    the same at 128-key tiles with separate K and V rings (408 TFLOP/s, 340 bytes spilled). */
#ifndef WAN_DEV_FLASH_EXPERIMENTS_CUH
#define WAN_DEV_FLASH_EXPERIMENTS_CUH

#include "cuda/flash_wgmma.cuh"

namespace {

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
/* d = A·B (no accumulation: d is output only, so its old values need not stay live), m64n128k16. */
__device__ __forceinline__ void wgmma_ss_new(float (&d)[64], uint64_t da, uint64_t db)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
                 FW_REGS64
                 "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
                 : FW_OPS64("=f")
                 : "l"(da), "l"(db), "r"(0));
}

/* d = (scale_d ? d : 0) + A·B, A 64x16 and B 16x64 from shared memory (descriptors). */
__device__ __forceinline__ void wgmma_ss64(float (&d)[32], uint64_t da, uint64_t db, int scale_d)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
                 "}, %32, %33, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]),
                   "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                   "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
                   "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                   "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]),
                   "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
                   "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "l"(da), "l"(db), "r"(scale_d));
}

__device__ __forceinline__ void wgmma_wait1() { asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory"); }
#endif

/* ---- version 3: 64-key tiles, S(t+1) under softmax(t) --------------------------------------------------------- *
 * k_flash_tma64: k_flash_tma's block (2 warpgroups, 128 queries, TMA + mbarriers, thread 0 refilling), with
 * 64-key tiles so that each warpgroup holds two S register sets (32 floats each) and two P fragment sets. In
 * iteration t a warpgroup issues S(t+1) = Q·K(t+1)ᵀ, runs softmax(t) while it (and P·V(t-1)) execute, waits for
 * P·V(t-1) only (wgmma.wait_group 1), rescales O and issues P·V(t): FlashAttention-3's intra-warpgroup overlap.
 * Tiles: K 64 keys x 128 dims (two 8 KB halves), Vᵀ 128 dims x 64 keys (one 16 KB swizzle span). The buffer of
 * tile t-2 is refilled in iteration t and first read in iteration t + STAGES - 3 (as S(t+1) is issued a step
 * early): STAGES - 3 iterations of slack for the copy. */
constexpr int F6_BK = 64, F6_KT = 64 * 128 * 2, F6_VT = 128 * 64 * 2;

template <int STAGES>
struct f6_smem {
    static constexpr int BYTES = FW_TILE + STAGES * (F6_KT + F6_VT) + 1024 + 16 * STAGES;
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
/* fw_softmax for a tile of 8·NJ keys (s[4j + 2h + e], j < NJ) that leaves O alone: alpha[h] is the factor O's row half h
 * must be scaled by before P·V of this tile. */
template <int NJ>
__device__ __forceinline__ void f6_softmax(float (&s)[4 * NJ], float (&mrow)[2], float (&lrow)[2], float (&alpha)[2],
                                           uint32_t (&pa)[NJ / 2][4], int64_t j0, int64_t Lk, float lw2, int lane)
{
    fw_mask<NJ>(s, j0, Lk, lw2, lane);
    float base[2], sum[2] = { 0.0f, 0.0f };
#pragma unroll
    for (int h = 0; h < 2; h++) {
        float mx = mrow[h];
#pragma unroll
        for (int j = 0; j < NJ; j++)
            mx = fmaxf(mx, fmaxf(s[4 * j + 2 * h], s[4 * j + 2 * h + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        base[h] = mx == -INFINITY ? 0.0f : mx;
        alpha[h] = ex2(mrow[h] - base[h]);
        mrow[h] = mx;
    }
    /* exponentials packed as they are made, 16 keys at a time, so that each S value dies at once */
#pragma unroll
    for (int kt = 0; kt < NJ / 2; kt++) {
        float p[8];
#pragma unroll
        for (int i = 0; i < 8; i++) {
            p[i] = ex2(s[8 * kt + i] - base[(i >> 1) & 1]);
            sum[(i >> 1) & 1] += p[i];
        }
        pa[kt][0] = pack_bf16(p[0], p[1]);
        pa[kt][1] = pack_bf16(p[2], p[3]);
        pa[kt][2] = pack_bf16(p[4], p[5]);
        pa[kt][3] = pack_bf16(p[6], p[7]);
    }
#pragma unroll
    for (int h = 0; h < 2; h++)
        lrow[h] = lrow[h] * alpha[h] + sum[h];
}
#endif

template <int STAGES>
__global__ void __launch_bounds__(FT_THREADS, 1)
k_flash_tma64(const __grid_constant__ CUtensorMap kmap, const __grid_constant__ CUtensorMap vmap,
              const float *__restrict__ q, int64_t ldq, float *__restrict__ o, int64_t ldo, int64_t Lq, int64_t Lk,
              int head0, float qscale, float lw2)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ __align__(1024) unsigned char f6_smem_raw[];
    unsigned char *sm = f6_smem_raw + ((1024 - (smem_u32(f6_smem_raw) & 1023)) & 1023);
    const uint32_t sQ = smem_u32(sm), sKV = sQ + FW_TILE; /* stage i: K at sKV + i·(KT + VT), Vᵀ KT further */
    const uint32_t full = sKV + STAGES * (F6_KT + F6_VT), empty = full + 8 * STAGES;
    const int tid = (int)threadIdx.x, lane = tid % 32, wg = tid / 128, wwarp = (tid / 32) % 4;
    const int hl = (int)blockIdx.y;
    const int64_t head = head0 + (int64_t)hl, q0 = (int64_t)blockIdx.x * FW_BQ;
    const int ntiles = (int)((Lk + F6_BK - 1) / F6_BK);
    auto kaddr = [&](int t) { return sKV + (t % STAGES) * (F6_KT + F6_VT); };
    auto issue = [&](int t) {
        const uint32_t kdst = kaddr(t), fb = full + 8 * (t % STAGES);
        mbar_expect_tx(fb, F6_KT + F6_VT);
        tma_load_3d(kdst, &kmap, 0, t * F6_BK, hl, fb);
        tma_load_3d(kdst + F6_KT / 2, &kmap, 64, t * F6_BK, hl, fb);
        tma_load_3d(kdst + F6_KT, &vmap, t * F6_BK, 0, hl, fb);
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
    fw_load_q<FW_SW128>(sm, q, ldq, q0, Lq, head, qscale, tid);
    fence_proxy_async();
    __syncthreads(); /* Q complete; the mbarriers initialised */

    float acc[64], sa[32], sb[32], mrow[2] = { -INFINITY, -INFINITY }, lrow[2] = { 0.0f, 0.0f };
    uint32_t pa[4][4], pb[4][4];
#pragma unroll
    for (int i = 0; i < 64; i++)
        acc[i] = 0.0f;
#pragma unroll
    for (int i = 0; i < 32; i++)
        sa[i] = sb[i] = 0.0f;
    /* S(t) into s (issue only). The K tile's halves are 64 rows x 128 bytes: 8 KB apart. */
    auto issue_s = [&](float (&sx)[32], int t) {
        const uint32_t kt0 = kaddr(t);
#pragma unroll
        for (int kk = 0; kk < FW_HD / 16; kk++) {
            const uint32_t ka = kt0 + (kk >> 2) * (F6_KT / 2) + (kk & 3) * 32;
            const uint64_t kd = (uint64_t)((ka & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) |
                                ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
            wgmma_ss64(sx, fw_desc<FW_SW128>(sQ, 64 * wg, kk), kd, kk > 0);
        }
    };
    auto release = [&](int t) { /* P·V(t) is complete in every warp of this warpgroup */
        if (lane == 0)
            mbar_arrive(empty + 8 * (t % STAGES));
    };
    /* One iteration: S(t) is complete in sc; P·V(t-1) may be running (reading pp's twin). */
    auto step = [&](int t, float (&sc)[32], float (&sn)[32], uint32_t (&pc)[4][4]) {
        const bool more = t + 1 < ntiles;
        if (more) {
            mbar_wait(full + 8 * ((t + 1) % STAGES), ((t + 1) / STAGES) & 1);
            wgmma_fence();
            issue_s(sn, t + 1);
            wgmma_commit();
        }
        float alpha[2];
        f6_softmax<8>(sc, mrow, lrow, alpha, pc, (int64_t)t * F6_BK, Lk, lw2, lane);
        if (more)
            wgmma_wait1(); /* P·V(t-1) done (S(t+1) may still run) */
        else
            wgmma_wait0();
        fence_regs(acc);
        if (t >= 1)
            release(t - 1);
        if (tid == 0 && t >= 2 && t - 2 + STAGES < ntiles) { /* refill the buffer of tile t - 2 */
            mbar_wait(empty + 8 * ((t - 2) % STAGES), ((t - 2) / STAGES) & 1);
            issue(t - 2 + STAGES);
        }
#pragma unroll
        for (int j = 0; j < 16; j++) {
            acc[4 * j] *= alpha[0], acc[4 * j + 1] *= alpha[0];
            acc[4 * j + 2] *= alpha[1], acc[4 * j + 3] *= alpha[1];
        }
        const uint32_t vt0 = kaddr(t) + F6_KT;
        wgmma_fence();
#pragma unroll
        for (int kt = 0; kt < 4; kt++)
            wgmma_rs(acc, pc[kt], fw_desc<FW_SW128>(vt0, 0, kt));
        wgmma_commit();
        if (more) {
            wgmma_wait1(); /* S(t+1) done */
            fence_regs(sn);
        }
    };
    mbar_wait(full, 0);
    wgmma_fence();
    issue_s(sa, 0);
    wgmma_commit();
    wgmma_wait0();
    fence_regs(sa);
    for (int t = 0; t < ntiles; t += 2) {
        step(t, sa, sb, pa);
        if (t + 1 < ntiles)
            step(t + 1, sb, sa, pb);
    }
    wgmma_wait0();
    fence_regs(acc);
    fw_store(acc, lrow, o, ldo, q0 + 64 * wg, Lq, head, wwarp, lane);
#else
    __trap();
#endif
}

/* k_flash_tma64 over heads head0 .. head0 + nh - 1; kb/vt from fw_kv_prepare for the same heads. */
template <int STAGES>
cudaError_t f6_launch(const float *q, int64_t ldq, const __nv_bfloat16 *kb, const __nv_bfloat16 *vt, float *o,
                      int64_t ldo, int64_t Lq, int64_t Lk, int head0, int nh, float qscale, float lw2,
                      cudaStream_t st)
{
    const int64_t Lkp = fw_keys_padded(Lk);
    CUtensorMap km, vm;
    if (!ft_map(&km, kb, FW_HD, (uint64_t)Lk, (uint64_t)nh, 64) ||
        !ft_map(&vm, vt, (uint64_t)Lkp, FW_HD, (uint64_t)nh, 128))
        return cudaErrorInvalidValue;
    const int smem = f6_smem<STAGES>::BYTES;
    cudaError_t e = cudaFuncSetAttribute(k_flash_tma64<STAGES>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess)
        return e;
    const dim3 grid((unsigned)((Lq + FW_BQ - 1) / FW_BQ), (unsigned)nh);
    k_flash_tma64<STAGES><<<grid, FT_THREADS, smem, st>>>(km, vm, q, ldq, o, ldo, Lq, Lk, head0, qscale, lw2);
    return cudaGetLastError();
}

/* ---- version 4: separate K and V rings, S(t+1) under softmax(t) at 128-key tiles -------------------------------- *
 * k_flash_ring: k_flash_tma's tiles (128 keys) and block, with the K and Vᵀ tiles in separate 3-buffer rings, each
 * with its own full/empty mbarriers. K(t+1) is needed one step before V(t+1) (S(t+1) is issued at the start of
 * iteration t) and its buffer frees as soon as S(t) is done, so thread 0 issues K(t+2) at the start of iteration t
 * and V(t+1) once P·V(t-2) is done everywhere. In iteration t a warpgroup issues S(t+1), waits for P·V(t-1) (so P
 * can be rewritten), runs softmax(t) while S(t+1) executes, rescales O, issues P·V(t), then waits for S(t+1):
 * FlashAttention-3's intra-warpgroup overlap. Two S register sets of 64 floats plus O: ~245 registers. */
constexpr int FR_SMEM = FW_TILE * 7 + 1024 + 16 * 6; /* Q, K[3], Vᵀ[3], alignment, 12 mbarriers */

template <int DUMMY>
__global__ void __launch_bounds__(FT_THREADS, 1)
k_flash_ring(const __grid_constant__ CUtensorMap kmap, const __grid_constant__ CUtensorMap vmap,
             const float *__restrict__ q, int64_t ldq, float *__restrict__ o, int64_t ldo, int64_t Lq, int64_t Lk,
             int head0, float qscale, float lw2)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ __align__(1024) unsigned char fr_smem_raw[];
    unsigned char *sm = fr_smem_raw + ((1024 - (smem_u32(fr_smem_raw) & 1023)) & 1023);
    const uint32_t sQ = smem_u32(sm), sK = sQ + FW_TILE, sV = sK + 3 * FW_TILE;
    const uint32_t kfull = sV + 3 * FW_TILE, kempty = kfull + 24, vfull = kfull + 48, vempty = kfull + 72;
    const int tid = (int)threadIdx.x, lane = tid % 32, wg = tid / 128, wwarp = (tid / 32) % 4;
    const int hl = (int)blockIdx.y;
    const int64_t head = head0 + (int64_t)hl, q0 = (int64_t)blockIdx.x * FW_BQ;
    const int ntiles = (int)((Lk + FW_BK - 1) / FW_BK);
    auto issue_k = [&](int t) {
        const uint32_t dst = sK + (t % 3) * FW_TILE, fb = kfull + 8 * (t % 3);
        mbar_expect_tx(fb, FW_TILE);
        tma_load_3d(dst, &kmap, 0, t * FW_BK, hl, fb);
        tma_load_3d(dst + FW_TILE / 2, &kmap, 64, t * FW_BK, hl, fb);
    };
    auto issue_v = [&](int t) {
        const uint32_t dst = sV + (t % 3) * FW_TILE, fb = vfull + 8 * (t % 3);
        mbar_expect_tx(fb, FW_TILE);
        tma_load_3d(dst, &vmap, t * FW_BK, 0, hl, fb);
        tma_load_3d(dst + FW_TILE / 2, &vmap, t * FW_BK + 64, 0, hl, fb);
    };
    if (tid == 0) {
        for (int i = 0; i < 3; i++) {
            mbar_init(kfull + 8 * i, 1), mbar_init(kempty + 8 * i, 8);
            mbar_init(vfull + 8 * i, 1), mbar_init(vempty + 8 * i, 8);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
        for (int t = 0; t < 3 && t < ntiles; t++) {
            issue_k(t);
            issue_v(t);
        }
    }
    fw_load_q<FW_SW128>(sm, q, ldq, q0, Lq, head, qscale, tid);
    fence_proxy_async();
    __syncthreads(); /* Q complete; the mbarriers initialised */

    float acc[64], sa[64], sb[64], mrow[2] = { -INFINITY, -INFINITY }, lrow[2] = { 0.0f, 0.0f };
    uint32_t pa[8][4];
#pragma unroll
    for (int i = 0; i < 64; i++)
        acc[i] = 0.0f;
    /* descriptors are rebuilt at each use from an opaque base (asm volatile), so that the compiler does not keep
     * 24 of them in registers across the loop */
    auto opaque = [](uint32_t x) {
        asm volatile("mov.b32 %0, %0;\n" : "+r"(x));
        return x;
    };
    auto issue_s = [&](float (&sx)[64], int t) {
        const uint32_t kt0 = opaque(sK + (t % 3) * FW_TILE), qb = opaque(sQ + wg * 64 * 128);
#pragma unroll
        for (int kk = 0; kk < FW_HD / 16; kk++) {
            if (kk == 0)
                wgmma_ss_new(sx, fw_desc<FW_SW128>(qb, 0, 0), fw_desc<FW_SW128>(kt0, 0, 0));
            else
                wgmma_ss(sx, fw_desc<FW_SW128>(qb, 0, kk), fw_desc<FW_SW128>(kt0, 0, kk), 1);
        }
    };
    /* iteration t: S(t) is complete in sc; P·V(t-1) may be running (reading pa) */
    auto step = [&](int t, float (&sc)[64], float (&sn)[64]) {
        const bool more = t + 1 < ntiles;
        if (tid == 0 && t >= 1 && t + 2 < ntiles) { /* K(t+2) into the buffer of K(t-1): S(t-1) is long done */
            mbar_wait(kempty + 8 * ((t - 1) % 3), ((t - 1) / 3) & 1);
            issue_k(t + 2);
        }
        if (more) {
            mbar_wait(kfull + 8 * ((t + 1) % 3), ((t + 1) / 3) & 1);
            wgmma_fence();
            issue_s(sn, t + 1);
            wgmma_commit();
        }
        if (t >= 1) {
            if (more)
                wgmma_wait1(); /* P·V(t-1) done; S(t+1) may still run */
            else
                wgmma_wait0();
            fence_regs(acc);
            if (lane == 0)
                mbar_arrive(vempty + 8 * ((t - 1) % 3));
            if (tid == 0 && t >= 2 && t + 1 < ntiles) { /* V(t+1) into the buffer of V(t-2) */
                mbar_wait(vempty + 8 * ((t - 2) % 3), ((t - 2) / 3) & 1);
                issue_v(t + 1);
            }
        }
        float alpha[2];
        f6_softmax<16>(sc, mrow, lrow, alpha, pa, (int64_t)t * FW_BK, Lk, lw2, lane);
#pragma unroll
        for (int j = 0; j < 16; j++) {
            acc[4 * j] *= alpha[0], acc[4 * j + 1] *= alpha[0];
            acc[4 * j + 2] *= alpha[1], acc[4 * j + 3] *= alpha[1];
        }
        mbar_wait(vfull + 8 * (t % 3), (t / 3) & 1);
        const uint32_t vt0 = opaque(sV + (t % 3) * FW_TILE);
        wgmma_fence();
#pragma unroll
        for (int kt = 0; kt < 8; kt++)
            wgmma_rs(acc, pa[kt], fw_desc<FW_SW128>(vt0, 0, kt));
        wgmma_commit();
        if (more) {
            wgmma_wait1(); /* S(t+1) done */
            fence_regs(sn);
            if (lane == 0)
                mbar_arrive(kempty + 8 * ((t + 1) % 3));
        }
    };
    mbar_wait(kfull, 0);
    wgmma_fence();
    issue_s(sa, 0);
    wgmma_commit();
    wgmma_wait0();
    fence_regs(sa);
    if (lane == 0)
        mbar_arrive(kempty);
    for (int t = 0; t < ntiles; t += 2) {
        step(t, sa, sb);
        if (t + 1 < ntiles)
            step(t + 1, sb, sa);
    }
    wgmma_wait0();
    fence_regs(acc);
    fw_store(acc, lrow, o, ldo, q0 + 64 * wg, Lq, head, wwarp, lane);
#else
    __trap();
#endif
}

/* k_flash_ring over heads head0 .. head0 + nh - 1; kb/vt from fw_kv_prepare for the same heads. */
inline cudaError_t fr_launch(const float *q, int64_t ldq, const __nv_bfloat16 *kb, const __nv_bfloat16 *vt, float *o,
                             int64_t ldo, int64_t Lq, int64_t Lk, int head0, int nh, float qscale, float lw2,
                             cudaStream_t st)
{
    const int64_t Lkp = fw_keys_padded(Lk);
    CUtensorMap km, vm;
    if (!ft_map(&km, kb, FW_HD, (uint64_t)Lk, (uint64_t)nh) || !ft_map(&vm, vt, (uint64_t)Lkp, FW_HD, (uint64_t)nh))
        return cudaErrorInvalidValue;
    cudaError_t e = cudaFuncSetAttribute(k_flash_ring<0>, cudaFuncAttributeMaxDynamicSharedMemorySize, FR_SMEM);
    if (e != cudaSuccess)
        return e;
    const dim3 grid((unsigned)((Lq + FW_BQ - 1) / FW_BQ), (unsigned)nh);
    k_flash_ring<0><<<grid, FT_THREADS, FR_SMEM, st>>>(km, vm, q, ldq, o, ldo, Lq, Lk, head0, qscale, lw2);
    return cudaGetLastError();
}

} /* namespace */

#endif /* WAN_DEV_FLASH_EXPERIMENTS_CUH */
