<%page args="L"/>\
% if L['copies'][L['xk']] != 2:
            /* one copy: the next chunk once every core is done with this one */
            if (c0 && xq + 1 < ${2 * L['NX']}) {
                int32_t nxo[2], nxe[2];
                nxo[0] = off[0]; nxe[0] = ext[0];
                nxo[1] = ((xq + 1) % ${L['NX']}) * ${L['XT']};
                nxe[1] = ${L['S']} - nxo[1] < ${L['XT']} ? ${L['S']} - nxo[1] : ${L['XT']};
                pend[${L['xk']}][0] = nr_buf_load(&B[${L['xk']}], nxo, nxe, 0);
            }
% endif
