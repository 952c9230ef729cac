/* calib_harness.c - runs kernel_lib calls one by one between prof_start/prof_stop, for
 * `planner calibrate` (planner/calibrate.py), which generates the case table calib_cases.h and
 * reads one instruction-count region per case (planner/qemu/icount_plugin.c).
 *
 * A case row: {kind, core, n_cores, data center, data spread, data signed, p0, p1, ...}. The kernel is called as the generated code
 * calls it for one tile, with (core, n_cores): on a multi-core model planner/calibrate.py asks for
 * the busiest core's share (the last core: kl_split gives it ceil(rows / n_cores)). Data:
 * pseudo-random int8 (xorshift, reseeded per case), per-tensor requantization with the
 * multipliers the case gives; constants that are model constants in the generated code (the
 * softmax table) are prepared outside the region. Output: "R <case>" per case, "DONE <n>".
 */
#include <stdint.h>

#include "calib_cases.h"
#include "kernel_lib.h"
#include "platform.h"
#include "textout.h"

enum {
    C_EMPTY = 0,      /* nothing: the markers' own instructions */
    C_LINEAR = 1,     /* S N K kt xs trans out_i32 has_bias mul sh rq_mode (0, 1: along N, 2: S) */
    C_MATMUL = 2,     /* B M N K a_signed b_signed b_trans mul sh */
    C_MATMUL_I32 = 3, /* B M N K b_trans mul sh */
    C_LAYERNORM = 4,  /* rows L d_log2 n_levels */
    C_GELU = 5,       /* rows cols b one fused_rq mul sh */
    C_ADD = 6,        /* rows cols a_signed b_signed mul sh */
    C_REQUANT = 7,    /* rows cols mul sh */
    C_ISOFTMAX = 8,   /* rows L A B C log2 n_levels */
    C_ITAMAX = 9,     /* rows L n_levels */
    C_ITAPARTIAL = 10, /* rows L group_width n_levels */
    C_SMROWS = 11,    /* rows L kind A B C log2 group_width n_levels */
    C_CHUNK = 12,     /* rows S D P E_out fwsa row_term kind A B C log2 group_width n_levels
                         q_signed mul_s sh_s mul_v sh_v wide mul_i sh_i rq_i_cols */
    C_FINALIZE = 13,  /* rows cols has_bias mul sh */
    C_LN_QDQ = 14,    /* rows L x_type in_shift eps d_log2 n_levels */
    C_LUT = 15,       /* rows cols x_signed */
    C_ADD_X = 16,     /* rows cols a_type b_type y_type mul_a sh_a mul_b sh_b mul_o sh_o */
    C_ISOFTMAX16 = 17 /* rows L A B C log2 n_levels */
};

#ifndef CAL_ARENA
#define CAL_ARENA (1u << 20)
#endif
#define KL_ARENA_BYTES CAL_ARENA
#include "arena.h"

static uint32_t rs;
static uint32_t rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 17;
    rs ^= rs << 5;
    return rs;
}

/* the data of a case: uniform bytes (d_mag == 0), or center + the mean of two uniform values in
 * [-mag, mag] (std mag / sqrt(6)), clipped to the operand type's range: the spread of the
 * layer's real input, so that data-dependent branches (clipping, signs) behave as in the
 * generated code */
static int32_t d_center, d_mag, d_signed;
static int32_t rnd_val(int32_t lo, int32_t hi)
{
    int32_t v = d_center + ((int32_t)(rnd() % (uint32_t)(2 * d_mag + 1)) - d_mag +
                            (int32_t)(rnd() % (uint32_t)(2 * d_mag + 1)) - d_mag) / 2;
    return v < lo ? lo : (v > hi ? hi : v);
}
static void *rnd8(uint32_t n)
{
    uint8_t *p = (uint8_t *)arena_alloc(n);
    uint32_t i;
    for (i = 0; i < n; i++)
        p[i] = d_mag ? (uint8_t)(d_signed ? rnd_val(-128, 127) : rnd_val(0, 255)) : (uint8_t)rnd();
    return p;
}
static int32_t *rnd32(uint32_t n, int32_t mag)
{
    int32_t *p = (int32_t *)arena_alloc(4 * n);
    uint32_t i;
    for (i = 0; i < n; i++)
        p[i] = (int32_t)(rnd() % (uint32_t)(2 * mag + 1)) - mag;
    return p;
}

