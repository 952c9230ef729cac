/* kernel_lib.h - int8 kernels for Tiny Transformers on MCUs (GAP9 cluster, Cortex-M7/M4).
 *
 * Every function is bit-exact with planner/golden/ops.py. Layouts, core splits and scratch
 * sizes are described machine-readably in kernel_lib/descriptions.py and for humans in
 * docs/kernels.md. All strides are in elements. All kernels take (core_id, n_cores) last and
 * compute only their share; call them from every core with the same arguments.
 */
#ifndef KERNEL_LIB_H
#define KERNEL_LIB_H

#include "kl_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Scratch bytes PER CORE needed by the matmul-family kernels (linear, matmul_*):
 * the Arm DSP path pre-expands KL_DSP_RMAX rows x K of the "row" operand to int16. The
 * portable and XpulpV2 paths need none. Pass a buffer of n_cores * KL_MM_SCRATCH_PER_CORE(K)
 * bytes, 8-byte aligned (NULL selects the portable path). */
#define KL_DSP_RMAX 6
#if KL_ARM_DSP
#define KL_MM_SCRATCH_PER_CORE(K) ((size_t)(2 * KL_DSP_RMAX) * (size_t)(K))
#else
#define KL_MM_SCRATCH_PER_CORE(K) ((size_t)0)
#endif

/* Output modes of the int32 variants. */
#define KL_ACC_STORE 0 /* acc  = X.W^T (+ bias) */
#define KL_ACC_ADD 1   /* acc += X.W^T (+ bias) */

/* ---------------------------------------------------------------------------------------- */
/* Linear: Y[S][N] = RQ(X[S][K] . W[N][K]^T + bias[N])                                      */
/*   X row stride x_rs, W row stride w_rs (w_rs >= K; a column slice W[:, k0:k0+K] is        */
/*   w + k0 with the full row stride), Y row stride y_rs. bias may be NULL.                  */
/*   Split across cores: rows S when S >= n_cores, else output features N.                   */
/* ---------------------------------------------------------------------------------------- */
void kl_linear_s8(const int8_t *x, int32_t x_rs, const int8_t *w, int32_t w_rs,
                  const int32_t *bias, void *y, int32_t y_rs, int32_t S, int32_t N, int32_t K,
                  const kl_rq_t *rq, void *scratch, int core_id, int n_cores);
void kl_linear_u8(const uint8_t *x, int32_t x_rs, const int8_t *w, int32_t w_rs,
                  const int32_t *bias, void *y, int32_t y_rs, int32_t S, int32_t N, int32_t K,
                  const kl_rq_t *rq, void *scratch, int core_id, int n_cores);

/* Transposed output: Y^T[N][S] (row stride y_rs) = RQ(X[S][K] . W[N][K]^T + bias[N]), the rq
 * indexed as for Y[S][N] (mul_sc per output feature). Split: rows S when S >= n_cores, else N. */
void kl_linear_t_s8(const int8_t *x, int32_t x_rs, const int8_t *w, int32_t w_rs,
                    const int32_t *bias, void *y, int32_t y_rs, int32_t S, int32_t N, int32_t K,
                    const kl_rq_t *rq, void *scratch, int core_id, int n_cores);
void kl_linear_t_u8(const uint8_t *x, int32_t x_rs, const int8_t *w, int32_t w_rs,
                    const int32_t *bias, void *y, int32_t y_rs, int32_t S, int32_t N, int32_t K,
                    const kl_rq_t *rq, void *scratch, int core_id, int n_cores);

/* int32 partial sums for a K split: acc[S][N] (row stride acc_rs) = or += X.W^T (+ bias when
 * bias != NULL: pass the bias with exactly one K chunk). mode: KL_ACC_STORE / KL_ACC_ADD. */
void kl_linear_s8_i32(const int8_t *x, int32_t x_rs, const int8_t *w, int32_t w_rs,
                      const int32_t *bias, int32_t *acc, int32_t acc_rs, int32_t S, int32_t N,
                      int32_t K, int mode, void *scratch, int core_id, int n_cores);
