/* kl_gemm.c - the int8 x int8 -> int32 core shared by linear and the matmuls.
 *
 * The core computes acc(p, q) = sum_k P[p][k] * Q[q][k] (+ p_corr[p] + q_corr[q]) for a block
 * of (p, q) and writes it as int32 (store / accumulate) or requantized to 8 bits.
 * Q must be contiguous along k; P may have any strides (it is read once per p block).
 *
 * Paths (all bit-exact, integer sums do not depend on order):
 *  - portable C: 2 p x 4 q register blocking, leftovers 1 p / 1 q.
 *  - Arm DSP (__ARM_FEATURE_DSP, Cortex-M4/M7): per block of KL_DSP_RMAX (6), then 4, 2, 1
 *    p rows, the P rows are expanded once to int16 pairs in the caller's scratch, interleaved
 *    per group of 4 k: [k/4][row][2 words: (k0,k2) (k1,k3)]; each Q row is then streamed as
 *    words, unpacked with SXTB16/UXTB16 (plain and ROR #8) and multiplied with SMLAD: per 4 k
 *    and 6 rows, 1 load + 2 unpacks + 6 LDRD + 12 SMLAD (inline assembly for 6 and 4 rows).
 *    K % 4 leftovers are scalar (stored [t][row] after the groups). For 6- and 4-row blocks
 *    whose epilogue is per-tensor RQ to int8/uint8 or int32 store/accumulate, the whole
 *    column loop (corrections, SMLAD loop, leftovers, epilogue) is one assembly function
 *    (kl_c6_* / kl_c4_*, about 50 instructions per column around the SMLADs instead of about
 *    115 when GCC keeps the loop state on the stack); the row expansion of contiguous rows is
 *    an assembly loop too. A remainder of 2 rows after the 6-row blocks runs as 4 + 4.
 *    scratch == NULL selects the portable path.
 *  - XpulpV2 (KL_USE_XPULPV2, GAP9): a place for pv.sdotsp.b based inner loops; not compiled
 *    or verified on this machine (its RISC-V GCC has no XpulpV2 builtins); falls back to the
 *    portable path until written and verified.
 */
#include "kernel_lib.h"

#if KL_ARM_DSP
#include <arm_acle.h>
#endif

/* ------------------------------------------------------------------------------------------ */
/* epilogue                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* Writes R results acc[0..R-1] for rows p..p+R-1 of column q (out of line: small code). */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void kl_epi(const kl_gemm_t *g, int32_t p, int32_t q, const int32_t *acc, int R)
{
    int r;
    if (g->mode == KL_GEMM_RQ8) {
        uint8_t *o = (uint8_t *)g->out + p * g->o_sp + q * g->o_sq;
        const int32_t lo = g->lo, hi = g->hi;
        if (g->m_sp == 0 && (g->add == 0 || g->a_sp == 0)) {
            kl_rqp_t rp = kl_rq_prep(g->mul[q * g->m_sq], g->add ? g->add[q * g->a_sq] : 0,
                                     g->shift);
            KL_UNROLL
            for (r = 0; r < R; r++)
                o[r * g->o_sp] = (uint8_t)kl_rq_apply(acc[r], rp, lo, hi);
        } else {
            for (r = 0; r < R; r++) {
                int32_t pr = p + r;
                int32_t m = g->mul[pr * g->m_sp + q * g->m_sq];
                int32_t a = g->add ? g->add[pr * g->a_sp + q * g->a_sq] : 0;
                o[r * g->o_sp] = (uint8_t)kl_requant1(acc[r], m, a, g->shift, lo, hi);
            }
        }
    } else if (g->mode == KL_GEMM_RQ16) {
        int16_t *o = (int16_t *)g->out + p * g->o_sp + q * g->o_sq;
        for (r = 0; r < R; r++) {
            int32_t pr = p + r;
            int32_t m = g->mul[pr * g->m_sp + q * g->m_sq];
            int32_t a = g->add ? g->add[pr * g->a_sp + q * g->a_sq] : 0;
            o[r * g->o_sp] = (int16_t)kl_requant1(acc[r], m, a, g->shift, g->lo, g->hi);
        }
    } else {
        int32_t *o = (int32_t *)g->out + p * g->o_sp + q * g->o_sq;
        if (g->mode == KL_GEMM_I32_STORE) {
            for (r = 0; r < R; r++)
                o[r * g->o_sp] = acc[r];
        } else {
            for (r = 0; r < R; r++)
                o[r * g->o_sp] = (int32_t)((uint32_t)o[r * g->o_sp] + (uint32_t)acc[r]);
        }
    }
}

KL_INLINE int32_t kl_corr_init(const kl_gemm_t *g, int32_t p, int32_t q)
{
    int32_t c = 0;
    if (g->p_corr)
        c += g->p_corr[p * g->pc_s];
    if (g->q_corr)
        c += g->q_corr[q * g->qc_s];
    return c;
}

/* ------------------------------------------------------------------------------------------ */
/* portable path                                                                              */
/* ------------------------------------------------------------------------------------------ */

#define KL_DEFINE_PORTABLE(NAME, PT, QT)                                                      \
    KL_INLINE void NAME##_tile(const kl_gemm_t *g, int32_t p, int32_t q, const int R,          \
                               const int O)                                                   \
    {                                                                                          \
        const PT *pp = (const PT *)g->p_base + p * g->p_sp;                                    \
        const QT *qp = (const QT *)g->q_base + q * g->q_sq;                                    \
        const int32_t sp = g->p_sp, sk = g->p_sk, sq = g->q_sq, K = g->K;                      \
        int32_t acc[2][4];                                                                     \
        int32_t k;                                                                             \
        int r, o;                                                                              \
        KL_UNROLL                                                                              \
        for (r = 0; r < R; r++)                                                                \
            KL_UNROLL                                                                          \
            for (o = 0; o < O; o++)                                                            \
                acc[r][o] = kl_corr_init(g, p + r, q + o);                                     \
        for (k = 0; k < K; k++) {                                                              \
            int32_t xv[2], wv[4];                                                              \
            KL_UNROLL                                                                          \
            for (r = 0; r < R; r++)                                                            \
                xv[r] = pp[r * sp + k * sk];                                                   \
            KL_UNROLL                                                                          \
            for (o = 0; o < O; o++)                                                            \
                wv[o] = qp[o * sq + k];                                                        \
            KL_UNROLL                                                                          \
            for (r = 0; r < R; r++)                                                            \
                KL_UNROLL                                                                      \
                for (o = 0; o < O; o++)                                                        \
                    acc[r][o] += xv[r] * wv[o];                                                \
        }                                                                                      \
        KL_UNROLL                                                                              \
        for (o = 0; o < O; o++) {                                                              \
            int32_t col[2];                                                                    \
            KL_UNROLL                                                                          \
            for (r = 0; r < R; r++)                                                            \
                col[r] = acc[r][o];                                                            \
            kl_epi(g, p, q + o, col, R);                                                       \
        }                                                                                      \
    }                                                                                          \
    static void NAME(const kl_gemm_t *g, int32_t p0, int32_t p1, int32_t q0, int32_t q1)       \
    {                                                                                          \
        int32_t p = p0, q;                                                                     \
        for (; p + 2 <= p1; p += 2) {                                                          \
            for (q = q0; q + 4 <= q1; q += 4)                                                  \
                NAME##_tile(g, p, q, 2, 4);                                                    \
            for (; q < q1; q++)                                                                \
                NAME##_tile(g, p, q, 2, 1);                                                    \
        }                                                                                      \
        for (; p < p1; p++) {                                                                  \
            for (q = q0; q + 4 <= q1; q += 4)                                                  \
                NAME##_tile(g, p, q, 1, 4);                                                    \
            for (; q < q1; q++)                                                                \
                NAME##_tile(g, p, q, 1, 1);                                                    \
        }                                                                                      \
    }

