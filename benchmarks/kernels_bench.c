/* kernels_bench.c - instruction-count benchmark of kernel_lib against plain C references.
 *
 * Built and run by benchmarks/kernels_bench.py (QEMU + planner/qemu/icount_plugin.c), which
 * generates bench_cases.h (the case list). Every case runs the kernel once between
 * prof_start/prof_stop, then the plain reference (triple loops, int32 accumulation, the same
 * compiler flags, no hand tuning) in a second region, and compares the two outputs byte for
 * byte. Output: "R <case> ok|MISMATCH" per case, "DONE <n>".
 * Data: pseudo-random (xorshift) int8 inputs and weights; requantization parameters per
 * tensor with add = 0 (as in the examples), given by the case list.
 */
#include <stdint.h>

#include "bench_cases.h"
#include "kernel_lib.h"
#include "platform.h"

enum {
    B_LINEAR = 1,
    B_NT = 2,
    B_NN = 3,
    B_PV_T = 4,
    B_ISOFTMAX = 5,
    B_SMROWS = 6,
    B_ITAMAX = 7,
    B_CHUNK = 8,
    B_BLOCK = 9
};

/* ---------------------------------------------------------------------------------------- */
#include "textout.h"

/* ---------------------------------------------------------------------------------------- */
#ifndef BENCH_ARENA
#define BENCH_ARENA (3u << 20)
#endif
#define KL_ARENA_BYTES BENCH_ARENA
#include "arena.h"