void kl_linear_u8_i32(const uint8_t *x, int32_t x_rs, const int8_t *w, int32_t w_rs,
                      const int32_t *bias, int32_t *acc, int32_t acc_rs, int32_t S, int32_t N,
                      int32_t K, int mode, void *scratch, int core_id, int n_cores);

/* Finalize: Y[S][N] = RQ(acc[S][N] + bias[N]); bias may be NULL. Split: rows, else columns. */
void kl_linear_finalize(const int32_t *acc, int32_t acc_rs, const int32_t *bias, void *y,
                        int32_t y_rs, int32_t S, int32_t N, const kl_rq_t *rq, int core_id,
                        int n_cores);

/* ---------------------------------------------------------------------------------------- */
/* Activation x activation matmuls (int32 accumulation, RQ to 8 bits).                      */
/* Optional zero-point correction hooks: row_corr[M] and col_corr[N] (int32, may be NULL)    */
/* are added to the accumulator of output (m, n) before requantization.                      */
/* ---------------------------------------------------------------------------------------- */

/* "NT" (scores): Y[M][N] = RQ(A[M][K] . B[N][K]^T). A, B int8 token-major with row strides
 * (e.g. Q_h and K_h of a head: pointer to the head's first feature, stride H*P).
 * rq->n_levels = 65536 (QDQ softmax scores): Y is int16 (y_rs in int16 elements); the same
 * holds for kl_bmatmul (y_bs, y_rs in int16 elements).
 * Split: rows M when M >= n_cores, else columns N. */
void kl_matmul_nt_s8(const int8_t *a, int32_t a_rs, const int8_t *b, int32_t b_rs, void *y,
                     int32_t y_rs, int32_t M, int32_t N, int32_t K, const int32_t *row_corr,
                     const int32_t *col_corr, const kl_rq_t *rq, void *scratch, int core_id,
                     int n_cores);

/* "NN": Y[M][N] = RQ(A[M][K] . B[K][N]). A uint8 (probabilities) or int8, B int8 with row
 * stride b_rs (e.g. V_h token-major [S][P] inside [S][H*P]: b_rs = H*P).
 * Head-interleaved output [S][H][P] is y = out + h*P, y_rs = H*P.
 * Split: rows M when M >= n_cores, else columns N. */
void kl_matmul_nn_u8s8(const uint8_t *a, int32_t a_rs, const int8_t *b, int32_t b_rs, void *y,
                       int32_t y_rs, int32_t M, int32_t N, int32_t K, const int32_t *row_corr,
                       const int32_t *col_corr, const kl_rq_t *rq, void *scratch, int core_id,
                       int n_cores);
void kl_matmul_nn_s8s8(const int8_t *a, int32_t a_rs, const int8_t *b, int32_t b_rs, void *y,
                       int32_t y_rs, int32_t M, int32_t N, int32_t K, const int32_t *row_corr,
                       const int32_t *col_corr, const kl_rq_t *rq, void *scratch, int core_id,
                       int n_cores);

/* Generic batched matmul (peer graph form [B][M][K] @ [B][K][N] -> [B][M][N], or with
 * b_trans = 1: B stored [B][N][K]). a_signed / b_signed select int8 (1) or uint8 (0) operands.
 * Batch strides a_bs, b_bs, y_bs (elements); RQ parameters use rq->mul_sb / add_sb for the
 * batch index (per-head mul = stride 1). row_corr/col_corr: [batch][M] / [batch][N] with
 * strides M and N, or NULL. Split: the batch*M output rows, else batch*N... see docs. */
void kl_bmatmul(const void *a, int a_signed, int32_t a_bs, int32_t a_rs, const void *b,
                int b_signed, int b_trans, int32_t b_bs, int32_t b_rs, void *y, int32_t y_bs,
                int32_t y_rs, int32_t batch, int32_t M, int32_t N, int32_t K,
                const int32_t *row_corr, const int32_t *col_corr, const kl_rq_t *rq,
                void *scratch, int core_id, int n_cores);

