/* main.c (STM32) - runs the network once on the compiled-in test inputs and prints every output
 * as a hex line ("O <k> <hex>"); each layer runs between instruction-count markers
 * (nr_prof_begin/nr_prof_end). Exit code 0, or 70 on a fault. */
#include "network.h"
#include "nr_io.h"
#include "nr_runtime.h"

int main(void)
{
    int k;
    nr_plat_init();
    net_init();
    net_load_test_inputs();
    net_run();
    for (k = 0; k < NET_N_OUTPUTS; k++) {
        nr_out_s("O ");
        nr_out_u64((uint64_t)k);
        nr_out_s(" ");
        nr_out_hex(net_output(k), net_output_bytes(k));
        nr_out_s("\n");
    }
    nr_out_flush();
    nr_plat_deinit();
    return 0;
}
