<%page args="L, buf"/>\
<%
    S, E, P = L['S'], L['E'], L['P']
    loc = L['locals']
    has = L['has']
    scratch = f"nr_buf_ptr(&B[{loc['scratch']}], 0)" if 'scratch' in loc else 'NULL'
%>\
            for (j = 0; j < hn; j++) {
                const int32_t h = h0 + j;
                (void)h;
% for line in L['rq']['v'] + ([] if L['fwsa'] else L['rq']['k']):
                ${line}
% endfor
% if not L['fwsa']:
                kl_linear_${L['xs']}(xt, ${E}, (const int8_t *)${buf('wk')} + j * ${P * E}, ${E},
                             ${f"(const int32_t *){buf('bk')} + j * {P}" if has['bk'] else 'NULL'},
                             (int8_t *)nr_buf_ptr(&B[${loc['k_h']}], 0) + j * ${L['kh_bytes']} + t0 * ${P}, ${P}, tn, ${P}, ${E},
                             &rq_k, ${scratch}, core_id, n_cores);
% endif
                kl_linear_t_${L['xs']}(xt, ${E}, (const int8_t *)${buf('wv')} + j * ${P * E}, ${E},
                               ${f"(const int32_t *){buf('bv')} + j * {P}" if has['bv'] else 'NULL'},
                               (int8_t *)nr_buf_ptr(&B[${loc['v_h']}], 0) + j * ${L['vh_bytes']} + t0, ${S}, tn, ${P}, ${E},
                               &rq_v, ${scratch}, core_id, n_cores);
            }
