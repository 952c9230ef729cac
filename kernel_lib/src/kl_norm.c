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
