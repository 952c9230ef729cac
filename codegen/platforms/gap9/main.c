/* main.c (GAP9) - the fabric controller opens the cluster, sends it the network as a task
 * (net_run forks it over the plan's cores), and prints every output as a hex line. */
#include "network.h"
#include "nr_io.h"
#include "nr_runtime.h"
#include "pmsis.h"

static void net_cluster_entry(void *arg)
{
    (void)arg;
    net_run();
}

static void app_main(void)
{
    struct pi_device cluster;
    struct pi_cluster_conf conf;
    struct pi_cluster_task task;
    nr_plat_init();
    net_init();
    net_load_test_inputs();
    pi_cluster_conf_init(&conf);
    conf.id = 0;
    pi_open_from_conf(&cluster, &conf);
    if (pi_cluster_open(&cluster)) {
        nr_out_s("F cannot open the cluster\n");
        nr_out_flush();
        pmsis_exit(1);
    }
    pi_cluster_task(&task, net_cluster_entry, (void *)0);
    task.nb_cores = NET_CORES;
    pi_cluster_send_task_to_cl(&cluster, &task);
    pi_cluster_close(&cluster);
    net_print_outputs();
    nr_out_flush();
    pmsis_exit(0);
}

int main(void)
{
    return pmsis_kickoff((void *)app_main);
}
