/* kl_mhsa.c - depth-first multi-head self-attention (standard and FWSA forms).
 *
 * Executable specification: planner/golden/mhsa.py (mhsa_depth_first, _mhsa_standard and
 * _mhsa_fwsa); docs/kernels.md ("Depth-first MHSA") and docs/fwsa.md (the FWSA formula).
 *
 * Per head and chunk of query rows the kernel never holds more than KL_MHSA_G (6) score rows
 * per core: for each group of up to G rows
 *   [FWSA: I* = RQ_i(Xrows . W_f^T + b_f), r = RQ_row(Xrows . w_row)]
 *   scores = RQ_s(Qrows . K^T [+ r])          G x S int8   (kl_gemm_block, K = D)
 *   probs  = softmax(scores) in place         G x S uint8  (table-driven, full rows)
 *   O      = RQ_v(probs . V)                  G x P 8 bit  (kl_gemm_block, K = S)
 *   acc   (+)= O . W_o^T                      G x E_out int32 (kl_gemm_block, K = P)
 * The matmuls go through kl_gemm_block, i.e. the Arm DSP path (SXTB16/SMLAD, assembly column
 * loops for 6 and 4 rows) on Cortex-M4/M7 and the portable path elsewhere; a group of
 * G = KL_DSP_RMAX rows is exactly one register block of the DSP path, so grouping costs
 * nothing (on the DSP path a rest of 3 or 5 rows is computed as 4 or 6 when the next input
 * rows exist: kl_mh_rows_pad). On the portable path, scores with D <= 4 (e.g. P = 2) use a
 * dedicated loop. The softmax reads a 256-entry table (kl_softmax_lut): one load per element
 * instead of the polynomial; on Arm four logits per word (USUB8).
 *
 * Multi-core: kl_mhsa_chunk splits the rows of the chunk; kl_mhsa_block splits the tokens of
 * the K_h / V_h^T projections (with a barrier, one shared copy) and the rows of every chunk.
 * No row depends on another row, so the results do not depend on the core count.
 *
 * Integer semantics: int32 accumulators (sums mod 2^32 where the golden model checks that the
 * exact value fits), RequantShift with 64-bit products, softmax exactly as planner.golden.ops.
 */
#include "kernel_lib.h"

#define KL_A8(n) (((size_t)(n) + 7u) & ~(size_t)7u)
#define KL_LUT_BYTES ((size_t)KL_SM_LUT_WORDS * 4u)

/* ------------------------------------------------------------------------------------------ */
/* softmax through a table                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* ceil(log2(v)) for v >= 1 */
static int32_t kl_mh_ceil_log2(uint32_t v)
{
#if defined(__GNUC__)
    return v <= 1 ? 0 : 32 - __builtin_clz(v - 1);
#else
    int32_t l = 0;
    while (l < 32 && ((uint64_t)1 << l) < v)
        l++;
    return l;
#endif
}

static int32_t kl_mh_log2_pow2(int32_t n)
{
    int32_t b = 0;
    while ((1 << b) < n)
        b++;
    return b;
}

static int kl_sm_has_lut(int32_t kind)
{
    return kind == KL_SM_ISOFTMAX || kind == KL_SM_ITAMAX;
}

void kl_softmax_lut(const kl_softmax_t *sm, int32_t *lut)
{
    int32_t d;
    if (sm->kind == KL_SM_ISOFTMAX) {
        /* golden: d = max - x in [0, 255], z = floor(d/log2), p = z*log2 - d,
         * y = (A*(p + B)^2 + C) >> min(z, 63), computed here in 64 bits once per value */
        const int64_t a = sm->coeff_a, b = sm->coeff_b, c = sm->coeff_c;
        const int32_t l2 = sm->log2;
        int32_t z = 0, rem = 0;
        for (d = 0; d < KL_SM_LUT_WORDS; d++) {
            int64_t t = (int64_t)z * l2 - d + b;
            int64_t v = a * t * t + c;
            lut[d] = (int32_t)(v >> (z > 62 ? 62 : z));
            if (++rem == l2) {
                rem = 0;
                z++;
            }
        }
    } else if (sm->kind == KL_SM_ITAMAX) {
        const int32_t B = kl_mh_log2_pow2(sm->n_levels), half = 1 << (B - 1), one = 1 << B;
        for (d = 0; d < KL_SM_LUT_WORDS; d++) {
            int32_t sh = (d * B + half) >> B;
            lut[d] = (sh << 16) | (sh > 31 ? 0 : (one >> sh));
        }
    }
}

/* Exact division by the row sum (Granlund-Montgomery, as kl_isoftmax; see kl_softmax.c):
 * floor(n/S) = ((n*m) >> 32) >> (l-1) for every n < 2^31, l = ceil(log2 S) >= 1,
 * m = ceil(2^(31+l)/S). */
/* m = ceil(2^(31+l)/d) < 2^32 for l = ceil(log2 d) >= 1. Out of line: computed inline, GCC kept
 * the 64-bit quotient and multiplied every element by all of it (a 64-bit multiply per element
 * of the row loops below, ~1.5 instructions more per element on Cortex-M7). */
static uint32_t __attribute__((noinline)) kl_mh_recip(uint32_t d, int32_t l)
{
    return (uint32_t)((((uint64_t)1 << (31 + l)) + d - 1) / d);
}

KL_INLINE uint8_t kl_mh_div(uint32_t n, uint32_t m, int32_t sh)
{
    return (uint8_t)((uint32_t)(((uint64_t)n * m) >> 32) >> sh);
}

#if KL_ARM_DSP
#include <arm_acle.h>
/* max of a row of int8, 4 lanes per word with SSUB8/SEL (unaligned word loads are fine on
 * ARMv7E-M) */
static int32_t kl_mh_rowmax(const int8_t *x, int32_t L)
{
    int32_t i = 0, mx = -128;
    if (L >= 8) {
        uint32_t m4 = 0x80808080u;
        for (; i + 4 <= L; i += 4) {
            uint32_t w;
            __builtin_memcpy(&w, x + i, 4);
            (void)__ssub8((int8x4_t)w, (int8x4_t)m4);
            m4 = (uint32_t)__sel((uint8x4_t)w, (uint8x4_t)m4);
        }
        {
            int32_t b0 = (int8_t)m4, b1 = (int8_t)(m4 >> 8), b2 = (int8_t)(m4 >> 16),
                    b3 = (int8_t)(m4 >> 24);
            mx = b0 > b1 ? b0 : b1;
            mx = b2 > mx ? b2 : mx;
            mx = b3 > mx ? b3 : mx;
        }
    }
    for (; i < L; i++)
        mx = x[i] > mx ? x[i] : mx;
    return mx;
}
#else
static int32_t kl_mh_rowmax(const int8_t *x, int32_t L)
{
    int32_t i, mx = -128;
    for (i = 0; i < L; i++)
        mx = x[i] > mx ? x[i] : mx;
    return mx;
}
#endif

