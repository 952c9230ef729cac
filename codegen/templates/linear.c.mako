<%page args="L"/>\
static void body_${L['ident']}(const nr_tile_t *t, int core_id, int n_cores)
{
% for line in L['decls']:
    ${line}
% endfor
    const int32_t S = ${L['S']}, N = ${L['N']}, K = ${L['K']};
% if L['has_rq']:
    kl_rq_t rq;
% for line in L['rq_lines']:
    ${line}
% endfor
% endif
% if L['full_bias']:
    /* the bias tile [S][N] is the int32 accumulator: every K chunk is added into it */
    kl_linear_${L['xs']}_i32(${L['x']}, ${L['x_rs']}, ${L['w']}, ${L['w_rs']}, NULL, ${L['bias']}, ${L['bias_rs']}, S, N, K,
                      KL_ACC_ADD, ${L['scratch']}, core_id, n_cores);
    if (${L['k_last']})
        kl_linear_finalize(${L['bias']}, ${L['bias_rs']}, NULL, ${L['y']}, ${L['y_rs']}, S, N, &rq, core_id, n_cores);
% elif L['bias_into_y']:
    /* int32 output with a full bias: the bias tile was loaded into the y tile; add every K chunk */
    kl_linear_${L['xs']}_i32(${L['x']}, ${L['x_rs']}, ${L['w']}, ${L['w_rs']}, NULL, (int32_t *)${L['y']}, ${L['y_rs']}, S, N, K,
                      KL_ACC_ADD, ${L['scratch']}, core_id, n_cores);
% elif not L['has_rq']:
    /* int32 output: the y tile is the accumulator */
    kl_linear_${L['xs']}_i32(${L['x']}, ${L['x_rs']}, ${L['w']}, ${L['w_rs']}, (${L['k_first']}) ? ${L['bias']} : NULL,
                      (int32_t *)${L['y']}, ${L['y_rs']}, S, N, K, (${L['k_first']}) ? KL_ACC_STORE : KL_ACC_ADD,
                      ${L['scratch']}, core_id, n_cores);
% elif L['k_split']:
    /* K split: int32 partial sums in psum (bias with the first chunk), requantized after the last */
    kl_linear_${L['xs']}_i32(${L['x']}, ${L['x_rs']}, ${L['w']}, ${L['w_rs']}, (${L['k_first']}) ? ${L['bias']} : NULL,
                      ${L['psum']}, N, S, N, K, (${L['k_first']}) ? KL_ACC_STORE : KL_ACC_ADD,
                      ${L['scratch']}, core_id, n_cores);
    if (${L['k_last']})
        kl_linear_finalize(${L['psum']}, N, NULL, ${L['y']}, ${L['y_rs']}, S, N, &rq, core_id, n_cores);
% else:
    kl_linear_${L['xs']}(${L['x']}, ${L['x_rs']}, ${L['w']}, ${L['w_rs']}, ${L['bias']}, ${L['y']}, ${L['y_rs']}, S, N, K, &rq,
                 ${L['scratch']}, core_id, n_cores);
% endif
}