static int16_t *rnd16(uint32_t n, int32_t mag)
{
    int16_t *p = (int16_t *)arena_alloc(2 * n);
    uint32_t i;
    for (i = 0; i < n; i++)
        p[i] = d_mag ? (int16_t)rnd_val(-32768, 32767)
                     : (int16_t)((int32_t)(rnd() % (uint32_t)(2 * mag + 1)) - mag);
    return p;
}

/* a per-tensor requantization: y = clip((x * mul + 2^(sh-1)) >> sh), 256 levels */
static kl_rq_t mk_rq(int32_t mul, int32_t sh, int is_signed)
{
    kl_rq_t r;
    int32_t *m = (int32_t *)arena_alloc(8);
    m[0] = mul;
    m[1] = 0;
    r.mul = m;
    r.add = m + 1; /* a zero add vector, as the generated code always passes one */
    r.mul_sb = r.mul_sr = r.mul_sc = 0;
    r.add_sb = r.add_sr = r.add_sc = 0;
    r.shift = sh;
    r.n_levels = 256;
    r.is_signed = is_signed;
    return r;
}

static void *mm_scratch(int32_t K, int n_cores)
{
    uint32_t n = (uint32_t)KL_MM_SCRATCH_PER_CORE(K) * (uint32_t)n_cores;
    (void)K;
    return n ? arena_alloc(n) : 0; /* NULL: the portable path (no DSP scratch on this target) */
}

/* per-feature (mode 1: along N) or per-row (mode 2: along S) multipliers around mul */
static void rq_vary(kl_rq_t *r, int32_t mode, int32_t S, int32_t N, int trans)
{
    const int32_t n = mode == 1 ? N : S;
    int32_t *m, i;
    if (mode == 0)
        return;
    m = (int32_t *)arena_alloc((uint32_t)(4 * n));
    for (i = 0; i < n; i++)
        m[i] = r->mul[0] + (int32_t)(rnd() % 64u) - 32;
    r->mul = m;
    if ((mode == 1) != (trans != 0))
        r->mul_sc = 1; /* along the output's columns */
    else
        r->mul_sr = 1; /* along its rows */
}

