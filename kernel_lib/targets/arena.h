/* arena.h - a bump allocator over one static arena, for the benchmark and calibration programs
 * (no libc, no malloc on the bare-metal targets). Define KL_ARENA_BYTES before including it.
 * Exits with code 3 ("E arena full" on the output) when a request does not fit. */
#ifndef KL_ARENA_H
#define KL_ARENA_H

#include <stdint.h>

#include "platform.h"
#include "textout.h"

static uint8_t kl_arena[KL_ARENA_BYTES] __attribute__((aligned(8)));
static uint32_t kl_arena_top;

/* n bytes, 8-byte aligned */
static inline void *arena_alloc(uint32_t n)
{
    void *p;
    n = (n + 7u) & ~7u;
    if (kl_arena_top + n > KL_ARENA_BYTES) {
        out_s("E arena full\n");
        out_flush();
        kl_plat_exit(3);
    }
    p = kl_arena + kl_arena_top;
    kl_arena_top += n;
    return p;
}

/* release everything allocated so far */
static inline void arena_reset(void)
{
    kl_arena_top = 0;
}

#endif
