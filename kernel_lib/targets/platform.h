/* platform.h - the minimal I/O a test or network program needs on every target.
 * host: stdio; qemu-m7 / qemu-m4 / qemu-rv32: semihosting (our own startup code, no libc).
 * A program defines int main(void); its return value is the process / QEMU exit code.
 * Faults (HardFault, UsageFault, ..., RISC-V traps) exit with code 70 instead of hanging. */
#ifndef KL_PLATFORM_H
#define KL_PLATFORM_H

#ifdef __cplusplus
extern "C" {
#endif

/* write n bytes to stdout */
void kl_plat_write(const char *s, unsigned n);
/* terminate with an exit code */
void kl_plat_exit(int code) __attribute__((noreturn));
/* instruction-count region markers (planner/qemu/icount_plugin.c start/stop addresses); no-ops otherwise */
void prof_start(void);
void prof_stop(void);

#define KL_EXIT_FAULT 70

#ifdef __cplusplus
}
#endif
#endif
