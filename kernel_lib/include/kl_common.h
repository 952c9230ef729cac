/* kl_common.h - shared types and inline helpers of the int8 kernel library.
 *
 * Integer semantics: ../../docs/kernels.md and planner/golden/ops.py (the executable
 * specification; every kernel here is bit-exact with it).
 *
 * Conventions
 *  - C99, no libc, no malloc, no VLAs. Right shifts of negative values are arithmetic
 *    (GCC/Clang define it so; the library relies on it).
 *  - Every kernel takes (int core_id, int n_cores) as its last arguments and computes only its
 *    own share; the shares of cores 0..n_cores-1 are disjoint and cover the whole output.
 *  - Strides are in ELEMENTS of the operand's type, not bytes.
 *  - 8-bit outputs whose signedness is decided by the requantization parameters (rq->is_signed)
 *    are passed as void*: int8_t when signed, uint8_t when unsigned.
 */
#ifndef KL_COMMON_H
#define KL_COMMON_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define KL_INLINE static inline __attribute__((always_inline))
#define KL_RESTRICT __restrict__
/* full unrolling of the small constant-trip register-blocking loops */
#define KL_UNROLL _Pragma("GCC unroll 8")
#else
#define KL_INLINE static inline
#define KL_RESTRICT
#define KL_UNROLL
#endif

/* Arm DSP path (Cortex-M4/M7 with the DSP extension), unless explicitly disabled. */
#if defined(__ARM_FEATURE_DSP) && !defined(KL_NO_DSP)
#define KL_ARM_DSP 1
#else
#define KL_ARM_DSP 0
#endif

/* ------------------------------------------------------------------------------------------ */
/* Requantization parameters: y = clip((x*mul + add + 2^(shift-1)) >> shift)                 */
/* (no rounding term when shift == 0), clip to [-c, c-1] with c = ceil(n/2) when signed,      */
/* to [0, n-1] when unsigned. The product is formed in 64 bits.                               */
/*                                                                                            */
/* mul/add element for output element (batch b, row r, column c) is                           */
/*     mul[b*mul_sb + r*mul_sr + c*mul_sc],  add[b*add_sb + r*add_sr + c*add_sc]              */
/* so per-tensor = strides (0,0,0); per-row = (0,1,0); per-column / per-output-feature =       */
/* (0,0,1); per-head of a batched matmul = (1,0,0). A head slice / row tile of a larger       */
/* tensor is addressed by offsetting the pointers (mul + r0*mul_sr + c0*mul_sc): no copy.     */
/* "row" and "column" always refer to the kernel's OUTPUT matrix.                             */
/* add == NULL means add = 0.                                                                 */
/* ------------------------------------------------------------------------------------------ */
typedef struct kl_rq {
    const int32_t *mul;
    const int32_t *add;
    int32_t mul_sb, mul_sr, mul_sc;
    int32_t add_sb, add_sr, add_sc;
    int32_t shift;      /* log2(div), 0..62 */
    int32_t n_levels;   /* 2..256 for 8-bit outputs */
    int32_t is_signed;  /* 1: signed output (int8_t), 0: unsigned (uint8_t) */
} kl_rq_t;

/* Clip bounds of an n-level tensor (QuantLib's ceil(n/2) for odd signed n). */
KL_INLINE int32_t kl_qlo(int32_t n_levels, int32_t is_signed)
{
    return is_signed ? -((n_levels + 1) >> 1) : 0;
}
KL_INLINE int32_t kl_qhi(int32_t n_levels, int32_t is_signed)
{
    return is_signed ? ((n_levels + 1) >> 1) - 1 : n_levels - 1;
}

KL_INLINE int32_t kl_clip32(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* Reference form of the requantization of one value (any mul/add/shift). */
KL_INLINE int32_t kl_requant1(int32_t x, int32_t mul, int32_t add, int32_t shift, int32_t lo,
                              int32_t hi)
{
    int64_t t = (int64_t)x * mul + add;
    if (shift > 0)
        t = (t + ((int64_t)1 << (shift - 1))) >> shift;
    return t < lo ? lo : (t > hi ? hi : (int32_t)t);
}

/* Prepared form of one (mul, add, shift): y = ((int64)x*m + a) >> sh, exactly equal to
 * kl_requant1 before clipping. When sh >= 32 the result is (int32)(t >> 32) >> (sh - 32),
 * which compiles to SMLAL + ASR on Arm and MUL/MULH + add on RISC-V (no 64-bit shifts).
 * For shift <= 32 and |mul * 2^(32-shift)| <= 2^30 the parameters are pre-scaled by
 * 2^(32-shift) so that sh == 32; for shift > 32 they are used as they are; otherwise (shift 0,
 * or a large mul with a small shift) the generic 64-bit path is used. */
typedef struct kl_rqp {
    int64_t a;
    int32_t m;
    int32_t sh;
} kl_rqp_t;

KL_INLINE kl_rqp_t kl_rq_prep(int32_t mul, int32_t add, int32_t shift)
{
    kl_rqp_t p;
    int64_t rnd = shift > 0 ? ((int64_t)1 << (shift - 1)) : 0;
    if (shift > 32) {
        p.m = mul;
        p.a = (int64_t)add + rnd;
        p.sh = shift;
    } else if (shift >= 1) {
        int64_t ms = (int64_t)mul * ((int64_t)1 << (32 - shift));
        if (ms <= ((int64_t)1 << 30) && ms >= -((int64_t)1 << 30)) {
            p.m = (int32_t)ms;
            p.a = ((int64_t)add + rnd) * ((int64_t)1 << (32 - shift));
            p.sh = 32;
        } else {
            p.m = mul;
            p.a = (int64_t)add + rnd;
            p.sh = shift;
        }
    } else {
        p.m = mul;
        p.a = add;
        p.sh = 0;
    }
    return p;
}

KL_INLINE int32_t kl_rq_apply(int32_t x, kl_rqp_t p, int32_t lo, int32_t hi)
{
    int64_t t = (int64_t)x * p.m + p.a;
    if (p.sh >= 32) {
        int32_t v = (int32_t)(t >> 32) >> (p.sh - 32);
        return kl_clip32(v, lo, hi);
    }
    t >>= p.sh;
    return t < lo ? lo : (t > hi ? hi : (int32_t)t);
}

/* Balanced split of `total` items over n_cores: sizes differ by at most one. */
KL_INLINE void kl_split(int32_t total, int core_id, int n_cores, int32_t *lo, int32_t *hi)
{
    if (n_cores <= 1) {
        *lo = 0;
        *hi = total;
        return;
    }
    if (core_id < 0 || core_id >= n_cores) {
        *lo = *hi = 0;
        return;
    }
    /* 32-bit arithmetic (no libgcc division call): total * n_cores < 2^31 */
    *lo = (total * core_id) / n_cores;
    *hi = (total * (core_id + 1)) / n_cores;
}

/* Store an 8-bit value already clipped to its range. */
KL_INLINE void kl_store8(void *y, int32_t idx, int32_t v)
{
    ((uint8_t *)y)[idx] = (uint8_t)v;
}

#ifdef __cplusplus
}
#endif
#endif /* KL_COMMON_H */
