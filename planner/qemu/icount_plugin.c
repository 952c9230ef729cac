/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * icount_plugin.c - QEMU TCG plugin that counts executed guest instructions: the total, and
 * per region between two marker functions given by address.
 *
 * This one file is licensed GPL-2.0-or-later (the rest of the project is Apache-2.0): it is
 * loaded into QEMU and uses QEMU's TCG plugin API, whose header carries that license. It is a
 * build-time measuring tool; nothing of it is linked into generated or target code.
 * planner/toolchain.py builds it on first use with the host gcc into a cache directory.
 *
 * Plugin arguments (-plugin libnr_icount.so,out=FILE,start=ADDR,stop=ADDR):
 *   out=FILE    write the report to FILE at exit (default: QEMU's log, i.e. stderr)
 *   start=ADDR  entry address of the "begin region" marker function (hex or decimal)
 *   stop=ADDR   entry address of the "end region" marker function
 * Report lines:
 *   icount: region <i> insns <n>      one per start->stop interval, in execution order
 *   icount: total insns <n>           every guest instruction executed (all vCPUs)
 *   icount: error <text>              markers out of order (stop without start, ...)
 *
 * Region semantics: a region counts the instructions executed from the first instruction of
 * the start marker (included) up to the first instruction of the stop marker (excluded), on
 * vCPU 0. Counting is exact and deterministic: every translation block adds its instruction
 * count when it starts executing (QEMU ends a block at every branch, exception and semihosting
 * call, so a block runs to its end unless the guest faults inside it), and a marker instruction
 * at index i of an n-instruction block reads the counter minus the n - i instructions of its
 * block not yet executed.
 *
 * The QEMU plugin API is used through the few declarations below (QEMU's own header is not
 * installed by distributions that ship QEMU with plugin support). NR_QEMU_PLUGIN_API is the
 * API version the plugin declares: 1 for QEMU 4.2 to 8.x, 2 for QEMU 9.0 and later (which
 * accept versions 2 and up); the builder passes it.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the part of QEMU's plugin API this plugin uses (declared here, see above) ---------- */
#define NR_EXPORT __attribute__((visibility("default")))

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t; /* not dereferenced here */
struct qemu_plugin_tb;
struct qemu_plugin_insn;

enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS = 0 };

typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn,
                                            qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);

#ifndef NR_QEMU_PLUGIN_API
#define NR_QEMU_PLUGIN_API 1
#endif
NR_EXPORT int qemu_plugin_version = NR_QEMU_PLUGIN_API;
NR_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                  char **argv);

/* ---- state ------------------------------------------------------------------------------ */
#define NR_MAX_VCPUS 64      /* per-vCPU counters: no data race between MTTCG threads */
#define NR_MAX_ERRORS 8

static uint64_t executed[NR_MAX_VCPUS];
static uint64_t executed_in[NR_MAX_VCPUS]; /* of those, inside the ranges= file's ranges */
static uint64_t start_addr, stop_addr;
/* ranges=FILE: address ranges (lines "START SIZE", hex or decimal, e.g. the kernel library's
 * functions); instructions inside them are also counted apart, per region and in total */
static uint64_t *range_lo, *range_hi;
static size_t n_ranges;
static int have_markers;
static const char *out_path;

static uint64_t *regions;    /* finished regions of vCPU 0, in order */
static uint64_t *regions_in; /* their instructions inside the ranges */
static size_t n_regions, cap_regions;
static int region_open;
static uint64_t region_begin, region_begin_in;
static char errors[NR_MAX_ERRORS][96];
static int n_errors;

/* user data of a marker callback: which marker, and the instructions of its block that have
 * not executed yet when it runs (the block's count was added at the block's start) */
typedef struct {
    int is_start;
    uint64_t not_yet;
    uint64_t not_yet_in; /* of those, inside the ranges */
} marker_t;

/* user data of a block: its instruction count and how many of them lie inside the ranges */
typedef struct {
    uint64_t n, n_in;
} block_t;

