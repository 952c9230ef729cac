/* nr_tiles.c - the tile engine: walks a layer's tiles in the plan's loop order with DMA
 * double-buffering (nr_runtime.h).
 *
 * Per tile, a buffer is (re)loaded when the tile index of one of the loop dims its view follows
 * changes (the same rule as the planner's cost model, planner/cost.py), and written back after the
 * last tile before such a change. Double-buffered inputs are loaded one tile ahead, while the
 * current tile is computed; double-buffered outputs alternate copies so that the write-back of one
 * overlaps the next tile. Every wait sits right before the data is used (inputs) or overwritten
 * (outputs, and inputs whose other copy is still being written back). Core 0 issues and waits;
 * the barrier after the waits publishes the data to every core, the barrier after the body tells
 * core 0 that no core still reads the copies it is about to reuse.
 */
#include "nr_runtime.h"

#ifdef NR_FAULT_DROP_WAIT
static int nr_fault_done;
#endif

void nr_wait_in(uint16_t layer_id, nr_dma_id_t id)
{
    if (id == NR_DMA_NONE)
        return;
#ifdef NR_FAULT_DROP_WAIT
    /* fault-injection build: the first input wait of layer NR_FAULT_DROP_WAIT is dropped */
    if (layer_id == NR_FAULT_DROP_WAIT && !nr_fault_done) {
        nr_fault_done = 1;
        return;
    }
#else
    (void)layer_id;
#endif
    nr_dma_wait(id);
}

void nr_wait_out(nr_dma_id_t id)
{
    if (id != NR_DMA_NONE)
        nr_dma_wait(id);
}

static int32_t nr_ext(const nr_buf_t *b, int a, const int32_t *ext)
{
    const nr_axis_t *x = &b->ax[a];
    return x->dim == NR_DIM_NONE ? x->full : ext[x->dim];
}

static int32_t nr_start(const nr_buf_t *b, int a, const int32_t *off)
{
    const nr_axis_t *x = &b->ax[a];
    return x->dim == NR_DIM_NONE ? 0 : off[x->dim];
}

void *nr_buf_ptr(const nr_buf_t *b, int slot)
{
    return nr_arena[b->near] + b->near_off + (uint32_t)slot * b->copy_bytes;
}

static uint8_t *nr_home_ptr(const nr_buf_t *b, const int32_t *off)
{
    int a;
    int32_t o = (int32_t)b->home_off;
    for (a = 0; a < b->n_axes; a++)
        o += nr_start(b, a, off) * b->ax[a].stride;
    return nr_arena[b->home] + o;
}

/* The strided copy between the tile's home region and its dense copy in the compute level:
 * contiguous rows, then up to three levels (axes of extent 1 skipped, adjacent axes merged). */
static void nr_make_xfer(const nr_buf_t *b, const int32_t *ext, int to_near, nr_xfer_t *x)
{
    int a, lv = 0;
    int32_t dense = b->elem, bytes = b->elem;
    int contiguous = 1; /* still inside the contiguous run of bytes */
    x->n[0] = x->n[1] = x->n[2] = 1;
    x->src_s[0] = x->src_s[1] = x->src_s[2] = 0;
    x->dst_s[0] = x->dst_s[1] = x->dst_s[2] = 0;
    for (a = b->n_axes - 1; a >= 0; a--) {
        const int32_t e = nr_ext(b, a, ext);
        const int32_t hs = b->ax[a].stride;
        if (e == 1)
            continue;
        if (contiguous && hs == bytes) {
            bytes *= e;
        } else {
            const int32_t ns = dense;
            contiguous = 0;
            if (lv > 0 && hs == (int32_t)x->n[lv - 1] * (to_near ? x->src_s[lv - 1] : x->dst_s[lv - 1])
                && ns == (int32_t)x->n[lv - 1] * (to_near ? x->dst_s[lv - 1] : x->src_s[lv - 1])) {
                x->n[lv - 1] *= (uint32_t)e;
            } else {
                /* at most three levels: guaranteed by the code generator's check */
                x->n[lv] = (uint32_t)e;
                x->src_s[lv] = to_near ? hs : ns;
                x->dst_s[lv] = to_near ? ns : hs;
                lv++;
            }
        }
        dense *= e;
    }
    x->bytes = (uint32_t)bytes;
}