#if KL_ARM_DSP
/* Four logits per word: d = max - x for 4 bytes with one USUB8 (d is in [0, 255], so the
 * byte difference mod 256 is exact), then one table load per element. */
KL_INLINE uint32_t kl_mh_ld32(const void *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}
#define KL_B0(d) ((d) & 0xFFu)
#define KL_B1(d) (((d) >> 8) & 0xFFu)
#define KL_B2(d) (((d) >> 16) & 0xFFu)
#define KL_B3(d) ((d) >> 24)
#endif

/* One iSoftmax row through the table; RND (a constant in each instance below): the rounded
 * normalisation. Two instances, the rounded one out of line: with a run-time flag in one body
 * GCC merged the two normalisation loops, and the floored one paid a 64-bit multiply per element
 * (+160 instructions per row of 81 on Cortex-M7). */
KL_INLINE void kl_mh_isoftmax_row_t(const int8_t *xr, uint8_t *yr, int32_t L,
                                    const int32_t *KL_RESTRICT T, int32_t nm1, const int RND)
{
    const int32_t mx = kl_mh_rowmax(xr, L);
    const int32_t *Tm = T + mx; /* Tm[-x] = T[mx - x] */
    uint32_t sum = 0, m;
    int32_t i = 0, l, sh;
#if KL_ARM_DSP
    const uint32_t mx4 = (uint32_t)(uint8_t)mx * 0x01010101u;
    for (; i + 4 <= L; i += 4) {
        const uint32_t d = (uint32_t)__usub8((uint8x4_t)mx4, (uint8x4_t)kl_mh_ld32(xr + i));
        sum += (uint32_t)(T[KL_B0(d)] + T[KL_B1(d)]) + (uint32_t)(T[KL_B2(d)] + T[KL_B3(d)]);
    }
#endif
    for (; i < L; i++)
        sum += (uint32_t)Tm[-xr[i]];
    l = kl_mh_ceil_log2(sum);
    if (l == 0) { /* sum == 1 (rounded: floor((2y(n-1) + 1) / 2) is the same) */
        for (i = 0; i < L; i++)
            yr[i] = (uint8_t)(Tm[-xr[i]] * nm1);
        return;
    }
    if (RND) { /* floor((2*y*(n-1) + S) / (2*S)): divisor 2S */
        const uint32_t s2 = 2u * sum;
        l = kl_mh_ceil_log2(s2);
        m = kl_mh_recip(s2, l);
        sh = l - 1;
        for (i = 0; i < L; i++)
            yr[i] = kl_mh_div(2u * (uint32_t)(Tm[-xr[i]] * nm1) + sum, m, sh);
        return;
    }
    m = kl_mh_recip(sum, l);
    sh = l - 1;
    i = 0;
#if KL_ARM_DSP
    for (; i + 4 <= L; i += 4) {
        const uint32_t d = (uint32_t)__usub8((uint8x4_t)mx4, (uint8x4_t)kl_mh_ld32(xr + i));
        yr[i] = kl_mh_div((uint32_t)(T[KL_B0(d)] * nm1), m, sh);
        yr[i + 1] = kl_mh_div((uint32_t)(T[KL_B1(d)] * nm1), m, sh);
        yr[i + 2] = kl_mh_div((uint32_t)(T[KL_B2(d)] * nm1), m, sh);
        yr[i + 3] = kl_mh_div((uint32_t)(T[KL_B3(d)] * nm1), m, sh);
    }
#endif
    for (; i < L; i++)
        yr[i] = kl_mh_div((uint32_t)(Tm[-xr[i]] * nm1), m, sh);
}

static void kl_mh_isoftmax_row(const int8_t *xr, uint8_t *yr, int32_t L,
                               const int32_t *KL_RESTRICT T, int32_t nm1)
{
    kl_mh_isoftmax_row_t(xr, yr, L, T, nm1, 0);
}

static void __attribute__((noinline)) kl_mh_isoftmax_row_rounded(const int8_t *xr, uint8_t *yr,
                                                                int32_t L,
                                                                const int32_t *KL_RESTRICT T,
                                                                int32_t nm1)
{
    kl_mh_isoftmax_row_t(xr, yr, L, T, nm1, 1);
}

static void kl_mh_itamax_row(const int8_t *xr, uint8_t *yr, int32_t L,
                             const int32_t *KL_RESTRICT T, int32_t n_levels)
{
    const int32_t mx = kl_mh_rowmax(xr, L);
    const int32_t *Tm = T + mx;
    const int32_t B = kl_mh_log2_pow2(n_levels);
    int32_t e = 0, inv, i = 0;
#if KL_ARM_DSP
    const uint32_t mx4 = (uint32_t)(uint8_t)mx * 0x01010101u;
    for (; i + 4 <= L; i += 4) {
        const uint32_t d = (uint32_t)__usub8((uint8x4_t)mx4, (uint8x4_t)kl_mh_ld32(xr + i));
        e += (T[KL_B0(d)] & 0xFFFF) + (T[KL_B1(d)] & 0xFFFF) + (T[KL_B2(d)] & 0xFFFF) +
             (T[KL_B3(d)] & 0xFFFF);
    }
#endif
    for (; i < L; i++)
        e += Tm[-xr[i]] & 0xFFFF;
    inv = ((n_levels - 1) << B) / e;
    i = 0;
#if KL_ARM_DSP
    for (; i + 4 <= L; i += 4) {
        const uint32_t d = (uint32_t)__usub8((uint8x4_t)mx4, (uint8x4_t)kl_mh_ld32(xr + i));
        yr[i] = (uint8_t)(inv >> (T[KL_B0(d)] >> 16));
        yr[i + 1] = (uint8_t)(inv >> (T[KL_B1(d)] >> 16));
        yr[i + 2] = (uint8_t)(inv >> (T[KL_B2(d)] >> 16));
        yr[i + 3] = (uint8_t)(inv >> (T[KL_B3(d)] >> 16));
    }
#endif
    for (; i < L; i++)
        yr[i] = (uint8_t)(inv >> (Tm[-xr[i]] >> 16));
}

