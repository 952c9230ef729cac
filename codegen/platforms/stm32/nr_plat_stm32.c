/* nr_plat_stm32.c - the STM32 platform of a generated network: one core (fork runs it, the
 * barrier has nothing to wait for), output and exit over semihosting (QEMU, or a debug probe on
 * the board), instruction-count markers around every layer. DMA: nr_dma_memcpy.c (QEMU) or
 * nr_dma_mdma.c (STM32H7 board). */
#include <stddef.h>
#include <stdint.h>

#include "nr_io.h"
#include "platform.h"
#include "nr_runtime.h"

/* the semihosting call of kernel_lib/targets/common/semihost_io.c (runtime/semihost_io.c) */
int kl_semihost(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void nr_write(const char *s, unsigned n) { kl_plat_write(s, n); }

void nr_exit(int code) { kl_plat_exit(code); }

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
