/* kl_linear.c - linear layers and activation x activation matmuls on top of kl_gemm_block. */
#include "kernel_lib.h"

static void *kl_core_scratch(void *scratch, int32_t K, int core_id)
{
    size_t per = KL_MM_SCRATCH_PER_CORE(K);
    (void)K;
    if (!scratch || per == 0)
        return 0;
    return (uint8_t *)scratch + per * (size_t)(core_id < 0 ? 0 : core_id);
}

static void kl_set_rq(kl_gemm_t *g, const kl_rq_t *rq, int transposed)
{
    g->mul = rq->mul;
    g->add = rq->add;
    if (!transposed) { /* p = output row, q = output column */
        g->m_sp = rq->mul_sr;
        g->m_sq = rq->mul_sc;
        g->a_sp = rq->add_sr;
        g->a_sq = rq->add_sc;
    } else { /* p = output column, q = output row */
        g->m_sp = rq->mul_sc;
        g->m_sq = rq->mul_sr;
        g->a_sp = rq->add_sc;
        g->a_sq = rq->add_sr;
    }
    g->shift = rq->shift;
    g->lo = kl_qlo(rq->n_levels, rq->is_signed);
    g->hi = kl_qhi(rq->n_levels, rq->is_signed);
}

/* Splits an M x N output: rows when M >= n_cores, else columns. p = rows unless transposed. */
static void kl_run_split(const kl_gemm_t *g, int32_t M, int32_t N, int transposed, int core_id,
                         int n_cores)
{
    int32_t lo, hi;
    if (M >= n_cores) {
        kl_split(M, core_id, n_cores, &lo, &hi);
        if (!transposed)
            kl_gemm_block(g, lo, hi, 0, N);
        else
            kl_gemm_block(g, 0, N, lo, hi);
    } else {
        kl_split(N, core_id, n_cores, &lo, &hi);
        if (!transposed)
            kl_gemm_block(g, 0, M, lo, hi);
        else
            kl_gemm_block(g, lo, hi, 0, M);
    }
}

static void kl_linear_any(const void *x, int x_signed, int32_t x_rs, const int8_t *w,
                          int32_t w_rs, const int32_t *bias, void *out, int32_t o_rs, int32_t S,
                          int32_t N, int32_t K, int mode, const kl_rq_t *rq, void *scratch,
                          int core_id, int n_cores)
{
    kl_gemm_t g;
    g.p_base = x;
    g.p_sp = x_rs;
    g.p_sk = 1;
    g.p_signed = x_signed;
    g.q_base = w;
    g.q_sq = w_rs;
    g.q_signed = 1;
    g.K = K;
    g.out = out;
    g.o_sp = o_rs;
    g.o_sq = 1;
    g.mode = mode;
    g.p_corr = 0;
    g.pc_s = 0;
    g.q_corr = bias;
    g.qc_s = 1;
    g.mul = g.add = 0;
    g.m_sp = g.m_sq = g.a_sp = g.a_sq = 0;
    g.shift = 0;
    g.lo = g.hi = 0;
    if (rq)
        kl_set_rq(&g, rq, 0);
    g.scratch = kl_core_scratch(scratch, K, core_id);
    kl_run_split(&g, S, N, 0, core_id, n_cores);
}

void kl_linear_s8(const int8_t *x, int32_t x_rs, const int8_t *w, int32_t w_rs,
                  const int32_t *bias, void *y, int32_t y_rs, int32_t S, int32_t N, int32_t K,
                  const kl_rq_t *rq, void *scratch, int core_id, int n_cores)
{
    kl_linear_any(x, 1, x_rs, w, w_rs, bias, y, y_rs, S, N, K, KL_GEMM_RQ8, rq, scratch,
                  core_id, n_cores);
}

void kl_linear_u8(const uint8_t *x, int32_t x_rs, const int8_t *w, int32_t w_rs,
                  const int32_t *bias, void *y, int32_t y_rs, int32_t S, int32_t N, int32_t K,
                  const kl_rq_t *rq, void *scratch, int core_id, int n_cores)
{
    kl_linear_any(x, 0, x_rs, w, w_rs, bias, y, y_rs, S, N, K, KL_GEMM_RQ8, rq, scratch,
                  core_id, n_cores);
}