/* As kl_bmatmul with int32 operands A[B][M][K], B[B][K][N] (b_trans: [B][N][K]); sums formed
 * modulo 2^32, exact when they fit int32 (the golden model checks it). Portable C only. */
void kl_bmatmul_i32(const int32_t *a, int32_t a_bs, int32_t a_rs, const int32_t *b, int b_trans,
                    int32_t b_bs, int32_t b_rs, void *y, int32_t y_bs, int32_t y_rs,
                    int32_t batch, int32_t M, int32_t N, int32_t K, const kl_rq_t *rq,
                    int core_id, int n_cores);

/* Zero-point sums (QDQ activations that keep their zero points): out[i] = cst + z * sum_k
 * x[i*rs + k*cs] (int32), i < n, k < K, x int8 (x_signed) or uint8, z in [-128, 255]. Computed
 * by the gemm core against a vector of K copies of z, so that a correction costs what a gemm
 * call of 1 x n x K costs (descriptions.py "zp_sums"). cs == 1: the n rows are contiguous
 * along k; else they are gathered through the stride cs. kl_zp_sums splits the n sums across
 * cores, scratch KL_ZP_SCRATCH(K) bytes PER CORE, 8-byte aligned. kl_zp_sums_block computes
 * them all on the calling core: mm is its matmul scratch (KL_MM_SCRATCH_PER_CORE(K) bytes,
 * or NULL), zvec K bytes of its own. */
#define KL_ZP_A8(n) (((size_t)(n) + 7u) & ~(size_t)7u)
#define KL_ZP_SCRATCH(K) (KL_ZP_A8(KL_MM_SCRATCH_PER_CORE(K)) + KL_ZP_A8(K))
void kl_zp_sums_block(const void *x, int x_signed, int32_t rs, int32_t cs, int32_t n, int32_t K,
                      int32_t z, int32_t cst, int32_t *out, void *mm, uint8_t *zvec);
void kl_zp_sums(const void *x, int x_signed, int32_t rs, int32_t cs, int32_t n, int32_t K,
                int32_t z, int32_t cst, int32_t *out, void *scratch, int core_id, int n_cores);

/* kl_bmatmul with operand zero points: Y = RQ((A - za) . (B - zb)), exact through the
 * corrections -zb * sum_k A[m][k] + K * za * zb (per row) and -za * sum_k B[k][n] (per column),
 * which every core computes for its own outputs only (kl_zp_sums_block). scratch PER CORE:
 * KL_BMATMUL_ZP_SCRATCH(M, N, K) bytes, 8-byte aligned (replaces kl_bmatmul's scratch). */
#define KL_BMATMUL_ZP_SCRATCH(M, N, K) (KL_ZP_SCRATCH(K) + KL_ZP_A8(4 * (size_t)(M)) + KL_ZP_A8(4 * (size_t)(N)))
void kl_bmatmul_zp(const void *a, int a_signed, int32_t a_bs, int32_t a_rs, const void *b,
                   int b_signed, int b_trans, int32_t b_bs, int32_t b_rs, void *y, int32_t y_bs,
                   int32_t y_rs, int32_t batch, int32_t M, int32_t N, int32_t K, int32_t za,
                   int32_t zb, const kl_rq_t *rq, void *scratch, int core_id, int n_cores);

/* Y[cols][rows] = X[rows][cols]^T (int8 bytes; also usable for uint8). Split: output rows. */
void kl_transpose8(const void *x, int32_t x_rs, void *y, int32_t y_rs, int32_t rows,
                   int32_t cols, int core_id, int n_cores);

/* ---------------------------------------------------------------------------------------- */
/* Row-wise operators (the row is the last axis, length L; split: rows).                   */
/* ---------------------------------------------------------------------------------------- */

