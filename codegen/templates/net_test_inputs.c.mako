<%page args="items"/>\
/* net_test_inputs.c - test inputs compiled into the program (generated). */
#include "network.h"

% for it in items:
/* ${it['name']} */
static const uint8_t net_test_${it['ident']}[${it['nbytes']}] = {
${it['data']}
};
% endfor

void net_load_test_inputs(void)
{
    uint32_t i;
% for it in items:
    for (i = 0; i < ${it['nbytes']}u; i++)
        net_input(${it['k']})[i] = net_test_${it['ident']}[i];
% endfor
}
