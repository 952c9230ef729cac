/* nr_dma_memcpy.c - the DMA port as a copy done at issue (QEMU models no DMA engine): the
 * generated code's waits stay where they are and return at once. */
#include <stdint.h>

#include "nr_runtime.h"

static nr_dma_id_t nr_next;

/* a row: words when both ends and the length allow it (the port's instructions are CPU work on
 * QEMU that the board's DMA would do in the background: keep them few) */
static void nr_row(uint8_t *d, const uint8_t *s, uint32_t n)
{
    if ((((uintptr_t)d | (uintptr_t)s | n) & 3u) == 0) {
        uint32_t *dw = (uint32_t *)(void *)d;
        const uint32_t *sw = (const uint32_t *)(const void *)s;
        uint32_t w = n >> 2;
        while (w >= 4) {
            dw[0] = sw[0];
            dw[1] = sw[1];
            dw[2] = sw[2];
            dw[3] = sw[3];
            dw += 4;
            sw += 4;
            w -= 4;
        }
        while (w--)
            *dw++ = *sw++;
        return;
    }
    while (n--)
        *d++ = *s++;
}

nr_dma_id_t nr_dma_start(void *dst, const void *src, const nr_xfer_t *x, int link, int to_near)
{
    uint32_t i, j, k;
    (void)link;
    (void)to_near;
    for (k = 0; k < x->n[2]; k++)
        for (j = 0; j < x->n[1]; j++)
            for (i = 0; i < x->n[0]; i++) {
                uint8_t *d = (uint8_t *)dst + k * x->dst_s[2] + j * x->dst_s[1] + i * x->dst_s[0];
                const uint8_t *s = (const uint8_t *)src + k * x->src_s[2] + j * x->src_s[1] +
                                   i * x->src_s[0];
                nr_row(d, s, x->bytes);
            }
    return nr_next++ & 0x7FFFFFFF;
}

void nr_dma_wait(nr_dma_id_t id) { (void)id; }
void nr_dma_wait_all(void) {}