/* I-BERT integer softmax. Output uint8 in [0, n_levels-1].
 * scratch: 4*L bytes per core (int32), n_cores*4*L in total, 4-byte aligned.
 * Requires: log2 >= 1, coeff_a >= 0, coeff_c >= 0, coeff_a*coeff_b^2 + coeff_c > 0,
 * ymax = coeff_a*(|coeff_b|+log2)^2 + coeff_c with ymax*(n_levels-1) < 2^31 and
 * ymax*L < 2^31 (see docs/kernels.md). */
void kl_isoftmax(const int8_t *x, int32_t x_rs, uint8_t *y, int32_t y_rs, int32_t rows,
                 int32_t L, int32_t coeff_a, int32_t coeff_b, int32_t coeff_c, int32_t log2,
                 int32_t n_levels, int rounded, int32_t *scratch, int core_id, int n_cores);

/* ITA hardware softmax. n_levels a power of two (2..256). Output uint8 in [0, n_levels-1]. */
void kl_itamax(const int8_t *x, int32_t x_rs, uint8_t *y, int32_t y_rs, int32_t rows,
               int32_t L, int32_t n_levels, int core_id, int n_cores);

/* Streaming ITA softmax over groups of group_width columns (L >= group_width).
 * Output uint8 in [0, n_levels/2-1]. */
void kl_ita_partial_max(const int8_t *x, int32_t x_rs, uint8_t *y, int32_t y_rs, int32_t rows,
                        int32_t L, int32_t group_width, int32_t n_levels, int core_id,
                        int n_cores);

/* Integer LayerNorm (QuantLib iLayerNorm): weight[L], bias[L] int32, D = 2^d_log2.
 * Output int8 in the signed n_levels range. Requires |weight| < 2^23, L*255^2 < 2^31. */
void kl_ilayernorm(const int8_t *x, int32_t x_rs, int8_t *y, int32_t y_rs, int32_t rows,
                   int32_t L, const int32_t *weight, const int32_t *bias, int32_t d_log2,
                   int32_t n_levels, int core_id, int n_cores);

/* Element types of the kernels that take several (x_type / a_type / y_type arguments); the
 * values of KL_DT_U8 and KL_DT_S8 equal the a_signed flags of kl_add_rq. */
#define KL_DT_U8 0
#define KL_DT_S8 1
#define KL_DT_S16 2

/* LayerNorm of QDQ graphs (golden ops.layernorm_qdq): x (KL_DT_S8 / U8 / S16) widened by
 * 2^in_shift, rounded mean, 64-bit variance + eps, std rounded with 8 fractional bits, x_hat
 * with 16 through a rounded 2^30 reciprocal (one division per row), then
 * y = clip((x_hat*2^16*weight[i] + bias[i]*2^16) >> (16 + d_log2)). Output int8.
 * Requires |x*2^in_shift| < 2^16, L < 2^14, |weight| < 2^24, 0 <= eps < 2^30. */
void kl_layernorm_qdq(const void *x, int x_type, int32_t x_rs, int8_t *y, int32_t y_rs,
                      int32_t rows, int32_t L, const int32_t *weight, const int32_t *bias,
                      int32_t in_shift, int32_t eps, int32_t d_log2, int32_t n_levels,
                      int core_id, int n_cores);

/* I-BERT integer softmax of int16 logits (QDQ softmax scores wider than an int8 window): the
 * integer function of kl_isoftmax on the wider input (the exponent z = floor(d/log2) by an
 * exact 64-bit multiply, terms with z > 31 are 0) with a ROUNDED normalisation
 * floor((2*y*(n-1) + S)/(2*S)) (golden isoftmax(..., rounded=True)). Output uint8 in
 * [0, n_levels-1]. scratch: 4*L bytes per core. Requires 2*ymax*(n_levels-1) + L*ymax < 2^31.
 * The MHSA kernels' wide-score mode (rq_s->n_levels = 65536) computes the same softmax. */
