/* nr_io.c - buffered text output over nr_write (nr_io.h). */
#include "nr_io.h"

static char nr_obuf[512];
static unsigned nr_olen;

void nr_out_flush(void)
{
    if (nr_olen)
        nr_write(nr_obuf, nr_olen);
    nr_olen = 0;
}

static void nr_out_c(char c)
{
    if (nr_olen == sizeof nr_obuf)
        nr_out_flush();
    nr_obuf[nr_olen++] = c;
}

void nr_out_s(const char *s)
{
    while (*s)
        nr_out_c(*s++);
}

void nr_out_u64(uint64_t v)
{
    char t[24];
    int n = 0;
    do {
        t[n++] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v);
    while (n)
        nr_out_c(t[--n]);
}

void nr_out_hex(const void *p, uint32_t n)
{
    static const char hx[] = "0123456789abcdef";
    const uint8_t *b = (const uint8_t *)p;
    uint32_t i;
    for (i = 0; i < n; i++) {
        nr_out_c(hx[b[i] >> 4]);
        nr_out_c(hx[b[i] & 15]);
    }
}
