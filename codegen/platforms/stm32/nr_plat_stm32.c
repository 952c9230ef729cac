/* nr_plat_stm32.c - the STM32 platform of a generated network: one core (fork runs it, the
 * barrier has nothing to wait for), output and exit over semihosting (QEMU, or a debug probe on
 * the board), instruction-count markers around every layer. DMA: nr_dma_memcpy.c (QEMU) or
 * nr_dma_mdma.c (STM32H7 board). */
#include <stddef.h>
#include <stdint.h>

#include "nr_io.h"
#include "nr_runtime.h"

static int nr_semihost(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

#define SYS_WRITE0 0x04
#define SYS_EXIT_EXTENDED 0x20
#define ADP_STOPPED_APPLICATION_EXIT 0x20026

void nr_write(const char *s, unsigned n)
{
    char buf[129];
    while (n) {
        unsigned k = n < 128 ? n : 128, i;
        for (i = 0; i < k; i++)
            buf[i] = s[i] ? s[i] : ' '; /* SYS_WRITE0 stops at NUL */
        buf[k] = 0;
        nr_semihost(SYS_WRITE0, buf);
        s += k;
        n -= k;
    }
}

void nr_exit(int code)
{
    uint32_t block[2];
    block[0] = ADP_STOPPED_APPLICATION_EXIT;
    block[1] = (uint32_t)code;
    for (;;)
        nr_semihost(SYS_EXIT_EXTENDED, block);
}

void nr_barrier(void) {}

void nr_fork(void (*fn)(int core_id, int n_cores), int n_cores)
{
    if (n_cores != 1) {
        nr_out_s("F the STM32 platform has one core\n");
        nr_out_flush();
        nr_exit(2);
    }
    fn(0, 1);
}

uint64_t nr_time_ns(void) { return 0; }
void nr_plat_init(void) {}
void nr_plat_deinit(void) {}

void nr_plat_l3_write(uint8_t *l3, uint32_t offset, const uint8_t *image, uint32_t bytes)
{
    (void)l3; (void)offset; (void)image; (void)bytes; /* L3 is the flash itself */
}

/* instruction-count markers (QEMU plugin): out of line, bodies that differ */
__attribute__((noinline, used)) void nr_prof_begin(int layer)
{
    __asm__ volatile("" : : "r"(layer) : "memory");
}

__attribute__((noinline, used)) void nr_prof_end(int layer)
{
    __asm__ volatile("nop" : : "r"(layer) : "memory");
}
