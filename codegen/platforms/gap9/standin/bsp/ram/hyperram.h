/* bsp/ram/hyperram.h - stand-in (see pmsis.h): the HyperRAM configuration of the GAP SDK's BSP. */
#ifndef NR_PMSIS_STANDIN_HYPERRAM_H
#define NR_PMSIS_STANDIN_HYPERRAM_H
#include "pmsis.h"
struct pi_hyperram_conf {
    int baudrate;
    int xip_en;
    int reserve_addr_0;
};
void pi_hyperram_conf_init(struct pi_hyperram_conf *conf);
#endif
