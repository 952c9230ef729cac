/* startup_arm.c - Cortex-M (M4/M7, QEMU mps2-an386 / mps2-an500) reset, vectors, faults and
 * semihosting. Memory map in mps2.ld: code and read-only data at 0x0, RAM at 0x20000000. */
#include <stdint.h>

#include "platform.h"

extern uint32_t __etext, __data_start, __data_end, __bss_start, __bss_end, __stack_top;
int main(void);

int kl_semihost(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

__attribute__((noreturn, used)) void kl_fault_handler(void)
{
    kl_plat_exit(KL_EXIT_FAULT);
}

__attribute__((noreturn, used)) void Reset_Handler(void)
{
    uint32_t *src = &__etext, *dst = &__data_start;
    while (dst < &__data_end)
        *dst++ = *src++;
    for (dst = &__bss_start; dst < &__bss_end;)
        *dst++ = 0;
#if defined(__ARM_FP)
    /* CPACR: full access to CP10/CP11 (FPU) */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    /* SHCSR: enable MemManage, BusFault and UsageFault handlers (all exit 70 anyway) */
    *(volatile uint32_t *)0xE000ED24u |= 7u << 16;
    kl_plat_exit(main());
}

typedef void (*kl_vec_t)(void);

__attribute__((section(".vectors"), used)) const kl_vec_t kl_vectors[16 + 16] = {
    (kl_vec_t)(uintptr_t)&__stack_top,
    Reset_Handler,
    kl_fault_handler, /* NMI */
    kl_fault_handler, /* HardFault */
    kl_fault_handler, /* MemManage */
    kl_fault_handler, /* BusFault */
    kl_fault_handler, /* UsageFault */
    0, 0, 0, 0,
    kl_fault_handler, /* SVC */
    kl_fault_handler, /* DebugMon */
    0,
    kl_fault_handler, /* PendSV */
    kl_fault_handler, /* SysTick */
    kl_fault_handler, kl_fault_handler, kl_fault_handler, kl_fault_handler, kl_fault_handler,
    kl_fault_handler, kl_fault_handler, kl_fault_handler, kl_fault_handler, kl_fault_handler,
    kl_fault_handler, kl_fault_handler, kl_fault_handler, kl_fault_handler, kl_fault_handler,
    kl_fault_handler,
};