static void linear(const int32_t *p, int core, int nc)
{
    const int32_t S = p[0], N = p[1], K = p[2], kt = p[3], xs = p[4], trans = p[5];
    const int32_t out_i32 = p[6], has_bias = p[7];
    kl_rq_t rq = mk_rq(p[8], p[9], 1);
    rq_vary(&rq, p[10], S, N, trans);
    const void *x = rnd8((uint32_t)(S * K));
    const int8_t *w = (const int8_t *)rnd8((uint32_t)(N * K));
    const int32_t *bias = has_bias ? rnd32((uint32_t)N, 1 << 12) : 0;
    void *y = arena_alloc((uint32_t)(S * N * (out_i32 ? 4 : 1)));
    int32_t *acc = kt ? (int32_t *)arena_alloc((uint32_t)(4 * S * N)) : 0;
    void *scr = mm_scratch(kt ? kt : K, nc);
    int32_t k0;
    prof_start();
    if (kt) { /* K split: int32 partial sums per chunk (bias with the first), then requantize */
        for (k0 = 0; k0 < K; k0 += kt) {
            const int32_t kn = K - k0 < kt ? K - k0 : kt;
            int32_t *dst = out_i32 ? (int32_t *)y : acc;
            const int mode = k0 == 0 ? KL_ACC_STORE : KL_ACC_ADD;
            if (xs)
                kl_linear_u8_i32((const uint8_t *)x + k0, K, w + k0, K, k0 == 0 ? bias : 0, dst,
                                 N, S, N, kn, mode, scr, core, nc);
            else
                kl_linear_s8_i32((const int8_t *)x + k0, K, w + k0, K, k0 == 0 ? bias : 0, dst,
                                 N, S, N, kn, mode, scr, core, nc);
        }
        if (!out_i32)
            kl_linear_finalize(acc, N, 0, y, N, S, N, &rq, core, nc);
    } else if (out_i32) {
        if (xs)
            kl_linear_u8_i32((const uint8_t *)x, K, w, K, bias, (int32_t *)y, N, S, N, K,
                             KL_ACC_STORE, scr, core, nc);
        else
            kl_linear_s8_i32((const int8_t *)x, K, w, K, bias, (int32_t *)y, N, S, N, K,
                             KL_ACC_STORE, scr, core, nc);
    } else if (trans) {
        if (xs)
            kl_linear_t_u8((const uint8_t *)x, K, w, K, bias, y, S, S, N, K, &rq, scr, core, nc);
        else
            kl_linear_t_s8((const int8_t *)x, K, w, K, bias, y, S, S, N, K, &rq, scr, core, nc);
    } else {
        if (xs)
            kl_linear_u8((const uint8_t *)x, K, w, K, bias, y, N, S, N, K, &rq, scr, core, nc);
        else
            kl_linear_s8((const int8_t *)x, K, w, K, bias, y, N, S, N, K, &rq, scr, core, nc);
    }
    prof_stop();
}

static void matmul(const int32_t *p, int core, int nc)
{
    const int32_t B = p[0], M = p[1], N = p[2], K = p[3], as = p[4], bs = p[5], bt = p[6];
    const int32_t wide = p[9]; /* int16 outputs (QDQ scores: rq.n_levels = 65536) */
    kl_rq_t rq = mk_rq(p[7], p[8], 1);
    const void *a = rnd8((uint32_t)(B * M * K));
    const void *b = rnd8((uint32_t)(B * N * K));
    void *y = arena_alloc((uint32_t)(B * M * N * (wide ? 2 : 1)));
    if (wide)
        rq.n_levels = 65536;
    void *scr = mm_scratch(K, nc);
    prof_start();
    kl_bmatmul(a, as, M * K, K, b, bs, bt, N * K, bt ? K : N, y, M * N, N, B, M, N, K, 0, 0, &rq,
               scr, core, nc);
    prof_stop();
}

static void matmul_i32(const int32_t *p, int core, int nc)
{
    const int32_t B = p[0], M = p[1], N = p[2], K = p[3], bt = p[4];
    kl_rq_t rq = mk_rq(p[5], p[6], 1);
    const int32_t *a = rnd32((uint32_t)(B * M * K), 1 << 10);
    const int32_t *b = rnd32((uint32_t)(B * N * K), 1 << 10);
    void *y = arena_alloc((uint32_t)(B * M * N));
    prof_start();
    kl_bmatmul_i32(a, M * K, K, b, bt, N * K, bt ? K : N, y, M * N, N, B, M, N, K, &rq, core, nc);
    prof_stop();
}

static void layernorm(const int32_t *p, int core, int nc)
{
    const int32_t rows = p[0], L = p[1];
    const int8_t *x = (const int8_t *)rnd8((uint32_t)(rows * L));
    const int32_t *w = rnd32((uint32_t)L, 1 << 12), *b = rnd32((uint32_t)L, 1 << 10);
    int8_t *y = (int8_t *)arena_alloc((uint32_t)(rows * L));
    prof_start();
    kl_ilayernorm(x, L, y, L, rows, L, w, b, p[2], p[3], core, nc);
    prof_stop();
}

