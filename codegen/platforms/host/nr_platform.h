/* nr_platform.h (host) - where the arenas live: ordinary static memory. */
#ifndef NR_PLATFORM_H
#define NR_PLATFORM_H
#define NR_SECTION_L1
#define NR_SECTION_L2
#define NR_SECTION_L3
#define NR_L3_MAPPED 0 /* an L3 arena of its own, filled at net_init */
#endif
