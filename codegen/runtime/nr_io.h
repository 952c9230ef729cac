/* nr_io.h - the little output a generated network program needs (results as hex lines for
 * `planner run`), on the platform's nr_write; no libc needed. */
#ifndef NR_IO_H
#define NR_IO_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void nr_write(const char *s, unsigned n);
void nr_exit(int code);
/* around each layer: instruction-count markers on QEMU targets, no-ops elsewhere */
void nr_prof_begin(int layer);
void nr_prof_end(int layer);

/* buffered text output */
void nr_out_s(const char *s);
void nr_out_u64(uint64_t v);
void nr_out_hex(const void *p, uint32_t n);
void nr_out_flush(void);

#ifdef __cplusplus
}
#endif
#endif /* NR_IO_H */