static void gelu(const int32_t *p, int core, int nc)
{
    const int32_t rows = p[0], cols = p[1];
    kl_rq_t rq = mk_rq(p[5], p[6], 1);
    const int8_t *x = (const int8_t *)rnd8((uint32_t)(rows * cols));
    void *y = arena_alloc((uint32_t)(rows * cols * 4));
    prof_start();
    if (p[4])
        kl_igelu_rq(x, cols, y, cols, rows, cols, p[2], p[3], &rq, core, nc);
    else
        kl_igelu_i32(x, cols, (int32_t *)y, cols, rows, cols, p[2], p[3], core, nc);
    prof_stop();
}

static void add(const int32_t *p, int core, int nc)
{
    const int32_t rows = p[0], cols = p[1];
    kl_rq_t ra = mk_rq(p[4], p[5], 1), rb = mk_rq(p[6], p[7], 1), ro = mk_rq(p[8], p[9], 1);
    const void *a = rnd8((uint32_t)(rows * cols)), *b = rnd8((uint32_t)(rows * cols));
    void *y = arena_alloc((uint32_t)(rows * cols));
    prof_start();
    kl_add_rq(a, p[2], cols, &ra, b, p[3], cols, &rb, y, cols, rows, cols, &ro, core, nc);
    prof_stop();
}

static void requant(const int32_t *p, int core, int nc)
{
    const int32_t rows = p[0], cols = p[1];
    kl_rq_t rq = mk_rq(p[2], p[3], 1);
    const int32_t *x = rnd32((uint32_t)(rows * cols), 1 << 16);
    void *y = arena_alloc((uint32_t)(rows * cols));
    prof_start();
    kl_requant(x, cols, y, cols, rows, cols, &rq, core, nc);
    prof_stop();
}

static void finalize(const int32_t *p)
{
    /* the MHSA writeout (nr_finalize_rows of the generated code): one core's rows, in place */
    const int32_t rows = p[0], cols = p[1];
    kl_rq_t rq = mk_rq(p[3], p[4], 1);
    int32_t *acc = rnd32((uint32_t)(rows * cols), 1 << 16);
    const int32_t *bias = p[2] ? rnd32((uint32_t)cols, 1 << 12) : 0;
    prof_start();
    kl_linear_finalize(acc, cols, bias, (int8_t *)acc, 4 * cols, rows, cols, &rq, 0, 1);
    prof_stop();
}

static kl_softmax_t mk_sm(const int32_t *p)
{
    /* p: kind A B C log2 group_width n_levels */
    kl_softmax_t sm;
    sm.kind = p[0];
    sm.coeff_a = p[1];
    sm.coeff_b = p[2];
    sm.coeff_c = p[3];
    sm.log2 = p[4];
    sm.group_width = p[5];
    sm.n_levels = p[6];
    sm.rounded = 0; /* the floored and rounded forms cost the same loop */
    sm.lut = 0;
    if (sm.kind == KL_SM_ISOFTMAX || sm.kind == KL_SM_ITAMAX) {
        int32_t *t = (int32_t *)arena_alloc(4 * KL_SM_LUT_WORDS);
        kl_softmax_lut(&sm, t); /* a model constant in the generated code */
        sm.lut = t;
    }
    return sm;
}

static void softmax(int kind, const int32_t *p, int core, int nc)
{
    const int32_t rows = p[0], L = p[1];
    const int8_t *x = (const int8_t *)rnd8((uint32_t)(rows * L));
    uint8_t *y = (uint8_t *)arena_alloc((uint32_t)(rows * L));
    if (kind == C_ISOFTMAX) {
        int32_t *scr = (int32_t *)arena_alloc((uint32_t)(4 * L * nc));
        prof_start();
        kl_isoftmax(x, L, y, L, rows, L, p[2], p[3], p[4], p[5], p[6], 0, scr, core, nc);
        prof_stop();
    } else if (kind == C_ITAMAX) {
        prof_start();
        kl_itamax(x, L, y, L, rows, L, p[2], core, nc);
        prof_stop();
    } else if (kind == C_ITAPARTIAL) {
        prof_start();
        kl_ita_partial_max(x, L, y, L, rows, L, p[2], p[3], core, nc);
        prof_stop();
    } else {
        kl_softmax_t sm = mk_sm(p + 2);
        prof_start();
        kl_softmax_rows(x, L, y, L, rows, L, &sm, 0, core, nc);
        prof_stop();
    }
}

