/* start_rv32.S - RV32 bare-metal startup for QEMU virt (-bios none): hart 0 runs main, other
 * harts park; traps exit with code 70 via semihosting. */
    .section .text.init, "ax"
    .globl _start
_start:
    .option push
    .option norelax
    la gp, __global_pointer$
    .option pop
    csrr t0, mhartid
    bnez t0, 3f
    la sp, __stack_top
    la t0, kl_trap_entry
    csrw mtvec, t0
    la t0, __bss_start
    la t1, __bss_end
1:  bgeu t0, t1, 2f
    sw zero, 0(t0)
    addi t0, t0, 4
    j 1b
2:  call main
    call kl_plat_exit
3:  wfi
    j 3b

    .balign 4
kl_trap_entry:
    li a0, 70
    call kl_plat_exit

/* int kl_semihost(int op, const void *arg): the RISC-V semihosting sequence must be
 * uncompressed and must not cross a page: align it. */
    .text
    .globl kl_semihost
    .balign 16
kl_semihost:
    .option push
    .option norvc
    slli zero, zero, 0x1f
    ebreak
    srai zero, zero, 7
    .option pop
    ret
