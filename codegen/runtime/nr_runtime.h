/* nr_runtime.h - the runtime of a generated network: arenas, the tile engine, and the platform
 * API every target implements (DMA, barrier, fork, timer, output).
 *
 * The code generator (codegen/, planner solve) emits per layer one nr_layer_t (loop dims, tile
 * sizes, buffers with their places in the arenas) and a tile body that calls the kernel library on
 * one tile; nr_run_tiles walks the tiles in the plan's loop order with DMA double-buffering. All
 * cores run the engine in lockstep; core 0 alone issues and waits for DMA, barriers publish the
 * data to the other cores. C99, no malloc, no VLA.
 */
#ifndef NR_RUNTIME_H
#define NR_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NR_MAX_DIMS 4
#define NR_MAX_AXES 4
#define NR_MAX_BUFS 16
#define NR_DIM_NONE 255
#define NR_NO_STAGE 0xFFFFFFFFu

/* arenas (one per memory level the plan uses; defined by the generated network.c) */
enum { NR_L1 = 0, NR_L2 = 1, NR_L3 = 2, NR_N_ARENAS = 3 };
extern uint8_t *const nr_arena[NR_N_ARENAS];

/* buffer kinds */
enum {
    NR_IN = 0,     /* moved home -> compute level before the tile (activation or weight tile) */
    NR_OUT = 1,    /* moved compute level -> home after the last tile that writes it */
    NR_INOUT = 2,  /* both */
    NR_LOCAL = 3,  /* lives only in the compute level (partial sums, scratch): a pointer */
    NR_DIRECT = 4  /* read / written where it lives (its home is the compute level, or a weight
                      read in place from addressable memory): a pointer with the home strides */
};

/* One axis of a buffer's view: its extent follows loop dim `dim` (start = tile offset), or is
 * the whole `full` extent; `stride` is the home stride in bytes. */
typedef struct {
    int32_t stride;
    int32_t full;
    uint8_t dim;
    uint8_t pad[3];
} nr_axis_t;

typedef struct {
    uint32_t home_off;   /* byte offset of the view's element 0 in the home arena */
    uint32_t near_off;   /* byte offset of copy 0 in the compute-level arena */
    uint32_t copy_bytes; /* distance between the copies of a double buffer */
    uint32_t stage_off;  /* L2 offset of the staging copies (home L3, reached through L2) */
    uint8_t kind, home, near, copies;
    uint8_t elem, n_axes;
    uint8_t into;        /* 1 + index of the buffer whose current copy this one is loaded into
                            (a full bias DMA'd straight into an int32 output tile), or 0 */
    uint8_t pad;
    nr_axis_t ax[NR_MAX_AXES];
} nr_buf_t;

typedef struct {
    uint16_t id;         /* position in the schedule */
    uint8_t n_dims, n_bufs;
    uint16_t first_buf;  /* its buffers: nr_bufs[first_buf .. first_buf + n_bufs) */
    uint16_t pad;
    int32_t size[NR_MAX_DIMS]; /* loop dims, outer to inner */
    int32_t tile[NR_MAX_DIMS];
} nr_layer_t;

/* the generated tables (network.c): every layer's descriptor and every buffer's */
extern const nr_buf_t *const nr_bufs;

/* One tile as the body sees it. */
typedef struct {
    int32_t idx[NR_MAX_DIMS];  /* tile index per loop dim */
    int32_t off[NR_MAX_DIMS];  /* first element per loop dim */
    int32_t ext[NR_MAX_DIMS];  /* extent (the last tile of a dim may be shorter) */
    int32_t n[NR_MAX_DIMS];    /* number of tiles per loop dim */
    void *ptr[NR_MAX_BUFS];    /* each buffer's current copy (or its in-place view) */
    int32_t st[NR_MAX_BUFS][NR_MAX_AXES]; /* element strides of each buffer's view */
} nr_tile_t;

typedef void (*nr_body_fn)(const nr_tile_t *t, int core_id, int n_cores);

/* Run a tiled layer on this core (call from every core with the same arguments). */
void nr_run_tiles(const nr_layer_t *L, nr_body_fn body, int core_id, int n_cores);

/* ---- building blocks for layers with their own loop structure (depth-first MHSA) ---------- */
typedef int32_t nr_dma_id_t;
#define NR_DMA_NONE ((nr_dma_id_t)-1)
/* the view of buffer b for tile starts off[] / extents ext[] of the layer's loop dims */
void *nr_buf_ptr(const nr_buf_t *b, int slot);
/* the data a kernel reads: copy `slot` in the compute level, or the tile's place at home for a
 * buffer read in place (NR_DIRECT) */
void *nr_buf_view(const nr_buf_t *b, const int32_t *off, int slot);
/* rows of row_bytes stored every `stride` bytes -> packed (core 0; see the MHSA output) */
void nr_compact_rows(void *base, int32_t rows, int32_t row_bytes, int32_t stride);
nr_dma_id_t nr_buf_load(const nr_buf_t *b, const int32_t *off, const int32_t *ext, int slot);
nr_dma_id_t nr_buf_store(const nr_buf_t *b, const int32_t *off, const int32_t *ext, int slot);
/* waits for a transfer of layer `layer_id` (the fault-injection build may drop one, see below) */
void nr_wait_in(uint16_t layer_id, nr_dma_id_t id);
void nr_wait_out(nr_dma_id_t id);

/* ---- platform API (nr_plat_<target>.c) --------------------------------------------------- */
/* A strided copy of up to four levels: rows of `bytes` contiguous bytes, repeated n[k] times
 * with source / destination strides src_s[k] / dst_s[k] (bytes), k = 0 innermost. */
typedef struct {
    uint32_t bytes;
    uint32_t n[3];
    int32_t src_s[3], dst_s[3];
} nr_xfer_t;
enum { NR_LINK_NEAR = 0, /* compute level <-> L2 (cluster DMA, MDMA) */
       NR_LINK_FAR = 1   /* L3 <-> L2 (RAM / flash) */ };
nr_dma_id_t nr_dma_start(void *dst, const void *src, const nr_xfer_t *x, int link, int to_near);
void nr_dma_wait(nr_dma_id_t id);
void nr_dma_wait_all(void);
void nr_barrier(void);
/* runs fn(core_id, n_cores) on n_cores cores and returns when all are done */
void nr_fork(void (*fn)(int core_id, int n_cores), int n_cores);
uint64_t nr_time_ns(void); /* host: wall clock; targets: 0 (use instruction counts) */
void nr_plat_init(void);
void nr_plat_deinit(void);
/* fills the L3 arena from the weights image at net_init where L3 is not memory-mapped
 * (NR_L3_MAPPED 0 in nr_platform.h) */
void nr_plat_l3_write(uint8_t *l3, uint32_t offset, const uint8_t *image, uint32_t bytes);

#ifdef __cplusplus
}
#endif
#endif /* NR_RUNTIME_H */