static uint32_t rs = 2463534242u;
static uint32_t rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 17;
    rs ^= rs << 5;
    return rs;
}
static int8_t *rnd8(uint32_t n, int32_t lo, int32_t hi)
{
    int8_t *p = (int8_t *)arena_alloc(n);
    uint32_t i;
    for (i = 0; i < n; i++)
        p[i] = (int8_t)(lo + (int32_t)(rnd() % (uint32_t)(hi - lo + 1)));
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
static int same(const void *a, const void *b, uint32_t n)
{
    const uint8_t *x = (const uint8_t *)a, *y = (const uint8_t *)b;
    uint32_t i;
    for (i = 0; i < n; i++)
        if (x[i] != y[i])
            return 0;
    return 1;
}

/* ---------------------------------------------------------------------------------------- */
/* plain references                                                                         */
/* ---------------------------------------------------------------------------------------- */
static int32_t ref_rq(int32_t acc, int32_t mul, int32_t sh, int32_t lo, int32_t hi)
{
    int64_t t = (int64_t)acc * mul;
    if (sh > 0)
        t = (t + ((int64_t)1 << (sh - 1))) >> sh;
    return t < lo ? lo : (t > hi ? hi : (int32_t)t);
}

/* Y[S][N] = RQ(X[S][K] . W[N][K]^T + b) */
static void ref_linear(const int8_t *x, int32_t x_rs, const int8_t *w, const int32_t *b,
                       int8_t *y, int32_t y_rs, int32_t S, int32_t N, int32_t K, int32_t mul,
                       int32_t sh)
{
    int32_t s, n, k;
    for (s = 0; s < S; s++)
        for (n = 0; n < N; n++) {
            int32_t acc = b ? b[n] : 0;
            for (k = 0; k < K; k++)
                acc += x[s * x_rs + k] * w[n * K + k];
            y[s * y_rs + n] = (int8_t)ref_rq(acc, mul, sh, -128, 127);
        }
}

/* golden iSoftmax of one row, with plain divisions */
static void ref_isoftmax_row(const int8_t *x, uint8_t *y, int32_t *tmp, int32_t L, int32_t A,
                             int32_t B, int32_t C, int32_t l2)
{
    int32_t i, mx = -128, sum = 0;
    for (i = 0; i < L; i++)
        mx = x[i] > mx ? x[i] : mx;
    for (i = 0; i < L; i++) {
        int32_t d = mx - x[i], z = d / l2, p = z * l2 - d;
        int32_t v = (A * (p + B) * (p + B) + C) >> (z > 31 ? 31 : z);
        tmp[i] = v;
        sum += v;
    }
    for (i = 0; i < L; i++)
        y[i] = (uint8_t)((tmp[i] * 255) / sum);
}

static void ref_itamax_row(const int8_t *x, uint8_t *y, int32_t L)
{
    int32_t i, mx = -128, e = 0, inv;
    for (i = 0; i < L; i++)
        mx = x[i] > mx ? x[i] : mx;
    for (i = 0; i < L; i++)
        e += 256 >> (((mx - x[i]) * 8 + 128) >> 8);
    inv = (255 * 256) / e;
    for (i = 0; i < L; i++)
        y[i] = (uint8_t)(inv >> (((mx - x[i]) * 8 + 128) >> 8));
}

static kl_rq_t mk_rq(int32_t *mul, int32_t sh, int is_signed)
{
    kl_rq_t r;
    r.mul = mul;
    r.add = 0;
    r.mul_sb = r.mul_sr = r.mul_sc = 0;
    r.add_sb = r.add_sr = r.add_sc = 0;
    r.shift = sh;
    r.n_levels = 256;
    r.is_signed = is_signed;
    return r;
}

/* ---------------------------------------------------------------------------------------- */
/* whole MHSA block: plain layer-by-layer reference                                         */
/* ---------------------------------------------------------------------------------------- */
typedef struct {
    int32_t S, E, P, H, chunk, fwsa;
    int32_t mq, sq, mk, sk, mv, sv, ms, ss, mav, sav, mo, so, A, B, C, l2, mi, si;
} blk_t;

static void ref_block(const blk_t *c, const int8_t *x, const int8_t *wq, const int32_t *bq,
                      const int8_t *wk, const int32_t *bk, const int8_t *wv, const int32_t *bv,
                      const int8_t *wf, const int32_t *bf, const int32_t *mi, const int8_t *wo,
                      const int32_t *bo, int8_t *y)
{
    const int32_t S = c->S, E = c->E, P = c->P, H = c->H, HP = c->H * c->P;
    int8_t *v = (int8_t *)arena_alloc((uint32_t)(S * HP));
    int8_t *o = (int8_t *)arena_alloc((uint32_t)(S * HP));
    int8_t *srow = (int8_t *)arena_alloc((uint32_t)S);
    uint8_t *prow = (uint8_t *)arena_alloc((uint32_t)S);
    int32_t *tmp = (int32_t *)arena_alloc((uint32_t)(4 * S));
    int8_t *q = 0, *k = 0, *is = 0;
    int32_t h, i, j, p, e;
    ref_linear(x, E, wv, bv, v, HP, S, HP, E, c->mv, c->sv);
    if (!c->fwsa) {
        q = (int8_t *)arena_alloc((uint32_t)(S * HP));
        k = (int8_t *)arena_alloc((uint32_t)(S * HP));
        ref_linear(x, E, wq, bq, q, HP, S, HP, E, c->mq, c->sq);
        ref_linear(x, E, wk, bk, k, HP, S, HP, E, c->mk, c->sk);
    } else {
        is = (int8_t *)arena_alloc((uint32_t)(S * E));
    }
    for (h = 0; h < H; h++) {
        if (c->fwsa) { /* I* = RQ_i(X . W_f,h^T + b_f,h), per-row weight scales */
            for (i = 0; i < S; i++)
                for (e = 0; e < E; e++) {
                    int32_t acc = bf[h * E + e];
                    for (j = 0; j < E; j++)
                        acc += x[i * E + j] * wf[(h * E + e) * E + j];
                    is[i * E + e] = (int8_t)ref_rq(acc, mi[h * E + e], c->si, -128, 127);
                }
        }
        for (i = 0; i < S; i++) {
            for (j = 0; j < S; j++) {
                int32_t acc = 0;
                if (c->fwsa)
                    for (e = 0; e < E; e++)
                        acc += is[i * E + e] * x[j * E + e];
                else
                    for (p = 0; p < P; p++)
                        acc += q[i * HP + h * P + p] * k[j * HP + h * P + p];
                srow[j] = (int8_t)ref_rq(acc, c->ms, c->ss, -128, 127);
            }
            ref_isoftmax_row(srow, prow, tmp, S, c->A, c->B, c->C, c->l2);
            for (p = 0; p < P; p++) {
                int32_t acc = 0;
                for (j = 0; j < S; j++)
                    acc += prow[j] * v[j * HP + h * P + p];
                o[i * HP + h * P + p] = (int8_t)ref_rq(acc, c->mav, c->sav, -128, 127);
            }
        }
    }
    ref_linear(o, HP, wo, bo, y, E, S, E, HP, c->mo, c->so);
}

static void run_block(int32_t ci, const int32_t *a)
{
    blk_t c;
    kl_mhsa_t m;
    int32_t HP, i;
    int32_t mq, mk, mv, ms, mav, mo;
    kl_rq_t rq_q, rq_k, rq_v, rq_s, rq_av, rq_o, rq_i;
    int8_t *x, *wq = 0, *wk = 0, *wv, *wo, *wf = 0, *y, *yr;
    int32_t *bq = 0, *bk = 0, *bv, *bo, *bf = 0, *mi = 0;
    c.S = a[0];
    c.E = a[1];
    c.P = a[2];
    c.H = a[3];
    c.chunk = a[4];
    c.fwsa = a[5];
    c.mq = a[6];
    c.sq = a[7];
    c.mk = a[8];
    c.sk = a[9];
    c.mv = a[10];
    c.sv = a[11];
    c.ms = a[12];
    c.ss = a[13];
    c.mav = a[14];
    c.sav = a[15];
    c.mo = a[16];
    c.so = a[17];
    c.A = a[18];
    c.B = a[19];
    c.C = a[20];
    c.l2 = a[21];
    c.mi = a[22];
    c.si = a[23];
    HP = c.H * c.P;
    x = rnd8((uint32_t)(c.S * c.E), -128, 127);
    wv = rnd8((uint32_t)(HP * c.E), -128, 127);
    bv = rnd32((uint32_t)HP, 4096);
    wo = rnd8((uint32_t)(c.E * HP), -128, 127);
    bo = rnd32((uint32_t)c.E, 4096);
    if (c.fwsa) {
        wf = rnd8((uint32_t)(c.H * c.E * c.E), -127, 127);
        bf = rnd32((uint32_t)(c.H * c.E), 4096);
        mi = (int32_t *)arena_alloc((uint32_t)(4 * c.H * c.E));
        for (i = 0; i < c.H * c.E; i++) /* per-row weight scales, +-25% */
            mi[i] = c.mi + (int32_t)(rnd() % (uint32_t)(c.mi / 2 + 1)) - c.mi / 4;
    } else {
        wq = rnd8((uint32_t)(HP * c.E), -128, 127);
        bq = rnd32((uint32_t)HP, 4096);
        wk = rnd8((uint32_t)(HP * c.E), -128, 127);
        bk = rnd32((uint32_t)HP, 4096);
    }
    mq = c.mq;
    mk = c.mk;
    mv = c.mv;
    ms = c.ms;
    mav = c.mav;
    mo = c.mo;
    rq_q = mk_rq(&mq, c.sq, 1);
    rq_k = mk_rq(&mk, c.sk, 1);
    rq_v = mk_rq(&mv, c.sv, 1);
    rq_s = mk_rq(&ms, c.ss, 1);
    rq_av = mk_rq(&mav, c.sav, 1);
    rq_o = mk_rq(&mo, c.so, 1);
    rq_i = mk_rq(mi, c.si, 1);
    rq_i.mul_sb = c.E;
    rq_i.mul_sc = 1;
    y = (int8_t *)arena_alloc((uint32_t)(c.S * c.E));
    yr = (int8_t *)arena_alloc((uint32_t)(c.S * c.E));
    m.S = c.S;
    m.E = c.E;
    m.H = c.H;
    m.P = c.P;
    m.E_out = c.E;
    m.x = x;
    m.x_rs = c.E;
    m.x_signed = 1;
    m.w_q = wq;
    m.w_k = wk;
    m.b_q = bq;
    m.b_k = bk;
    m.rq_q = &rq_q;
    m.rq_k = &rq_k;
    m.w_f = wf;
    m.b_f = bf;
    m.rq_i = &rq_i;
    m.w_row = 0;
    m.rq_row = 0;
    m.w_v = wv;
    m.b_v = bv;
    m.rq_v = &rq_v;
    m.rq_s = &rq_s;
    m.sm.kind = KL_SM_ISOFTMAX;
    m.sm.coeff_a = c.A;
    m.sm.coeff_b = c.B;
    m.sm.coeff_c = c.C;
    m.sm.log2 = c.l2;
    m.sm.group_width = 0;
    m.sm.n_levels = 256;
    m.sm.rounded = 0;
    m.sm.lut = 0;
    m.rq_av = &rq_av;
    m.w_o = wo;
    m.b_o = bo;
    m.rq_o = &rq_o;
    m.y = y;
    m.y_rs = c.E;
    m.acc = (int32_t *)arena_alloc((uint32_t)(4 * c.S * c.E));
    m.acc_rs = c.E;
    m.chunk = c.chunk;
    m.zq = m.zk = m.zv = 0;
    m.scratch = arena_alloc((uint32_t)kl_mhsa_block_scratch(&m, 1));
    m.barrier = 0;
    m.barrier_ctx = 0;
    prof_start();
    kl_mhsa_block(&m, 0, 1);
    prof_stop();
    prof_start();
    ref_block(&c, x, wq, bq, wk, bk, wv, bv, wf, bf, mi, wo, bo, yr);
    prof_stop();
    out_s("R ");
    out_u((uint32_t)ci);
    out_s(same(y, yr, (uint32_t)(c.S * c.E)) ? " ok\n" : " MISMATCH\n");
}

/* one head, one chunk of rows, output projection fused (K_h [S][P], V_h^T [P][S]) */
static void run_chunk(int32_t ci, const int32_t *a)
{
    const int32_t S = a[0], E = a[1], P = a[2], H = a[3], rows = a[4];
    int32_t ms = a[5], mv = a[7];
    const int32_t ss = a[6], sv = a[8];
    kl_rq_t rq_s = mk_rq(&ms, ss, 1), rq_v = mk_rq(&mv, sv, 1);
    int8_t *q = rnd8((uint32_t)(rows * P), -128, 127), *k = rnd8((uint32_t)(S * P), -128, 127);
    int8_t *vt = rnd8((uint32_t)(P * S), -128, 127), *wo = rnd8((uint32_t)(E * H * P), -128, 127);
    int32_t *acc = (int32_t *)arena_alloc((uint32_t)(4 * rows * E));
    int32_t *accr = (int32_t *)arena_alloc((uint32_t)(4 * rows * E));
    int8_t *srow = (int8_t *)arena_alloc((uint32_t)S);
    uint8_t *prow = (uint8_t *)arena_alloc((uint32_t)S);
    int32_t *tmp = (int32_t *)arena_alloc((uint32_t)(4 * S));
    int8_t *orow = (int8_t *)arena_alloc((uint32_t)P);
    kl_attn_t t;
    int32_t i, j, p, e;
    t.S = S;
    t.D = P;
    t.P = P;
    t.q = q;
    t.q_rs = P;
    t.w_f = 0;
    t.b_f = 0;
    t.rq_i = 0;
    t.w_row = 0;
    t.rq_row = 0;
    t.k = k;
    t.k_rs = P;
    t.q_signed = t.k_signed = 1;
    t.rq_s = &rq_s;
    t.sm.kind = KL_SM_ISOFTMAX;
    t.sm.coeff_a = a[9];
    t.sm.coeff_b = a[10];
    t.sm.coeff_c = a[11];
    t.sm.log2 = a[12];
    t.sm.group_width = 0;
    t.sm.n_levels = 256;
    t.sm.rounded = 0;
    t.sm.lut = (int32_t *)arena_alloc(4 * KL_SM_LUT_WORDS);
    kl_softmax_lut(&t.sm, (int32_t *)t.sm.lut); /* a model constant: prepared once */
    t.v = vt;
    t.v_rs = S;
    t.v_trans = 1;
    t.v_signed = 1;
    t.rq_v = &rq_v;
    t.o = 0;
    t.o_rs = 0;
    t.w_o = wo;
    t.w_o_rs = H * P;
    t.E_out = E;
    t.b_o = 0;
    t.acc = acc;
    t.acc_rs = E;
    t.acc_mode = KL_ACC_STORE;
    t.k_corr = NULL;
    t.zk = t.zv = 0;
    {
        void *scr = arena_alloc((uint32_t)kl_mhsa_chunk_scratch(&t));
        prof_start();
        kl_mhsa_chunk(&t, rows, scr, 0, 1);
        prof_stop();
    }
    prof_start();
    for (i = 0; i < rows; i++) {
        for (j = 0; j < S; j++) {
            int32_t s = 0;
            for (p = 0; p < P; p++)
                s += q[i * P + p] * k[j * P + p];
            srow[j] = (int8_t)ref_rq(s, ms, ss, -128, 127);
        }
        ref_isoftmax_row(srow, prow, tmp, S, a[9], a[10], a[11], a[12]);
        for (p = 0; p < P; p++) {
            int32_t s = 0;
            for (j = 0; j < S; j++)
                s += prow[j] * vt[p * S + j];
            orow[p] = (int8_t)ref_rq(s, mv, sv, -128, 127);
        }
        for (e = 0; e < E; e++) {
            int32_t s = 0;
            for (p = 0; p < P; p++)
                s += orow[p] * wo[e * H * P + p];
            accr[i * E + e] = s;
        }
    }
    prof_stop();
    out_s("R ");
    out_u((uint32_t)ci);
    out_s(same(acc, accr, (uint32_t)(4 * rows * E)) ? " ok\n" : " MISMATCH\n");
}

static void run_case(int32_t ci, const int32_t *a)
{
    const int kind = a[0];
    const int32_t *p = a + 1;
    int ok = 1;
    arena_reset();
    rs = 2463534242u; /* the same data whatever the case list */
    switch (kind) {
    case B_LINEAR:
    case B_NT:
    case B_NN:
    case B_PV_T: {
        /* LINEAR: S K N; NT/NN/PV_T: M N K (as the kernels name them); mul shift */
        const int32_t M = p[0], N = kind == B_LINEAR ? p[2] : p[1], K = kind == B_LINEAR ? p[1] : p[2];
        int32_t mul = p[3];
        kl_rq_t rq = mk_rq(&mul, p[4], 1);
        const int a_u8 = kind == B_NN || kind == B_PV_T;
        int8_t *A = rnd8((uint32_t)(M * K), a_u8 ? -128 : -128, 127);
        int8_t *B = rnd8((uint32_t)(N * K), -128, 127); /* W [N][K], B [N][K], V [K][N], V^T [N][K] */
        int32_t *bias = kind == B_LINEAR ? rnd32((uint32_t)N, 1 << 12) : 0;
        int8_t *y = (int8_t *)arena_alloc((uint32_t)(M * N)), *yr = (int8_t *)arena_alloc((uint32_t)(M * N));
        void *scr = arena_alloc((uint32_t)KL_MM_SCRATCH_PER_CORE(K) + 8u);
        int32_t i, j, k;
        prof_start();
        if (kind == B_LINEAR)
            kl_linear_s8(A, K, B, K, bias, y, N, M, N, K, &rq, scr, 0, 1);
        else if (kind == B_NT)
            kl_matmul_nt_s8(A, K, B, K, y, N, M, N, K, 0, 0, &rq, scr, 0, 1);
        else if (kind == B_NN)
            kl_matmul_nn_u8s8((const uint8_t *)A, K, B, N, y, N, M, N, K, 0, 0, &rq, scr, 0, 1);
        else
            kl_bmatmul(A, 0, 0, K, B, 1, 1, 0, K, y, 0, N, 1, M, N, K, 0, 0, &rq, scr, 0, 1);
        prof_stop();
        prof_start();
        for (i = 0; i < M; i++)
            for (j = 0; j < N; j++) {
                int32_t acc = bias ? bias[j] : 0;
                if (kind == B_LINEAR || kind == B_NT)
                    for (k = 0; k < K; k++)
                        acc += A[i * K + k] * B[j * K + k];
                else if (kind == B_NN)
                    for (k = 0; k < K; k++)
                        acc += ((const uint8_t *)A)[i * K + k] * B[k * N + j];
                else
                    for (k = 0; k < K; k++)
                        acc += ((const uint8_t *)A)[i * K + k] * B[j * K + k];
                yr[i * N + j] = (int8_t)ref_rq(acc, mul, p[4], -128, 127);
            }
        prof_stop();
        ok = same(y, yr, (uint32_t)(M * N));
        break;
    }
    case B_ISOFTMAX:
    case B_SMROWS:
    case B_ITAMAX: {
        const int32_t rows = p[0], L = p[1];
        int8_t *x = rnd8((uint32_t)(rows * L), -128, 127);
        uint8_t *y = (uint8_t *)arena_alloc((uint32_t)(rows * L)), *yr = (uint8_t *)arena_alloc((uint32_t)(rows * L));
        int32_t *scr = (int32_t *)arena_alloc((uint32_t)(4 * (L > 256 ? L : 256)));
        int32_t *tmp = (int32_t *)arena_alloc((uint32_t)(4 * L));
        kl_softmax_t sm;
        int32_t r;
        sm.kind = kind == B_ITAMAX ? KL_SM_ITAMAX : KL_SM_ISOFTMAX;
        sm.coeff_a = p[2];
        sm.coeff_b = p[3];
        sm.coeff_c = p[4];
        sm.log2 = p[5];
        sm.group_width = 0;
        sm.n_levels = 256;
        sm.lut = 0;
        if (kind == B_SMROWS) { /* the table is a model constant: prepared outside */
            kl_softmax_lut(&sm, scr);
            sm.lut = scr;
        }
        prof_start();
        if (kind == B_ISOFTMAX)
            kl_isoftmax(x, L, y, L, rows, L, p[2], p[3], p[4], p[5], 256, 0, scr, 0, 1);
        else if (kind == B_SMROWS)
            kl_softmax_rows(x, L, y, L, rows, L, &sm, 0, 0, 1);
        else
            kl_itamax(x, L, y, L, rows, L, 256, 0, 1);
        prof_stop();
        prof_start();
        for (r = 0; r < rows; r++) {
            if (kind == B_ITAMAX)
                ref_itamax_row(x + r * L, yr + r * L, L);
            else
                ref_isoftmax_row(x + r * L, yr + r * L, tmp, L, p[2], p[3], p[4], p[5]);
        }
        prof_stop();
        ok = same(y, yr, (uint32_t)(rows * L));
        break;
    }
    case B_CHUNK:
        run_chunk(ci, p);
        return;
    case B_BLOCK:
        run_block(ci, p);
        return;
    default:
        break;
    }
    out_s("R ");
    out_u((uint32_t)ci);
    out_s(ok ? " ok\n" : " MISMATCH\n");
}

int main(void)
{
    int32_t i, j;
    static int32_t row[BENCH_W];
    for (i = 0; i < BENCH_N; i++) {
        /* through a volatile copy: the compiler must not specialize the kernels or the
         * references for the shapes of the case list */
        const volatile int32_t *src = bench_cases[i];
        for (j = 0; j < (int32_t)(sizeof row / sizeof row[0]); j++)
            row[j] = src[j];
        run_case(i, row);
        out_flush();
    }
    out_s("DONE ");
    out_u((uint32_t)BENCH_N);
    out_c('\n');
    out_flush();
    return 0;
}
