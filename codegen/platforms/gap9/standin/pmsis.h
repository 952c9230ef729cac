/* pmsis.h - a minimal stand-in for the GAP SDK's PMSIS API, our own code: the same function
 * names and signatures as the SDK (pmsis/cluster/dma/cl_dma.h, cluster_team/cl_team.h,
 * cluster_sync/fc_to_cl_delegate.h, bsp/ram.h), implemented in plain C (pmsis_standin.c) so
 * that the GAP9 project builds with riscv64-unknown-elf-gcc -march=rv32imc and runs on
 * qemu-system-riscv32 -M virt. The cluster's cores run one after another on one hart as
 * coroutines that switch at barriers; DMA and RAM transfers are copies done when issued; every
 * barrier and wait of the generated code is executed as on the chip. XpulpV2 is not modelled. */
#ifndef NR_PMSIS_STANDIN_H
#define NR_PMSIS_STANDIN_H

#include <stddef.h>
#include <stdint.h>

#define NR_GAP9_STANDIN 1

#define PI_CL_L1 __attribute__((section(".data_l1")))
#define PI_L1 PI_CL_L1
#define PI_L2 __attribute__((section(".l2_data")))

struct pi_device {
    void *config;
    void *data;
};

typedef struct pi_task {
    int done;
} pi_task_t;

/* cluster */
typedef enum { PI_CLUSTER_FLAGS_FORK_BASED = 0, PI_CLUSTER_FLAGS_TASK_BASED = 1 } pi_cluster_flags_e;
struct pi_cluster_conf {
    int device_type;
    int id;
    void *heap_start;
    uint32_t heap_size;
    void *event_kernel;
    pi_cluster_flags_e flags;
};
struct pi_cluster_task {
    void (*entry)(void *);
    void *arg;
    void *stacks;
    uint32_t stack_size;
    uint32_t slave_stack_size;
    int nb_cores;
};
void pi_cluster_conf_init(struct pi_cluster_conf *conf);
void pi_open_from_conf(struct pi_device *device, void *conf);
int pi_cluster_open(struct pi_device *device);
int pi_cluster_close(struct pi_device *device);
int pi_cluster_send_task_to_cl(struct pi_device *device, struct pi_cluster_task *task);
static inline struct pi_cluster_task *pi_cluster_task(struct pi_cluster_task *task,
                                                      void (*entry)(void *), void *arg)
{
    task->entry = entry;
    task->arg = arg;
    task->stacks = (void *)0;
    task->stack_size = 0;
    task->slave_stack_size = 0;
    task->nb_cores = 0;
    return task;
}
static inline int pi_cluster_send_task(struct pi_device *device, struct pi_cluster_task *task)
{
    return pi_cluster_send_task_to_cl(device, task);
}

/* team */
void pi_cl_team_fork(int nb_cores, void (*entry)(void *), void *arg);
void pi_cl_team_barrier(void);
int pi_cl_team_nb_cores(void);
uint32_t pi_core_id(void);
uint32_t pi_cluster_id(void);

/* cluster DMA */
typedef enum { PI_CL_DMA_DIR_LOC2EXT = 0, PI_CL_DMA_DIR_EXT2LOC = 1 } pi_cl_dma_dir_e;
typedef struct pi_cl_dma_cmd_s {
    int id;
} pi_cl_dma_cmd_t;
void pi_cl_dma_cmd(uint32_t ext, uint32_t loc, uint32_t size, pi_cl_dma_dir_e dir,
                   pi_cl_dma_cmd_t *cmd);
void pi_cl_dma_cmd_2d(uint32_t ext, uint32_t loc, uint32_t size, uint32_t stride,
                      uint32_t length, pi_cl_dma_dir_e dir, pi_cl_dma_cmd_t *cmd);
void pi_cl_dma_cmd_wait(pi_cl_dma_cmd_t *cmd);

/* RAM (bsp/ram.h) */
typedef struct pi_cl_ram_req_s {
    int done;
} pi_cl_ram_req_t;
int32_t pi_ram_open(struct pi_device *device);
int pi_ram_alloc(struct pi_device *device, uint32_t *addr, uint32_t size);
void pi_ram_write(struct pi_device *device, uint32_t pi_ram_addr, void *data, uint32_t size);
void pi_ram_read(struct pi_device *device, uint32_t pi_ram_addr, void *data, uint32_t size);
void pi_cl_ram_read(struct pi_device *device, uint32_t pi_ram_addr, void *addr, uint32_t size,
                    pi_cl_ram_req_t *req);
void pi_cl_ram_read_2d(struct pi_device *device, uint32_t pi_ram_addr, void *addr, uint32_t size,
                       uint32_t stride, uint32_t length, pi_cl_ram_req_t *req);
void pi_cl_ram_read_wait(pi_cl_ram_req_t *req);

/* OS */
int pmsis_kickoff(void *entry);
void pmsis_exit(int code) __attribute__((noreturn));

/* the stand-in's console (semihosting) */
void pi_standin_write(const char *s, unsigned n);

#endif /* NR_PMSIS_STANDIN_H */
