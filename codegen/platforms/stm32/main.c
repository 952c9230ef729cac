/* main.c (STM32) - runs the network once on the compiled-in test inputs and prints every output
 * as a hex line ("O <k> <hex>"); each layer runs between instruction-count markers
 * (nr_prof_begin/nr_prof_end). Exit code 0, or 70 on a fault. */
#include "network.h"
#include "nr_io.h"
#include "nr_runtime.h"

int main(void)
{
    nr_plat_init();
    net_init();
    net_load_test_inputs();
    net_run();
    net_print_outputs();
    nr_out_flush();
    nr_plat_deinit();
    return 0;
}
