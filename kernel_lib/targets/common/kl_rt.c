/* kl_rt.c - the few libc symbols GCC may emit calls to on bare-metal targets (no libc): the kernel
 * test harness and the generated projects (runtime/kl_rt.c) for STM32 and the GAP9 stand-in. */
#include <stddef.h>
#include <stdint.h>

#define KL_RT_ATTR __attribute__((used, optimize("no-tree-loop-distribute-patterns")))

KL_RT_ATTR void *memcpy(void *dst, const void *src, size_t n)
{
    uint8_t *d = (uint8_t *)dst;
    const uint8_t *s = (const uint8_t *)src;
    if ((((uintptr_t)d | (uintptr_t)s | n) & 3u) == 0) {  /* words when aligned (struct copies) */
        uint32_t *dw = (uint32_t *)dst;
        const uint32_t *sw = (const uint32_t *)src;
        for (n >>= 2; n; n--)
            *dw++ = *sw++;
        return dst;
    }
    while (n--)
        *d++ = *s++;
    return dst;
}

KL_RT_ATTR void *memmove(void *dst, const void *src, size_t n)
{
    uint8_t *d = (uint8_t *)dst;
    const uint8_t *s = (const uint8_t *)src;
    if (d < s) {
        while (n--)
            *d++ = *s++;
    } else {
        while (n--)
            d[n] = s[n];
    }
    return dst;
}

KL_RT_ATTR void *memset(void *dst, int c, size_t n)
{
    uint8_t *d = (uint8_t *)dst;
    while (n--)
        *d++ = (uint8_t)c;
    return dst;
}

KL_RT_ATTR int memcmp(const void *a, const void *b, size_t n)
{
    const uint8_t *x = (const uint8_t *)a, *y = (const uint8_t *)b;
    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x - *y;
    return 0;
}
