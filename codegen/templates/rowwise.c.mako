<%page args="L"/>\
static void body_${L['ident']}(const nr_tile_t *t, int core_id, int n_cores)
{
% for line in L['decls']:
    ${line}
% endfor
    const int32_t R = ${L['R']}, C = ${L['C']};
% for k in L['rqs']:
    kl_rq_t ${k};
% endfor
% for line in L['rq_lines']:
    ${line}
% endfor
% if L['op'] == 'LayerNorm' and L['qdq']:
    kl_layernorm_qdq(${L['x']}, ${L['x_type']}, ${L['x_rs']}, (int8_t *)${L['y']}, ${L['y_rs']}, R, C, ${L['weight']},
                     ${L['bias']}, ${L['in_shift']}, ${L['eps']}, ${L['d_log2']}, ${L['n_levels']}, core_id, n_cores);
% elif L['op'] == 'LayerNorm':
    kl_ilayernorm(${L['x']}, ${L['x_rs']}, (int8_t *)${L['y']}, ${L['y_rs']}, R, C, ${L['weight']}, ${L['bias']},
                  ${L['d_log2']}, ${L['n_levels']}, core_id, n_cores);
% elif L['op'] == 'Lut':
    kl_lut8(${L['x']}, ${1 if L['x_type'] == 'KL_DT_S8' else 0}, ${L['x_rs']}, (const uint8_t *)${L['table']}, ${L['y']}, ${L['y_rs']}, R, C,
            core_id, n_cores);
% elif L['op'] == 'Softmax':
% if L['kind'] == 'isoftmax' and L['wide']:
    {   /* int16 scores (rounded normalisation); scratch 4*C bytes per core, for at most R cores */
        const int nc = R < n_cores ? (int)R : n_cores;
        if (core_id < nc)
            kl_isoftmax_s16(${L['x']}, ${L['x_rs']}, (uint8_t *)${L['y']}, ${L['y_rs']}, R, C, ${L['sm']['coeff_a']}, ${L['sm']['coeff_b']},
                            ${L['sm']['coeff_c']}, ${L['sm']['log2']}, ${L['sm']['n_levels']}, ${L['scratch']}, core_id, nc);
    }
% elif L['kind'] == 'isoftmax':
    {   /* the kernel's scratch is 4*C bytes per core, for at most R cores */
        const int nc = R < n_cores ? (int)R : n_cores;
        if (core_id < nc)
            kl_isoftmax(${L['x']}, ${L['x_rs']}, (uint8_t *)${L['y']}, ${L['y_rs']}, R, C, ${L['sm']['coeff_a']}, ${L['sm']['coeff_b']},
                        ${L['sm']['coeff_c']}, ${L['sm']['log2']}, ${L['sm']['n_levels']}, ${L['sm']['rounded']}, ${L['scratch']}, core_id, nc);
    }
% elif L['kind'] == 'itamax':
    kl_itamax(${L['x']}, ${L['x_rs']}, (uint8_t *)${L['y']}, ${L['y_rs']}, R, C, ${L['sm']['n_levels']}, core_id, n_cores);
% else:
    kl_ita_partial_max(${L['x']}, ${L['x_rs']}, (uint8_t *)${L['y']}, ${L['y_rs']}, R, C, ${L['sm']['group_width']},
                       ${L['sm']['n_levels']}, core_id, n_cores);
% endif
% elif L['op'] == 'GELU':
% if L['gelu_rq']:
    kl_igelu_rq(${L['x']}, ${L['x_rs']}, ${L['y']}, ${L['y_rs']}, R, C, ${L['b']}, ${L['one']}, &rq, core_id, n_cores);
% else:
    kl_igelu_i32(${L['x']}, ${L['x_rs']}, (int32_t *)${L['y']}, ${L['y_rs']}, R, C, ${L['b']}, ${L['one']}, core_id, n_cores);
% endif
% elif L['op'] == 'RequantShift':
    kl_requant(${L['x']}, ${L['x_rs']}, ${L['y']}, ${L['y_rs']}, R, C, &rq, core_id, n_cores);
% elif L['op'] == 'Add' and L['wide']:
    kl_add_rq_x(${L['a']}, ${L['a_type']}, ${L['a_rs']}, &rq_a, ${L['b']}, ${L['b_type']}, ${L['b_rs']}, &rq_b,
                ${L['y']}, ${L['y_type']}, ${L['y_rs']}, R, C, &rq, core_id, n_cores);
% elif L['op'] == 'Add':
    kl_add_rq(${L['a']}, ${L['a_signed']}, ${L['a_rs']}, &rq_a, ${L['b']}, ${L['b_signed']}, ${L['b_rs']}, &rq_b,
              ${L['y']}, ${L['y_rs']}, R, C, &rq, core_id, n_cores);
% endif
}