void kl_isoftmax_s16(const int16_t *x, int32_t x_rs, uint8_t *y, int32_t y_rs, int32_t rows,
                     int32_t L, int32_t coeff_a, int32_t coeff_b, int32_t coeff_c, int32_t log2,
                     int32_t n_levels, int32_t *scratch, int core_id, int n_cores);

/* ---------------------------------------------------------------------------------------- */
/* Elementwise operators on [rows][cols] (split: rows when rows >= n_cores, else columns).  */
/* ---------------------------------------------------------------------------------------- */

/* I-BERT GELU, wide int32 output: y = x * ((one + sign(x)*(one - (min(|x|,-b) + b)^2)) >> 1). */
void kl_igelu_i32(const int8_t *x, int32_t x_rs, int32_t *y, int32_t y_rs, int32_t rows,
                  int32_t cols, int32_t b, int32_t one, int core_id, int n_cores);
/* Fused iGELU + RequantShift to 8 bits. */
void kl_igelu_rq(const int8_t *x, int32_t x_rs, void *y, int32_t y_rs, int32_t rows,
                 int32_t cols, int32_t b, int32_t one, const kl_rq_t *rq, int core_id,
                 int n_cores);

/* Requantized add (QuantLib residual pattern): y = RQ_out(RQ_a(a) + RQ_b(b)).
 * a, b int8 (a_signed/b_signed = 0: uint8). Each rq_* has its own mul/add/shift/range;
 * the intermediate RQ_a, RQ_b results are clipped to their own n_levels range. */
void kl_add_rq(const void *a, int a_signed, int32_t a_rs, const kl_rq_t *rq_a, const void *b,
               int b_signed, int32_t b_rs, const kl_rq_t *rq_b, void *y, int32_t y_rs,
               int32_t rows, int32_t cols, const kl_rq_t *rq_out, int core_id, int n_cores);

/* kl_add_rq with 16-bit operands and/or output (int16 residual streams of QDQ graphs):
 * a_type, b_type, y_type are KL_DT_U8 / KL_DT_S8 / KL_DT_S16; an int16 output takes
 * rq_out->n_levels = 65536 (signed). Same arithmetic as kl_add_rq: the intermediate RQ_a, RQ_b
 * results are int32 (clipped to their n_levels range), RQ_out with a 64-bit product. */
void kl_add_rq_x(const void *a, int a_type, int32_t a_rs, const kl_rq_t *rq_a, const void *b,
                 int b_type, int32_t b_rs, const kl_rq_t *rq_b, void *y, int y_type, int32_t y_rs,
                 int32_t rows, int32_t cols, const kl_rq_t *rq_out, int core_id, int n_cores);

/* 8-bit table lookup (the GELU of QDQ graphs): y = table[x + 128] for int8 x (x_signed = 1),
 * table[x] for uint8; table: 256 bytes (int8 or uint8 values), y 8 bit. */
void kl_lut8(const void *x, int x_signed, int32_t x_rs, const uint8_t *table, void *y,
             int32_t y_rs, int32_t rows, int32_t cols, int core_id, int n_cores);

/* Standalone RequantShift int32 -> 8 bits. */
void kl_requant(const int32_t *x, int32_t x_rs, void *y, int32_t y_rs, int32_t rows,
                int32_t cols, const kl_rq_t *rq, int core_id, int n_cores);

