<%page args="L"/>\
static void body_${L['ident']}(const nr_tile_t *t, int core_id, int n_cores)
{
% for line in L['decls']:
    ${line}
% endfor
    kl_rq_t rq;
% for line in L['rq_lines']:
    ${line}
% endfor
% if L['wide']:
    kl_bmatmul_i32((const int32_t *)${L['a']}, ${L['a_bs']}, ${L['a_rs']}, (const int32_t *)${L['b']}, ${L['b_trans']}, ${L['b_bs']}, ${L['b_rs']},
                   ${L['y']}, ${L['y_bs']}, ${L['y_rs']}, ${L['B']}, ${L['M']}, ${L['N']}, ${L['K']}, &rq, core_id, n_cores);
% elif L['za'] or L['zb']:
    /* operands with zero points (QDQ): (A - ${L['za']}) . (B - ${L['zb']}), corrections formed per core */
    kl_bmatmul_zp(${L['a']}, ${L['a_signed']}, ${L['a_bs']}, ${L['a_rs']}, ${L['b']}, ${L['b_signed']}, ${L['b_trans']}, ${L['b_bs']}, ${L['b_rs']},
                  ${L['y']}, ${L['y_bs']}, ${L['y_rs']}, ${L['B']}, ${L['M']}, ${L['N']}, ${L['K']}, ${L['za']}, ${L['zb']}, &rq, ${L['scratch']},
                  core_id, n_cores);
% else:
    kl_bmatmul(${L['a']}, ${L['a_signed']}, ${L['a_bs']}, ${L['a_rs']}, ${L['b']}, ${L['b_signed']}, ${L['b_trans']}, ${L['b_bs']}, ${L['b_rs']},
               ${L['y']}, ${L['y_bs']}, ${L['y_rs']}, ${L['B']}, ${L['M']}, ${L['N']}, ${L['K']}, NULL, NULL, &rq, ${L['scratch']},
               core_id, n_cores);
% endif
}
