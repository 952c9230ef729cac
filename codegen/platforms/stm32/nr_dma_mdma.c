/* nr_dma_mdma.c - the DMA port on the STM32H7 board: the MDMA (the only DMA master that reaches
 * the DTCM, through the Cortex-M7 AHBS port), programmed at register level (RM0433, "MDMA").
 * A transfer of rows of `bytes` with source/destination strides is one repeated-block transfer
 * (block = one row, the block repeat count = rows, the address update values = stride - bytes);
 * further levels are issued one after another. Eight channels are used round robin so that
 * several transfers are in flight; nr_dma_wait polls the channel's transfer-complete flag.
 * Compile-checked here (QEMU has no MDMA: the QEMU build uses nr_dma_memcpy.c). */
#include <stdint.h>

#include "nr_runtime.h"

typedef struct {
    volatile uint32_t ISR, IFCR, ESR, CR, TCR, BNDTR, SAR, DAR, BRUR, LAR, TBR, RESERVED, MAR, MDR;
    uint32_t pad[2];
} nr_mdma_ch_t;

#define NR_MDMA_BASE 0x52000000u
#define NR_MDMA_CH(c) ((nr_mdma_ch_t *)(NR_MDMA_BASE + 0x40u + 0x40u * (uint32_t)(c)))
#define NR_MDMA_CHANNELS 8
#define NR_RCC_AHB3ENR (*(volatile uint32_t *)0x580244D4u)
#define NR_RCC_AHB3ENR_MDMAEN (1u << 0)

#define CR_EN (1u << 0)
#define CR_PL_HIGH (2u << 6)
#define CR_SWRQ (1u << 16)
#define ISR_TEIF (1u << 0)
#define ISR_CTCIF (1u << 1)
#define TCR_SINC_INC (2u << 0)
#define TCR_DINC_INC (2u << 2)
#define TCR_TLEN(n) ((uint32_t)((n) - 1) << 18)
#define TCR_TRGM_REPEATED_BLOCK (2u << 28)
#define TCR_SWRM (1u << 30)
#define TBR_SBUS_AHB (1u << 16)
#define TBR_DBUS_AHB (1u << 17)

static nr_dma_id_t nr_next;
static uint8_t nr_busy[NR_MDMA_CHANNELS];

static int nr_is_tcm(uint32_t a)
{
    return a < 0x00010000u || (a >= 0x20000000u && a < 0x20020000u); /* ITCM, DTCM: AHBS port */
}

static void nr_ch_wait(int c)
{
    nr_mdma_ch_t *ch = NR_MDMA_CH(c);
    if (!nr_busy[c])
        return;
    while (!(ch->ISR & (ISR_CTCIF | ISR_TEIF))) {
    }
    ch->IFCR = 0x1Fu;
    ch->CR = 0;
    nr_busy[c] = 0;
}

/* rows x bytes, strides src_s / dst_s: one repeated-block transfer (returns its channel) */
static int nr_block(uint32_t dst, uint32_t src, uint32_t bytes, uint32_t rows, int32_t src_s,
                    int32_t dst_s)
{
    const int c = (int)(nr_next % NR_MDMA_CHANNELS);
    nr_mdma_ch_t *ch = NR_MDMA_CH(c);
    const uint32_t tlen = bytes < 128u ? bytes : 128u;
    nr_ch_wait(c);
    ch->TCR = TCR_SINC_INC | TCR_DINC_INC | TCR_TLEN(tlen) | TCR_TRGM_REPEATED_BLOCK | TCR_SWRM;
    ch->BNDTR = (bytes & 0x1FFFFu) | ((rows - 1u) << 20);
    ch->SAR = src;
    ch->DAR = dst;
    ch->BRUR = ((uint32_t)(src_s - (int32_t)bytes) & 0xFFFFu) |
               (((uint32_t)(dst_s - (int32_t)bytes) & 0xFFFFu) << 16);
    ch->LAR = 0;
    ch->TBR = (nr_is_tcm(src) ? TBR_SBUS_AHB : 0u) | (nr_is_tcm(dst) ? TBR_DBUS_AHB : 0u);
    ch->IFCR = 0x1Fu;
    ch->CR = CR_PL_HIGH | CR_EN;
    ch->CR |= CR_SWRQ;
    nr_busy[c] = 1;
    nr_next++;
    return c;
}

nr_dma_id_t nr_dma_start(void *dst, const void *src, const nr_xfer_t *x, int link, int to_near)
{
    uint32_t j, k;
    int c = 0;
    const int direct = x->n[0] <= 4096u && x->bytes <= 65536u && x->src_s[0] >= (int32_t)x->bytes &&
                       x->dst_s[0] >= (int32_t)x->bytes && x->src_s[0] - (int32_t)x->bytes < 65536 &&
                       x->dst_s[0] - (int32_t)x->bytes < 65536;
    (void)link;
    (void)to_near;
    NR_RCC_AHB3ENR |= NR_RCC_AHB3ENR_MDMAEN;
    for (k = 0; k < x->n[2]; k++)
        for (j = 0; j < x->n[1]; j++) {
            const uint32_t d = (uint32_t)(uintptr_t)dst + k * x->dst_s[2] + j * x->dst_s[1];
            const uint32_t s = (uint32_t)(uintptr_t)src + k * x->src_s[2] + j * x->src_s[1];
            if (direct) {
                c = nr_block(d, s, x->bytes, x->n[0], x->src_s[0], x->dst_s[0]);
            } else {
                uint32_t i;
                for (i = 0; i < x->n[0]; i++)
                    c = nr_block(d + i * x->dst_s[0], s + i * x->src_s[0], x->bytes, 1, 0, 0);
            }
        }
    /* earlier blocks of this transfer may still run on other channels: wait for all but the
     * last one, whose channel identifies the transfer */
    for (k = 0; k < NR_MDMA_CHANNELS; k++)
        if ((int)k != c && x->n[1] * x->n[2] > 1)
            nr_ch_wait((int)k);
    return c;
}

void nr_dma_wait(nr_dma_id_t id)
{
    if (id >= 0)
        nr_ch_wait((int)(id % NR_MDMA_CHANNELS));
}

void nr_dma_wait_all(void)
{
    int c;
    for (c = 0; c < NR_MDMA_CHANNELS; c++)
        nr_ch_wait(c);
}