/* ---------------------------------------------------------------------------------------- */
/* Internal entry (used by the wrappers above and by fused kernels built on this library).  */
/* ---------------------------------------------------------------------------------------- */
typedef struct kl_gemm {
    /* P operand ("rows" of the core): element (p, k) at p_base[p*p_sp + k*p_sk] */
    const void *p_base;
    int32_t p_sp, p_sk;
    int p_signed;
    /* Q operand ("columns" of the core): element (q, k) at q_base[q*q_sq + k], k contiguous */
    const void *q_base;
    int32_t q_sq;
    int q_signed;
    int32_t K;
    /* output element (p, q) at out[p*o_sp + q*o_sq]; int32 or 8-bit per mode */
    void *out;
    int32_t o_sp, o_sq;
    int mode; /* KL_GEMM_RQ8, KL_GEMM_I32_STORE, KL_GEMM_I32_ADD */
    /* corrections added to the accumulator (may be NULL): p_corr[p*pc_s], q_corr[q*qc_s] */
    const int32_t *p_corr;
    int32_t pc_s;
    const int32_t *q_corr;
    int32_t qc_s;
    /* requantization: mul[p*m_sp + q*m_sq], add[p*a_sp + q*a_sq] (already mapped) */
    const int32_t *mul, *add;
    int32_t m_sp, m_sq, a_sp, a_sq;
    int32_t shift, lo, hi;
    void *scratch; /* this core's scratch (KL_MM_SCRATCH_PER_CORE(K) bytes) */
} kl_gemm_t;

#define KL_GEMM_RQ8 0
#define KL_GEMM_I32_STORE 1
#define KL_GEMM_I32_ADD 2
#define KL_GEMM_RQ16 3 /* requantized to int16 (n_levels up to 65536), o strides in int16 */

/* Computes the block p in [p0,p1) x q in [q0,q1) on the calling core (no split). */
void kl_gemm_block(const kl_gemm_t *g, int32_t p0, int32_t p1, int32_t q0, int32_t q1);


/* ---------------------------------------------------------------------------------------- */
/* Depth-first multi-head self-attention (kl_mhsa.c). docs/kernels.md, "Depth-first MHSA".  */
/* ---------------------------------------------------------------------------------------- */

/* Softmax of the attention rows (the whole key dimension is present: exact, no rescaling). */
#define KL_SM_NONE 0       /* probabilities = scores (int8), e.g. EEGFormer */
#define KL_SM_ISOFTMAX 1   /* I-BERT, coefficients coeff_a/b/c, log2; uint8 in [0, n_levels-1] */
#define KL_SM_ITAMAX 2     /* ITA softmax, n_levels a power of two */
#define KL_SM_ITAPARTIAL 3 /* streaming ITA softmax over groups of group_width columns */
#define KL_SM_LUT_WORDS 256 /* int32 words of a softmax table (kl_softmax_lut) */

typedef struct kl_softmax {
    int32_t kind;                             /* KL_SM_* */
    int32_t coeff_a, coeff_b, coeff_c, log2;  /* KL_SM_ISOFTMAX */
    int32_t group_width;                      /* KL_SM_ITAPARTIAL */
    int32_t n_levels;
    /* KL_SM_ISOFTMAX: 1 = rounded normalisation floor((2*y*(n-1) + S) / (2*S)) (QDQ graphs: no
     * -0.5 LSB bias), 0 = floored (QuantLib / Deeploy) */
    int32_t rounded;
    /* optional: the table of these parameters (kl_softmax_lut, KL_SM_LUT_WORDS int32; a model
     * constant, so it may be built once or emitted as const data). NULL: built per call in
     * the kernel's scratch (about 2.5k instructions per call and core). */
    const int32_t *lut;
} kl_softmax_t;

/* Fills lut[256] for ISOFTMAX (lut[d] = exponential term of a logit d below the row max) or
 * ITAMAX (lut[d] = shift(d) << 16 | (2^B >> shift(d))). Other kinds: no table, no-op. */
void kl_softmax_lut(const kl_softmax_t *sm, int32_t *lut);

/* Row softmax through the table: bit-exact with kl_isoftmax / kl_itamax /
 * kl_ita_partial_max (which it calls for ITAPARTIAL); KL_SM_NONE copies. y may equal x (in
 * place). scratch: 1024 bytes per core (4-byte aligned) when sm->lut == NULL, else none.
 * Split: rows. Same rules as kl_isoftmax / kl_itamax. */
