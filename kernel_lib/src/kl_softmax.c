/* kl_softmax.c - integer softmax variants (iSoftmax / I-BERT, ITAMax, ITAPartialMax).
 * Row-wise: the rows are split across cores (balanced), each row is processed whole. */
#include "kernel_lib.h"

/* ceil(log2(v)) for v >= 1 */
static int32_t kl_ceil_log2(uint32_t v)
{
    int32_t l = 0;
    while (l < 32 && ((uint64_t)1 << l) < v)
        l++;
    return l;
}

/* Exact division by an invariant divisor (Granlund-Montgomery): for every numerator
 * 0 <= n < 2^31 and d >= 1, floor(n/d) == (n*m) >> (31 + l) with l = ceil(log2 d),
 * m = ceil(2^(31+l)/d) < 2^32. Proof: m*d - 2^(31+l) < d <= 2^l, so the error term
 * n*(m*d - 2^(31+l))/(d*2^(31+l)) < 1/d. Verified for every reachable divisor in
 * tests/test_kernels.py. */
typedef struct {
    uint32_t m;
    int32_t l;
} kl_divp_t;

static kl_divp_t kl_div_prep(uint32_t d)
{
    kl_divp_t r;
    r.l = kl_ceil_log2(d);
    r.m = (uint32_t)((((uint64_t)1 << (31 + r.l)) + d - 1) / d);
    return r;
}

KL_INLINE uint32_t kl_div_apply(uint32_t n, kl_divp_t p)
{
    /* l == 0 (d == 1): m == 2^31 and the result is n */
    uint32_t hi = (uint32_t)(((uint64_t)n * p.m) >> 32);
    return p.l ? hi >> (p.l - 1) : n;
}

void kl_isoftmax(const int8_t *x, int32_t x_rs, uint8_t *y, int32_t y_rs, int32_t rows,
                 int32_t L, int32_t coeff_a, int32_t coeff_b, int32_t coeff_c, int32_t log2,
                 int32_t n_levels, int rounded, int32_t *scratch, int core_id, int n_cores)
{
    int32_t r0, r1, r, i;
    int32_t *ys = scratch + (int32_t)(core_id < 0 ? 0 : core_id) * L;
    /* z = floor(d / log2) for d in [0, 255] by multiplication: W = 8 bits, same theorem */
    /* (log2 > 255: z is always 0) */
    const int32_t lz = log2 > 255 ? 0 : kl_ceil_log2((uint32_t)log2);
    const int32_t mz = log2 > 255 ? 0 : (int32_t)((((uint32_t)1 << (8 + lz)) + log2 - 1) / log2);
    const int32_t sz = 8 + lz;
    const int32_t nm1 = n_levels - 1;
    const int need_clamp = (255 / log2) > 31;
    kl_split(rows, core_id, n_cores, &r0, &r1);
    for (r = r0; r < r1; r++) {
        const int8_t *xr = x + r * x_rs;
        uint8_t *yr = y + r * y_rs;
        int32_t mx = -128, sum = 0;
        kl_divp_t dp;
        for (i = 0; i < L; i++)
            mx = xr[i] > mx ? xr[i] : mx;
        if (!need_clamp) {
            for (i = 0; i < L; i++) {
                int32_t d = mx - xr[i];
                int32_t z = (d * mz) >> sz;
                int32_t t = z * log2 - d + coeff_b;
                int32_t v = (coeff_a * (t * t) + coeff_c) >> z;
                ys[i] = v;
                sum += v;
            }
        } else {
            for (i = 0; i < L; i++) {
                int32_t d = mx - xr[i];
                int32_t z = (d * mz) >> sz;
                int32_t t = z * log2 - d + coeff_b;
                int32_t v = (coeff_a * (t * t) + coeff_c) >> (z > 31 ? 31 : z);
                ys[i] = v;
                sum += v;
            }
        }
        if (rounded) { /* floor((2*y*(n-1) + S) / (2*S)) */
            dp = kl_div_prep(2u * (uint32_t)sum);
            for (i = 0; i < L; i++)
                yr[i] = (uint8_t)kl_div_apply(2u * (uint32_t)(ys[i] * nm1) + (uint32_t)sum, dp);
        } else {
            dp = kl_div_prep((uint32_t)sum);
            for (i = 0; i < L; i++)
                yr[i] = (uint8_t)kl_div_apply((uint32_t)(ys[i] * nm1), dp);
        }
    }
}

static int32_t kl_log2_pow2(int32_t n)
{
    int32_t b = 0;
    while ((1 << b) < n)
        b++;
    return b;
}