/* Wide scores (rq_s->n_levels > 256: int16 logits, QDQ graphs): iSoftmax of an int16 row
 * without a table, as kl_isoftmax_s16; probabilities written in place as uint8 y[i] over the
 * first bytes of the row (byte i is written after x[i/2] was last read). */
static void kl_mh_isoftmax_row16(const int16_t *xr, uint8_t *yr, int32_t L,
                                 const kl_softmax_t *sm)
{
    const int32_t l2 = sm->log2, a = sm->coeff_a, b = sm->coeff_b, c = sm->coeff_c;
    const int32_t lz = kl_mh_ceil_log2((uint32_t)l2), sz = 16 + lz;
    const uint32_t mz = (uint32_t)((((uint64_t)1 << sz) + (uint32_t)l2 - 1) / (uint32_t)l2);
    const int32_t nm1 = sm->n_levels - 1;
    int32_t i, mx = -32768, l, sh;
    uint32_t sum = 0, m;
    for (i = 0; i < L; i++)
        mx = xr[i] > mx ? xr[i] : mx;
#define KL_MH_EXP16(x_, v_)                                                                    \
    do {                                                                                       \
        const int32_t d_ = mx - (x_);                                                          \
        const int32_t z_ = (int32_t)(((uint64_t)(uint32_t)d_ * mz) >> sz);                     \
        const int32_t t_ = z_ * l2 - d_ + b;                                                   \
        (v_) = z_ > 31 ? 0 : (a * (t_ * t_) + c) >> z_;                                        \
    } while (0)
    for (i = 0; i < L; i++) {
        int32_t v;
        KL_MH_EXP16(xr[i], v);
        sum += (uint32_t)v;
    }
    /* rounded normalisation floor((2*y*(n-1) + S) / (2*S)): divisor 2S >= 2, so l >= 1 */
    l = kl_mh_ceil_log2(2u * sum);
    m = (uint32_t)((((uint64_t)1 << (31 + l)) + 2u * sum - 1) / (2u * sum));
    sh = l - 1;
    for (i = 0; i < L; i++) {
        int32_t v;
        KL_MH_EXP16(xr[i], v);
        yr[i] = kl_mh_div(2u * (uint32_t)(v * nm1) + sum, m, sh);
    }
#undef KL_MH_EXP16
}

/* rows [r0, r1) of x (in place allowed) with a ready table */
static void kl_mh_softmax(const int8_t *x, int32_t x_rs, uint8_t *y, int32_t y_rs, int32_t r0,
                          int32_t r1, int32_t L, const kl_softmax_t *sm, const int32_t *T)
{
    int32_t r, i;
    switch (sm->kind) {
    case KL_SM_ISOFTMAX:
        if (sm->rounded)
            for (r = r0; r < r1; r++)
                kl_mh_isoftmax_row_rounded(x + r * x_rs, y + r * y_rs, L, T, sm->n_levels - 1);
        else
            for (r = r0; r < r1; r++)
                kl_mh_isoftmax_row(x + r * x_rs, y + r * y_rs, L, T, sm->n_levels - 1);
        break;
    case KL_SM_ITAMAX:
        for (r = r0; r < r1; r++)
            kl_mh_itamax_row(x + r * x_rs, y + r * y_rs, L, T, sm->n_levels);
        break;
    case KL_SM_ITAPARTIAL:
        if (r1 > r0)
            kl_ita_partial_max(x + r0 * x_rs, x_rs, y + r0 * y_rs, y_rs, r1 - r0, L,
                               sm->group_width, sm->n_levels, 0, 1);
        break;
    default: /* KL_SM_NONE: the scores are the probabilities */
        for (r = r0; r < r1; r++) {
            const uint8_t *s = (const uint8_t *)(x + r * x_rs);
            uint8_t *d = y + r * y_rs;
            if ((const void *)s != (const void *)d)
                for (i = 0; i < L; i++)
                    d[i] = s[i];
        }
        break;
    }
}

void kl_softmax_rows(const int8_t *x, int32_t x_rs, uint8_t *y, int32_t y_rs, int32_t rows,
                     int32_t L, const kl_softmax_t *sm, void *scratch, int core_id, int n_cores)
{
    int32_t r0, r1;
    const int32_t *T = sm->lut;
    kl_split(rows, core_id, n_cores, &r0, &r1);
    if (r0 >= r1)
        return;
    if (!T && kl_sm_has_lut(sm->kind)) {
        int32_t *t = (int32_t *)((uint8_t *)scratch + KL_LUT_BYTES * (size_t)core_id);
        kl_softmax_lut(sm, t);
        T = t;
    }
    kl_mh_softmax(x, x_rs, y, y_rs, r0, r1, L, sm, T);
}

/* ------------------------------------------------------------------------------------------ */
/* gemm helpers                                                                               */
/* ------------------------------------------------------------------------------------------ */

static void kl_mh_gemm_init(kl_gemm_t *g)
{
    g->p_base = 0;
    g->p_sp = 0;
    g->p_sk = 1;
    g->p_signed = 1;
    g->q_base = 0;
    g->q_sq = 0;
    g->q_signed = 1;
    g->K = 0;
    g->out = 0;
    g->o_sp = 0;
    g->o_sq = 1;
    g->mode = KL_GEMM_RQ8;
    g->p_corr = 0;
    g->pc_s = 1;
    g->q_corr = 0;
    g->qc_s = 1;
    g->mul = g->add = 0;
    g->m_sp = g->m_sq = g->a_sp = g->a_sq = 0;
    g->shift = 0;
    g->lo = g->hi = 0;
    g->scratch = 0;
}

/* RQ of an output whose "rows" are r (offset r0) and "columns" c (offset c0); the gemm's
 * p runs along rows unless transposed. */