void kl_softmax_rows(const int8_t *x, int32_t x_rs, uint8_t *y, int32_t y_rs, int32_t rows,
                     int32_t L, const kl_softmax_t *sm, void *scratch, int core_id,
                     int n_cores);

/* One head, one chunk of query rows: scores = RQ_s(Qrows . K^T) (x rows of S, never the S x S
 * map), softmax on full rows, O = RQ_v(probs . V); O written as 8 bit, or fused with the
 * output projection: acc[rows][E_out] (+)= O . W_o^T (int32, exact).
 * FWSA (w_f != NULL): the query rows are I* = RQ_i(Xrows . W_f^T + b_f) [+ row term] and the
 * keys are X itself. Rows are processed in groups of KL_MHSA_G through kl_gemm_block. */
#define KL_MHSA_G 6
typedef struct kl_attn {
    int32_t S; /* keys / values (length of every score row) */
    int32_t D; /* length of the score dot products: P (standard) or E (FWSA) */
    int32_t P; /* head size of the values */
    /* query side: standard: Q_h rows [rows][D]; FWSA: X rows [rows][D] (row stride q_rs) */
    const void *q;
    int32_t q_rs;
    /* FWSA only (else NULL): W_f of the head [D][D] ([out][in]), b_f [D] (may be NULL),
     * rq_i (per output feature through mul_sc/add_sc); optional row term (no-softmax
     * blocks): r = RQ_row(Xrow . w_row) clipped to int32, added to every score accumulator */
    const int8_t *w_f;
    const int32_t *b_f;
    const kl_rq_t *rq_i;
    const int8_t *w_row;
    const kl_rq_t *rq_row;
    /* keys: K_h [S][D] (FWSA: X [S][D]), row stride k_rs; 8-bit, signedness k_signed */
    const void *k;
    int32_t k_rs;
    int32_t q_signed, k_signed;
    const kl_rq_t *rq_s; /* scores (signed when a softmax follows) */
    kl_softmax_t sm;
    /* values: v_trans = 1: V_h^T [P][S] (fast: K of the matmul contiguous); v_trans = 0:
     * V_h [S][P] token-major (columns gathered per group: about 3 instructions per element
     * of V_h per group of rows on arm-dsp). Row stride v_rs, signedness v_signed. */
    const void *v;
    int32_t v_rs, v_trans, v_signed;
    const kl_rq_t *rq_v; /* O_h = RQ_v(probs . V_h), 8 bit */
    /* zero points of Q, K, V (QDQ graphs; standard form only for zq/zk): scores =
     * RQ_s((Q_h - zq) . (K_h - zk)^T), O_h = RQ_v(probs . (V_h - zv)), exact. k_corr [S]:
     * -zq * sum_p K_h[n][p] + D * zq * zk, per head (kl_zp_sums), or NULL when zq = zk = 0;
     * the rows' -zk * sum_p Q_h[r][p] and -zv * sum_j probs[r][j] are formed per group
     * (kl_zp_sums_block). All 0 / NULL: no zero points. */
    const int32_t *k_corr;
    int32_t zk, zv;
    /* output: acc == NULL: O_h [rows][P] at o, row stride o_rs (head-interleaved
     * [S][H][P]: out + h*P, H*P). acc != NULL: acc[rows][E_out] (row stride acc_rs)
     * = (KL_ACC_STORE) or += (KL_ACC_ADD) O_h . W_o^T, with W_o [E_out][P] (row stride
     * w_o_rs: the head's column slice of [E_out][H*P]), + b_o[E_out] when b_o != NULL
     * (pass it with one head only, or leave it to the final requantization). */
    void *o;
    int32_t o_rs;
    const int8_t *w_o;
    int32_t w_o_rs, E_out;
    const int32_t *b_o;
    int32_t *acc;
    int32_t acc_rs, acc_mode;
} kl_attn_t;

