/* nr_dma_memcpy.c - the DMA port as a copy done at issue (QEMU models no DMA engine): the
 * generated code's waits stay where they are and return at once. */
#include <stdint.h>

#include "nr_runtime.h"

static nr_dma_id_t nr_next;

nr_dma_id_t nr_dma_start(void *dst, const void *src, const nr_xfer_t *x, int link, int to_near)
{
    uint32_t i, j, k, b;
    (void)link;
    (void)to_near;
    for (k = 0; k < x->n[2]; k++)
        for (j = 0; j < x->n[1]; j++)
            for (i = 0; i < x->n[0]; i++) {
                uint8_t *d = (uint8_t *)dst + k * x->dst_s[2] + j * x->dst_s[1] + i * x->dst_s[0];
                const uint8_t *s = (const uint8_t *)src + k * x->src_s[2] + j * x->src_s[1] +
                                   i * x->src_s[0];
                for (b = 0; b < x->bytes; b++)
                    d[b] = s[b];
            }
    return nr_next++ & 0x7FFFFFFF;
}

void nr_dma_wait(nr_dma_id_t id) { (void)id; }
void nr_dma_wait_all(void) {}