KL_DEFINE_PORTABLE(kl_gemm_port_ss, int8_t, int8_t)
KL_DEFINE_PORTABLE(kl_gemm_port_us, uint8_t, int8_t)
KL_DEFINE_PORTABLE(kl_gemm_port_su, int8_t, uint8_t)
KL_DEFINE_PORTABLE(kl_gemm_port_uu, uint8_t, uint8_t)

/* ------------------------------------------------------------------------------------------ */
/* Arm DSP path                                                                               */
/* ------------------------------------------------------------------------------------------ */
#if KL_ARM_DSP

KL_INLINE int32_t kl_sxtb16_ror8(uint32_t x)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
KL_INLINE int32_t kl_uxtb16_ror8(uint32_t x)
{
    int32_t r;
    __asm__("uxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
KL_INLINE uint32_t kl_ld32(const void *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}
KL_INLINE uint32_t kl_pack16(int32_t lo, int32_t hi)
{
    return ((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16);
}

/* Expand rows p..p+R-1 of P to the interleaved int16 layout in scratch. */
static void kl_dsp_expand(const kl_gemm_t *g, int32_t p, int R, uint32_t *KL_RESTRICT xs)
{
    const int32_t K = g->K, K4 = K >> 2, sp = g->p_sp, sk = g->p_sk;
    int32_t kq, t;
    int r;
    if (g->p_signed) {
        const int8_t *base = (const int8_t *)g->p_base + p * sp;
        if (sk == 1) {
            /* row by row, two groups of 4 k per iteration (the layout is [k/4][row][2]) */
            const int32_t step = 2 * R;
            for (r = 0; r < R; r++) {
                const int8_t *src = base + r * sp;
                uint32_t *dst = xs + 2 * r;
                for (kq = 0; kq + 2 <= K4; kq += 2, src += 8, dst += 2 * step) {
                    const uint32_t w0 = kl_ld32(src), w1 = kl_ld32(src + 4);
                    dst[0] = (uint32_t)__sxtb16(w0);
                    dst[1] = (uint32_t)kl_sxtb16_ror8(w0);
                    dst[step] = (uint32_t)__sxtb16(w1);
                    dst[step + 1] = (uint32_t)kl_sxtb16_ror8(w1);
                }
                if (kq < K4) {
                    const uint32_t w0 = kl_ld32(src);
                    dst[0] = (uint32_t)__sxtb16(w0);
                    dst[1] = (uint32_t)kl_sxtb16_ror8(w0);
                }
            }
        } else {
            for (r = 0; r < R; r++) {
                const int8_t *rp = base + r * sp;
                for (kq = 0; kq < K4; kq++) {
                    const int8_t *e = rp + 4 * kq * sk;
                    xs[(kq * R + r) * 2] = kl_pack16(e[0], e[2 * sk]);
                    xs[(kq * R + r) * 2 + 1] = kl_pack16(e[sk], e[3 * sk]);
                }
            }
        }
        for (r = 0; r < R; r++)
            for (t = 4 * K4; t < K; t++)
                ((int16_t *)(xs + 2 * K4 * R))[(t - 4 * K4) * R + r] =
                    (int16_t)base[r * sp + t * sk];
    } else {
        const uint8_t *base = (const uint8_t *)g->p_base + p * sp;
        if (sk == 1) {
            /* row by row, two groups of 4 k per iteration (the layout is [k/4][row][2]) */
            const int32_t step = 2 * R;
            for (r = 0; r < R; r++) {
                const uint8_t *src = base + r * sp;
                uint32_t *dst = xs + 2 * r;
                for (kq = 0; kq + 2 <= K4; kq += 2, src += 8, dst += 2 * step) {
                    const uint32_t w0 = kl_ld32(src), w1 = kl_ld32(src + 4);
                    dst[0] = (uint32_t)__uxtb16(w0);
                    dst[1] = (uint32_t)kl_uxtb16_ror8(w0);
                    dst[step] = (uint32_t)__uxtb16(w1);
                    dst[step + 1] = (uint32_t)kl_uxtb16_ror8(w1);
                }
                if (kq < K4) {
                    const uint32_t w0 = kl_ld32(src);
                    dst[0] = (uint32_t)__uxtb16(w0);
                    dst[1] = (uint32_t)kl_uxtb16_ror8(w0);
                }
            }
        } else {
            for (r = 0; r < R; r++) {
                const uint8_t *rp = base + r * sp;
                for (kq = 0; kq < K4; kq++) {
                    const uint8_t *e = rp + 4 * kq * sk;
                    xs[(kq * R + r) * 2] = kl_pack16(e[0], e[2 * sk]);
                    xs[(kq * R + r) * 2 + 1] = kl_pack16(e[sk], e[3 * sk]);
                }
            }
        }
        for (r = 0; r < R; r++)
            for (t = 4 * K4; t < K; t++)
                ((int16_t *)(xs + 2 * K4 * R))[(t - 4 * K4) * R + r] =
                    (int16_t)base[r * sp + t * sk];
    }
}

/* The same for a constant R (6 or 4) and contiguous rows (p_sk == 1): two groups of 4 k per
 * iteration in assembly (2 LDR, 4 SXTB16/UXTB16, 2 STRD with post-increment: 5 instructions
 * per 4 bytes instead of 7). */
#define KL_EXP_LOOP(X)                                                                        \
    __asm__ volatile("1:\n\t"                                                                 \
                     "ldr %[w0], [%[src]], #4\n\t"                                            \
                     "ldr %[w1], [%[src]], #4\n\t" X "16 %[a], %[w0]\n\t" X                    \
                     "16 %[b], %[w0], ror #8\n\t"                                             \
                     "strd %[a], %[b], [%[d0]], %[inc]\n\t" X "16 %[a], %[w1]\n\t" X          \
                     "16 %[b], %[w1], ror #8\n\t"                                             \
                     "strd %[a], %[b], [%[d1]], %[inc]\n\t"                                   \
                     "subs %[n], %[n], #1\n\t"                                                \
                     "bne 1b\n\t"                                                             \
                     : [src] "+r"(src), [d0] "+r"(d0), [d1] "+r"(d1), [n] "+r"(n),             \
                       [w0] "=&r"(w0), [w1] "=&r"(w1), [a] "=&r"(a), [b] "=&r"(b)              \
                     : [inc] "I"(16 * R)                                                      \
                     : "cc", "memory")
KL_INLINE void kl_dsp_expand_rk(const kl_gemm_t *g, int32_t p, const int R,
                                uint32_t *KL_RESTRICT xs)
{
    const int32_t K = g->K, K4 = K >> 2, sp = g->p_sp;
    int32_t t;
    int r;
    if (g->p_sk != 1) {
        kl_dsp_expand(g, p, R, xs);
        return;
    }
    for (r = 0; r < R; r++) {
        const uint8_t *src = (const uint8_t *)g->p_base + (p + r) * sp;
        uint32_t *d0 = xs + 2 * r, *d1 = xs + 2 * r + 2 * R;
        int32_t n = K4 >> 1;
        uint32_t w0, w1, a, b;
        if (g->p_signed) {
            if (n > 0)
                KL_EXP_LOOP("sxtb");
            if (K4 & 1) {
                w0 = kl_ld32(src);
                src += 4;
                d0[0] = (uint32_t)__sxtb16(w0);
                d0[1] = (uint32_t)kl_sxtb16_ror8(w0);
            }
            for (t = 0; t < (K & 3); t++)
                ((int16_t *)(xs + 2 * K4 * R))[t * R + r] = (int16_t)((const int8_t *)src)[t];
        } else {
            if (n > 0)
                KL_EXP_LOOP("uxtb");
            if (K4 & 1) {
                w0 = kl_ld32(src);
                src += 4;
                d0[0] = (uint32_t)__uxtb16(w0);
                d0[1] = (uint32_t)kl_uxtb16_ror8(w0);
            }
            for (t = 0; t < (K & 3); t++)
                ((int16_t *)(xs + 2 * K4 * R))[t * R + r] = (int16_t)src[t];
        }
    }
}
static void kl_dsp_expand6(const kl_gemm_t *g, int32_t p, uint32_t *xs)
{
    kl_dsp_expand_rk(g, p, 6, xs);
}
static void kl_dsp_expand4(const kl_gemm_t *g, int32_t p, uint32_t *xs)
{
    kl_dsp_expand_rk(g, p, 4, xs);
}

/* Epilogue kinds of the DSP path, chosen once per call (kl_dsp_epi_kind). */
#define KL_EPI_GENERIC 0 /* kl_epi: any mode / parameter layout */
#define KL_EPI_S8 1      /* RQ8, prepared sh == 32, clip [-128, 127] (SSAT) */
#define KL_EPI_U8 2      /* RQ8, prepared sh == 32, clip [0, 255] (USAT) */

/* Inner loops over n groups of 4 k (n >= 1) for 6 and 4 expanded rows, as inline assembly:
 * GCC keeps neither the 6 accumulators nor the LDRD pairs in registers by itself (it spills
 * inside the loop, 0.5 MAC/instruction); this form gives 16 SMLAD + 8 LDRD + 2 LDR + 4 SXTB16
 * + 2 loop instructions per 8 k x 6 rows (48 MACs). Same instructions as the intrinsics
 * (SXTB16/UXTB16, SMLAD), only the register allocation is fixed. */
#define KL_STEP6(X)                                                                           \
    "ldr %[w], [%[qp]], #4\n\t" X "16 %[wl], %[w]\n\t" X "16 %[w], %[w], ror #8\n\t"          \
    "ldrd %[x0], %[x1], [%[xs]], #8\n\t"                                                      \
    "smlad %[a0], %[x0], %[wl], %[a0]\n\t"                                                    \
    "smlad %[a0], %[x1], %[w], %[a0]\n\t"                                                     \
    "ldrd %[x0], %[x1], [%[xs]], #8\n\t"                                                      \
    "smlad %[a1], %[x0], %[wl], %[a1]\n\t"                                                    \
    "smlad %[a1], %[x1], %[w], %[a1]\n\t"                                                     \
    "ldrd %[x0], %[x1], [%[xs]], #8\n\t"                                                      \
    "smlad %[a2], %[x0], %[wl], %[a2]\n\t"                                                    \
    "smlad %[a2], %[x1], %[w], %[a2]\n\t"                                                     \
    "ldrd %[x0], %[x1], [%[xs]], #8\n\t"                                                      \
    "smlad %[a3], %[x0], %[wl], %[a3]\n\t"                                                    \
    "smlad %[a3], %[x1], %[w], %[a3]\n\t"                                                     \
    "ldrd %[x0], %[x1], [%[xs]], #8\n\t"                                                      \
    "smlad %[a4], %[x0], %[wl], %[a4]\n\t"                                                    \
    "smlad %[a4], %[x1], %[w], %[a4]\n\t"                                                     \
    "ldrd %[x0], %[x1], [%[xs]], #8\n\t"                                                      \
    "smlad %[a5], %[x0], %[wl], %[a5]\n\t"                                                    \
    "smlad %[a5], %[x1], %[w], %[a5]\n\t"
#define KL_STEP4(X)                                                                           \
    "ldr %[w], [%[qp]], #4\n\t" X "16 %[wl], %[w]\n\t" X "16 %[w], %[w], ror #8\n\t"          \
    "ldrd %[x0], %[x1], [%[xs]], #8\n\t"                                                      \
    "smlad %[a0], %[x0], %[wl], %[a0]\n\t"                                                    \
    "smlad %[a0], %[x1], %[w], %[a0]\n\t"                                                     \
    "ldrd %[x0], %[x1], [%[xs]], #8\n\t"                                                      \
    "smlad %[a1], %[x0], %[wl], %[a1]\n\t"                                                    \
    "smlad %[a1], %[x1], %[w], %[a1]\n\t"                                                     \
    "ldrd %[x0], %[x1], [%[xs]], #8\n\t"                                                      \
    "smlad %[a2], %[x0], %[wl], %[a2]\n\t"                                                    \
    "smlad %[a2], %[x1], %[w], %[a2]\n\t"                                                     \
    "ldrd %[x0], %[x1], [%[xs]], #8\n\t"                                                      \
    "smlad %[a3], %[x0], %[wl], %[a3]\n\t"                                                    \
    "smlad %[a3], %[x1], %[w], %[a3]\n\t"

#define KL_ASM6(X, N2, ODD)                                                                   \
    do {                                                                                       \
        uint32_t w_, wl_, x0_, x1_;                                                            \
        int32_t n_ = (N2);                                                                     \
        if (n_ > 0)                                                                            \
            __asm__ volatile("1:\n\t" KL_STEP6(X) KL_STEP6(X) "subs %[n], %[n], #1\n\t"        \
                             "bne 1b\n\t"                                                      \
                             : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),     \
                               [a4] "+r"(a4), [a5] "+r"(a5), [qp] "+r"(qp), [xs] "+r"(xs),     \
                               [n] "+r"(n_), [w] "=&r"(w_), [wl] "=&r"(wl_), [x0] "=&r"(x0_),  \
                               [x1] "=&r"(x1_)                                                 \
                             :                                                                 \
                             : "cc", "memory");                                                \
        if (ODD)                                                                               \
            __asm__ volatile(KL_STEP6(X)                                                       \
                             : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),     \
                               [a4] "+r"(a4), [a5] "+r"(a5), [qp] "+r"(qp), [xs] "+r"(xs),     \
                               [w] "=&r"(w_), [wl] "=&r"(wl_), [x0] "=&r"(x0_),                \
                               [x1] "=&r"(x1_)                                                 \
                             :                                                                 \
                             : "memory");                                                      \
    } while (0)

#define KL_ASM4(X, N2, ODD)                                                                   \
    do {                                                                                       \
        uint32_t w_, wl_, x0_, x1_;                                                            \
        int32_t n_ = (N2);                                                                     \
        if (n_ > 0)                                                                            \
            __asm__ volatile("1:\n\t" KL_STEP4(X) KL_STEP4(X) "subs %[n], %[n], #1\n\t"        \
                             "bne 1b\n\t"                                                      \
                             : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),     \
                               [qp] "+r"(qp), [xs] "+r"(xs), [n] "+r"(n_), [w] "=&r"(w_),      \
                               [wl] "=&r"(wl_), [x0] "=&r"(x0_), [x1] "=&r"(x1_)               \
                             :                                                                 \
                             : "cc", "memory");                                                \
        if (ODD)                                                                               \
            __asm__ volatile(KL_STEP4(X)                                                       \
                             : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),     \
                               [qp] "+r"(qp), [xs] "+r"(xs), [w] "=&r"(w_), [wl] "=&r"(wl_),   \
                               [x0] "=&r"(x0_), [x1] "=&r"(x1_)                                \
                             :                                                                 \
                             : "memory");                                                      \
    } while (0)