/* Rows split across cores (balanced; a core with no rows returns); every row is independent,
 * so results do not depend on n_cores. Row-varying RQ parameters (mul_sr) are indexed from
 * the chunk's first row. scratch: n_cores * kl_mhsa_chunk_scratch bytes (8-byte aligned). */
void kl_mhsa_chunk(const kl_attn_t *a, int32_t rows, void *scratch, int core_id, int n_cores);
/* Scratch bytes PER CORE of kl_mhsa_chunk (as kernel_lib/descriptions.py "mhsa_chunk"). */
size_t kl_mhsa_chunk_scratch(const kl_attn_t *a);

/* Whole MHSA block, depth-first: heads outer, chunks of `chunk` query rows inner; per head
 * K_h [S][P] and V_h^T [P][S] (FWSA: V_h^T only) projected into scratch, per group of rows
 * Q_h (FWSA: I*) projected, then the chunk kernel with the output projection accumulated in
 * acc [S][E_out] (caller memory, int32), finally Y = RQ_o(acc + b_o).
 * Multi-core: per head the S tokens of the K/V projections are split across cores and
 * `barrier(barrier_ctx)` is called (by every core) after them and before the next head;
 * the rows of each chunk are split across cores. Without a barrier (NULL) and n_cores > 1,
 * every core projects K_h/V_h itself into its own scratch (no synchronization at all, more
 * work). scratch: kl_mhsa_block_scratch(m, n_cores) bytes, 8-byte aligned. */
typedef void (*kl_barrier_fn)(void *ctx);
typedef struct kl_mhsa {
    int32_t S, E, H, P, E_out;
    const void *x; /* [S][E] int8 (x_signed = 1) or uint8 (0), row stride x_rs */
    int32_t x_rs, x_signed;
    /* standard form (w_f == NULL): W_q, W_k [H*P][E], biases [H*P] (may be NULL), RQ over
     * the H*P output columns (per tensor or per column: mul_sc/add_sc) */
    const int8_t *w_q, *w_k;
    const int32_t *b_q, *b_k;
    const kl_rq_t *rq_q, *rq_k;
    /* FWSA form: W_f [H][E][E], b_f [H][E] (may be NULL), rq_i per head through mul_sb
     * (E: per-row weight scales with mul_sc = 1; 1: per head), w_row [H][E] / rq_row (per
     * head through mul_sb) or NULL */
    const int8_t *w_f;
    const int32_t *b_f;
    const kl_rq_t *rq_i;
    const int8_t *w_row;
    const kl_rq_t *rq_row;
    const int8_t *w_v; /* [H*P][E] */
    const int32_t *b_v;
    const kl_rq_t *rq_v;
    const kl_rq_t *rq_s;  /* per head through mul_sb/add_sb (0: per tensor) */
    kl_softmax_t sm;
    const kl_rq_t *rq_av; /* per head through mul_sb/add_sb */
    const int8_t *w_o;    /* [E_out][H*P] */
    const int32_t *b_o;
    const kl_rq_t *rq_o;
    void *y; /* [S][E_out] 8 bit, row stride y_rs */
    int32_t y_rs;
    int32_t *acc; /* [S][E_out] int32, row stride acc_rs (caller memory) */
    int32_t acc_rs;
    int32_t chunk; /* query rows per chunk (>= 1) */
    /* zero points kept by Q, K (standard form only) and V (QDQ graphs), as kl_attn_t: K_h's
     * correction is formed after it in the K/V scratch; 0: none */
    int32_t zq, zk, zv;
    void *scratch;
    kl_barrier_fn barrier; /* NULL: no synchronization (see above) */
    void *barrier_ctx;
} kl_mhsa_t;

void kl_mhsa_block(const kl_mhsa_t *m, int core_id, int n_cores);
/* Scratch bytes in total for n_cores (as descriptions.py "mhsa_block"). */
size_t kl_mhsa_block_scratch(const kl_mhsa_t *m, int n_cores);

#ifdef __cplusplus
}
#endif
#endif /* KERNEL_LIB_H */
