/* nr_plat_host.c - the host platform of a generated network: cores are POSIX threads with a
 * barrier, and DMA is an emulated asynchronous engine (a thread of its own) that catches the
 * mistakes a real DMA would punish:
 *   - a transfer's destination holds poison (0xA5) from the moment it is issued until it
 *     completes, so data read before its wait is wrong;
 *   - a transfer completes only when it is waited for (or at nr_dma_wait_all), as late as a real
 *     engine may, and reads its source then, so a source overwritten before the wait is wrong.
 * The copies run on the DMA thread, synchronized with the waiting core by a mutex, so the thread
 * sanitizer sees every access that no wait orders. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nr_runtime.h"
#include "nr_io.h"

#define NR_POISON 0xA5
#define NR_QMAX 1024 /* transfers in flight at once */

typedef struct {
    void *dst;
    const void *src;
    nr_xfer_t x;
    nr_dma_id_t id;
    int busy;
} nr_req_t;

static nr_req_t nr_q[NR_QMAX];
static nr_dma_id_t nr_next_id;
static nr_dma_id_t nr_want = NR_DMA_NONE; /* the transfer a core waits for (-2: all) */
static int nr_quit;
static pthread_mutex_t nr_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t nr_cv_req = PTHREAD_COND_INITIALIZER;
static pthread_cond_t nr_cv_done = PTHREAD_COND_INITIALIZER;
static pthread_t nr_dma_thread;
static pthread_barrier_t nr_bar;
static int nr_started;

static void nr_rows(const nr_xfer_t *x, uint8_t *d, const uint8_t *s, int poison)
{
    uint32_t i, j, k;
    for (k = 0; k < x->n[2]; k++)
        for (j = 0; j < x->n[1]; j++)
            for (i = 0; i < x->n[0]; i++) {
                uint8_t *dd = d + k * x->dst_s[2] + j * x->dst_s[1] + i * x->dst_s[0];
                const uint8_t *ss = s + k * x->src_s[2] + j * x->src_s[1] + i * x->src_s[0];
                if (poison)
                    memset(dd, NR_POISON, x->bytes);
                else
                    memmove(dd, ss, x->bytes);
            }
}

static void nr_complete(nr_dma_id_t id)
{
    nr_req_t *r = &nr_q[id % NR_QMAX];
    if (r->busy && r->id == id) {
        nr_rows(&r->x, (uint8_t *)r->dst, (const uint8_t *)r->src, 0);
        r->busy = 0;
    }
}

static void *nr_dma_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&nr_mu);
    for (;;) {
        while (nr_want == NR_DMA_NONE && !nr_quit)
            pthread_cond_wait(&nr_cv_req, &nr_mu);
        if (nr_quit)
            break;
        if (nr_want == -2) {
            nr_dma_id_t id;
            for (id = nr_next_id - NR_QMAX < 0 ? 0 : nr_next_id - NR_QMAX; id < nr_next_id; id++)
                nr_complete(id);
        } else {
            nr_complete(nr_want);
        }
        nr_want = NR_DMA_NONE;
        pthread_cond_broadcast(&nr_cv_done);
    }
    pthread_mutex_unlock(&nr_mu);
    return NULL;
}

nr_dma_id_t nr_dma_start(void *dst, const void *src, const nr_xfer_t *x, int link, int to_near)
{
    nr_dma_id_t id;
    nr_req_t *r;
    (void)link;
    (void)to_near;
    pthread_mutex_lock(&nr_mu);
    id = nr_next_id++;
    r = &nr_q[id % NR_QMAX];
    if (r->busy) {
        fprintf(stderr, "nr_plat_host: more than %d DMA transfers in flight\n", NR_QMAX);
        abort();
    }
    r->dst = dst;
    r->src = src;
    r->x = *x;
    r->id = id;
    r->busy = 1;
    nr_rows(x, (uint8_t *)dst, (const uint8_t *)src, 1);
    pthread_mutex_unlock(&nr_mu);
    return id;
}

static void nr_ask(nr_dma_id_t want)
{
    pthread_mutex_lock(&nr_mu);
    while (nr_want != NR_DMA_NONE)
        pthread_cond_wait(&nr_cv_done, &nr_mu);
    nr_want = want;
    pthread_cond_signal(&nr_cv_req);
    while (nr_want != NR_DMA_NONE)
        pthread_cond_wait(&nr_cv_done, &nr_mu);
    pthread_mutex_unlock(&nr_mu);
}

void nr_dma_wait(nr_dma_id_t id)
{
    if (id >= 0)
        nr_ask(id);
}

void nr_dma_wait_all(void)
{
    nr_ask(-2);
}

void nr_barrier(void)
{
    pthread_barrier_wait(&nr_bar);
}

typedef struct {
    void (*fn)(int, int);
    int core, n;
} nr_core_arg_t;

static void *nr_core_main(void *p)
{
    nr_core_arg_t *a = (nr_core_arg_t *)p;
    a->fn(a->core, a->n);
    return NULL;
}

void nr_fork(void (*fn)(int core_id, int n_cores), int n_cores)
{
    pthread_t th[64];
    nr_core_arg_t args[64];
    int c;
    if (n_cores < 1 || n_cores > 64) {
        fprintf(stderr, "nr_plat_host: %d cores\n", n_cores);
        abort();
    }
    pthread_barrier_init(&nr_bar, NULL, (unsigned)n_cores);
    for (c = 1; c < n_cores; c++) {
        args[c].fn = fn;
        args[c].core = c;
        args[c].n = n_cores;
        if (pthread_create(&th[c], NULL, nr_core_main, &args[c]) != 0) {
            fprintf(stderr, "nr_plat_host: cannot start core %d\n", c);
            abort();
        }
    }
    fn(0, n_cores);
    for (c = 1; c < n_cores; c++)
        pthread_join(th[c], NULL);
    pthread_barrier_destroy(&nr_bar);
}

uint64_t nr_time_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void nr_plat_init(void)
{
    if (!nr_started) {
        nr_started = 1;
        pthread_create(&nr_dma_thread, NULL, nr_dma_main, NULL);
    }
}

void nr_plat_deinit(void)
{
    if (nr_started) {
        pthread_mutex_lock(&nr_mu);
        nr_quit = 1;
        pthread_cond_signal(&nr_cv_req);
        pthread_mutex_unlock(&nr_mu);
        pthread_join(nr_dma_thread, NULL);
        nr_started = 0;
    }
}

void nr_plat_l3_write(uint8_t *l3, uint32_t offset, const uint8_t *image, uint32_t bytes)
{
    memcpy(l3 + offset, image, bytes);
}

void nr_prof_begin(int layer) { (void)layer; }
void nr_prof_end(int layer) { (void)layer; }

void nr_write(const char *s, unsigned n)
{
    fwrite(s, 1, n, stdout);
    fflush(stdout); /* the last line before a crash must reach `planner run` */
}

void nr_exit(int code)
{
    fflush(stdout);
    exit(code);
}
