/* crt0.S - RV32 startup of the PMSIS stand-in on QEMU virt (-bios none): hart 0 zeroes .bss and
 * calls main (the other harts park), traps exit with code 70; the semihosting call and the
 * coroutine switch of the stand-in's cluster cores. */
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
    la t0, nr_trap_entry
    csrw mtvec, t0
    la t0, __bss_start
    la t1, __bss_end
1:  bgeu t0, t1, 2f
    sw zero, 0(t0)
    addi t0, t0, 4
    j 1b
2:  call main
    call pmsis_exit
3:  wfi
    j 3b

    .balign 4
nr_trap_entry:
    li a0, 70
    call pmsis_exit

/* int kl_semihost(int op, const void *arg): uncompressed, not crossing a page */
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

/* void nr_ctx_switch(uint32_t *save, const uint32_t *load): ra, sp, s0-s11 */
    .globl nr_ctx_switch
    .balign 4
nr_ctx_switch:
    sw ra, 0(a0)
    sw sp, 4(a0)
    sw s0, 8(a0)
    sw s1, 12(a0)
    sw s2, 16(a0)
    sw s3, 20(a0)
    sw s4, 24(a0)
    sw s5, 28(a0)
    sw s6, 32(a0)
    sw s7, 36(a0)
    sw s8, 40(a0)
    sw s9, 44(a0)
    sw s10, 48(a0)
    sw s11, 52(a0)
    lw ra, 0(a1)
    lw sp, 4(a1)
    lw s0, 8(a1)
    lw s1, 12(a1)
    lw s2, 16(a1)
    lw s3, 20(a1)
    lw s4, 24(a1)
    lw s5, 28(a1)
    lw s6, 32(a1)
    lw s7, 36(a1)
    lw s8, 40(a1)
    lw s9, 44(a1)
    lw s10, 48(a1)
    lw s11, 52(a1)
    ret