static void chunk(const int32_t *p, int core, int nc)
{
    const int32_t rows = p[0], S = p[1], D = p[2], P = p[3], E = p[4], fwsa = p[5];
    const int32_t row_term = p[6];
    kl_rq_t rq_s = mk_rq(p[15], p[16], 1), rq_v = mk_rq(p[17], p[18], 1);
    kl_rq_t rq_i = mk_rq(p[20] ? p[20] : p[15], p[20] ? p[21] : p[16], 1), rq_row = mk_rq(1, 8, 1);
    rq_vary(&rq_i, p[22] ? 1 : 0, rows, D, 0); /* I* per output column */
    kl_attn_t a;
    void *scr;
    a.S = S;
    a.D = D;
    a.P = P;
    a.q = rnd8((uint32_t)(rows * D));
    a.q_rs = D;
    a.q_signed = p[14];
    a.w_f = fwsa ? (const int8_t *)rnd8((uint32_t)(D * D)) : 0;
    a.b_f = fwsa ? rnd32((uint32_t)D, 1 << 12) : 0;
    a.rq_i = fwsa ? &rq_i : 0;
    a.w_row = row_term ? (const int8_t *)rnd8((uint32_t)D) : 0;
    a.rq_row = row_term ? &rq_row : 0;
    a.k = rnd8((uint32_t)(S * D));
    a.k_rs = D;
    a.k_signed = 1;
    if (p[19]) /* wide (int16) scores: the int16 softmax without a table */
        rq_s.n_levels = 65536;
    a.rq_s = &rq_s;
    a.sm = mk_sm(p + 7);
    if (p[19])
        a.sm.lut = 0;
    a.v = rnd8((uint32_t)(P * S));
    a.v_rs = S;
    a.v_trans = 1;
    a.v_signed = 1;
    a.rq_v = &rq_v;
    a.o = 0;
    a.o_rs = 0;
    a.w_o = (const int8_t *)rnd8((uint32_t)(E * P));
    a.w_o_rs = P;
    a.E_out = E;
    a.b_o = 0;
    a.acc = rnd32((uint32_t)(rows * E), 1 << 12);
    a.acc_rs = E;
    a.acc_mode = KL_ACC_ADD; /* every head but the first adds */
    a.k_corr = NULL; /* no zero points (the QDQ corrections are gemm calls: kl_zp_sums) */
    a.zk = a.zv = 0;
    scr = arena_alloc((uint32_t)(kl_mhsa_chunk_scratch(&a) * (size_t)nc));
    prof_start();
    kl_mhsa_chunk(&a, rows, scr, core, nc);
    prof_stop();
}

static void ln_qdq(const int32_t *p, int core, int nc)
{
    const int32_t rows = p[0], L = p[1], xt = p[2];
    const void *x = xt == KL_DT_S16 ? (const void *)rnd16((uint32_t)(rows * L), 1 << 11)
                                   : rnd8((uint32_t)(rows * L));
    const int32_t *w = rnd32((uint32_t)L, 1 << 12), *b = rnd32((uint32_t)L, 1 << 16);
    int8_t *y = (int8_t *)arena_alloc((uint32_t)(rows * L));
    prof_start();
    kl_layernorm_qdq(x, xt, L, y, L, rows, L, w, b, p[3], p[4], p[5], p[6], core, nc);
    prof_stop();
}

static void lut(const int32_t *p, int core, int nc)
{
    const int32_t rows = p[0], cols = p[1];
    const uint8_t *t = (const uint8_t *)rnd8(256);
    const void *x = rnd8((uint32_t)(rows * cols));
    void *y = arena_alloc((uint32_t)(rows * cols));
    prof_start();
    kl_lut8(x, p[2], cols, t, y, cols, rows, cols, core, nc);
    prof_stop();
}