void kl_itamax(const int8_t *x, int32_t x_rs, uint8_t *y, int32_t y_rs, int32_t rows,
               int32_t L, int32_t n_levels, int core_id, int n_cores)
{
    const int32_t B = kl_log2_pow2(n_levels), half = 1 << (B - 1), one = 1 << B;
    int32_t r0, r1, r, i;
    kl_split(rows, core_id, n_cores, &r0, &r1);
    for (r = r0; r < r1; r++) {
        const int8_t *xr = x + r * x_rs;
        uint8_t *yr = y + r * y_rs;
        int32_t mx = -128, e = 0, inv;
        for (i = 0; i < L; i++)
            mx = xr[i] > mx ? xr[i] : mx;
        for (i = 0; i < L; i++)
            e += one >> (((mx - xr[i]) * B + half) >> B);
        inv = ((n_levels - 1) * one) / e;
        for (i = 0; i < L; i++)
            yr[i] = (uint8_t)(inv >> (((mx - xr[i]) * B + half) >> B));
    }
}

void kl_ita_partial_max(const int8_t *x, int32_t x_rs, uint8_t *y, int32_t y_rs, int32_t rows,
                        int32_t L, int32_t group_width, int32_t n_levels, int core_id,
                        int n_cores)
{
    const int32_t B = kl_log2_pow2(n_levels), half = 1 << (B - 1), one = 1 << B;
    const int32_t G = L / group_width;
    int32_t r0, r1, r, i, g;
    kl_split(rows, core_id, n_cores, &r0, &r1);
    for (r = r0; r < r1; r++) {
        const int8_t *xr = x + r * x_rs;
        uint8_t *yr = y + r * y_rs;
        int32_t gmax = -(n_levels / 2), acc = 0, inv;
        for (g = 0; g < G; g++) {
            const int8_t *xg = xr + g * group_width;
            int32_t cmax = xg[0], s = 0, eg = 0;
            for (i = 1; i < group_width; i++)
                cmax = xg[i] > cmax ? xg[i] : cmax;
            if (cmax > gmax) {
                s = ((cmax - gmax) * B + half) >> B;
                gmax = cmax;
            }
            for (i = 0; i < group_width; i++)
                eg += one >> (((gmax - xg[i]) * B + half) >> B);
            acc = (s > 31 ? 0 : (acc >> s)) + eg;
        }
        inv = ((n_levels / 2 - 1) * one) / acc;
        for (i = 0; i < L; i++) {
            /* columns past the last full group may exceed gmax: a negative shift gives 0,
             * as numpy's right_shift does in the golden model */
            int32_t sh = ((gmax - xr[i]) * B + half) >> B;
            yr[i] = (uint8_t)(sh < 0 ? 0 : (sh > 31 ? 0 : (inv >> sh)));
        }
    }
}

/* z = floor(d / log2) for 0 <= d < 2^16 by an exact multiply (Granlund-Montgomery with W = 16:
 * m = ceil(2^(16+l)/log2), l = ceil(log2(log2)), the product in 64 bits) */
typedef struct {
    uint32_t m;
    int32_t s;
} kl_zdiv_t;

static kl_zdiv_t kl_zdiv_prep(int32_t log2)
{
    kl_zdiv_t p;
    const int32_t l = kl_ceil_log2((uint32_t)log2);
    p.s = 16 + l;
    p.m = (uint32_t)((((uint64_t)1 << p.s) + (uint32_t)log2 - 1) / (uint32_t)log2);
    return p;
}

KL_INLINE int32_t kl_zdiv(int32_t d, kl_zdiv_t p)
{
    return (int32_t)(((uint64_t)(uint32_t)d * p.m) >> p.s);
}

void kl_isoftmax_s16(const int16_t *x, int32_t x_rs, uint8_t *y, int32_t y_rs, int32_t rows,
                     int32_t L, int32_t coeff_a, int32_t coeff_b, int32_t coeff_c, int32_t log2,
                     int32_t n_levels, int32_t *scratch, int core_id, int n_cores)
{
    int32_t r0, r1, r, i;
    int32_t *ys = scratch + (int32_t)(core_id < 0 ? 0 : core_id) * L;
    const kl_zdiv_t zp = kl_zdiv_prep(log2);
    const int32_t nm1 = n_levels - 1;
    kl_split(rows, core_id, n_cores, &r0, &r1);
    for (r = r0; r < r1; r++) {
        const int16_t *xr = x + r * x_rs;
        uint8_t *yr = y + r * y_rs;
        int32_t mx = -32768, sum = 0;
        kl_divp_t dp;
        for (i = 0; i < L; i++)
            mx = xr[i] > mx ? xr[i] : mx;
        for (i = 0; i < L; i++) {
            const int32_t d = mx - xr[i];
            const int32_t z = kl_zdiv(d, zp);
            int32_t v = 0;
            if (z <= 31) { /* golden: >> min(z, 63) of a value < 2^31: 0 from z = 31 on */
                const int32_t t = z * log2 - d + coeff_b;
                v = (coeff_a * (t * t) + coeff_c) >> z;
            }
            ys[i] = v;
            sum += v;
        }
        /* rounded normalisation: floor((2*y*(n-1) + S) / (2*S)) */
        dp = kl_div_prep(2u * (uint32_t)sum);
        for (i = 0; i < L; i++)
            yr[i] = (uint8_t)kl_div_apply(2u * (uint32_t)(ys[i] * nm1) + (uint32_t)sum, dp);
    }
}