/* One q against the R expanded rows. QS: Q signed. rp: prepared RQ of this column when the
 * RQ parameters do not vary along p (epi != KL_EPI_GENERIC). */
KL_INLINE void kl_dsp_col(const kl_gemm_t *g, int32_t p, int32_t q, const uint32_t *xs,
                          const int R, const int QS, int epi, kl_rqp_t rp)
{
    const int32_t K = g->K, K4 = K >> 2, Kr = K - 4 * K4;
    const uint8_t *qp = (const uint8_t *)g->q_base + q * g->q_sq;
    int32_t acc[KL_DSP_RMAX];
    int r;
    {
        int32_t c0 = g->q_corr ? g->q_corr[q * g->qc_s] : 0;
        KL_UNROLL
        for (r = 0; r < R; r++)
            acc[r] = c0 + (g->p_corr ? g->p_corr[(p + r) * g->pc_s] : 0);
    }
    {
        const uint8_t *qend = qp + 4 * K4;
        while (qp != qend) {
            uint32_t w = kl_ld32(qp);
            int32_t wl, wh;
            qp += 4;
            if (QS) {
                wl = __sxtb16(w);
                wh = kl_sxtb16_ror8(w);
            } else {
                wl = __uxtb16(w);
                wh = kl_uxtb16_ror8(w);
            }
            KL_UNROLL
            for (r = 0; r < R; r++) {
                acc[r] = __smlad((int16x2_t)xs[2 * r], wl, acc[r]);
                acc[r] = __smlad((int16x2_t)xs[2 * r + 1], wh, acc[r]);
            }
            xs += 2 * R;
        }
    }
    if (Kr) {
        const int16_t *xt = (const int16_t *)xs;
        int32_t t;
        for (t = 0; t < Kr; t++) {
            int32_t wv = QS ? (int32_t)((const int8_t *)qp)[t] : (int32_t)qp[t];
            KL_UNROLL
            for (r = 0; r < R; r++)
                acc[r] += xt[t * R + r] * wv;
        }
    }
    if (epi == KL_EPI_S8 || epi == KL_EPI_U8) {
        uint8_t *o = (uint8_t *)g->out + p * g->o_sp + q * g->o_sq;
        const int32_t osp = g->o_sp;
        if (g->m_sq != 0 || (g->add && g->a_sq != 0))
            rp = kl_rq_prep(g->mul[q * g->m_sq], g->add ? g->add[q * g->a_sq] : 0, g->shift);
        if (rp.sh == 32) {
            if (epi == KL_EPI_S8) {
                KL_UNROLL
                for (r = 0; r < R; r++)
                    o[r * osp] =
                        (uint8_t)__ssat((int32_t)(((int64_t)acc[r] * rp.m + rp.a) >> 32), 8);
            } else {
                KL_UNROLL
                for (r = 0; r < R; r++)
                    o[r * osp] =
                        (uint8_t)__usat((int32_t)(((int64_t)acc[r] * rp.m + rp.a) >> 32), 8);
            }
            return;
        }
    }
    {
        /* a copy, so that the address of acc does not escape and acc stays in registers */
        int32_t res[KL_DSP_RMAX];
        KL_UNROLL
        for (r = 0; r < R; r++)
            res[r] = acc[r];
        kl_epi(g, p, q, res, R);
    }
}

