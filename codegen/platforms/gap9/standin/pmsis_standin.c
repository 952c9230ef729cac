/* pmsis_standin.c - the PMSIS stand-in (pmsis.h) on one RV32 hart of QEMU virt.
 * Cluster cores are coroutines: pi_cl_team_fork starts them, each runs until it reaches
 * pi_cl_team_barrier (or ends), then the next one runs; a barrier releases when every core of
 * the team has reached it. The counts of an instruction-count run are therefore the sum over the
 * cores. DMA and RAM copies happen when issued (the waits are still called where the chip needs
 * them); the HyperRAM is an array of its own, reachable only through pi_ram_* / pi_cl_ram_*. */
#include <stdint.h>

#include "bsp/ram/hyperram.h"
#include "pmsis.h"

#define NR_SI_CORES 16
#define NR_SI_STACK 8192
#define NR_SI_RAM (4u << 20)

int nr_semihost(int op, const void *arg); /* crt0.S */
void nr_ctx_switch(uint32_t *save, const uint32_t *load); /* crt0.S: ra, sp, s0-s11 */

/* ---- console and exit (semihosting) */
void pi_standin_write(const char *s, unsigned n)
{
    char buf[129];
    while (n) {
        unsigned k = n < 128 ? n : 128, i;
        for (i = 0; i < k; i++)
            buf[i] = s[i] ? s[i] : ' ';
        buf[k] = 0;
        nr_semihost(0x04 /* SYS_WRITE0 */, buf);
        s += k;
        n -= k;
    }
}

void pmsis_exit(int code)
{
    uint32_t block[2];
    block[0] = 0x20026; /* ADP_Stopped_ApplicationExit */
    block[1] = (uint32_t)code;
    for (;;)
        nr_semihost(0x20 /* SYS_EXIT_EXTENDED */, block);
}

int pmsis_kickoff(void *entry)
{
    ((void (*)(void))entry)();
    pmsis_exit(0);
}

/* ---- cores as coroutines */
static uint32_t nr_ctx[NR_SI_CORES][14];
static uint8_t nr_stack[NR_SI_CORES][NR_SI_STACK] __attribute__((aligned(16)));
static int nr_cur, nr_nb = 1, nr_live[NR_SI_CORES], nr_left;
static unsigned nr_bar_count, nr_bar_gen;
static void (*nr_entry)(void *);
static void *nr_arg;

uint32_t pi_core_id(void) { return (uint32_t)nr_cur; }
uint32_t pi_cluster_id(void) { return 0; }
int pi_cl_team_nb_cores(void) { return nr_nb; }

static void nr_yield(void)
{
    int next = nr_cur, i;
    for (i = 1; i <= nr_nb; i++) {
        const int c = (nr_cur + i) % nr_nb;
        if (nr_live[c]) {
            next = c;
            break;
        }
    }
    if (next != nr_cur) {
        const int from = nr_cur;
        nr_cur = next;
        nr_ctx_switch(nr_ctx[from], nr_ctx[next]);
    }
}

static void nr_core_main(void)
{
    const int me = nr_cur;
    nr_entry(nr_arg);
    nr_live[me] = 0;
    nr_left--;
    for (;;)
        nr_yield(); /* never resumed */
}

void pi_cl_team_fork(int nb_cores, void (*entry)(void *), void *arg)
{
    int c;
    if (nb_cores > 0)
        nr_nb = nb_cores > NR_SI_CORES ? NR_SI_CORES : nb_cores;
    nr_entry = entry;
    nr_arg = arg;
    nr_bar_count = 0;
    for (c = 1; c < nr_nb; c++) {
        nr_ctx[c][0] = (uint32_t)(uintptr_t)nr_core_main;
        nr_ctx[c][1] = (uint32_t)(uintptr_t)(nr_stack[c] + NR_SI_STACK);
        nr_live[c] = 1;
    }
    nr_live[0] = 1;
    nr_left = nr_nb - 1;
    nr_cur = 0;
    entry(arg);
    while (nr_left > 0)
        nr_yield();
    nr_cur = 0;
}

void pi_cl_team_barrier(void)
{
    const unsigned gen = nr_bar_gen;
    if (++nr_bar_count == (unsigned)nr_nb) {
        nr_bar_count = 0;
        nr_bar_gen++;
        return;
    }
    while (nr_bar_gen == gen)
        nr_yield();
}

/* ---- cluster (the fabric controller sends one task; it runs on core 0 of the cluster) */
void pi_cluster_conf_init(struct pi_cluster_conf *conf)
{
    conf->device_type = 0;
    conf->id = 0;
    conf->heap_start = (void *)0;
    conf->heap_size = 0;
    conf->event_kernel = (void *)0;
    conf->flags = PI_CLUSTER_FLAGS_FORK_BASED;
}