static void *rnd_typed(int type, uint32_t n)
{
    return type == KL_DT_S16 ? (void *)rnd16(n, 1 << 12) : rnd8(n);
}

static void add_x(const int32_t *p, int core, int nc)
{
    const int32_t rows = p[0], cols = p[1], at = p[2], bt = p[3], yt = p[4];
    kl_rq_t ra = mk_rq(p[5], p[6], 1), rb = mk_rq(p[7], p[8], 1), ro = mk_rq(p[9], p[10], 1);
    const void *a = rnd_typed(at, (uint32_t)(rows * cols)), *b = rnd_typed(bt, (uint32_t)(rows * cols));
    void *y = arena_alloc((uint32_t)(rows * cols * 2));
    ra.n_levels = rb.n_levels = 1 << 30;
    if (yt == KL_DT_S16)
        ro.n_levels = 65536;
    ro.is_signed = yt != KL_DT_U8;
    prof_start();
    kl_add_rq_x(a, at, cols, &ra, b, bt, cols, &rb, y, yt, cols, rows, cols, &ro, core, nc);
    prof_stop();
}

static void isoftmax16(const int32_t *p, int core, int nc)
{
    const int32_t rows = p[0], L = p[1];
    const int16_t *x = rnd16((uint32_t)(rows * L), 1 << 11);
    uint8_t *y = (uint8_t *)arena_alloc((uint32_t)(rows * L));
    int32_t *scr = (int32_t *)arena_alloc((uint32_t)(4 * L * nc));
    prof_start();
    kl_isoftmax_s16(x, L, y, L, rows, L, p[2], p[3], p[4], p[5], p[6], scr, core, nc);
    prof_stop();
}

static void run_case(const int32_t *row)
{
    const int kind = row[0], core = row[1], nc = row[2];
    const int32_t *p = row + 6;
    d_center = row[3];
    d_mag = row[4];
    d_signed = row[5];
    arena_reset();
    rs = 2463534242u; /* the same data whatever the case list */
    switch (kind) {
    case C_LINEAR:
        linear(p, core, nc);
        break;
    case C_MATMUL:
        matmul(p, core, nc);
        break;
    case C_MATMUL_I32:
        matmul_i32(p, core, nc);
        break;
    case C_LAYERNORM:
        layernorm(p, core, nc);
        break;
    case C_GELU:
        gelu(p, core, nc);
        break;
    case C_ADD:
        add(p, core, nc);
        break;
    case C_REQUANT:
        requant(p, core, nc);
        break;
    case C_ISOFTMAX:
    case C_ITAMAX:
    case C_ITAPARTIAL:
    case C_SMROWS:
        softmax(kind, p, core, nc);
        break;
    case C_CHUNK:
        chunk(p, core, nc);
        break;
    case C_FINALIZE:
        finalize(p);
        break;
    case C_LN_QDQ:
        ln_qdq(p, core, nc);
        break;
    case C_LUT:
        lut(p, core, nc);
        break;
    case C_ADD_X:
        add_x(p, core, nc);
        break;
    case C_ISOFTMAX16:
        isoftmax16(p, core, nc);
        break;
    default: /* C_EMPTY */
        prof_start();
        prof_stop();
        break;
    }
}

int main(void)
{
    static int32_t row[CAL_W];
    int32_t i, j;
    for (i = 0; i < CAL_N; i++) {
        /* through a volatile copy: the compiler must not specialize the kernels for the shapes */
        const volatile int32_t *src = cal_cases[i];
        for (j = 0; j < CAL_W; j++)
            row[j] = src[j];
        run_case(row);
        out_s("R ");
        out_u((uint32_t)i);
        out_c('\n');
        out_flush();
    }
    out_s("DONE ");
    out_u((uint32_t)CAL_N);
    out_c('\n');
    out_flush();
    return 0;
}