/* Which epilogue the DSP path can use for this call. */
static int kl_dsp_epi_kind(const kl_gemm_t *g)
{
    if (g->mode != KL_GEMM_RQ8 || g->m_sp != 0 || (g->add && g->a_sp != 0))
        return KL_EPI_GENERIC;
    if (g->lo == -128 && g->hi == 127)
        return KL_EPI_S8;
    if (g->lo == 0 && g->hi == 255)
        return KL_EPI_U8;
    return KL_EPI_GENERIC;
}

/* Rows functions for R = 6 / 4 (assembly inner loop). EPI is a compile-time constant so that
 * the q loop has no mode tests; everything that does not depend on q is hoisted. Fast
 * requantization: 5 instructions per output (MOV, MOV, SMLAL, SSAT/USAT, STRB), or 3 (SMMLAR,
 * SSAT/USAT, STRB) when the prepared 64-bit addend has low word 2^31 (add a multiple of
 * 2^shift, e.g. add = 0): then floor((acc*m + a)/2^32) = (a_hi*2^32 + acc*m + 2^31) >> 32. */
KL_INLINE int32_t kl_smmlar(int32_t x, int32_t m, int32_t a_hi)
{
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(x), "r"(m), "r"(a_hi));
    return r;
}


/* ---- whole column loop of a 6- or 4-row block in assembly ----------------------------------
 * GCC keeps the column-loop state on the stack around the inline-assembly inner loop (about
 * 100 instructions per output column at K = 64). These functions run the complete loop over
 * the columns q0..q1 of one block of R = 6 or 4 expanded rows: initial accumulators (column
 * and row corrections), the SMLAD loop (8 k per iteration, then one group of 4, then K % 4
 * scalar with SMLABB / SMLATB on the [t][row] int16 leftovers), and the epilogue:
 *   mm: RQ8 with a per-tensor prepared (m, a) whose low word is 2^31: SMMLAR + SSAT/USAT
 *   sl: RQ8 with a per-tensor prepared (m, a), sh == 32: SMLAL + SSAT/USAT
 *   st: int32 store, ad: int32 accumulate.
 * Registers: r0-r5 accumulators, r6/r7 Q word and its expansion, r8/r9 expanded P pair,
 * r10 Q pointer, r11 expanded P pointer, r12 counter, lr the state (kl_cols_t).
 * Per column: 21 (R=6) / 15 (R=4) instructions per 4 k plus about 50 around them. */