void *nr_buf_view(const nr_buf_t *b, const int32_t *off, int slot)
{
    return b->kind == NR_DIRECT ? (void *)nr_home_ptr(b, off) : nr_buf_ptr(b, slot);
}

void nr_compact_rows(void *base, int32_t rows, int32_t row_bytes, int32_t stride)
{
    /* row r moves from r*stride down to r*row_bytes (stride >= row_bytes): ascending rows never
     * overwrite a row not yet moved */
    uint8_t *p = (uint8_t *)base;
    int32_t r, i;
    for (r = 1; r < rows; r++)
        for (i = 0; i < row_bytes; i++)
            p[r * row_bytes + i] = p[r * stride + i];
}

nr_dma_id_t nr_buf_load(const nr_buf_t *b, const int32_t *off, const int32_t *ext, int slot)
{
    nr_xfer_t x;
    void *near = nr_buf_ptr(b, slot);
    if (b->kind == NR_DIRECT || b->kind == NR_LOCAL)
        return NR_DMA_NONE; /* read where it lives */
    nr_make_xfer(b, ext, 1, &x);
    if (b->stage_off != NR_NO_STAGE) { /* L3 -> L2 staging copy -> compute level */
        uint8_t *stage = nr_arena[NR_L2] + b->stage_off + (uint32_t)slot * b->copy_bytes;
        nr_xfer_t flat;
        uint32_t total = x.bytes * x.n[0] * x.n[1] * x.n[2];
        nr_dma_wait(nr_dma_start(stage, nr_home_ptr(b, off), &x, NR_LINK_FAR, 1));
        flat.bytes = total;
        flat.n[0] = flat.n[1] = flat.n[2] = 1;
        flat.src_s[0] = flat.src_s[1] = flat.src_s[2] = 0;
        flat.dst_s[0] = flat.dst_s[1] = flat.dst_s[2] = 0;
        return nr_dma_start(near, stage, &flat, NR_LINK_NEAR, 1);
    }
    return nr_dma_start(near, nr_home_ptr(b, off), &x, b->home == NR_L3 ? NR_LINK_FAR : NR_LINK_NEAR, 1);
}

nr_dma_id_t nr_buf_store(const nr_buf_t *b, const int32_t *off, const int32_t *ext, int slot)
{
    nr_xfer_t x;
    nr_make_xfer(b, ext, 0, &x);
    return nr_dma_start(nr_home_ptr(b, off), nr_buf_ptr(b, slot), &x, NR_LINK_NEAR, 0);
}

static void nr_coords(const nr_layer_t *L, const int32_t *nt, int32_t it, nr_tile_t *t)
{
    int d;
    for (d = L->n_dims - 1; d >= 0; d--) {
        const int32_t i = it % nt[d];
        it /= nt[d];
        t->idx[d] = i;
        t->off[d] = i * L->tile[d];
        t->ext[d] = L->size[d] - t->off[d] < L->tile[d] ? L->size[d] - t->off[d] : L->tile[d];
        t->n[d] = nt[d];
    }
}

/* the buffer's view follows a loop dim whose tile index differs between a and b */
static int nr_changed(const nr_buf_t *b, const nr_tile_t *x, const nr_tile_t *y)
{
    int a;
    for (a = 0; a < b->n_axes; a++) {
        const uint8_t d = b->ax[a].dim;
        if (d != NR_DIM_NONE && x->idx[d] != y->idx[d])
            return 1;
    }
    return 0;
}

static int nr_is_in(const nr_buf_t *b) { return b->kind == NR_IN || b->kind == NR_INOUT; }
static int nr_is_out(const nr_buf_t *b) { return b->kind == NR_OUT || b->kind == NR_INOUT; }

static void nr_views(const nr_layer_t *L, const int *slot, nr_tile_t *t)
{
    const nr_buf_t *const bufs = nr_bufs + L->first_buf;
    int k, a;
    for (k = 0; k < L->n_bufs; k++) {
        const nr_buf_t *b = &bufs[k];
        if (b->kind == NR_DIRECT) {
            t->ptr[k] = nr_home_ptr(b, t->off);
            for (a = 0; a < b->n_axes; a++)
                t->st[k][a] = b->ax[a].stride / b->elem;
        } else {
            int32_t s = 1;
            t->ptr[k] = nr_buf_ptr(b, slot[k]);
            for (a = b->n_axes - 1; a >= 0; a--) { /* dense copy in the compute level */
                t->st[k][a] = s;
                s *= nr_ext(b, a, t->ext);
            }
        }
    }
}

