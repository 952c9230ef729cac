/* textout.h - buffered text output over the platform's write (semihosting on QEMU, stdout on
 * the host), shared by the test harnesses and the benchmark programs. No libc needed. */
#ifndef KL_TEXTOUT_H
#define KL_TEXTOUT_H

#include <stdint.h>

#include "platform.h"

static char kl_obuf[512];
static unsigned kl_olen;

static inline void out_flush(void)
{
    if (kl_olen)
        kl_plat_write(kl_obuf, kl_olen);
    kl_olen = 0;
}
static inline void out_c(char c)
{
    if (kl_olen == sizeof kl_obuf)
        out_flush();
    kl_obuf[kl_olen++] = c;
}
static inline void out_s(const char *s)
{
    while (*s)
        out_c(*s++);
}
static inline void out_u(uint32_t v)
{
    char t[12];
    int n = 0;
    do {
        t[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        out_c(t[--n]);
}
static inline void out_hex(const uint8_t *p, uint32_t n)
{
    static const char hx[] = "0123456789abcdef";
    uint32_t i;
    for (i = 0; i < n; i++) {
        out_c(hx[p[i] >> 4]);
        out_c(hx[p[i] & 15]);
    }
}

#endif