static void kl_mh_set_rq(kl_gemm_t *g, const kl_rq_t *rq, int32_t r0, int32_t c0,
                         int transposed)
{
    g->mul = rq->mul + r0 * rq->mul_sr + c0 * rq->mul_sc;
    g->add = rq->add ? rq->add + r0 * rq->add_sr + c0 * rq->add_sc : 0;
    if (!transposed) {
        g->m_sp = rq->mul_sr;
        g->m_sq = rq->mul_sc;
        g->a_sp = rq->add_sr;
        g->a_sq = rq->add_sc;
    } else {
        g->m_sp = rq->mul_sc;
        g->m_sq = rq->mul_sr;
        g->a_sp = rq->add_sc;
        g->a_sq = rq->add_sr;
    }
    g->shift = rq->shift;
    g->lo = kl_qlo(rq->n_levels, rq->is_signed);
    g->hi = kl_qhi(rq->n_levels, rq->is_signed);
}

/* the RQ of head h: per-head parameters through the batch strides */
static kl_rq_t kl_mh_head_rq(const kl_rq_t *rq, int32_t h)
{
    kl_rq_t r = *rq;
    r.mul = rq->mul + h * rq->mul_sb;
    r.add = rq->add ? rq->add + h * rq->add_sb : 0;
    return r;
}

/* ------------------------------------------------------------------------------------------ */
/* chunk kernel                                                                               */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    void *mm;       /* kl_gemm_block scratch of this core */
    int32_t *lut;   /* softmax table (ready) */
    int32_t *rterm; /* G int32 (FWSA row term) */
    uint8_t *sbuf;  /* G x S scores / probabilities */
    int8_t *obuf;   /* G x P (O_h, fused output projection) */
    int8_t *qbuf;   /* G x D (I* or projected Q rows) */
    uint8_t *zvec;  /* max(D, S) bytes: the zero-point vector (kl_zp_sums_block) */
    int32_t *qcorr; /* G int32: -zk * sum_p Q[r][p] */
    int32_t *vcorr; /* G int32: -zv * sum_j probs[r][j] */
} kl_mh_bufs_t;

static int32_t kl_mh_kmax(int32_t a, int32_t b, int32_t c, int32_t d)
{
    int32_t m = a > b ? a : b;
    m = c > m ? c : m;
    return d > m ? d : m;
}

/* per-core layout: mm | lut | rterm | sbuf | obuf | qbuf | zero-point part (zvec | qcorr |
 * vcorr, when zp) */
static size_t kl_mh_core_bytes(int32_t S, int32_t D, int32_t P, int32_t kmax, int lut,
                               int rterm, int obuf, int qbuf, int wide, int zp)
{
    size_t n = KL_A8(KL_MM_SCRATCH_PER_CORE(kmax));
    (void)kmax; /* no matmul scratch on the portable path */
    if (lut)
        n += KL_LUT_BYTES;
    if (rterm)
        n += KL_A8(4 * KL_MHSA_G);
    n += KL_A8((size_t)KL_MHSA_G * (size_t)S * (wide ? 2u : 1u));
    if (obuf)
        n += KL_A8((size_t)KL_MHSA_G * (size_t)P);
    if (qbuf)
        n += KL_A8((size_t)KL_MHSA_G * (size_t)D);
    if (zp)
        n += KL_A8(kmax) + 2 * KL_A8(4 * KL_MHSA_G);
    return n;
}

static kl_mh_bufs_t kl_mh_core_bufs(uint8_t *base, int32_t S, int32_t D, int32_t P,
                                    int32_t kmax, int lut, int rterm, int obuf, int qbuf,
                                    int wide, int zp)
{
    kl_mh_bufs_t b;
    size_t mm = KL_A8(KL_MM_SCRATCH_PER_CORE(kmax));
    b.mm = mm ? (void *)base : 0;
    base += mm;
    b.lut = 0;
    if (lut) {
        b.lut = (int32_t *)base;
        base += KL_LUT_BYTES;
    }
    b.rterm = 0;
    if (rterm) {
        b.rterm = (int32_t *)base;
        base += KL_A8(4 * KL_MHSA_G);
    }
    b.sbuf = base;
    base += KL_A8((size_t)KL_MHSA_G * (size_t)S * (wide ? 2u : 1u));
    b.obuf = 0;
    if (obuf) {
        b.obuf = (int8_t *)base;
        base += KL_A8((size_t)KL_MHSA_G * (size_t)P);
    }
    b.qbuf = 0;
    if (qbuf) {
        b.qbuf = (int8_t *)base;
        base += KL_A8((size_t)KL_MHSA_G * (size_t)D);
    }
    b.zvec = 0;
    b.qcorr = b.vcorr = 0;
    if (zp) {
        b.zvec = base;
        base += KL_A8(kmax);
        b.qcorr = (int32_t *)base;
        base += KL_A8(4 * KL_MHSA_G);
        b.vcorr = (int32_t *)base;
    }
    return b;
}

/* zero points present (kl_attn_t.k_corr / zk / zv) */
static int kl_mh_zp(const kl_attn_t *a)
{
    return a->k_corr != 0 || a->zk != 0 || a->zv != 0;
}

/* wide scores: int16 logits (scores RQ with more than 256 levels, iSoftmax only) */
static int kl_mh_wide(const kl_rq_t *rq_s)
{
    return rq_s->n_levels > 256;
}

static int kl_mh_chunk_needs_lut(const kl_attn_t *a)
{
    return kl_sm_has_lut(a->sm.kind) && a->sm.lut == 0 && !kl_mh_wide(a->rq_s);
}

size_t kl_mhsa_chunk_scratch(const kl_attn_t *a)
{
    return kl_mh_core_bytes(a->S, a->D, a->P, kl_mh_kmax(a->D, a->S, a->P, 1),
                            kl_mh_chunk_needs_lut(a), a->w_f && a->w_row, a->acc != 0,
                            a->w_f != 0, kl_mh_wide(a->rq_s), kl_mh_zp(a));
}

