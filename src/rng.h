/* rng.h — torch's CPU random generator (MT19937 + torch.randn's normal paths), so that a seed given
 * to wan.c draws the same initial noise as `torch.manual_seed(seed); torch.randn(shape)` on the CPU
 * (and diffusers with a CPU generator). Internal header; the public entry point is wan_randn(). */
#ifndef WAN_RNG_H
#define WAN_RNG_H

#include <stddef.h>
#include <stdint.h>

#include "wan.h"

#define WAN_MT_N 624

/* The state of one torch CPU generator: the MT19937 engine plus the cached second value of the
 * scalar Box–Muller path (torch keeps it in the generator, and manual_seed clears it). */
typedef struct wan_torch_gen {
    uint32_t mt[WAN_MT_N];
    int next;             /* index of the next tempered word; WAN_MT_N: twist before drawing  */
    int has_cached;       /* 1: cached_normal holds the sine half of the last scalar pair      */
    double cached_normal;
} wan_torch_gen;

/* torch.manual_seed(seed): only the low 32 bits seed the engine (torch maps a negative Python
 * seed s to 2^64 + s first). Clears the cached normal. */
void wan_torch_gen_seed(wan_torch_gen *g, uint64_t seed);

/* One 32-bit engine output (torch `random()`), and two of them as hi << 32 | lo (`random64()`). */
uint32_t wan_torch_gen_u32(wan_torch_gen *g);
uint64_t wan_torch_gen_u64(wan_torch_gen *g);

/* torch.randn(n, dtype=float32, generator=g) for a contiguous tensor of n elements, continuing the
 * generator's stream. n >= 16: the 16-wide Box–Muller of the chosen torch kernel, emulated bit for
 * bit in portable C; n < 16: the double-precision scalar path with the cached second value. */
void wan_torch_gen_randn(wan_torch_gen *g, wan_randn_kernel kernel, float *out, size_t n);

#endif /* WAN_RNG_H */
