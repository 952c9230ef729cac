/* nr_plat_gap9.c - the GAP9 platform of a generated network (PMSIS API of the GAP SDK):
 *   cores   pi_cl_team_fork over the plan's cores, pi_cl_team_barrier
 *   DMA     L2 <-> L1 by the cluster DMA (pi_cl_dma_cmd / pi_cl_dma_cmd_2d, L1 side contiguous,
 *           strided L2 side), waited with pi_cl_dma_cmd_wait; L3 -> L2 staging by the RAM driver
 *           from the cluster (pi_cl_ram_read / pi_cl_ram_read_2d, pi_cl_ram_read_wait)
 *   L3      a HyperRAM allocation filled from the weights image at net_init (pi_ram_write)
 *   output  printf (GAP SDK) or the stand-in's semihosting (NR_GAP9_STANDIN)
 * Only core 0 of the team issues and waits for transfers (nr_runtime.h). */
#include <stdint.h>

#include "bsp/ram/hyperram.h"
#include "nr_io.h"
#include "nr_platform.h"
#include "nr_runtime.h"
#include "pmsis.h"

#ifndef NR_GAP9_STANDIN
#include <stdio.h>
#endif

#define NR_GAP9_CMDS 64   /* DMA commands in flight */
#define NR_GAP9_GROUPS 32 /* transfers (a transfer may take several commands) in flight */

typedef struct {
    int first, count;
} nr_group_t;

static PI_CL_L1 pi_cl_dma_cmd_t nr_cmds[NR_GAP9_CMDS];
static PI_CL_L1 pi_cl_ram_req_t nr_reqs[NR_GAP9_CMDS];
static PI_CL_L1 uint8_t nr_cmd_busy[NR_GAP9_CMDS];
static nr_group_t nr_groups[NR_GAP9_GROUPS];
static int nr_next_cmd;
static nr_dma_id_t nr_next_group;
static struct pi_device nr_ram;
extern const uint32_t net_l3_arena_bytes; /* network.c */
static uint32_t nr_l3_base;
static int nr_ram_open;

/* nr_cmd_busy[c]: 0 free, 1 a cluster DMA command, 2 a RAM request */
static void nr_cmd_wait(int c)
{
    if (!nr_cmd_busy[c])
        return;
    if (nr_cmd_busy[c] == 2)
        pi_cl_ram_read_wait(&nr_reqs[c]);
    else
        pi_cl_dma_cmd_wait(&nr_cmds[c]);
    nr_cmd_busy[c] = 0;
}

static int nr_cmd_take(int ram)
{
    const int c = nr_next_cmd;
    nr_next_cmd = (nr_next_cmd + 1) % NR_GAP9_CMDS;
    nr_cmd_wait(c); /* the oldest command's slot: wait for it before reuse */
    nr_cmd_busy[c] = (uint8_t)(ram ? 2 : 1);
    return c;
}

static uint32_t nr_ram_addr(const void *p)
{
    return nr_l3_base + (uint32_t)((uintptr_t)p - (uintptr_t)NR_L3_EXTERNAL_BASE);
}

/* one strided level: rows of `bytes` at stride `ext_s` on the L2 side, packed on the L1 side */
static void nr_rows(uint32_t ext, uint32_t loc, uint32_t bytes, uint32_t rows, int32_t ext_s,
                    int32_t loc_s, int to_near, int ram)
{
    const pi_cl_dma_dir_e dir = to_near ? PI_CL_DMA_DIR_EXT2LOC : PI_CL_DMA_DIR_LOC2EXT;
    uint32_t r;
    if (rows == 1 || (loc_s == (int32_t)bytes && ext_s == (int32_t)bytes)) {
        const int c = nr_cmd_take(ram);
        if (ram)
            pi_cl_ram_read(&nr_ram, ext, (void *)(uintptr_t)loc, bytes * rows, &nr_reqs[c]);
        else
            pi_cl_dma_cmd(ext, loc, bytes * rows, dir, &nr_cmds[c]);
    } else if (loc_s == (int32_t)bytes) {
        const int c = nr_cmd_take(ram);
        if (ram)
            pi_cl_ram_read_2d(&nr_ram, ext, (void *)(uintptr_t)loc, bytes * rows, (uint32_t)ext_s,
                              bytes, &nr_reqs[c]);
        else
            pi_cl_dma_cmd_2d(ext, loc, bytes * rows, (uint32_t)ext_s, bytes, dir, &nr_cmds[c]);
    } else { /* the L1 side is strided too (an accumulator read in place): row by row */
        for (r = 0; r < rows; r++) {
            const int c = nr_cmd_take(ram);
            if (ram)
                pi_cl_ram_read(&nr_ram, ext + r * (uint32_t)ext_s, (void *)(uintptr_t)(loc + r * (uint32_t)loc_s),
                               bytes, &nr_reqs[c]);
            else
                pi_cl_dma_cmd(ext + r * (uint32_t)ext_s, loc + r * (uint32_t)loc_s, bytes, dir, &nr_cmds[c]);
        }
    }
}