void pi_open_from_conf(struct pi_device *device, void *conf)
{
    device->config = conf;
    device->data = (void *)0;
}

int pi_cluster_open(struct pi_device *device) { (void)device; return 0; }
int pi_cluster_close(struct pi_device *device) { (void)device; return 0; }

int pi_cluster_send_task_to_cl(struct pi_device *device, struct pi_cluster_task *task)
{
    (void)device;
    if (task->nb_cores > 0)
        nr_nb = task->nb_cores > NR_SI_CORES ? NR_SI_CORES : task->nb_cores;
    nr_cur = 0;
    task->entry(task->arg);
    return 0;
}

/* ---- DMA: copies when issued */
static void nr_copy(uint8_t *d, const uint8_t *s, uint32_t n)
{
    if ((((uintptr_t)d | (uintptr_t)s | n) & 3u) == 0) { /* words when aligned */
        uint32_t *dw = (uint32_t *)(void *)d;
        const uint32_t *sw = (const uint32_t *)(const void *)s;
        n >>= 2;
        while (n--)
            *dw++ = *sw++;
        return;
    }
    while (n--)
        *d++ = *s++;
}

static void nr_copy_2d(uint8_t *ext, uint8_t *loc, uint32_t size, uint32_t stride, uint32_t length,
                       int to_loc)
{
    uint32_t done = 0;
    while (done < size) {
        const uint32_t n = size - done < length ? size - done : length;
        if (to_loc)
            nr_copy(loc + done, ext, n);
        else
            nr_copy(ext, loc + done, n);
        ext += stride;
        done += n;
    }
}

void pi_cl_dma_cmd(uint32_t ext, uint32_t loc, uint32_t size, pi_cl_dma_dir_e dir,
                   pi_cl_dma_cmd_t *cmd)
{
    pi_cl_dma_cmd_2d(ext, loc, size, size, size, dir, cmd);
}

void pi_cl_dma_cmd_2d(uint32_t ext, uint32_t loc, uint32_t size, uint32_t stride,
                      uint32_t length, pi_cl_dma_dir_e dir, pi_cl_dma_cmd_t *cmd)
{
    nr_copy_2d((uint8_t *)(uintptr_t)ext, (uint8_t *)(uintptr_t)loc, size, stride, length,
               dir == PI_CL_DMA_DIR_EXT2LOC);
    cmd->id = 0;
}

void pi_cl_dma_cmd_wait(pi_cl_dma_cmd_t *cmd) { (void)cmd; }

/* ---- HyperRAM: an array of its own */
static uint8_t nr_ram[NR_SI_RAM] __attribute__((aligned(8)));
static uint32_t nr_ram_used;

void pi_hyperram_conf_init(struct pi_hyperram_conf *conf)
{
    conf->baudrate = 0;
    conf->xip_en = 0;
    conf->reserve_addr_0 = 1;
}

int32_t pi_ram_open(struct pi_device *device) { (void)device; return 0; }

int pi_ram_alloc(struct pi_device *device, uint32_t *addr, uint32_t size)
{
    (void)device;
    size = (size + 7u) & ~7u;
    if (nr_ram_used + 8u + size > NR_SI_RAM)
        return -1;
    *addr = nr_ram_used + 8u; /* address 0 is reserved, as reserve_addr_0 says */
    nr_ram_used += 8u + size;
    return 0;
}

void pi_ram_write(struct pi_device *device, uint32_t pi_ram_addr, void *data, uint32_t size)
{
    (void)device;
    nr_copy(nr_ram + pi_ram_addr, (const uint8_t *)data, size);
}

void pi_ram_read(struct pi_device *device, uint32_t pi_ram_addr, void *data, uint32_t size)
{
    (void)device;
    nr_copy((uint8_t *)data, nr_ram + pi_ram_addr, size);
}

void pi_cl_ram_read(struct pi_device *device, uint32_t pi_ram_addr, void *addr, uint32_t size,
                    pi_cl_ram_req_t *req)
{
    pi_ram_read(device, pi_ram_addr, addr, size);
    req->done = 1;
}

void pi_cl_ram_read_2d(struct pi_device *device, uint32_t pi_ram_addr, void *addr, uint32_t size,
                       uint32_t stride, uint32_t length, pi_cl_ram_req_t *req)
{
    (void)device;
    nr_copy_2d(nr_ram + pi_ram_addr, (uint8_t *)addr, size, stride, length, 1);
    req->done = 1;
}

void pi_cl_ram_read_wait(pi_cl_ram_req_t *req) { (void)req; }
