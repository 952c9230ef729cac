/* plat_host.c - platform.h on a hosted C library. */
#include <stdio.h>
#include <stdlib.h>

#include "platform.h"

void kl_plat_write(const char *s, unsigned n)
{
    fwrite(s, 1, n, stdout);
}

void kl_plat_exit(int code)
{
    fflush(stdout);
    exit(code);
}

__attribute__((noinline, used)) void prof_start(void)
{
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline, used)) void prof_stop(void)
{
    __asm__ volatile("" ::: "memory");
}
