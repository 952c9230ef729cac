/* kl_norm.c - integer LayerNorm (QuantLib iLayerNorm). Row-wise, rows split across cores. */
#include "kernel_lib.h"

/* floor(sqrt(v)) for any uint32 */
static uint32_t kl_isqrt32(uint32_t v)
{
    uint32_t res = 0, bit = (uint32_t)1 << 30;
    while (bit > v)
        bit >>= 2;
    while (bit) {
        if (v >= res + bit) {
            v -= res + bit;
            res = (res >> 1) + bit;
        } else {
            res >>= 1;
        }
        bit >>= 2;
    }
    return res;
}

void kl_ilayernorm(const int8_t *x, int32_t x_rs, int8_t *y, int32_t y_rs, int32_t rows,
                   int32_t L, const int32_t *weight, const int32_t *bias, int32_t d_log2,
                   int32_t n_levels, int core_id, int n_cores)
{
    const int32_t lo = kl_qlo(n_levels, 1), hi = kl_qhi(n_levels, 1);
    int32_t r0, r1, r, i;
    kl_split(rows, core_id, n_cores, &r0, &r1);
    for (r = r0; r < r1; r++) {
        const int8_t *xr = x + r * x_rs;
        int8_t *yr = y + r * y_rs;
        int32_t sum = 0, mean, std;
        uint32_t sq = 0;
        for (i = 0; i < L; i++)
            sum += xr[i];
        mean = sum / L; /* C division truncates toward zero, as the golden trunc_div */
        for (i = 0; i < L; i++) {
            int32_t nom = xr[i] - mean;
            sq += (uint32_t)(nom * nom);
        }
        std = (int32_t)kl_isqrt32(sq / (uint32_t)L + 1u);
        for (i = 0; i < L; i++) {
            int32_t nom = xr[i] - mean;
            int32_t v = (nom * weight[i]) / std + bias[i];
            v >>= d_log2;
            yr[i] = (int8_t)kl_clip32(v, lo, hi);
        }
    }
}

/* floor(sqrt(v)) for any uint64 (once per row) */
static uint64_t kl_isqrt64(uint64_t v)
{
    uint64_t res = 0, bit = (uint64_t)1 << 62;
    while (bit > v)
        bit >>= 2;
    while (bit) {
        if (v >= res + bit) {
            v -= res + bit;
            res = (res >> 1) + bit;
        } else {
            res >>= 1;
        }
        bit >>= 2;
    }
    return res;
}

KL_INLINE int32_t kl_ld_elem(const void *x, int x_type, int32_t i)
{
    if (x_type == KL_DT_S16)
        return ((const int16_t *)x)[i];
    if (x_type == KL_DT_S8)
        return ((const int8_t *)x)[i];
    return ((const uint8_t *)x)[i];
}

/* floor(n / d) for d > 0 */
KL_INLINE int32_t kl_floor_div32(int32_t n, int32_t d)
{
    int32_t q = n / d;
    return (n % d != 0 && n < 0) ? q - 1 : q;
}

void kl_layernorm_qdq(const void *x, int x_type, int32_t x_rs, int8_t *y, int32_t y_rs,
                      int32_t rows, int32_t L, const int32_t *weight, const int32_t *bias,
                      int32_t in_shift, int32_t eps, int32_t d_log2, int32_t n_levels,
                      int core_id, int n_cores)
{
    const int32_t lo = kl_qlo(n_levels, 1), hi = kl_qhi(n_levels, 1);
    const int32_t osh = 16 + d_log2;
    int32_t r0, r1, r, i;
    kl_split(rows, core_id, n_cores, &r0, &r1);
    for (r = r0; r < r1; r++) {
        const int32_t off = r * x_rs;
        int8_t *yr = y + r * y_rs;
        int32_t sum = 0, mean;
        uint64_t sq = 0, var, sd;
        uint32_t inv;
        for (i = 0; i < L; i++)
            sum += kl_ld_elem(x, x_type, off + i) * (1 << in_shift);
        mean = kl_floor_div32(2 * sum + L, 2 * L); /* rounded mean (golden floor_div) */
        for (i = 0; i < L; i++) {
            const int32_t nom = kl_ld_elem(x, x_type, off + i) * (1 << in_shift) - mean;
            sq += (uint64_t)((int64_t)nom * nom);
        }
        var = sq / (uint64_t)L + (uint64_t)eps;
        /* std with 8 fractional bits, rounded: r = isqrt(v); r + 1 when v - r^2 > r */
        {
            const uint64_t v = var << 16;
            sd = kl_isqrt64(v);
            if (v - sd * sd > sd)
                sd++;
        }
        if (sd < 256u)
            sd = 256u;
        inv = (uint32_t)((((uint64_t)1 << 39) + sd) / (2u * sd)); /* round(2^38 / sd) */
        for (i = 0; i < L; i++) {
            const int32_t nom = kl_ld_elem(x, x_type, off + i) * (1 << in_shift) - mean;
            const int64_t xh = ((int64_t)nom * (int64_t)inv + 8192) >> 14; /* x_hat * 2^16 */
            const int64_t acc = xh * weight[i] + (int64_t)bias[i] * 65536;
            const int64_t v = acc >> osh;
            yr[i] = (int8_t)(v < lo ? lo : (v > hi ? hi : v));
        }
    }
}
