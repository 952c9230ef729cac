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
static uint64_t start_addr, stop_addr;
static int have_markers;
static const char *out_path;

static uint64_t *regions;    /* finished regions of vCPU 0, in order */
static size_t n_regions, cap_regions;
static int region_open;
static uint64_t region_begin;
static char errors[NR_MAX_ERRORS][96];
static int n_errors;

/* user data of a marker callback: which marker, and the instructions of its block that have
 * not executed yet when it runs (the block's count was added at the block's start) */
typedef struct {
    int is_start;
    uint64_t not_yet;
} marker_t;

static void error(const char *text, uint64_t at)
{
    if (n_errors < NR_MAX_ERRORS)
        snprintf(errors[n_errors], sizeof errors[0], "%s (after %" PRIu64 " instructions)", text,
                 at);
    n_errors++;
}

static void on_block(unsigned int vcpu, void *udata)
{
    executed[vcpu % NR_MAX_VCPUS] += (uint64_t)(uintptr_t)udata;
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
        if (!p) {
            error("out of memory for regions", now);
            return;
        }
        regions = p;
        cap_regions = cap;
    }
    regions[n_regions++] = now - region_begin;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb), i;
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS,
                                         (void *)(uintptr_t)n);
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
    if (f)
        fclose(f);
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
        } else {
            snprintf(msg, sizeof msg,
                     "icount: bad argument '%s' (expected out=FILE, start=ADDR, stop=ADDR)\n", a);
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