/* FWSA query rows of a group: I* = RQ_i(X . W_f^T + b_f) into qbuf [R][D], and the row term */
static void kl_mh_fwsa_rows(const kl_attn_t *a, const void *xg, int32_t x_rs, int32_t r_abs,
                            int32_t R, const kl_mh_bufs_t *b)
{
    kl_gemm_t g;
    kl_mh_gemm_init(&g);
    g.p_base = xg;
    g.p_sp = x_rs;
    g.p_signed = a->q_signed;
    g.q_base = a->w_f;
    g.q_sq = a->D;
    g.K = a->D;
    g.out = b->qbuf;
    g.o_sp = a->D;
    g.q_corr = a->b_f;
    kl_mh_set_rq(&g, a->rq_i, r_abs, 0, 0);
    g.scratch = b->mm;
    kl_gemm_block(&g, 0, R, 0, a->D);
    if (a->w_row) {
        const kl_rq_t *rr = a->rq_row;
        int32_t r, e;
        for (r = 0; r < R; r++) {
            int32_t acc = 0, rr_i = r_abs + r;
            if (a->q_signed) {
                const int8_t *xr = (const int8_t *)xg + r * x_rs;
                for (e = 0; e < a->D; e++)
                    acc += xr[e] * a->w_row[e];
            } else {
                const uint8_t *xr = (const uint8_t *)xg + r * x_rs;
                for (e = 0; e < a->D; e++)
                    acc += xr[e] * a->w_row[e];
            }
            b->rterm[r] = kl_requant1(acc, rr->mul[rr_i * rr->mul_sr],
                                      rr->add ? rr->add[rr_i * rr->add_sr] : 0, rr->shift,
                                      INT32_MIN, INT32_MAX);
        }
    }
}

/* Scores for short dot products (D <= 4, e.g. P = 2): one query row at a time, its D values
 * and the prepared per-tensor RQ in registers, the keys streamed (kl_gemm_block would spend a
 * column loop and an epilogue on every D-long dot product). */
#define KL_MH_SMALL_D 4
KL_INLINE void kl_mh_scores_small_d(const kl_attn_t *a, const int32_t *q, int32_t base,
                                    uint8_t *KL_RESTRICT srow, const int D, const int KS,
                                    kl_rqp_t rp, int32_t lo, int32_t hi)
{
    const int32_t S = a->S, k_rs = a->k_rs;
    const int32_t q0 = q[0], q1 = D > 1 ? q[1] : 0, q2 = D > 2 ? q[2] : 0, q3 = D > 3 ? q[3] : 0;
    const int32_t m = rp.m;
    const int64_t ad = rp.a;
    int32_t j;
    for (j = 0; j < S; j++) {
        int32_t acc, v;
        if (KS) {
            const int8_t *kr = (const int8_t *)a->k + j * k_rs;
            acc = base + q0 * kr[0];
            if (D > 1)
                acc += q1 * kr[1];
            if (D > 2)
                acc += q2 * kr[2];
            if (D > 3)
                acc += q3 * kr[3];
        } else {
            const uint8_t *kr = (const uint8_t *)a->k + j * k_rs;
            acc = base + q0 * kr[0];
            if (D > 1)
                acc += q1 * kr[1];
            if (D > 2)
                acc += q2 * kr[2];
            if (D > 3)
                acc += q3 * kr[3];
        }
        v = (int32_t)(((int64_t)acc * m + ad) >> 32);
        srow[j] = (uint8_t)kl_clip32(v, lo, hi);
    }
}

/* returns 0 when the small-D path does not apply (D > 4, scores RQ not per tensor, or a
 * requantization that needs the generic 64-bit form) */
#if KL_ARM_DSP
/* Not used on the Arm DSP path: the 6-row assembly column loop of kl_gemm_block shares the key
 * loads across the rows and is faster there (P = 2 scores: about 11 instructions each vs 13
 * with this loop). */
static int kl_mh_scores_small(const kl_attn_t *a, const void *qg, int32_t qg_rs, int qs,
                              const int32_t *rterm, int32_t R, uint8_t *sbuf)
{
    (void)a, (void)qg, (void)qg_rs, (void)qs, (void)rterm, (void)R, (void)sbuf;
    return 0;
}
#else
static int kl_mh_scores_small(const kl_attn_t *a, const void *qg, int32_t qg_rs, int qs,
                              const int32_t *rterm, int32_t R, uint8_t *sbuf)
{
    const kl_rq_t *rq = a->rq_s;
    int32_t r, d, lo, hi;
    kl_rqp_t rp;
    if (a->D > KL_MH_SMALL_D || rq->mul_sr || rq->mul_sc ||
        (rq->add && (rq->add_sr || rq->add_sc)) || a->k_corr || a->zk)
        return 0;
    rp = kl_rq_prep(rq->mul[0], rq->add ? rq->add[0] : 0, rq->shift);
    if (rp.sh != 32)
        return 0;
    lo = kl_qlo(rq->n_levels, rq->is_signed);
    hi = kl_qhi(rq->n_levels, rq->is_signed);
    for (r = 0; r < R; r++) {
        int32_t q[KL_MH_SMALL_D] = {0, 0, 0, 0};
        const int32_t base = rterm ? rterm[r] : 0;
        uint8_t *srow = sbuf + r * a->S;
        for (d = 0; d < a->D; d++)
            q[d] = qs ? ((const int8_t *)qg)[r * qg_rs + d] : ((const uint8_t *)qg)[r * qg_rs + d];
#define KL_MH_SD(D_)                                                                          \
    (a->k_signed ? kl_mh_scores_small_d(a, q, base, srow, D_, 1, rp, lo, hi)                   \
                 : kl_mh_scores_small_d(a, q, base, srow, D_, 0, rp, lo, hi))
        switch (a->D) {
        case 1:
            KL_MH_SD(1);
            break;
        case 2:
            KL_MH_SD(2);
            break;
        case 3:
            KL_MH_SD(3);
            break;
        default:
            KL_MH_SD(4);
            break;
        }
#undef KL_MH_SD
    }
    return 1;
}
#endif

/* Rows computed for a group of R rows when `avail` query rows exist from its first one. On
 * the Arm DSP path a group of 3 (5) rows is computed as 4 (6) up to the O_h rows, which stay
 * in the kernel's own G-row buffers (the 4- and 6-row blocks run the assembly loops; 3 and 5
 * would use the 2- and 1-row C paths); the extra rows are real rows of the input (computed
 * again by their own group), so no value is read uninitialized. */
static int32_t kl_mh_rows_pad(int32_t R, int32_t avail)
{
#if KL_ARM_DSP
    if (R == 3 && avail >= 4)
        return 4;
    if (R == 5 && avail >= 6)
        return 6;
#endif
    (void)avail;
    return R;
}

/* One group of R <= G rows (absolute chunk row r_abs): query rows qg [Rc][D] (row stride
 * qg_rs, signedness qs); Rc >= R rows are computed up to the O_h rows when those stay in
 * obuf (kl_mh_rows_pad). */