typedef struct {
    int32_t pc[6];        /*  0: row corrections */
    const uint8_t *qrow;  /* 24: Q row of the next column */
    int32_t q_sq;         /* 28: Q row stride (bytes) */
    const uint32_t *xs;   /* 32: expanded P rows */
    int32_t n2;           /* 36: iterations of 8 k */
    int32_t odd;          /* 40: one more group of 4 k */
    int32_t kr;           /* 44: K % 4 */
    const int32_t *qc;    /* 48: column correction of the next column */
    int32_t qc_s;         /* 52: its stride (bytes, 0: constant) */
    uint8_t *o;           /* 56: output of row 0, next column */
    int32_t osp;          /* 60: output row stride (bytes) */
    int32_t o_sq;         /* 64: output column stride (bytes) */
    int32_t m, ah, al;    /* 68, 72, 76: prepared requantization */
    int32_t ncols;        /* 80 */
} kl_cols_t;
typedef char kl_cols_layout_check[(sizeof(kl_cols_t) == 84) ? 1 : -1];

#define KL_CA_FNS(X, R)                                                                       \
    X(R, s, mm, s8) X(R, s, mm, u8) X(R, s, sl, s8) X(R, s, sl, u8) X(R, s, st, 0)             \
    X(R, s, ad, 0) X(R, u, mm, s8) X(R, u, mm, u8) X(R, u, sl, s8) X(R, u, sl, u8)             \
    X(R, u, st, 0) X(R, u, ad, 0)
#define KL_CA_DECL(R, q, e, t) void kl_c##R##_##q##_##e##_##t(kl_cols_t *c);
KL_CA_FNS(KL_CA_DECL, 6)
KL_CA_FNS(KL_CA_DECL, 4)