nr_dma_id_t nr_dma_start(void *dst, const void *src, const nr_xfer_t *x, int link, int to_near)
{
    const int ram = link == NR_LINK_FAR;
    const nr_dma_id_t id = nr_next_group;
    nr_group_t *g = &nr_groups[id % NR_GAP9_GROUPS];
    const uint32_t ext0 = ram ? nr_ram_addr(src) : (uint32_t)(uintptr_t)(to_near ? src : dst);
    const uint32_t loc0 = (uint32_t)(uintptr_t)(to_near ? dst : src);
    const int32_t *ext_s = to_near ? x->src_s : x->dst_s;
    const int32_t *loc_s = to_near ? x->dst_s : x->src_s;
    uint32_t j, k;
    g->first = nr_next_cmd;
    for (k = 0; k < x->n[2]; k++)
        for (j = 0; j < x->n[1]; j++)
            nr_rows(ext0 + k * (uint32_t)ext_s[2] + j * (uint32_t)ext_s[1],
                    loc0 + k * (uint32_t)loc_s[2] + j * (uint32_t)loc_s[1], x->bytes, x->n[0],
                    ext_s[0], loc_s[0], to_near, ram);
    g->count = (nr_next_cmd - g->first + NR_GAP9_CMDS) % NR_GAP9_CMDS;
    nr_next_group = (nr_next_group + 1) & 0x7FFFFFFF;
    return id;
}

void nr_dma_wait(nr_dma_id_t id)
{
    const nr_group_t *g = &nr_groups[id % NR_GAP9_GROUPS];
    int i;
    for (i = 0; i < g->count; i++)
        nr_cmd_wait((g->first + i) % NR_GAP9_CMDS);
}

void nr_dma_wait_all(void)
{
    int c;
    for (c = 0; c < NR_GAP9_CMDS; c++) {
        nr_cmd_wait(c);
    }
}

void nr_barrier(void)
{
    pi_cl_team_barrier();
}

static void (*nr_team_fn)(int, int);
static int nr_team_n;

static void nr_team_entry(void *arg)
{
    (void)arg;
    nr_team_fn((int)pi_core_id(), nr_team_n);
}

void nr_fork(void (*fn)(int core_id, int n_cores), int n_cores)
{
    nr_team_fn = fn;
    nr_team_n = n_cores;
    pi_cl_team_fork(n_cores, nr_team_entry, (void *)0);
}

uint64_t nr_time_ns(void) { return 0; }

void nr_plat_init(void)
{
    struct pi_hyperram_conf conf;
    if (nr_ram_open)
        return;
    if (!net_l3_arena_bytes)
        return; /* no weights streamed from L3 */
    pi_hyperram_conf_init(&conf);
    pi_open_from_conf(&nr_ram, &conf);
    if (pi_ram_open(&nr_ram) || pi_ram_alloc(&nr_ram, &nr_l3_base, net_l3_arena_bytes)) {
        nr_out_s("F cannot open the HyperRAM\n");
        nr_out_flush();
        pmsis_exit(1);
    }
    nr_ram_open = 1;
}

void nr_plat_deinit(void) {}

void nr_plat_l3_write(uint8_t *l3, uint32_t offset, const uint8_t *image, uint32_t bytes)
{
    pi_ram_write(&nr_ram, nr_ram_addr(l3) + offset, (void *)(uintptr_t)image, bytes);
}

__attribute__((noinline, used)) void nr_prof_begin(int layer)
{
    __asm__ volatile("" : : "r"(layer) : "memory");
}

__attribute__((noinline, used)) void nr_prof_end(int layer)
{
    __asm__ volatile("nop" : : "r"(layer) : "memory");
}

void nr_write(const char *s, unsigned n)
{
#ifdef NR_GAP9_STANDIN
    pi_standin_write(s, n);
#else
    printf("%.*s", (int)n, s);
#endif
}

void nr_exit(int code)
{
    pmsis_exit(code);
}
