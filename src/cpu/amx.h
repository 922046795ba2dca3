/* amx.h — the 32 x 32 block step both AMX kernels are made of (gemm_amx.c, attention_amx.c), with the tile
 * configuration of wan_amx_configure: tiles 0-3 hold the f32 block as 2 x 2 tiles of 16 x 16, tiles 4-5 two 16-row A
 * tiles (32 bf16 per row), tiles 6-7 two 16-column B tiles (16 k pairs per column block). Internal; include only
 * from files compiled with the AMX flags. */
#ifndef WAN_CPU_AMX_H
#define WAN_CPU_AMX_H

#include "cpu/gemm_bf16.h"

#include <immintrin.h>

/* The f32 block (row stride ld floats) into tiles 0-3, or zeros when c is NULL. */
static inline void amx_block_load(const float *c, int64_t ld)
{
    WAN_TILE_FENCE();
    if (!c) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        return;
    }
    _tile_loadd(0, c, ld * 4);
    _tile_loadd(1, c + 16, ld * 4);
    _tile_loadd(2, c + 16 * ld, ld * 4);
    _tile_loadd(3, c + 16 * ld + 16, ld * 4);
}

/* block += [A rows 0-15 at a0; rows 16-31 at a1] · [B columns 0-15 at b0 | 16-31 at b1] over 32 values of k; A
 * tiles have 64-byte rows, B tiles rows ldb bytes apart. */
static inline void amx_block_step(const void *a0, const void *a1, const void *b0, const void *b1, int64_t ldb)
{
    _tile_loadd(4, a0, 64);
    _tile_loadd(5, a1, 64);
    _tile_loadd(6, b0, ldb);
    _tile_loadd(7, b1, ldb);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
}

/* Tiles 0-3 out to the f32 block (row stride ld floats). */
static inline void amx_block_store(float *c, int64_t ld)
{
    _tile_stored(0, c, ld * 4);
    _tile_stored(1, c + 16, ld * 4);
    _tile_stored(2, c + 16 * ld, ld * 4);
    _tile_stored(3, c + 16 * ld + 16, ld * 4);
    WAN_TILE_FENCE();
}

#endif /* WAN_CPU_AMX_H */