__asm__(
    "    .syntax unified\n"
    "    .thumb\n"
    /* one group of 4 k for R rows */
    "    .macro KLC_ROW a\n"
    "    ldrd    r8, r9, [r11], #8\n"
    "    smlad   \\a, r8, r7, \\a\n"
    "    smlad   \\a, r9, r6, \\a\n"
    "    .endm\n"
    "    .macro KLC_STEP x, R\n"
    "    ldr     r6, [r10], #4\n"
    "    \\x\\()16 r7, r6\n"
    "    \\x\\()16 r6, r6, ror #8\n"
    "    KLC_ROW r0\n"
    "    KLC_ROW r1\n"
    "    KLC_ROW r2\n"
    "    KLC_ROW r3\n"
    "    .if \\R == 6\n"
    "    KLC_ROW r4\n"
    "    KLC_ROW r5\n"
    "    .endif\n"
    "    .endm\n"
    /* epilogues; r8 = o (row 0 of this column), r9 = row stride */
    "    .macro KLC_MM1 sat, a, addr, off\n"
    "    smmlar  \\a, \\a, r6, r7\n"
    "    \\sat    \\a, #8, \\a\n"
    "    strb    \\a, [\\addr\\off]\n"
    "    .endm\n"
    "    .macro KLC_EPI_mm sat, R\n"
    "    ldrd    r6, r7, [lr, #68]\n"
    "    ldrd    r8, r9, [lr, #56]\n"
    "    KLC_MM1 \\sat, r0, r8, \n"
    "    KLC_MM1 \\sat, r1, r8, \", r9\"\n"
    "    add     r10, r8, r9, lsl #1\n"
    "    KLC_MM1 \\sat, r2, r10, \n"
    "    KLC_MM1 \\sat, r3, r10, \", r9\"\n"
    "    .if \\R == 6\n"
    "    add     r10, r10, r9, lsl #1\n"
    "    KLC_MM1 \\sat, r4, r10, \n"
    "    KLC_MM1 \\sat, r5, r10, \", r9\"\n"
    "    .endif\n"
    "    ldr     r10, [lr, #64]\n"
    "    add     r8, r8, r10\n"
    "    str     r8, [lr, #56]\n"
    "    .endm\n"
    "    .macro KLC_SL1 sat, a\n"
    "    mov     r11, r7\n"
    "    mov     r12, r8\n"
    "    smlal   r11, r12, \\a, r6\n"
    "    \\sat    r12, #8, r12\n"
    "    strb    r12, [r9]\n"
    "    add     r9, r9, r10\n"
    "    .endm\n"
    "    .macro KLC_EPI_sl sat, R\n"
    "    ldr     r6, [lr, #68]\n"
    "    ldrd    r8, r7, [lr, #72]\n"
    "    ldrd    r9, r10, [lr, #56]\n"
    "    KLC_SL1 \\sat, r0\n"
    "    KLC_SL1 \\sat, r1\n"
    "    KLC_SL1 \\sat, r2\n"
    "    KLC_SL1 \\sat, r3\n"
    "    .if \\R == 6\n"
    "    KLC_SL1 \\sat, r4\n"
    "    KLC_SL1 \\sat, r5\n"
    "    .endif\n"
    "    ldr     r10, [lr, #64]\n"
    "    ldr     r8, [lr, #56]\n"
    "    add     r8, r8, r10\n"
    "    str     r8, [lr, #56]\n"
    "    .endm\n"
    "    .macro KLC_EPI_st sat, R\n"
    "    ldrd    r8, r9, [lr, #56]\n"
    "    str     r0, [r8]\n"
    "    str     r1, [r8, r9]\n"
    "    add     r10, r8, r9, lsl #1\n"
    "    str     r2, [r10]\n"
    "    str     r3, [r10, r9]\n"
    "    .if \\R == 6\n"
    "    add     r10, r10, r9, lsl #1\n"
    "    str     r4, [r10]\n"
    "    str     r5, [r10, r9]\n"
    "    .endif\n"
    "    ldr     r10, [lr, #64]\n"
    "    add     r8, r8, r10\n"
    "    str     r8, [lr, #56]\n"
    "    .endm\n"
    "    .macro KLC_AD1 a, addr, off\n"
    "    ldr     r6, [\\addr\\off]\n"
    "    add     \\a, \\a, r6\n"
    "    str     \\a, [\\addr\\off]\n"
    "    .endm\n"
    "    .macro KLC_EPI_ad sat, R\n"
    "    ldrd    r8, r9, [lr, #56]\n"
    "    KLC_AD1 r0, r8, \n"
    "    KLC_AD1 r1, r8, \", r9\"\n"
    "    add     r10, r8, r9, lsl #1\n"
    "    KLC_AD1 r2, r10, \n"
    "    KLC_AD1 r3, r10, \", r9\"\n"
    "    .if \\R == 6\n"
    "    add     r10, r10, r9, lsl #1\n"
    "    KLC_AD1 r4, r10, \n"
    "    KLC_AD1 r5, r10, \", r9\"\n"
    "    .endif\n"
    "    ldr     r10, [lr, #64]\n"
    "    add     r8, r8, r10\n"
    "    str     r8, [lr, #56]\n"
    "    .endm\n"
    /* one function: name, rows, unpack (sxtb/uxtb), leftover load (ldrsb/ldrb), epilogue */
    "    .macro KLC_FN name, R, x, ldb, epi, sat\n"
    "    .section .text.\\name,\"ax\",%progbits\n"
    "    .align 2\n"
    "    .global \\name\n"
    "    .hidden \\name\n"
    "    .thumb_func\n"
    "    .type \\name, %function\n"
    "\\name:\n"
    "    push    {r4-r11, lr}\n"
    "    mov     lr, r0\n"
    "1:\n"
    "    ldrd    r6, r7, [lr, #48]\n"
    "    ldr     r12, [r6]\n"
    "    add     r6, r6, r7\n"
    "    str     r6, [lr, #48]\n"
    "    .if \\R == 6\n"
    "    ldmia   lr, {r0-r5}\n"
    "    .else\n"
    "    ldmia   lr, {r0-r3}\n"
    "    .endif\n"
    "    add     r0, r0, r12\n"
    "    add     r1, r1, r12\n"
    "    add     r2, r2, r12\n"
    "    add     r3, r3, r12\n"
    "    .if \\R == 6\n"
    "    add     r4, r4, r12\n"
    "    add     r5, r5, r12\n"
    "    .endif\n"
    "    ldrd    r10, r7, [lr, #24]\n"
    "    add     r7, r10, r7\n"
    "    str     r7, [lr, #24]\n"
    "    ldrd    r11, r12, [lr, #32]\n"
    "    cmp     r12, #0\n"
    "    beq     3f\n"
    "2:\n"
    "    KLC_STEP \\x, \\R\n"
    "    KLC_STEP \\x, \\R\n"
    "    subs    r12, r12, #1\n"
    "    bne     2b\n"
    "3:\n"
    "    ldr     r12, [lr, #40]\n"
    "    cmp     r12, #0\n"
    "    beq     4f\n"
    "    KLC_STEP \\x, \\R\n"
    "4:\n"
    "    ldr     r12, [lr, #44]\n"
    "    cmp     r12, #0\n"
    "    beq     6f\n"
    "5:\n"
    "    \\ldb    r6, [r10], #1\n"
    "    ldr     r8, [r11], #4\n"
    "    smlabb  r0, r8, r6, r0\n"
    "    smlatb  r1, r8, r6, r1\n"
    "    ldr     r8, [r11], #4\n"
    "    smlabb  r2, r8, r6, r2\n"
    "    smlatb  r3, r8, r6, r3\n"
    "    .if \\R == 6\n"
    "    ldr     r8, [r11], #4\n"
    "    smlabb  r4, r8, r6, r4\n"
    "    smlatb  r5, r8, r6, r5\n"
    "    .endif\n"
    "    subs    r12, r12, #1\n"
    "    bne     5b\n"
    "6:\n"
    "    KLC_EPI_\\epi \\sat, \\R\n"
    "    ldr     r6, [lr, #80]\n"
    "    subs    r6, r6, #1\n"
    "    str     r6, [lr, #80]\n"
    "    bne     1b\n"
    "    pop     {r4-r11, pc}\n"
    "    .size \\name, .-\\name\n"
    "    .endm\n"
    "    .macro KLC_FNS R\n"
    "    KLC_FN kl_c\\R\\()_s_mm_s8, \\R, sxtb, ldrsb, mm, ssat\n"
    "    KLC_FN kl_c\\R\\()_s_mm_u8, \\R, sxtb, ldrsb, mm, usat\n"
    "    KLC_FN kl_c\\R\\()_s_sl_s8, \\R, sxtb, ldrsb, sl, ssat\n"
    "    KLC_FN kl_c\\R\\()_s_sl_u8, \\R, sxtb, ldrsb, sl, usat\n"
    "    KLC_FN kl_c\\R\\()_s_st_0, \\R, sxtb, ldrsb, st, ssat\n"
    "    KLC_FN kl_c\\R\\()_s_ad_0, \\R, sxtb, ldrsb, ad, ssat\n"
    "    KLC_FN kl_c\\R\\()_u_mm_s8, \\R, uxtb, ldrb, mm, ssat\n"
    "    KLC_FN kl_c\\R\\()_u_mm_u8, \\R, uxtb, ldrb, mm, usat\n"
    "    KLC_FN kl_c\\R\\()_u_sl_s8, \\R, uxtb, ldrb, sl, ssat\n"
    "    KLC_FN kl_c\\R\\()_u_sl_u8, \\R, uxtb, ldrb, sl, usat\n"
    "    KLC_FN kl_c\\R\\()_u_st_0, \\R, uxtb, ldrb, st, ssat\n"
    "    KLC_FN kl_c\\R\\()_u_ad_0, \\R, uxtb, ldrb, ad, ssat\n"
    "    .endm\n"
    "    KLC_FNS 6\n"
    "    KLC_FNS 4\n"
    "    .text\n");

typedef void (*kl_cols_fn)(kl_cols_t *c);
/* [R == 4][Q unsigned][epilogue: mm s8, mm u8, sl s8, sl u8, st, ad] */
static const kl_cols_fn kl_cols_fns[2][2][6] = {
    {{kl_c6_s_mm_s8, kl_c6_s_mm_u8, kl_c6_s_sl_s8, kl_c6_s_sl_u8, kl_c6_s_st_0, kl_c6_s_ad_0},
     {kl_c6_u_mm_s8, kl_c6_u_mm_u8, kl_c6_u_sl_s8, kl_c6_u_sl_u8, kl_c6_u_st_0, kl_c6_u_ad_0}},
    {{kl_c4_s_mm_s8, kl_c4_s_mm_u8, kl_c4_s_sl_s8, kl_c4_s_sl_u8, kl_c4_s_st_0, kl_c4_s_ad_0},
     {kl_c4_u_mm_s8, kl_c4_u_mm_u8, kl_c4_u_sl_s8, kl_c4_u_sl_u8, kl_c4_u_st_0, kl_c4_u_ad_0}}};