static const nr_tile_t nr_tile0; /* all zero: no field is ever read uninitialized */

void nr_run_tiles(const nr_layer_t *L, nr_body_fn body, int core_id, int n_cores)
{
    int32_t nt[NR_MAX_DIMS] = {1, 1, 1, 1}, T = 1, it;
    int slot[NR_MAX_BUFS], k, d;
    nr_dma_id_t pin[NR_MAX_BUFS][2], pout[NR_MAX_BUFS][2];
    /* three tiles (previous, current, next) rotated by pointer: no struct copies */
    nr_tile_t tiles[3] = {nr_tile0, nr_tile0, nr_tile0};
    nr_tile_t *prev = &tiles[0], *cur = &tiles[1], *nxt = &tiles[2], *tmp;
    const nr_buf_t *const bufs = nr_bufs + L->first_buf;
    const int c0 = core_id == 0;
    for (d = 0; d < L->n_dims; d++) {
        nt[d] = (L->size[d] + L->tile[d] - 1) / L->tile[d];
        T *= nt[d];
    }
    for (k = 0; k < L->n_bufs; k++) {
        slot[k] = 0;
        pin[k][0] = pin[k][1] = pout[k][0] = pout[k][1] = NR_DMA_NONE;
    }
    nr_coords(L, nt, 0, cur);
    nr_coords(L, nt, 0, prev);
    for (it = 0; it < T; it++) {
        const int has_next = it + 1 < T;
        if (has_next)
            nr_coords(L, nt, it + 1, nxt);
        /* this tile's inputs: loaded now unless prefetched; the copies it writes are free */
        for (k = 0; k < L->n_bufs; k++) {
            const nr_buf_t *b = &bufs[k];
            if (b->into && (it == 0 || nr_changed(b, prev, cur))) {
                /* loaded into another buffer's current copy: once that copy's store is done */
                if (c0) {
                    const int t = b->into - 1;
                    nr_wait_out(pout[t][slot[t]]);
                    pout[t][slot[t]] = NR_DMA_NONE;
                    nr_wait_in(L->id, nr_buf_load(b, cur->off, cur->ext, slot[t]));
                }
                continue;
            }
            if (b->into)
                continue;
            if (nr_is_in(b) && (it == 0 || nr_changed(b, prev, cur))) {
                if (b->copies == 2 && it > 0) {
                    slot[k] ^= 1; /* loaded during the previous tile */
                } else if (c0) {
                    nr_wait_out(pout[k][slot[k]]);
                    pout[k][slot[k]] = NR_DMA_NONE;
                    pin[k][slot[k]] = nr_buf_load(b, cur->off, cur->ext, slot[k]);
                }
            }
            if (c0 && nr_is_in(b)) {
                nr_wait_in(L->id, pin[k][slot[k]]);
                pin[k][slot[k]] = NR_DMA_NONE;
            }
            if (c0 && nr_is_out(b)) {
                nr_wait_out(pout[k][slot[k]]);
                pout[k][slot[k]] = NR_DMA_NONE;
            }
        }
        nr_barrier();
        /* the next tile's double-buffered inputs, in flight while this tile is computed */
        if (c0 && has_next) {
            for (k = 0; k < L->n_bufs; k++) {
                const nr_buf_t *b = &bufs[k];
                if (nr_is_in(b) && b->copies == 2 && nr_changed(b, cur, nxt)) {
                    const int s = slot[k] ^ 1;
                    nr_wait_out(pout[k][s]);
                    pout[k][s] = NR_DMA_NONE;
                    pin[k][s] = nr_buf_load(b, nxt->off, nxt->ext, s);
                }
            }
        }
        nr_views(L, slot, cur);
        body(cur, core_id, n_cores);
        nr_barrier();
        /* write back what is complete */
        for (k = 0; k < L->n_bufs; k++) {
            const nr_buf_t *b = &bufs[k];
            if (nr_is_out(b) && (!has_next || nr_changed(b, cur, nxt))) {
                if (c0)
                    pout[k][slot[k]] = nr_buf_store(b, cur->off, cur->ext, slot[k]);
                if (b->kind == NR_OUT && b->copies == 2)
                    slot[k] ^= 1;
            }
        }
        tmp = prev;
        prev = cur;
        cur = nxt;
        nxt = tmp;
    }
    if (c0)
        nr_dma_wait_all();
    nr_barrier();
}
