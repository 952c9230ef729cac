/* nr_platform.h (STM32) - where the arenas live (linker sections of the ld scripts):
 *   L1 = DTCM (STM32H7), L2 = AXI SRAM (H7) or SRAM1-3 (L4), L3 = the flash, memory-mapped:
 *   the weights image in flash is the L3 arena and weights are read where they are. */
#ifndef NR_PLATFORM_H
#define NR_PLATFORM_H
#define NR_SECTION_L1 __attribute__((section(".nr_l1")))
#define NR_SECTION_L2 __attribute__((section(".nr_l2")))
#define NR_SECTION_L3
#define NR_L3_MAPPED 1
#endif
