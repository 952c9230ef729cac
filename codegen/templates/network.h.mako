<%page args="N"/>\
/* network.h - ${N['plan'].network} planned for ${N['plan'].hardware['display_name']} by planner
 * (generated from plan.json; do not edit). */
#ifndef NETWORK_H
#define NETWORK_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NET_CORES ${N['cores']}
#define NET_N_INPUTS ${len(N['inputs'])}
#define NET_N_OUTPUTS ${len(N['outputs'])}
#define NET_N_LAYERS ${len(N['layers'])}

/* Copies the constants into their arenas (weights images, softmax tables). Call once. */
void net_init(void);
/* Runs the network on NET_CORES cores: reads the inputs, writes the outputs. */
void net_run(void);

/* The input / output buffers (in the L2 arena), in graph order, and their sizes in bytes.
 * An input's buffer may be reused for intermediates: write the inputs before every net_run. */
uint8_t *net_input(int k);
uint32_t net_input_bytes(int k);
const uint8_t *net_output(int k);
uint32_t net_output_bytes(int k);

/* every output as a line "O <k> <hex bytes>" (what `planner run` reads) */
void net_print_outputs(void);

/* the test inputs compiled into the program (net_test_inputs.c) */
void net_load_test_inputs(void);

#ifdef __cplusplus
}
#endif
#endif /* NETWORK_H */