void kl_linear_s8_i32(const int8_t *x, int32_t x_rs, const int8_t *w, int32_t w_rs,
                      const int32_t *bias, int32_t *acc, int32_t acc_rs, int32_t S, int32_t N,
                      int32_t K, int mode, void *scratch, int core_id, int n_cores)
{
    kl_linear_any(x, 1, x_rs, w, w_rs, bias, acc, acc_rs, S, N, K,
                  mode == KL_ACC_ADD ? KL_GEMM_I32_ADD : KL_GEMM_I32_STORE, 0, scratch, core_id,
                  n_cores);
}

void kl_linear_u8_i32(const uint8_t *x, int32_t x_rs, const int8_t *w, int32_t w_rs,
                      const int32_t *bias, int32_t *acc, int32_t acc_rs, int32_t S, int32_t N,
                      int32_t K, int mode, void *scratch, int core_id, int n_cores)
{
    kl_linear_any(x, 0, x_rs, w, w_rs, bias, acc, acc_rs, S, N, K,
                  mode == KL_ACC_ADD ? KL_GEMM_I32_ADD : KL_GEMM_I32_STORE, 0, scratch, core_id,
                  n_cores);
}

/* Transposed output: Y^T[n][s] = RQ(X[s] . W[n] + bias[n]), e.g. V_h^T [P][S] of a head (the
 * layout the depth-first attention kernel reads values in). p = the weight rows, q = the tokens. */
static void kl_linear_t_any(const void *x, int x_signed, int32_t x_rs, const int8_t *w,
                            int32_t w_rs, const int32_t *bias, void *y, int32_t y_rs, int32_t S,
                            int32_t N, int32_t K, const kl_rq_t *rq, void *scratch, int core_id,
                            int n_cores)
{
    kl_gemm_t g;
    g.p_base = w;
    g.p_sp = w_rs;
    g.p_sk = 1;
    g.p_signed = 1;
    g.q_base = x;
    g.q_sq = x_rs;
    g.q_signed = x_signed;
    g.K = K;
    g.out = y;
    g.o_sp = y_rs;
    g.o_sq = 1;
    g.mode = KL_GEMM_RQ8;
    g.p_corr = bias;
    g.pc_s = 1;
    g.q_corr = 0;
    g.qc_s = 0;
    kl_set_rq(&g, rq, 1);
    g.scratch = kl_core_scratch(scratch, K, core_id);
    kl_run_split(&g, S, N, 1, core_id, n_cores);
}

void kl_linear_t_s8(const int8_t *x, int32_t x_rs, const int8_t *w, int32_t w_rs,
                    const int32_t *bias, void *y, int32_t y_rs, int32_t S, int32_t N, int32_t K,
                    const kl_rq_t *rq, void *scratch, int core_id, int n_cores)
{
    kl_linear_t_any(x, 1, x_rs, w, w_rs, bias, y, y_rs, S, N, K, rq, scratch, core_id, n_cores);
}

void kl_linear_t_u8(const uint8_t *x, int32_t x_rs, const int8_t *w, int32_t w_rs,
                    const int32_t *bias, void *y, int32_t y_rs, int32_t S, int32_t N, int32_t K,
                    const kl_rq_t *rq, void *scratch, int core_id, int n_cores)
{
    kl_linear_t_any(x, 0, x_rs, w, w_rs, bias, y, y_rs, S, N, K, rq, scratch, core_id, n_cores);
}

void kl_matmul_nt_s8(const int8_t *a, int32_t a_rs, const int8_t *b, int32_t b_rs, void *y,
                     int32_t y_rs, int32_t M, int32_t N, int32_t K, const int32_t *row_corr,
                     const int32_t *col_corr, const kl_rq_t *rq, void *scratch, int core_id,
                     int n_cores)
{
    kl_gemm_t g;
    g.p_base = a;
    g.p_sp = a_rs;
    g.p_sk = 1;
    g.p_signed = 1;
    g.q_base = b;
    g.q_sq = b_rs;
    g.q_signed = 1;
    g.K = K;
    g.out = y;
    g.o_sp = y_rs;
    g.o_sq = 1;
    g.mode = rq->n_levels > 256 ? KL_GEMM_RQ16 : KL_GEMM_RQ8; /* int16 scores of QDQ graphs */
    g.p_corr = row_corr;
    g.pc_s = 1;
    g.q_corr = col_corr;
    g.qc_s = 1;
    kl_set_rq(&g, rq, 0);
    g.scratch = kl_core_scratch(scratch, K, core_id);
    kl_run_split(&g, M, N, 0, core_id, n_cores);
}

