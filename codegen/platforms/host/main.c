/* main.c - the host program of a generated network: runs it once on the compiled-in test inputs
 * and prints every output as a hex line ("O <k> <hex>") and the host wall time of net_run
 * ("T host_ns <ns>", host time, not target time). With -DNR_CHECK_LAYERS the network also prints
 * each layer's output ("L <k> <hex>") after it runs and "B <k>" before. */
#include "network.h"
#include "nr_io.h"
#include "nr_runtime.h"

int main(void)
{
    uint64_t t0, t1;
    nr_plat_init();
    net_init();
    net_load_test_inputs();
    t0 = nr_time_ns();
    net_run();
    t1 = nr_time_ns();
    net_print_outputs();
    nr_out_s("T host_ns ");
    nr_out_u64(t1 - t0);
    nr_out_s("\n");
    nr_out_flush();
    nr_plat_deinit();
    return 0;
}
