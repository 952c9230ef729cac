/* kl_eltwise.c - elementwise kernels: iGELU (wide and fused with RequantShift), requantized
 * Add. Split: rows when rows >= n_cores, else columns. */
#include "kernel_lib.h"

static void kl_split2d(int32_t rows, int32_t cols, int core_id, int n_cores, int32_t *r0,
                       int32_t *r1, int32_t *c0, int32_t *c1)
{
    *r0 = 0;
    *r1 = rows;
    *c0 = 0;
    *c1 = cols;
    if (rows >= n_cores)
        kl_split(rows, core_id, n_cores, r0, r1);
    else
        kl_split(cols, core_id, n_cores, c0, c1);
}

KL_INLINE int32_t kl_igelu1(int32_t x, int32_t b, int32_t one)
{
    int32_t ax = x < 0 ? -x : x;
    int32_t q = ax < -b ? ax : -b;
    int32_t poly = one - (q + b) * (q + b);
    if (x < 0)
        poly = -poly;
    else if (x == 0)
        poly = 0;
    return x * ((one + poly) >> 1);
}

void kl_igelu_i32(const int8_t *x, int32_t x_rs, int32_t *y, int32_t y_rs, int32_t rows,
                  int32_t cols, int32_t b, int32_t one, int core_id, int n_cores)
{
    int32_t r0, r1, c0, c1, r, c;
    kl_split2d(rows, cols, core_id, n_cores, &r0, &r1, &c0, &c1);
    for (r = r0; r < r1; r++)
        for (c = c0; c < c1; c++)
            y[r * y_rs + c] = kl_igelu1(x[r * x_rs + c], b, one);
}

void kl_igelu_rq(const int8_t *x, int32_t x_rs, void *y, int32_t y_rs, int32_t rows,
                 int32_t cols, int32_t b, int32_t one, const kl_rq_t *rq, int core_id,
                 int n_cores)
{
    const int32_t lo = kl_qlo(rq->n_levels, rq->is_signed);
    const int32_t hi = kl_qhi(rq->n_levels, rq->is_signed);
    uint8_t *o = (uint8_t *)y;
    int32_t r0, r1, c0, c1, r, c;
    kl_split2d(rows, cols, core_id, n_cores, &r0, &r1, &c0, &c1);
    for (r = r0; r < r1; r++)
        for (c = c0; c < c1; c++) {
            int32_t m = rq->mul[r * rq->mul_sr + c * rq->mul_sc];
            int32_t a = rq->add ? rq->add[r * rq->add_sr + c * rq->add_sc] : 0;
            int32_t g = kl_igelu1(x[r * x_rs + c], b, one);
            o[r * y_rs + c] = (uint8_t)kl_requant1(g, m, a, rq->shift, lo, hi);
        }
}

KL_INLINE int32_t kl_rq_at(const kl_rq_t *rq, int32_t v, int32_t r, int32_t c)
{
    int32_t m = rq->mul[r * rq->mul_sr + c * rq->mul_sc];
    int32_t a = rq->add ? rq->add[r * rq->add_sr + c * rq->add_sc] : 0;
    return kl_requant1(v, m, a, rq->shift, kl_qlo(rq->n_levels, rq->is_signed),
                       kl_qhi(rq->n_levels, rq->is_signed));
}

void kl_add_rq(const void *a, int a_signed, int32_t a_rs, const kl_rq_t *rq_a, const void *b,
               int b_signed, int32_t b_rs, const kl_rq_t *rq_b, void *y, int32_t y_rs,
               int32_t rows, int32_t cols, const kl_rq_t *rq_out, int core_id, int n_cores)
{
    uint8_t *o = (uint8_t *)y;
    int32_t r0, r1, c0, c1, r, c;
    kl_split2d(rows, cols, core_id, n_cores, &r0, &r1, &c0, &c1);
    for (r = r0; r < r1; r++)
        for (c = c0; c < c1; c++) {
            int32_t va = a_signed ? ((const int8_t *)a)[r * a_rs + c]
                                  : ((const uint8_t *)a)[r * a_rs + c];
            int32_t vb = b_signed ? ((const int8_t *)b)[r * b_rs + c]
                                  : ((const uint8_t *)b)[r * b_rs + c];
            int32_t s = kl_rq_at(rq_a, va, r, c) + kl_rq_at(rq_b, vb, r, c);
            o[r * y_rs + c] = (uint8_t)kl_rq_at(rq_out, s, r, c);
        }
}

KL_INLINE int32_t kl_ld_typed(const void *p, int type, int32_t i)
{
    if (type == KL_DT_S16)
        return ((const int16_t *)p)[i];
    if (type == KL_DT_S8)
        return ((const int8_t *)p)[i];
    return ((const uint8_t *)p)[i];
}

void kl_add_rq_x(const void *a, int a_type, int32_t a_rs, const kl_rq_t *rq_a, const void *b,
                 int b_type, int32_t b_rs, const kl_rq_t *rq_b, void *y, int y_type, int32_t y_rs,
                 int32_t rows, int32_t cols, const kl_rq_t *rq_out, int core_id, int n_cores)
{
    int32_t r0, r1, c0, c1, r, c;
    kl_split2d(rows, cols, core_id, n_cores, &r0, &r1, &c0, &c1);
    for (r = r0; r < r1; r++)
        for (c = c0; c < c1; c++) {
            const int32_t va = kl_ld_typed(a, a_type, r * a_rs + c);
            const int32_t vb = kl_ld_typed(b, b_type, r * b_rs + c);
            const int32_t s = kl_rq_at(rq_a, va, r, c) + kl_rq_at(rq_b, vb, r, c);
            const int32_t v = kl_rq_at(rq_out, s, r, c);
            if (y_type == KL_DT_S16)
                ((int16_t *)y)[r * y_rs + c] = (int16_t)v;
            else
                ((uint8_t *)y)[r * y_rs + c] = (uint8_t)v;
        }
}

void kl_lut8(const void *x, int x_signed, int32_t x_rs, const uint8_t *table, void *y,
             int32_t y_rs, int32_t rows, int32_t cols, int core_id, int n_cores)
{
    const uint8_t *xb = (const uint8_t *)x;
    uint8_t *o = (uint8_t *)y;
    const uint8_t flip = x_signed ? 0x80u : 0u; /* int8 x: index x + 128 = byte ^ 0x80 */
    int32_t r0, r1, c0, c1, r, c;
    kl_split2d(rows, cols, core_id, n_cores, &r0, &r1, &c0, &c1);
    for (r = r0; r < r1; r++)
        for (c = c0; c < c1; c++)
            o[r * y_rs + c] = table[xb[r * x_rs + c] ^ flip];
}