/* A[M][K] . B[K][N]: P = columns of B (strided), Q = rows of A (contiguous along k). */
static void kl_matmul_nn_any(const void *a, int a_signed, int32_t a_rs, const void *b,
                             int b_signed, int32_t b_rs, void *y, int32_t y_rs, int32_t M,
                             int32_t N, int32_t K, const int32_t *row_corr,
                             const int32_t *col_corr, const kl_rq_t *rq, void *scratch,
                             int core_id, int n_cores)
{
    kl_gemm_t g;
    g.p_base = b;
    g.p_sp = 1;
    g.p_sk = b_rs;
    g.p_signed = b_signed;
    g.q_base = a;
    g.q_sq = a_rs;
    g.q_signed = a_signed;
    g.K = K;
    g.out = y;
    g.o_sp = 1;
    g.o_sq = y_rs;
    g.mode = KL_GEMM_RQ8;
    g.p_corr = col_corr;
    g.pc_s = 1;
    g.q_corr = row_corr;
    g.qc_s = 1;
    kl_set_rq(&g, rq, 1);
    g.scratch = kl_core_scratch(scratch, K, core_id);
    kl_run_split(&g, M, N, 1, core_id, n_cores);
}

void kl_matmul_nn_u8s8(const uint8_t *a, int32_t a_rs, const int8_t *b, int32_t b_rs, void *y,
                       int32_t y_rs, int32_t M, int32_t N, int32_t K, const int32_t *row_corr,
                       const int32_t *col_corr, const kl_rq_t *rq, void *scratch, int core_id,
                       int n_cores)
{
    kl_matmul_nn_any(a, 0, a_rs, b, 1, b_rs, y, y_rs, M, N, K, row_corr, col_corr, rq, scratch,
                     core_id, n_cores);
}

void kl_matmul_nn_s8s8(const int8_t *a, int32_t a_rs, const int8_t *b, int32_t b_rs, void *y,
                       int32_t y_rs, int32_t M, int32_t N, int32_t K, const int32_t *row_corr,
                       const int32_t *col_corr, const kl_rq_t *rq, void *scratch, int core_id,
                       int n_cores)
{
    kl_matmul_nn_any(a, 1, a_rs, b, 1, b_rs, y, y_rs, M, N, K, row_corr, col_corr, rq, scratch,
                     core_id, n_cores);
}