static int in_ranges(uint64_t pc)
{
    size_t lo = 0, hi = n_ranges;
    while (lo < hi) { /* the ranges are sorted and disjoint */
        size_t mid = (lo + hi) / 2;
        if (pc < range_lo[mid])
            hi = mid;
        else if (pc >= range_hi[mid])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

static void error(const char *text, uint64_t at)
{
    if (n_errors < NR_MAX_ERRORS)
        snprintf(errors[n_errors], sizeof errors[0], "%s (after %" PRIu64 " instructions)", text,
                 at);
    n_errors++;
}

static void on_block(unsigned int vcpu, void *udata)
{
    const block_t *b = (const block_t *)udata;
    executed[vcpu % NR_MAX_VCPUS] += b->n;
    executed_in[vcpu % NR_MAX_VCPUS] += b->n_in;
}

static void on_marker(unsigned int vcpu, void *udata)
{
    const marker_t *m = (const marker_t *)udata;
    uint64_t now;
    if (vcpu != 0)
        return;
    now = executed[0] - m->not_yet; /* instructions before this one */
    if (m->is_start) {
        if (region_open)
            error("start marker reached inside an open region", now);
        region_open = 1;
        region_begin = now;
        region_begin_in = executed_in[0] - m->not_yet_in;
        return;
    }
    if (!region_open) {
        error("stop marker reached without a start", now);
        return;
    }
    region_open = 0;
    if (n_regions == cap_regions) {
        size_t cap = cap_regions ? 2 * cap_regions : 256;
        uint64_t *p = (uint64_t *)realloc(regions, cap * sizeof *p);
        uint64_t *q = (uint64_t *)realloc(regions_in, cap * sizeof *q);
        if (p)
            regions = p;
        if (q)
            regions_in = q;
        if (!p || !q) {
            error("out of memory for regions", now);
            return;
        }
        cap_regions = cap;
    }
    regions_in[n_regions] = (executed_in[0] - m->not_yet_in) - region_begin_in;
    regions[n_regions++] = now - region_begin;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb), i;
    block_t *b = (block_t *)malloc(sizeof *b); /* one per translation */
    uint8_t inside[512];
    (void)id;
    if (!b) {
        error("out of memory for a block", 0);
        return;
    }
    b->n = n;
    b->n_in = 0;
    for (i = 0; i < n; i++) {
        const int in = n_ranges && in_ranges(qemu_plugin_insn_vaddr(qemu_plugin_tb_get_insn(tb, i)));
        b->n_in += (uint64_t)in;
        if (i < sizeof inside)
            inside[i] = (uint8_t)in;
    }
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS, b);
    if (!have_markers)
        return;
    for (i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint64_t pc = qemu_plugin_insn_vaddr(insn);
        marker_t *m;
        if (pc != start_addr && pc != stop_addr)
            continue;
        /* one small record per translation of a marker instruction (a few per run) */
        m = (marker_t *)malloc(sizeof *m);
        if (!m) {
            error("out of memory for a marker", 0);
            continue;
        }
        m->is_start = pc == start_addr;
        m->not_yet = (uint64_t)(n - i);
        m->not_yet_in = 0;
        {
            size_t j;
            for (j = i; j < n; j++)
                m->not_yet_in += j < sizeof inside ? inside[j] : 0;
        }
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_marker, QEMU_PLUGIN_CB_NO_REGS, m);
    }
}

static void emit(FILE *f, const char *line)
{
    if (f)
        fputs(line, f);
    else
        qemu_plugin_outs(line);
}