static void kl_mh_group(const kl_attn_t *a, const void *qg, int32_t qg_rs, int qs,
                        const int32_t *rterm, int32_t r_abs, int32_t R, int32_t Rc,
                        const kl_mh_bufs_t *b, const int32_t *lut)
{
    const int32_t S = a->S, P = a->P;
    const int probs_signed = a->sm.kind == KL_SM_NONE ? a->rq_s->is_signed : 0;
    const int wide = kl_mh_wide(a->rq_s);
    const int32_t prs = wide ? 2 * S : S; /* probability row stride in bytes */
    kl_gemm_t g;
    /* 1. scores [R][S] = RQ_s(Q . K^T [+ r]) */
    kl_mh_gemm_init(&g);
    g.p_base = qg;
    g.p_sp = qg_rs;
    g.p_signed = qs;
    g.q_base = a->k;
    g.q_sq = a->k_rs;
    g.q_signed = a->k_signed;
    g.K = a->D;
    g.out = b->sbuf;
    g.o_sp = S;
    g.p_corr = rterm;
    kl_mh_set_rq(&g, a->rq_s, r_abs, 0, 0);
    g.scratch = b->mm;
    if (!a->acc || !a->v_trans)
        Rc = R; /* the extra rows would reach the caller's output */
    if (a->zk) { /* (Q - zq).(K - zk) = Q.K - zk sum(Q row) + k_corr (no FWSA row term here) */
        kl_zp_sums_block(qg, qs, qg_rs, 1, Rc, a->D, -a->zk, 0, b->qcorr, b->mm, b->zvec);
        g.p_corr = b->qcorr;
    }
    g.q_corr = a->k_corr;
    if (wide) {
        int32_t r;
        g.mode = KL_GEMM_RQ16;
        kl_gemm_block(&g, 0, Rc, 0, S);
        /* 2. softmax on the full int16 rows, probabilities in place (row stride 2S bytes) */
        for (r = 0; r < Rc; r++)
            kl_mh_isoftmax_row16((const int16_t *)b->sbuf + r * S, b->sbuf + r * prs, S,
                                 &a->sm);
    } else {
        if (!kl_mh_scores_small(a, qg, qg_rs, qs, rterm, Rc, b->sbuf))
            kl_gemm_block(&g, 0, Rc, 0, S);
        /* 2. softmax on the full rows, in place */
        kl_mh_softmax((const int8_t *)b->sbuf, S, b->sbuf, S, 0, Rc, S, &a->sm, lut);
    }
    /* 3. O [R][P] = RQ_v(probs . (V - zv)) */
    if (a->zv)
        kl_zp_sums_block(b->sbuf, probs_signed, prs, 1, Rc, S, -a->zv, 0, b->vcorr, b->mm,
                         b->zvec);
    kl_mh_gemm_init(&g);
    g.K = S;
    g.scratch = b->mm;
    if (a->v_trans) { /* P = probability rows, Q = rows of V^T (contiguous along S) */
        g.p_base = b->sbuf;
        g.p_sp = prs;
        g.p_signed = probs_signed;
        g.q_base = a->v;
        g.q_sq = a->v_rs;
        g.q_signed = a->v_signed;
        if (a->acc) {
            g.out = b->obuf;
            g.o_sp = P;
        } else {
            g.out = (uint8_t *)a->o + r_abs * a->o_rs;
            g.o_sp = a->o_rs;
        }
        g.o_sq = 1;
        g.p_corr = a->zv ? b->vcorr : 0;
        kl_mh_set_rq(&g, a->rq_v, r_abs, 0, 0);
        kl_gemm_block(&g, 0, Rc, 0, P);
    } else { /* P = columns of V (gathered), Q = probability rows; output transposed */
        g.p_base = a->v;
        g.p_sp = 1;
        g.p_sk = a->v_rs;
        g.p_signed = a->v_signed;
        g.q_base = b->sbuf;
        g.q_sq = prs;
        g.q_signed = probs_signed;
        g.o_sp = 1;
        if (a->acc) {
            g.out = b->obuf;
            g.o_sq = P;
        } else {
            g.out = (uint8_t *)a->o + r_abs * a->o_rs;
            g.o_sq = a->o_rs;
        }
        g.q_corr = a->zv ? b->vcorr : 0;
        kl_mh_set_rq(&g, a->rq_v, r_abs, 0, 1);
        kl_gemm_block(&g, 0, P, 0, R);
    }
    /* 4. acc [R][E_out] (+)= O . W_o^T */
    if (a->acc) {
        kl_mh_gemm_init(&g);
        g.p_base = b->obuf;
        g.p_sp = P;
        g.p_signed = a->rq_v->is_signed;
        g.q_base = a->w_o;
        g.q_sq = a->w_o_rs;
        g.K = P;
        g.out = a->acc + r_abs * a->acc_rs;
        g.o_sp = a->acc_rs;
        g.mode = a->acc_mode == KL_ACC_ADD ? KL_GEMM_I32_ADD : KL_GEMM_I32_STORE;
        g.q_corr = a->b_o;
        g.scratch = b->mm;
        kl_gemm_block(&g, 0, R, 0, a->E_out);
    }
}

