/* startup_stm32.c - reset, vector table and fault handlers of the generated network on a
 * Cortex-M7 (STM32H7) / Cortex-M4 (STM32L4), and on QEMU's mps2 boards. No vendor code.
 * Reset copies .data from flash, zeroes .bss and the arena sections, enables the FPU and the
 * configurable fault handlers, and calls main(); a fault ends the program with exit code 70
 * (semihosting) instead of hanging. */
#include <stdint.h>

#include "nr_io.h"

extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end, __stack_top;
extern uint32_t __nr_l1_start, __nr_l1_end, __nr_l2_start, __nr_l2_end;
int main(void);

#define NR_EXIT_FAULT 70

__attribute__((noreturn, used)) void nr_fault_handler(void)
{
    nr_out_s("F fault\n");
    nr_out_flush();
    nr_exit(NR_EXIT_FAULT);
    for (;;) {
    }
}

static void nr_zero(uint32_t *p, uint32_t *end)
{
    while (p < end)
        *p++ = 0;
}

__attribute__((noreturn, used)) void Reset_Handler(void)
{
    uint32_t *src = &__data_load, *dst = &__data_start;
    while (dst < &__data_end)
        *dst++ = *src++;
    nr_zero(&__bss_start, &__bss_end);
    nr_zero(&__nr_l1_start, &__nr_l1_end);
    nr_zero(&__nr_l2_start, &__nr_l2_end);
#if defined(__ARM_FP)
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20; /* CPACR: CP10/CP11 full access */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    *(volatile uint32_t *)0xE000ED24u |= 7u << 16; /* SHCSR: MemManage, BusFault, UsageFault */
    nr_exit(main());
    for (;;) {
    }
}

typedef void (*nr_vec_t)(void);

__attribute__((section(".vectors"), used)) const nr_vec_t nr_vectors[16 + 32] = {
    (nr_vec_t)(uintptr_t)&__stack_top,
    Reset_Handler,
    nr_fault_handler, /* NMI */
    nr_fault_handler, /* HardFault */
    nr_fault_handler, /* MemManage */
    nr_fault_handler, /* BusFault */
    nr_fault_handler, /* UsageFault */
    0, 0, 0, 0,
    nr_fault_handler, /* SVC */
    nr_fault_handler, /* DebugMon */
    0,
    nr_fault_handler, /* PendSV */
    nr_fault_handler, /* SysTick */
    nr_fault_handler, nr_fault_handler, nr_fault_handler, nr_fault_handler, nr_fault_handler,
    nr_fault_handler, nr_fault_handler, nr_fault_handler, nr_fault_handler, nr_fault_handler,
    nr_fault_handler, nr_fault_handler, nr_fault_handler, nr_fault_handler, nr_fault_handler,
    nr_fault_handler, nr_fault_handler, nr_fault_handler, nr_fault_handler, nr_fault_handler,
    nr_fault_handler, nr_fault_handler, nr_fault_handler, nr_fault_handler, nr_fault_handler,
    nr_fault_handler, nr_fault_handler, nr_fault_handler, nr_fault_handler, nr_fault_handler,
    nr_fault_handler, nr_fault_handler,
};
