<%page args="L"/>\
<%
    S, E, P = L['S'], L['E'], L['P']
    loc = L['locals']
    def buf(name):
        return f"nr_buf_view(&B[{L['idx'][name]}], off, wslot[{L['idx'][name]}])"
    has = L['has']
    two_h = [k for k in L['head_bufs'] if L['copies'][k] == 2]
    need_next = bool(two_h) or (not L['x_res'] and L['copies'][L['xk']] == 2)
%>\
/* ${L['comment']} */
static void layer_${L['ident']}(int core_id, int n_cores)
{
    const nr_buf_t *const B = nr_bufs + LAYER_${L['ident']}_FIRST_BUF;
    const int c0 = core_id == 0;
    int32_t off[2] = {0, 0}, ext[2] = {${L['H']}, ${S}};
% if need_next:
    int32_t noff[2], next[2];
% endif
    int wslot[${len(L['copies'])}] = {0};
    nr_dma_id_t pend[${len(L['copies'])}][2];
    int32_t ht, c, j, k;
% if not L['x_res']:
    int32_t xq; /* step of the x stream in this head tile: 0 .. 2*NX-1 */
#define XS(q) (${'(q) & 1' if L['copies'][L['xk']] == 2 else '0'})
% endif
    kl_attn_t a;
    kl_rq_t rq_v, rq_av, rq_s, rq_o;
% if L['fwsa']:
    kl_rq_t rq_i;
% if L['row_term']:
    kl_rq_t rq_row;
% endif
% else:
    kl_rq_t rq_q, rq_k;
% endif
    for (k = 0; k < ${len(L['copies'])}; k++)
        pend[k][0] = pend[k][1] = NR_DMA_NONE;
    /* constants of the whole layer${' and the resident input x' if L['x_res'] else ''} */
    if (c0) {
% for k in L['once_bufs'] + ([L['xk']] if L['x_res'] else []):
        pend[${k}][0] = nr_buf_load(&B[${k}], off, ext, 0);
% endfor
% for k in L['once_bufs'] + ([L['xk']] if L['x_res'] else []):
        nr_wait_in(${L['id']}, pend[${k}][0]);
% endfor
    }
    a.S = ${S};
    a.D = ${E if L['fwsa'] else P};
    a.P = ${P};
    a.sm.kind = ${L['sm_kind']};
% if L['sm'] is not None:
    a.sm.coeff_a = ${L['sm']['coeff_a']}; a.sm.coeff_b = ${L['sm']['coeff_b']}; a.sm.coeff_c = ${L['sm']['coeff_c']};
    a.sm.log2 = ${L['sm']['log2']}; a.sm.group_width = ${L['sm']['group_width']}; a.sm.n_levels = ${L['sm']['n_levels']};
% else:
    a.sm.coeff_a = a.sm.coeff_b = a.sm.coeff_c = a.sm.log2 = a.sm.group_width = 0;
    a.sm.n_levels = 256;
% endif
    a.sm.rounded = ${L['sm']['rounded'] if L['sm'] is not None else 0};
    a.sm.lut = ${f"(const int32_t *){buf('softmax_lut')}" if L['lut'] else 'NULL'};
    a.w_f = NULL; a.b_f = NULL; a.rq_i = NULL; a.w_row = NULL; a.rq_row = NULL;
% if L['fwsa']:
    a.k = ${buf('x')};   /* FWSA: the keys are X itself */
    a.k_rs = ${E};
    a.k_signed = ${L['x_signed']};
% else:
    a.k_rs = ${P};
    a.k_signed = ${L['k_signed']};
% endif
    a.v_rs = ${S}; a.v_trans = 1; a.v_signed = ${L['v_signed']};
    a.o = NULL; a.o_rs = 0;
    a.E_out = ${E}; a.b_o = NULL;
    a.acc_rs = ${E};
    a.rq_s = &rq_s;
    a.rq_v = &rq_av;
    a.k_corr = NULL; a.zk = ${L['zk']}; a.zv = ${L['zv']};
    for (ht = 0; ht < ${L['NHT']}; ht++) {
        const int32_t h0 = ht * ${L['HT']}, hn = ${L['H']} - h0 < ${L['HT']} ? ${L['H']} - h0 : ${L['HT']};
        off[0] = h0; ext[0] = hn; off[1] = 0; ext[1] = ${S};
        /* this head tile's weights (prefetched during the previous tile when double-buffered) */
% for k in two_h:
        if (ht > 0)
            wslot[${k}] ^= 1;
% endfor
        if (c0) {
% for k in L['head_bufs']:
% if L['copies'][k] == 2:
            if (ht == 0)
                pend[${k}][wslot[${k}]] = nr_buf_load(&B[${k}], off, ext, wslot[${k}]);
% else:
            pend[${k}][0] = nr_buf_load(&B[${k}], off, ext, 0);
% endif
% endfor
% for k in L['head_bufs']:
            nr_wait_in(${L['id']}, pend[${k}][wslot[${k}]]);
            pend[${k}][wslot[${k}]] = NR_DMA_NONE;
% endfor
        }
        nr_barrier();
% if two_h:
        if (c0 && ht + 1 < ${L['NHT']}) {
            noff[0] = h0 + ${L['HT']};
            next[0] = ${L['H']} - noff[0] < ${L['HT']} ? ${L['H']} - noff[0] : ${L['HT']};
            noff[1] = 0; next[1] = ${S};
% for k in two_h:
            pend[${k}][wslot[${k}] ^ 1] = nr_buf_load(&B[${k}], noff, next, wslot[${k}] ^ 1);
% endfor
        }
% endif
        /* pass 1: V_h^T [P][S]${'' if L['fwsa'] else ' and K_h [S][P]'} of the tile's heads, all tokens */
% if L['x_res']:
        {
            const int32_t t0 = 0, tn = ${S};
            const void *xt = ${buf('x')};
<%include file="mhsa_kv.c.mako" args="L=L, buf=buf"/>
        }
% else:
        /* x streamed by chunks, twice per head tile (pass 1, then pass 2): stream step q loads
           chunk q % NX into copy XS(q); with two copies the next chunk is in flight while this
           one is computed */
        xq = 0;
        if (c0) {
            off[1] = 0; ext[1] = ${S} < ${L['XT']} ? ${S} : ${L['XT']};
            pend[${L['xk']}][0] = nr_buf_load(&B[${L['xk']}], off, ext, 0);
        }
        for (c = 0; c < ${L['NX']}; c++, xq++) {
            const int32_t t0 = c * ${L['XT']}, tn = ${S} - t0 < ${L['XT']} ? ${S} - t0 : ${L['XT']};
            const void *xt;
<%include file="mhsa_xstep.c.mako" args="L=L"/>
            xt = nr_buf_ptr(&B[${L['xk']}], XS(xq));
<%include file="mhsa_kv.c.mako" args="L=L, buf=buf"/>
            nr_barrier();
<%include file="mhsa_xnext.c.mako" args="L=L"/>
        }
% endif
        nr_barrier();
% if L['zp_k']:
        /* K_h's zero-point correction [S] after it: -zq * sum_p K_h[n][p] + P * zq * zk */
        for (j = 0; j < hn; j++)
            kl_zp_sums((const int8_t *)${f"nr_buf_ptr(&B[{loc['k_h']}], 0)"} + j * ${L['kh_bytes']}, ${L['k_signed']}, ${P}, 1, ${S}, ${P},
                       ${-L['zq']}, ${P * L['zq'] * L['zk']}, (int32_t *)((uint8_t *)${f"nr_buf_ptr(&B[{loc['k_h']}], 0)"} + j * ${L['kh_bytes']} + ${L['kcorr_off']}),
                       ${f"nr_buf_ptr(&B[{loc['scratch']}], 0)"}, core_id, n_cores);
        nr_barrier();
% endif
        /* pass 2: per chunk of query rows and head: query rows, then kl_mhsa_chunk */
        for (c = 0; c < ${L['NX']}; c++) {
            const int32_t r0 = c * ${L['XT']}, xn = ${S} - r0 < ${L['XT']} ? ${S} - r0 : ${L['XT']};
            const int nc = xn < n_cores ? (int)xn : n_cores;
            const void *xr;
            int32_t *acc;
% if not L['x_res']:
<%include file="mhsa_xstep.c.mako" args="L=L"/>
% endif
            off[1] = r0; ext[1] = xn;
% if not L['acc_local']:
            /* the accumulator rows of this chunk, kept in L2 between head tiles */
            if (c0) {
                nr_wait_out(pend[${L['acck']}][0]);
                pend[${L['acck']}][0] = NR_DMA_NONE;
                if (ht > 0)
                    nr_wait_in(${L['id']}, nr_buf_load(&B[${L['acck']}], off, ext, 0));
            }
            acc = (int32_t *)nr_buf_ptr(&B[${L['acck']}], 0);
% else:
            acc = (int32_t *)nr_buf_ptr(&B[${L['acck']}], 0) + r0 * ${E};
% endif
            nr_barrier();
% if L['x_res']:
            xr = (const uint8_t *)${buf('x')} + r0 * ${E};
% else:
            xr = nr_buf_ptr(&B[${L['xk']}], XS(xq));
% endif
            for (j = 0; j < hn; j++) {
                const int32_t h = h0 + j;
                (void)h;
% for line in L['rq']['s'] + L['rq']['av']:
                ${line}
% endfor
% if L['fwsa']:
% for line in L['rq']['i']:
                ${line}
% endfor
% if L['row_term']:
% for line in L['rq']['row']:
                ${line}
% endfor
                /* the kernel's FWSA mode: I* and the row term per group of rows, keys = X */
                a.q = xr; a.q_rs = ${E}; a.q_signed = ${L['x_signed']};
                a.w_f = (const int8_t *)${buf('wf')} + j * ${E * E};
                a.b_f = ${f"(const int32_t *){buf('bf')} + j * {E}" if has['bf'] else 'NULL'};
                a.rq_i = &rq_i;
                a.w_row = (const int8_t *)${buf('w_row')} + j * ${E};
                a.rq_row = &rq_row;
% else:
                /* I* = RQ_i(X_rows . W_f,h^T + b_f,h) */
                kl_linear_${L['xs']}(xr, ${E}, (const int8_t *)${buf('wf')} + j * ${E * E}, ${E},
                             ${f"(const int32_t *){buf('bf')} + j * {E}" if has['bf'] else 'NULL'},
                             ${f"nr_buf_ptr(&B[{loc['istar_rows']}], 0)"}, ${E}, xn, ${E}, ${E}, &rq_i,
                             ${f"nr_buf_ptr(&B[{loc['scratch']}], 0)" if 'scratch' in loc else 'NULL'}, core_id, n_cores);
                nr_barrier();
                a.q = ${f"nr_buf_ptr(&B[{loc['istar_rows']}], 0)"}; a.q_rs = ${E}; a.q_signed = ${L['i_signed']};
% endif
% else:
% for line in L['rq']['q']:
                ${line}
% endfor
                /* Q_h rows of the chunk */
                kl_linear_${L['xs']}(xr, ${E}, (const int8_t *)${buf('wq')} + j * ${P * E}, ${E},
                             ${f"(const int32_t *){buf('bq')} + j * {P}" if has['bq'] else 'NULL'},
                             ${f"nr_buf_ptr(&B[{loc['q_rows']}], 0)"}, ${P}, xn, ${P}, ${E}, &rq_q,
                             ${f"nr_buf_ptr(&B[{loc['scratch']}], 0)" if 'scratch' in loc else 'NULL'}, core_id, n_cores);
                nr_barrier();
                a.q = ${f"nr_buf_ptr(&B[{loc['q_rows']}], 0)"}; a.q_rs = ${P}; a.q_signed = ${L['q_signed']};
                a.k = (const int8_t *)${f"nr_buf_ptr(&B[{loc['k_h']}], 0)"} + j * ${L['kh_bytes']};
% if L['zp_k']:
                a.k_corr = (const int32_t *)((const uint8_t *)a.k + ${L['kcorr_off']});
% endif
% endif
                a.v = (const int8_t *)${f"nr_buf_ptr(&B[{loc['v_h']}], 0)"} + j * ${L['vh_bytes']};
                a.w_o = (const int8_t *)${buf('wo')} + j * ${P};
                a.w_o_rs = ${L['wo_rs']};
                a.acc = acc;
                a.acc_mode = (ht == 0 && j == 0) ? KL_ACC_STORE : KL_ACC_ADD;
                if (core_id < nc)
                    kl_mhsa_chunk(&a, xn, ${f"nr_buf_ptr(&B[{loc['scratch']}], 0)" if 'scratch' in loc else 'NULL'}, core_id, nc);
                nr_barrier();
            }
% if not L['acc_local']:
            if (c0)
                pend[${L['acck']}][0] = nr_buf_store(&B[${L['acck']}], off, ext, 0);
% endif
% if not L['x_res']:
<%include file="mhsa_xnext.c.mako" args="L=L"/>
            xq++;
% endif
        }
    }
    /* Y = RQ_o(acc + b_o), in place in the accumulator rows, compacted and written out */
% if L['acc_local']:
    {
        const int32_t r0 = 0;
        (void)r0;
        int32_t *acc = (int32_t *)nr_buf_ptr(&B[${L['acck']}], 0);
% for line in L['rq']['o']:
        ${line}
% endfor
        nr_finalize_rows(acc, ${E}, ${f"(const int32_t *){buf('bo')}" if has['bo'] else 'NULL'}, ${S}, &rq_o, core_id, n_cores);
        nr_barrier();
        if (c0) {
            off[1] = 0; ext[1] = ${S};
            nr_compact_rows(acc, ${S}, ${E}, ${4 * E});
            nr_wait_out(nr_buf_store(&B[${L['yk']}], off, ext, 0));
        }
    }
% else:
    for (c = 0; c < ${L['NX']}; c++) {
        const int32_t r0 = c * ${L['XT']}, xn = ${S} - r0 < ${L['XT']} ? ${S} - r0 : ${L['XT']};
        int32_t *acc = (int32_t *)nr_buf_ptr(&B[${L['acck']}], 0);
        off[1] = r0; ext[1] = xn;
% for line in L['rq']['o']:
        ${line}
% endfor
        if (c0) {
            nr_wait_out(pend[${L['acck']}][0]);
            pend[${L['acck']}][0] = NR_DMA_NONE;
            nr_wait_in(${L['id']}, nr_buf_load(&B[${L['acck']}], off, ext, 0));
        }
        nr_barrier();
        nr_finalize_rows(acc, ${E}, ${f"(const int32_t *){buf('bo')}" if has['bo'] else 'NULL'}, xn, &rq_o, core_id, n_cores);
        nr_barrier();
        if (c0) {
            nr_compact_rows(acc, xn, ${E}, ${4 * E});
            nr_wait_out(nr_buf_store(&B[${L['yk']}], off, ext, 0));
        }
        nr_barrier();
    }
% endif
    if (c0)
        nr_dma_wait_all();
    nr_barrier();
% if not L['x_res']:
#undef XS
% endif
}