/* Runs the R-row block (R = 6 or 4) p.. over the columns q0..q1 in assembly when the
 * epilogue allows it (returns 0 otherwise). The P rows must already be expanded. */
static int kl_dsp_cols_asm(const kl_gemm_t *g, int32_t p, int32_t q0, int32_t q1, const int R,
                           const int QS, const int EPI, kl_rqp_t rp, const int32_t *pc)
{
    static const int32_t zero = 0;
    const int32_t K = g->K, K4 = K >> 2;
    kl_cols_t c;
    int e, r;
    if (g->mode == KL_GEMM_I32_STORE)
        e = 4;
    else if (g->mode == KL_GEMM_I32_ADD)
        e = 5;
    else if (EPI != KL_EPI_GENERIC && g->m_sq == 0 && (!g->add || g->a_sq == 0) && rp.sh == 32)
        e = ((uint32_t)rp.a == 0x80000000u ? 0 : 2) + (EPI == KL_EPI_U8);
    else
        return 0;
    for (r = 0; r < R; r++)
        c.pc[r] = pc[r];
    c.qrow = (const uint8_t *)g->q_base + q0 * g->q_sq;
    c.q_sq = g->q_sq;
    c.xs = (const uint32_t *)g->scratch;
    c.n2 = K4 >> 1;
    c.odd = K4 & 1;
    c.kr = K & 3;
    c.qc = g->q_corr ? g->q_corr + q0 * g->qc_s : &zero;
    c.qc_s = g->q_corr ? 4 * g->qc_s : 0;
    if (e >= 4) {
        c.o = (uint8_t *)((int32_t *)g->out + p * g->o_sp + q0 * g->o_sq);
        c.osp = 4 * g->o_sp;
        c.o_sq = 4 * g->o_sq;
    } else {
        c.o = (uint8_t *)g->out + p * g->o_sp + q0 * g->o_sq;
        c.osp = g->o_sp;
        c.o_sq = g->o_sq;
    }
    c.m = rp.m;
    c.ah = (int32_t)(rp.a >> 32);
    c.al = (int32_t)(uint32_t)rp.a;
    c.ncols = q1 - q0;
    kl_cols_fns[R == 4][!QS][e](&c);
    return 1;
}

KL_INLINE void kl_dsp_block(const kl_gemm_t *gp, int32_t p, int32_t q0, int32_t q1, const int R,
                            const int QS, const int EPI)
{
    const int32_t K = gp->K, K4 = K >> 2, Kr = K & 3, n2 = K4 >> 1, odd = K4 & 1;
    const int32_t q_sq = gp->q_sq, osp = gp->o_sp, o_sq = gp->o_sq;
    static const int32_t zero = 0;
    const int32_t *qc = gp->q_corr ? gp->q_corr + q0 * gp->qc_s : &zero;
    const int32_t qc_s = gp->q_corr ? gp->qc_s : 0;
    const int per_col = EPI != KL_EPI_GENERIC && (gp->m_sq != 0 || (gp->add && gp->a_sq != 0));
    const int32_t *mulp = gp->mul + (per_col ? q0 * gp->m_sq : 0);
    const int32_t *addp = gp->add ? gp->add + (per_col ? q0 * gp->a_sq : 0) : &zero;
    const int32_t m_sq = per_col ? gp->m_sq : 0, a_sq = gp->add && per_col ? gp->a_sq : 0;
    const int32_t shift = gp->shift;
    const uint32_t *const xs0 = (const uint32_t *)gp->scratch;
    const uint8_t *qrow = (const uint8_t *)gp->q_base + q0 * q_sq;
    uint8_t *o = (uint8_t *)gp->out + p * osp + q0 * o_sq;
    const int has_pc = gp->p_corr != 0;
    kl_rqp_t rp = {0, 0, 0};
    int32_t pc[KL_DSP_RMAX];
    int32_t q;
    int r;
    if (EPI != KL_EPI_GENERIC)
        rp = kl_rq_prep(mulp[0], addp[0], shift);
    KL_UNROLL
    for (r = 0; r < R; r++)
        pc[r] = has_pc ? gp->p_corr[(p + r) * gp->pc_s] : 0;
    if (R == 6)
        kl_dsp_expand6(gp, p, (uint32_t *)gp->scratch);
    else if (R == 4)
        kl_dsp_expand4(gp, p, (uint32_t *)gp->scratch);
    else
        kl_dsp_expand(gp, p, R, (uint32_t *)gp->scratch);
    if ((R == 6 || R == 4) && kl_dsp_cols_asm(gp, p, q0, q1, R, QS, EPI, rp, pc))
        return;
    for (q = q0; q < q1; q++, qrow += q_sq, o += o_sq, qc += qc_s) {
        const int32_t c0 = *qc;
        int32_t a0 = c0, a1 = c0, a2 = c0, a3 = c0, a4 = c0, a5 = c0;
        const uint8_t *qp = qrow;
        const uint32_t *xs = xs0;
        if (has_pc) {
            a0 += pc[0];
            a1 += pc[1 % R];
            a2 += pc[2 % R];
            a3 += pc[3 % R];
            a4 += pc[4 % R];
            a5 += pc[5 % R];
        }
        if (R == 6) {
            if (QS)
                KL_ASM6("sxtb", n2, odd);
            else
                KL_ASM6("uxtb", n2, odd);
        } else {
            if (QS)
                KL_ASM4("sxtb", n2, odd);
            else
                KL_ASM4("uxtb", n2, odd);
        }
        if (Kr) {
            const int16_t *xt = (const int16_t *)xs;
            int32_t t;
            for (t = 0; t < Kr; t++) {
                int32_t wv = QS ? (int32_t)((const int8_t *)qp)[t] : (int32_t)qp[t];
                a0 += xt[t * R + 0] * wv;
                a1 += xt[t * R + 1] * wv;
                a2 += xt[t * R + 2] * wv;
                a3 += xt[t * R + 3] * wv;
                if (R == 6) {
                    a4 += xt[t * R + 4] * wv;
                    a5 += xt[t * R + 5] * wv;
                }
            }
        }
        if (EPI != KL_EPI_GENERIC) {
            if (per_col)
                rp = kl_rq_prep(mulp[(q - q0) * m_sq], addp[(q - q0) * a_sq], shift);
            if (rp.sh == 32) {
#define KL_SAT(v_) (EPI == KL_EPI_S8 ? __ssat((v_), 8) : __usat((v_), 8))
                if ((uint32_t)rp.a == 0x80000000u) {
                    const int32_t ah = (int32_t)(rp.a >> 32), m = rp.m;
#define KL_Y(v_) ((uint8_t)KL_SAT(kl_smmlar((v_), m, ah)))
                    o[0] = KL_Y(a0);
                    o[osp] = KL_Y(a1);
                    o[2 * osp] = KL_Y(a2);
                    o[3 * osp] = KL_Y(a3);
                    if (R == 6) {
                        o[4 * osp] = KL_Y(a4);
                        o[5 * osp] = KL_Y(a5);
                    }
#undef KL_Y
                } else {
#define KL_Y(v_) ((uint8_t)KL_SAT((int32_t)(((int64_t)(v_) * rp.m + rp.a) >> 32)))
                    o[0] = KL_Y(a0);
                    o[osp] = KL_Y(a1);
                    o[2 * osp] = KL_Y(a2);
                    o[3 * osp] = KL_Y(a3);
                    if (R == 6) {
                        o[4 * osp] = KL_Y(a4);
                        o[5 * osp] = KL_Y(a5);
                    }
#undef KL_Y
                }
#undef KL_SAT
                continue;
            }
        }
        {
            int32_t res[KL_DSP_RMAX];
            res[0] = a0;
            res[1 % R] = a1;
            res[2 % R] = a2;
            res[3 % R] = a3;
            if (R == 6) {
                res[4 % R] = a4;
                res[5 % R] = a5;
            }
            kl_epi(gp, p, q, res, R);
        }
    }
}

