/* nr_platform.h (GAP9) - where the arenas live: L1 in the cluster's TCDM (PI_CL_L1), L2 in the
 * L2 memory (PI_L2), L3 in the HyperRAM, which is not addressable: its arena is a base address
 * that the DMA port (nr_plat_gap9.c) turns back into a RAM address for pi_cl_ram_read. */
#ifndef NR_PLATFORM_H
#define NR_PLATFORM_H
#include "pmsis.h"
#define NR_SECTION_L1 PI_CL_L1
#define NR_SECTION_L2 PI_L2
#define NR_SECTION_L3
#define NR_L3_MAPPED 0
#define NR_L3_EXTERNAL_BASE 0x50000000u
#endif