static void on_exit_report(qemu_plugin_id_t id, void *udata)
{
    char line[160];
    FILE *f = NULL;
    uint64_t total = 0;
    size_t i;
    (void)id;
    (void)udata;
    if (out_path) {
        f = fopen(out_path, "w");
        if (!f) {
            snprintf(line, sizeof line, "icount: error cannot write %s\n", out_path);
            qemu_plugin_outs(line);
        }
    }
    for (i = 0; i < n_regions; i++) {
        if (n_ranges)
            snprintf(line, sizeof line, "icount: region %zu insns %" PRIu64 " in_ranges %" PRIu64 "\n",
                     i, regions[i], regions_in[i]);
        else
            snprintf(line, sizeof line, "icount: region %zu insns %" PRIu64 "\n", i, regions[i]);
        emit(f, line);
    }
    if (region_open)
        error("region still open at exit", executed[0]);
    for (i = 0; i < (size_t)n_errors && i < NR_MAX_ERRORS; i++) {
        snprintf(line, sizeof line, "icount: error %s\n", errors[i]);
        emit(f, line);
    }
    for (i = 0; i < NR_MAX_VCPUS; i++)
        total += executed[i];
    snprintf(line, sizeof line, "icount: total insns %" PRIu64 "\n", total);
    emit(f, line);
    if (n_ranges) {
        uint64_t total_in = 0;
        for (i = 0; i < NR_MAX_VCPUS; i++)
            total_in += executed_in[i];
        snprintf(line, sizeof line, "icount: total in_ranges %" PRIu64 "\n", total_in);
        emit(f, line);
    }
    if (f)
        fclose(f);
}

static int cmp_u64(const void *a, const void *b)
{
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* ranges file: "START SIZE" per line; merged into sorted disjoint [lo, hi) */
static int load_ranges(const char *path)
{
    FILE *f = fopen(path, "r");
    uint64_t *pairs = NULL, lo, size;
    size_t n = 0, cap = 0, i;
    if (!f)
        return 0;
    while (fscanf(f, "%" SCNx64 " %" SCNx64, &lo, &size) == 2) {
        if (n == cap) {
            uint64_t *p;
            cap = cap ? 2 * cap : 256;
            p = (uint64_t *)realloc(pairs, 2 * cap * sizeof *p);
            if (!p) {
                fclose(f);
                free(pairs);
                return 0;
            }
            pairs = p;
        }
        pairs[2 * n] = lo;
        pairs[2 * n + 1] = lo + size;
        n++;
    }
    fclose(f);
    qsort(pairs, n, 2 * sizeof *pairs, cmp_u64); /* by start (pairs sort by their first word) */
    range_lo = (uint64_t *)malloc((n ? n : 1) * sizeof *range_lo);
    range_hi = (uint64_t *)malloc((n ? n : 1) * sizeof *range_hi);
    if (!range_lo || !range_hi)
        return 0;
    for (i = 0; i < n; i++) {
        if (n_ranges && pairs[2 * i] <= range_hi[n_ranges - 1]) {
            if (pairs[2 * i + 1] > range_hi[n_ranges - 1])
                range_hi[n_ranges - 1] = pairs[2 * i + 1];
        } else {
            range_lo[n_ranges] = pairs[2 * i];
            range_hi[n_ranges] = pairs[2 * i + 1];
            n_ranges++;
        }
    }
    free(pairs);
    return 1;
}

static int parse_addr(const char *text, uint64_t *out)
{
    char *end;
    *out = strtoull(text, &end, 0);
    return *text != '\0' && *end == '\0';
}

NR_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                  char **argv)
{
    int i, got_start = 0, got_stop = 0;
    char msg[160];
    (void)info;
    for (i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "out=", 4) == 0) {
            out_path = a + 4;
        } else if (strncmp(a, "start=", 6) == 0 && parse_addr(a + 6, &start_addr)) {
            got_start = 1;
        } else if (strncmp(a, "stop=", 5) == 0 && parse_addr(a + 5, &stop_addr)) {
            got_stop = 1;
        } else if (strncmp(a, "ranges=", 7) == 0) {
            if (!load_ranges(a + 7)) {
                snprintf(msg, sizeof msg, "icount: cannot read the ranges file %s\n", a + 7);
                qemu_plugin_outs(msg);
                return 1;
            }
        } else {
            snprintf(msg, sizeof msg,
                     "icount: bad argument '%s' (expected out=FILE, start=ADDR, stop=ADDR, "
                     "ranges=FILE)\n", a);
            qemu_plugin_outs(msg);
            return 1;
        }
    }
    if (got_start != got_stop || (got_start && start_addr == stop_addr)) {
        qemu_plugin_outs("icount: give both start= and stop=, at different addresses\n");
        return 1;
    }
    have_markers = got_start;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit_report, NULL);
    return 0;
}
