<%page args="L"/>\
    {   /* ${L['lp'].name}: the softmax table (kl_softmax_lut), a model constant in L2 */
        kl_softmax_t sm;
        sm.kind = ${L['sm_kind']};
        sm.coeff_a = ${L['sm']['coeff_a']}; sm.coeff_b = ${L['sm']['coeff_b']}; sm.coeff_c = ${L['sm']['coeff_c']};
        sm.log2 = ${L['sm']['log2']}; sm.group_width = ${L['sm']['group_width']}; sm.n_levels = ${L['sm']['n_levels']};
        sm.rounded = ${L['sm']['rounded']};
        sm.lut = NULL;
        kl_softmax_lut(&sm, (int32_t *)(nr_arena[NR_L2] + ${L['lut_home']}u));
    }
