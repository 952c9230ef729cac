<%page args="L"/>\
            /* this step's x chunk: wait for it, then (two copies) start the next one */
            if (c0) {
                nr_wait_in(${L['id']}, pend[${L['xk']}][XS(xq)]);
                pend[${L['xk']}][XS(xq)] = NR_DMA_NONE;
            }
            nr_barrier();
% if L['copies'][L['xk']] == 2:
            if (c0 && xq + 1 < ${2 * L['NX']}) {
                noff[1] = ((xq + 1) % ${L['NX']}) * ${L['XT']};
                next[1] = ${L['S']} - noff[1] < ${L['XT']} ? ${L['S']} - noff[1] : ${L['XT']};
                noff[0] = off[0]; next[0] = ext[0];
                pend[${L['xk']}][XS(xq + 1)] = nr_buf_load(&B[${L['xk']}], noff, next, XS(xq + 1));
            }
% endif