void kl_mhsa_chunk(const kl_attn_t *a, int32_t rows, void *scratch, int core_id, int n_cores)
{
    const int32_t kmax = kl_mh_kmax(a->D, a->S, a->P, 1);
    const int need_lut = kl_mh_chunk_needs_lut(a);
    const int fwsa = a->w_f != 0;
    const size_t per = kl_mhsa_chunk_scratch(a);
    kl_mh_bufs_t b;
    const int32_t *lut = a->sm.lut;
    int32_t lo, hi, r;
    kl_split(rows, core_id, n_cores, &lo, &hi);
    if (lo >= hi)
        return;
    b = kl_mh_core_bufs((uint8_t *)scratch + per * (size_t)core_id, a->S, a->D, a->P, kmax,
                        need_lut, fwsa && a->w_row, a->acc != 0, fwsa, kl_mh_wide(a->rq_s),
                        kl_mh_zp(a));
    if (need_lut) {
        kl_softmax_lut(&a->sm, b.lut);
        lut = b.lut;
    }
    for (r = lo; r < hi; r += KL_MHSA_G) {
        const int32_t R = hi - r < KL_MHSA_G ? hi - r : KL_MHSA_G;
        const int32_t Rc = a->acc && a->v_trans ? kl_mh_rows_pad(R, rows - r) : R;
        const uint8_t *qr = (const uint8_t *)a->q + r * a->q_rs;
        if (fwsa) {
            kl_mh_fwsa_rows(a, qr, a->q_rs, r, Rc, &b);
            kl_mh_group(a, b.qbuf, a->D, a->rq_i->is_signed, a->w_row ? b.rterm : 0, r, R, Rc,
                        &b, lut);
        } else {
            kl_mh_group(a, qr, a->q_rs, a->q_signed, 0, r, R, Rc, &b, lut);
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* whole block                                                                                */
/* ------------------------------------------------------------------------------------------ */

static int kl_mh_shared_kv(const kl_mhsa_t *m, int n_cores)
{
    return n_cores <= 1 || m->barrier != 0;
}

static size_t kl_mh_kv_bytes(const kl_mhsa_t *m)
{
    size_t n = KL_A8((size_t)m->P * (size_t)m->S); /* V_h^T */
    if (!m->w_f)
        n += KL_A8((size_t)m->S * (size_t)m->P); /* K_h */
    if (!m->w_f && (m->zq || m->zk))
        n += 4u * (size_t)m->S; /* K_h's zero-point correction */
    return n;
}

static int32_t kl_mh_block_kmax(const kl_mhsa_t *m)
{
    return kl_mh_kmax(m->E, m->S, m->P, 1);
}

static int kl_mh_block_zp(const kl_mhsa_t *m)
{
    return (!m->w_f && (m->zq || m->zk)) || m->zv;
}

static size_t kl_mh_block_core_bytes(const kl_mhsa_t *m)
{
    const int fwsa = m->w_f != 0;
    return kl_mh_core_bytes(m->S, fwsa ? m->E : m->P, m->P, kl_mh_block_kmax(m),
                            kl_sm_has_lut(m->sm.kind) && m->sm.lut == 0 && !kl_mh_wide(m->rq_s),
                            fwsa && m->w_row, 1, 1, kl_mh_wide(m->rq_s), kl_mh_block_zp(m));
}

size_t kl_mhsa_block_scratch(const kl_mhsa_t *m, int n_cores)
{
    size_t nc = (size_t)(n_cores < 1 ? 1 : n_cores);
    return (kl_mh_shared_kv(m, n_cores) ? 1u : nc) * kl_mh_kv_bytes(m) +
           nc * kl_mh_block_core_bytes(m);
}

/* K_h [S][P] (k != NULL) and V_h^T [P][S] for the tokens [t0, t1) */
static void kl_mh_project_kv(const kl_mhsa_t *m, int32_t h, int8_t *kb, int8_t *vb, int32_t t0,
                             int32_t t1, void *mm)
{
    const int32_t E = m->E, P = m->P, S = m->S, c0 = h * P;
    kl_gemm_t g;
    int pass;
    if (t0 >= t1)
        return;
    for (pass = 0; pass < 2; pass++) {
        const int is_k = pass == 0;
        if (is_k && !kb)
            continue;
        kl_mh_gemm_init(&g);
        /* P = the head's weight rows (features), Q = token rows of X */
        g.p_base = (is_k ? m->w_k : m->w_v) + c0 * E;
        g.p_sp = E;
        g.q_base = m->x;
        g.q_sq = m->x_rs;
        g.q_signed = m->x_signed;
        g.K = E;
        g.p_corr = is_k ? (m->b_k ? m->b_k + c0 : 0) : (m->b_v ? m->b_v + c0 : 0);
        if (is_k) { /* K_h[j][c] */
            g.out = kb;
            g.o_sp = 1;
            g.o_sq = P;
        } else { /* V_h^T[c][j] */
            g.out = vb;
            g.o_sp = S;
            g.o_sq = 1;
        }
        kl_mh_set_rq(&g, is_k ? m->rq_k : m->rq_v, 0, c0, 1);
        g.scratch = mm;
        kl_gemm_block(&g, 0, P, t0, t1);
    }
}

/* Q_h rows [R][P] of tokens r0.. into qbuf */
static void kl_mh_project_q(const kl_mhsa_t *m, int32_t h, int32_t r0, int32_t R, int8_t *qb,
                            void *mm)
{
    const int32_t E = m->E, P = m->P, c0 = h * P;
    kl_gemm_t g;
    kl_mh_gemm_init(&g);
    g.p_base = (const uint8_t *)m->x + r0 * m->x_rs;
    g.p_sp = m->x_rs;
    g.p_signed = m->x_signed;
    g.q_base = m->w_q + c0 * E;
    g.q_sq = E;
    g.K = E;
    g.out = qb;
    g.o_sp = P;
    g.q_corr = m->b_q ? m->b_q + c0 : 0;
    kl_mh_set_rq(&g, m->rq_q, r0, c0, 0);
    g.scratch = mm;
    kl_gemm_block(&g, 0, R, 0, P);
}

void kl_mhsa_block(const kl_mhsa_t *m, int core_id, int n_cores)
{
    const int32_t S = m->S, E = m->E, P = m->P, H = m->H;
    const int fwsa = m->w_f != 0;
    const int shared = kl_mh_shared_kv(m, n_cores);
    const int sync = n_cores > 1 && m->barrier != 0;
    const int32_t D = fwsa ? E : P, kmax = kl_mh_block_kmax(m);
    const int32_t chunk = m->chunk < 1 ? 1 : m->chunk;
    const int wide = kl_mh_wide(m->rq_s);
    const int need_lut = kl_sm_has_lut(m->sm.kind) && m->sm.lut == 0 && !wide;
    const size_t kvb = kl_mh_kv_bytes(m);
    const int cid = core_id < 0 ? 0 : core_id;
    uint8_t *kv = (uint8_t *)m->scratch + (shared ? 0 : kvb * (size_t)cid);
    int8_t *vbuf = (int8_t *)kv;
    int8_t *kbuf = fwsa ? 0 : (int8_t *)kv + KL_A8((size_t)P * (size_t)S);
    uint8_t *core = (uint8_t *)m->scratch + (shared ? 1u : (size_t)(n_cores < 1 ? 1 : n_cores)) *
                                                kvb +
                    kl_mh_block_core_bytes(m) * (size_t)cid;
    const kl_mh_bufs_t b =
        kl_mh_core_bufs(core, S, D, P, kmax, need_lut, fwsa && m->w_row, 1, 1, wide,
                        kl_mh_block_zp(m));
    int32_t *kcorr = fwsa || !(m->zq || m->zk)
                         ? 0
                         : (int32_t *)(void *)(kv + 2 * KL_A8((size_t)P * (size_t)S));
    kl_attn_t a;
    kl_rq_t rq_s, rq_av, rq_i, rq_row;
    int32_t h, c0, t0, t1;
    if (core_id < 0 || (n_cores > 0 && core_id >= n_cores))
        return;
    if (sync)
        kl_split(S, core_id, n_cores, &t0, &t1);
    else {
        t0 = 0;
        t1 = S;
    }
    /* the per-head parts of the chunk kernel's arguments */
    a.S = S;
    a.D = D;
    a.P = P;
    a.sm = m->sm;
    if (need_lut) {
        kl_softmax_lut(&m->sm, b.lut);
        a.sm.lut = b.lut;
    }
    a.q = 0;
    a.q_rs = 0;
    a.q_signed = 1;
    a.w_f = 0;
    a.b_f = 0;
    a.rq_i = 0;
    a.w_row = 0;
    a.rq_row = 0;
    a.k = fwsa ? (const void *)m->x : (const void *)kbuf;
    a.k_rs = fwsa ? m->x_rs : P;
    a.k_signed = fwsa ? m->x_signed : m->rq_k->is_signed;
    a.v = vbuf;
    a.v_rs = S;
    a.v_trans = 1;
    a.v_signed = m->rq_v->is_signed;
    a.o = 0;
    a.o_rs = 0;
    a.w_o_rs = H * P;
    a.E_out = m->E_out;
    a.b_o = 0;
    a.acc = m->acc;
    a.acc_rs = m->acc_rs;
    a.rq_s = &rq_s;
    a.rq_v = &rq_av;
    a.k_corr = kcorr;
    a.zk = fwsa ? 0 : m->zk;
    a.zv = m->zv;
    for (h = 0; h < H; h++) {
        rq_s = kl_mh_head_rq(m->rq_s, h);
        rq_av = kl_mh_head_rq(m->rq_av, h);
        a.w_o = m->w_o + h * P;
        a.acc_mode = h == 0 ? KL_ACC_STORE : KL_ACC_ADD;
        if (fwsa) {
            rq_i = kl_mh_head_rq(m->rq_i, h);
            a.w_f = m->w_f + h * E * E;
            a.b_f = m->b_f ? m->b_f + h * E : 0;
            a.rq_i = &rq_i;
            if (m->w_row) {
                rq_row = kl_mh_head_rq(m->rq_row, h);
                a.w_row = m->w_row + h * E;
                a.rq_row = &rq_row;
            }
        }
        /* K_h, V_h^T: tokens split across cores (sync) or all of them (own copy) */
        if (sync && h > 0)
            m->barrier(m->barrier_ctx); /* everyone is done with the previous head's K/V */
        kl_mh_project_kv(m, h, kbuf, vbuf, t0, t1, b.mm);
        if (kcorr && t0 < t1) /* the correction of the K_h rows this core projected */
            kl_zp_sums_block(kbuf + t0 * P, m->rq_k->is_signed, P, 1, t1 - t0, P, -m->zq,
                             P * m->zq * m->zk, kcorr + t0, b.mm, b.zvec);
        if (sync)
            m->barrier(m->barrier_ctx);
        /* chunks of query rows; the rows of a chunk are split across cores */
        for (c0 = 0; c0 < S; c0 += chunk) {
            const int32_t x = S - c0 < chunk ? S - c0 : chunk;
            int32_t lo, hi, r;
            kl_split(x, core_id, n_cores, &lo, &hi);
            for (r = c0 + lo; r < c0 + hi; r += KL_MHSA_G) {
                const int32_t R = c0 + hi - r < KL_MHSA_G ? c0 + hi - r : KL_MHSA_G;
                const int32_t Rc = kl_mh_rows_pad(R, S - r);
                if (fwsa) {
                    a.q_signed = m->x_signed;
                    kl_mh_fwsa_rows(&a, (const uint8_t *)m->x + r * m->x_rs, m->x_rs, r, Rc,
                                    &b);
                    kl_mh_group(&a, b.qbuf, E, rq_i.is_signed, m->w_row ? b.rterm : 0, r, R, Rc,
                                &b, a.sm.lut);
                } else {
                    kl_mh_project_q(m, h, r, Rc, b.qbuf, b.mm);
                    kl_mh_group(&a, b.qbuf, P, m->rq_q->is_signed, 0, r, R, Rc, &b, a.sm.lut);
                }
            }
        }
    }
    /* Y = RQ_o(acc + b_o) on this core's rows (the same rows in every head: no barrier) */
    for (c0 = 0; c0 < S; c0 += chunk) {
        const int32_t x = S - c0 < chunk ? S - c0 : chunk;
        const kl_rq_t *ro = m->rq_o;
        const int32_t lo_c = kl_qlo(ro->n_levels, ro->is_signed);
        const int32_t hi_c = kl_qhi(ro->n_levels, ro->is_signed);
        int32_t lo, hi, r, e;
        kl_split(x, core_id, n_cores, &lo, &hi);
        if (lo >= hi)
            continue;
        if (ro->mul_sr == 0 && (ro->add == 0 || ro->add_sr == 0)) {
            for (e = 0; e < m->E_out; e++) {
                const kl_rqp_t rp = kl_rq_prep(ro->mul[e * ro->mul_sc],
                                               ro->add ? ro->add[e * ro->add_sc] : 0, ro->shift);
                const int32_t bo = m->b_o ? m->b_o[e] : 0;
                for (r = c0 + lo; r < c0 + hi; r++) {
                    int32_t v = (int32_t)((uint32_t)m->acc[r * m->acc_rs + e] + (uint32_t)bo);
                    ((uint8_t *)m->y)[r * m->y_rs + e] = (uint8_t)kl_rq_apply(v, rp, lo_c, hi_c);
                }
            }
        } else {
            for (r = c0 + lo; r < c0 + hi; r++)
                for (e = 0; e < m->E_out; e++) {
                    int32_t v = (int32_t)((uint32_t)m->acc[r * m->acc_rs + e] +
                                          (uint32_t)(m->b_o ? m->b_o[e] : 0));
                    ((uint8_t *)m->y)[r * m->y_rs + e] = (uint8_t)kl_requant1(
                        v, ro->mul[r * ro->mul_sr + e * ro->mul_sc],
                        ro->add ? ro->add[r * ro->add_sr + e * ro->add_sc] : 0, ro->shift, lo_c,
                        hi_c);
                }
        }
    }
}