/* Batched: unit u = b*M + m (rows) when batch*M >= n_cores; else per batch, columns. */
void kl_bmatmul(const void *a, int a_signed, int32_t a_bs, int32_t a_rs, const void *b,
                int b_signed, int b_trans, int32_t b_bs, int32_t b_rs, void *y, int32_t y_bs,
                int32_t y_rs, int32_t batch, int32_t M, int32_t N, int32_t K,
                const int32_t *row_corr, const int32_t *col_corr, const kl_rq_t *rq,
                void *scratch, int core_id, int n_cores)
{
    int32_t lo, hi, bi;
    int by_rows = (int64_t)batch * M >= n_cores;
    kl_gemm_t g;
    if (by_rows) {
        kl_split(batch * M, core_id, n_cores, &lo, &hi);
    } else {
        kl_split(N, core_id, n_cores, &lo, &hi);
    }
    for (bi = 0; bi < batch; bi++) {
        int32_t m0 = 0, m1 = M, n0 = 0, n1 = N;
        kl_rq_t r = *rq;
        if (by_rows) {
            m0 = lo - bi * M;
            m1 = hi - bi * M;
            if (m0 < 0)
                m0 = 0;
            if (m1 > M)
                m1 = M;
            if (m0 >= m1)
                continue;
        } else {
            n0 = lo;
            n1 = hi;
        }
        r.mul = rq->mul + bi * rq->mul_sb;
        r.add = rq->add ? rq->add + bi * rq->add_sb : 0;
        if (b_trans) {
            g.p_base = a_signed ? (const void *)((const int8_t *)a + bi * a_bs)
                                : (const void *)((const uint8_t *)a + bi * a_bs);
            g.p_sp = a_rs;
            g.p_sk = 1;
            g.p_signed = a_signed;
            g.q_base = (const uint8_t *)b + bi * b_bs;
            g.q_sq = b_rs;
            g.q_signed = b_signed;
            g.o_sp = y_rs;
            g.o_sq = 1;
            g.p_corr = row_corr ? row_corr + bi * M : 0;
            g.q_corr = col_corr ? col_corr + bi * N : 0;
            kl_set_rq(&g, &r, 0);
        } else {
            g.p_base = (const uint8_t *)b + bi * b_bs;
            g.p_sp = 1;
            g.p_sk = b_rs;
            g.p_signed = b_signed;
            g.q_base = (const uint8_t *)a + bi * a_bs;
            g.q_sq = a_rs;
            g.q_signed = a_signed;
            g.o_sp = 1;
            g.o_sq = y_rs;
            g.p_corr = col_corr ? col_corr + bi * N : 0;
            g.q_corr = row_corr ? row_corr + bi * M : 0;
            kl_set_rq(&g, &r, 1);
        }
        g.pc_s = 1;
        g.qc_s = 1;
        g.K = K;
        if (rq->n_levels > 256) { /* int16 output (QDQ softmax scores) */
            g.out = (int16_t *)y + bi * y_bs;
            g.mode = KL_GEMM_RQ16;
        } else {
            g.out = (uint8_t *)y + bi * y_bs;
            g.mode = KL_GEMM_RQ8;
        }
        g.scratch = kl_core_scratch(scratch, K, core_id);
        if (b_trans)
            kl_gemm_block(&g, m0, m1, n0, n1);
        else
            kl_gemm_block(&g, n0, n1, m0, m1);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* zero-point corrections                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* the matmul scratch at the start of a zero-point scratch (NULL where the path needs none) */
static void *kl_zp_mm(uint8_t *scratch, int32_t K)
{
    (void)K;
    return KL_MM_SCRATCH_PER_CORE(K) != 0 ? (void *)scratch : 0;
}

void kl_zp_sums_block(const void *x, int x_signed, int32_t rs, int32_t cs, int32_t n, int32_t K,
                      int32_t z, int32_t cst, int32_t *out, void *mm, uint8_t *zvec)
{
    kl_gemm_t g;
    int32_t k;
    if (n <= 0)
        return;
    for (k = 0; k < K; k++) /* z in [-128, 255]: its byte, read as int8 below 0 */
        zvec[k] = (uint8_t)z;
    g.K = K;
    g.out = out;
    g.mode = KL_GEMM_I32_STORE;
    g.mul = g.add = 0;
    g.m_sp = g.m_sq = g.a_sp = g.a_sq = 0;
    g.shift = g.lo = g.hi = 0;
    g.scratch = mm;
    if (cs == 1) { /* P = the z vector (one row, expanded once), Q = the n contiguous rows */
        g.p_base = zvec;
        g.p_sp = 0;
        g.p_sk = 1;
        g.p_signed = z < 0;
        g.q_base = x;
        g.q_sq = rs;
        g.q_signed = x_signed;
        g.o_sp = 0;
        g.o_sq = 1;
        g.p_corr = 0;
        g.pc_s = 0;
        g.q_corr = &cst;
        g.qc_s = 0;
        kl_gemm_block(&g, 0, 1, 0, n);
    } else { /* P = the n gathered rows, Q = the z vector */
        g.p_base = x;
        g.p_sp = rs;
        g.p_sk = cs;
        g.p_signed = x_signed;
        g.q_base = zvec;
        g.q_sq = 0;
        g.q_signed = z < 0;
        g.o_sp = 1;
        g.o_sq = 0;
        g.p_corr = &cst;
        g.pc_s = 0;
        g.q_corr = 0;
        g.qc_s = 0;
        kl_gemm_block(&g, 0, n, 0, 1);
    }
}

void kl_zp_sums(const void *x, int x_signed, int32_t rs, int32_t cs, int32_t n, int32_t K,
                int32_t z, int32_t cst, int32_t *out, void *scratch, int core_id, int n_cores)
{
    uint8_t *mine = (uint8_t *)scratch + KL_ZP_SCRATCH(K) * (size_t)core_id;
    int32_t lo, hi;
    kl_split(n, core_id, n_cores, &lo, &hi);
    if (lo >= hi)
        return;
    kl_zp_sums_block(x_signed ? (const void *)((const int8_t *)x + lo * rs)
                              : (const void *)((const uint8_t *)x + lo * rs),
                     x_signed, rs, cs, hi - lo, K, z, cst, out + lo, kl_zp_mm(mine, K),
                     mine + KL_ZP_A8(KL_MM_SCRATCH_PER_CORE(K)));
}

void kl_bmatmul_zp(const void *a, int a_signed, int32_t a_bs, int32_t a_rs, const void *b,
                   int b_signed, int b_trans, int32_t b_bs, int32_t b_rs, void *y, int32_t y_bs,
                   int32_t y_rs, int32_t batch, int32_t M, int32_t N, int32_t K, int32_t za,
                   int32_t zb, const kl_rq_t *rq, void *scratch, int core_id, int n_cores)
{
    uint8_t *mine = (uint8_t *)scratch + KL_BMATMUL_ZP_SCRATCH(M, N, K) * (size_t)core_id;
    int32_t *rc = (int32_t *)(mine + KL_ZP_SCRATCH(K));
    int32_t *cc = (int32_t *)(mine + KL_ZP_SCRATCH(K) + KL_ZP_A8(4 * (size_t)M));
    void *mm = kl_zp_mm(mine, K);
    uint8_t *zvec = mine + KL_ZP_A8(KL_MM_SCRATCH_PER_CORE(K));
    int32_t lo, hi, bi;
    const int by_rows = (int64_t)batch * M >= n_cores;
    if (by_rows)
        kl_split(batch * M, core_id, n_cores, &lo, &hi);
    else
        kl_split(N, core_id, n_cores, &lo, &hi);
    for (bi = 0; bi < batch; bi++) {
        int32_t m0 = 0, m1 = M, n0 = 0, n1 = N;
        const uint8_t *ab = (const uint8_t *)a + bi * a_bs, *bb = (const uint8_t *)b + bi * b_bs;
        kl_rq_t r = *rq;
        if (by_rows) {
            m0 = lo - bi * M > 0 ? lo - bi * M : 0;
            m1 = hi - bi * M < M ? hi - bi * M : M;
        } else {
            n0 = lo;
            n1 = hi;
        }
        if (m0 >= m1 || n0 >= n1)
            continue;
        /* this core's outputs [m0, m1) x [n0, n1) of batch bi: their corrections, then the
         * matmul on one core (the split is done here) */
        kl_zp_sums_block(ab + m0 * a_rs, a_signed, a_rs, 1, m1 - m0, K, -zb, K * za * zb,
                         rc + m0, mm, zvec);
        if (b_trans)
            kl_zp_sums_block(bb + n0 * b_rs, b_signed, b_rs, 1, n1 - n0, K, -za, 0, cc + n0, mm,
                             zvec);
        else
            kl_zp_sums_block(bb + n0, b_signed, 1, b_rs, n1 - n0, K, -za, 0, cc + n0, mm, zvec);
        r.mul = rq->mul + bi * rq->mul_sb;
        r.add = rq->add ? rq->add + bi * rq->add_sb : 0;
        r.mul_sb = r.add_sb = 0;
        r.mul += m0 * rq->mul_sr + n0 * rq->mul_sc;
        if (r.add)
            r.add += m0 * rq->add_sr + n0 * rq->add_sc;
        kl_bmatmul(ab + m0 * a_rs, a_signed, 0, a_rs,
                   bb + (b_trans ? n0 * b_rs : n0), b_signed, b_trans, 0, b_rs,
                   (uint8_t *)y + (bi * y_bs + m0 * y_rs + n0) * (rq->n_levels > 256 ? 2 : 1),
                   0, y_rs, 1, m1 - m0, n1 - n0, K, rc + m0, cc + n0, &r, mm, 0, 1);
    }
}

void kl_transpose8(const void *x, int32_t x_rs, void *y, int32_t y_rs, int32_t rows,
                   int32_t cols, int core_id, int n_cores)
{
    const uint8_t *s = (const uint8_t *)x;
    uint8_t *d = (uint8_t *)y;
    int32_t lo, hi, c, r;
    kl_split(cols, core_id, n_cores, &lo, &hi);
    for (c = lo; c < hi; c++)
        for (r = 0; r < rows; r++)
            d[c * y_rs + r] = s[r * x_rs + c];
}

void kl_linear_finalize(const int32_t *acc, int32_t acc_rs, const int32_t *bias, void *y,
                        int32_t y_rs, int32_t S, int32_t N, const kl_rq_t *rq, int core_id,
                        int n_cores)
{
    int32_t r0 = 0, r1 = S, c0 = 0, c1 = N, r, c;
    const int32_t lo = kl_qlo(rq->n_levels, rq->is_signed);
    const int32_t hi = kl_qhi(rq->n_levels, rq->is_signed);
    uint8_t *o = (uint8_t *)y;
    if (S >= n_cores)
        kl_split(S, core_id, n_cores, &r0, &r1);
    else
        kl_split(N, core_id, n_cores, &c0, &c1);
    for (r = r0; r < r1; r++) {
        for (c = c0; c < c1; c++) {
            int32_t v = acc[r * acc_rs + c];
            int32_t m = rq->mul[r * rq->mul_sr + c * rq->mul_sc];
            int32_t a = rq->add ? rq->add[r * rq->add_sr + c * rq->add_sc] : 0;
            if (bias)
                v = (int32_t)((uint32_t)v + (uint32_t)bias[c]);
            o[r * y_rs + c] = (uint8_t)kl_requant1(v, m, a, rq->shift, lo, hi);
        }
    }
}

void kl_requant(const int32_t *x, int32_t x_rs, void *y, int32_t y_rs, int32_t rows,
                int32_t cols, const kl_rq_t *rq, int core_id, int n_cores)
{
    kl_linear_finalize(x, x_rs, 0, y, y_rs, rows, cols, rq, core_id, n_cores);
}

/* int32 operands (graphs whose activations are int32 tensors): the products and their sum are
 * formed modulo 2^32 (unsigned), which equals the exact sum whenever that fits int32 -- the golden
 * model checks that it does. Portable C only. Split: batch*M rows, else columns N. */
void kl_bmatmul_i32(const int32_t *a, int32_t a_bs, int32_t a_rs, const int32_t *b, int b_trans,
                    int32_t b_bs, int32_t b_rs, void *y, int32_t y_bs, int32_t y_rs,
                    int32_t batch, int32_t M, int32_t N, int32_t K, const kl_rq_t *rq,
                    int core_id, int n_cores)
{
    const int32_t lo_c = kl_qlo(rq->n_levels, rq->is_signed);
    const int32_t hi_c = kl_qhi(rq->n_levels, rq->is_signed);
    int32_t r0, r1, c0 = 0, c1 = N, row, n, k;
    if ((int64_t)batch * M >= n_cores) {
        kl_split(batch * M, core_id, n_cores, &r0, &r1);
    } else {
        r0 = 0;
        r1 = batch * M;
        kl_split(N, core_id, n_cores, &c0, &c1);
    }
    for (row = r0; row < r1; row++) {
        const int32_t bi = row / M, m = row % M;
        const int32_t *ar = a + bi * a_bs + m * a_rs;
        const int32_t *bb = b + bi * b_bs;
        for (n = c0; n < c1; n++) {
            uint32_t acc = 0;
            int32_t mul, add;
            for (k = 0; k < K; k++) {
                const int32_t bv = b_trans ? bb[n * b_rs + k] : bb[k * b_rs + n];
                acc += (uint32_t)ar[k] * (uint32_t)bv;
            }
            mul = rq->mul[bi * rq->mul_sb + m * rq->mul_sr + n * rq->mul_sc];
            add = rq->add ? rq->add[bi * rq->add_sb + m * rq->add_sr + n * rq->add_sc] : 0;
            ((uint8_t *)y)[bi * y_bs + m * y_rs + n] =
                (uint8_t)kl_requant1((int32_t)acc, mul, add, rq->shift, lo_c, hi_c);
        }
    }
}