#define KL_DSP_BLOCK_FN(NAME, R, QS)                                                          \
    static void NAME(const kl_gemm_t *g, int32_t p, int32_t q0, int32_t q1)                    \
    {                                                                                          \
        switch (kl_dsp_epi_kind(g)) {                                                          \
        case KL_EPI_S8:                                                                        \
            kl_dsp_block(g, p, q0, q1, R, QS, KL_EPI_S8);                                      \
            break;                                                                             \
        case KL_EPI_U8:                                                                        \
            kl_dsp_block(g, p, q0, q1, R, QS, KL_EPI_U8);                                      \
            break;                                                                             \
        default:                                                                               \
            kl_dsp_block(g, p, q0, q1, R, QS, KL_EPI_GENERIC);                                 \
            break;                                                                             \
        }                                                                                      \
    }
KL_DSP_BLOCK_FN(kl_dsp_rows_max_1, KL_DSP_RMAX, 1)
KL_DSP_BLOCK_FN(kl_dsp_rows4_1, 4, 1)
KL_DSP_BLOCK_FN(kl_dsp_rows_max_0, KL_DSP_RMAX, 0)
KL_DSP_BLOCK_FN(kl_dsp_rows4_0, 4, 0)

#define KL_DSP_ROWS(NAME, R, QS)                                                              \
    static void NAME(const kl_gemm_t *gp, int32_t p, int32_t q0, int32_t q1)                   \
    {                                                                                          \
        const kl_gemm_t gl = *gp; /* local: output stores cannot alias it */                   \
        const kl_gemm_t *g = &gl;                                                              \
        int32_t q;                                                                             \
        const int epi = kl_dsp_epi_kind(g);                                                    \
        kl_rqp_t rp = {0, 0, 0};                                                               \
        if (epi != KL_EPI_GENERIC)                                                             \
            rp = kl_rq_prep(g->mul[0], g->add ? g->add[0] : 0, g->shift);                      \
        kl_dsp_expand(g, p, R, (uint32_t *)g->scratch);                                        \
        for (q = q0; q < q1; q++)                                                              \
            kl_dsp_col(g, p, q, (const uint32_t *)g->scratch, R, QS, epi, rp);                 \
    }
KL_DSP_ROWS(kl_dsp_rows2_1, 2, 1)
KL_DSP_ROWS(kl_dsp_rows1_1, 1, 1)
KL_DSP_ROWS(kl_dsp_rows2_0, 2, 0)
KL_DSP_ROWS(kl_dsp_rows1_0, 1, 0)

static void kl_gemm_dsp(const kl_gemm_t *g, int32_t p0, int32_t p1, int32_t q0, int32_t q1)
{
    int32_t p = p0;
    if (g->q_signed) {
        /* a remainder of 2 rows after the 6-row blocks: the last 8 rows as 4 + 4 */
        const int32_t p6 = (p1 - p0) % 6 == 2 && p1 - p0 >= 8 ? p1 - 8 : p1;
        for (; p + KL_DSP_RMAX <= p6; p += KL_DSP_RMAX)
            kl_dsp_rows_max_1(g, p, q0, q1);
        while (p + 4 <= p1) {
            kl_dsp_rows4_1(g, p, q0, q1);
            p += 4;
        }
        if (p + 2 <= p1) {
            kl_dsp_rows2_1(g, p, q0, q1);
            p += 2;
        }
        if (p < p1)
            kl_dsp_rows1_1(g, p, q0, q1);
    } else {
        /* a remainder of 2 rows after the 6-row blocks: the last 8 rows as 4 + 4 */
        const int32_t p6 = (p1 - p0) % 6 == 2 && p1 - p0 >= 8 ? p1 - 8 : p1;
        for (; p + KL_DSP_RMAX <= p6; p += KL_DSP_RMAX)
            kl_dsp_rows_max_0(g, p, q0, q1);
        while (p + 4 <= p1) {
            kl_dsp_rows4_0(g, p, q0, q1);
            p += 4;
        }
        if (p + 2 <= p1) {
            kl_dsp_rows2_0(g, p, q0, q1);
            p += 2;
        }
        if (p < p1)
            kl_dsp_rows1_0(g, p, q0, q1);
    }
}
#endif /* KL_ARM_DSP */

/* XpulpV2 (GAP9) place: a pv.sdotsp.b / pv.sdotusp.b inner loop (__builtin_pulp_sdotsp4 on
 * 4 packed int8 of P and Q, no expansion, no scratch) belongs here, behind KL_USE_XPULPV2.
 * It is NOT written yet: this machine's riscv64-unknown-elf-gcc has no XpulpV2 builtins
 * (-march=...xpulpv2 is accepted and provides nothing), so it could not be verified. With
 * KL_USE_XPULPV2 defined the portable path below is used, which is bit-exact. */
void kl_gemm_block(const kl_gemm_t *g, int32_t p0, int32_t p1, int32_t q0, int32_t q1)
{
    if (p0 >= p1 || q0 >= q1)
        return;
#if KL_ARM_DSP
    if (g->scratch) {
        kl_gemm_dsp(g, p0, p1, q0, q1);
        return;
    }
#endif
    if (g->p_signed) {
        if (g->q_signed)
            kl_gemm_port_ss(g, p0, p1, q0, q1);
        else
            kl_gemm_port_su(g, p0, p1, q0, q1);
    } else {
        if (g->q_signed)
            kl_gemm_port_us(g, p0, p1, q0, q1);
        else
            kl_gemm_port_uu(g, p0, p1, q0, q1);
    }
}
