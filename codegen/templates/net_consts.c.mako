<%page args="N, c_bytes"/>\
/* net_consts.c - the constants of ${N['plan'].network} (weights, biases, requantization vectors),
 * one image per memory level, laid out at the offsets of plan.json memory.<level>.weights.
 * Generated; do not edit. */
#include <stdint.h>

% for lv, (off, data) in sorted(N['images'].items()):
/* ${lv} arena bytes [${off}, ${off + len(data)}) */
const uint32_t net_${lv.lower()}_image_offset = ${off}u;
const uint32_t net_${lv.lower()}_image_bytes = ${len(data)}u;
/* aligned as the arenas: where L3 is a memory-mapped flash this image IS the L3 arena, and the
 * kernels read int32 vectors (biases, requantization) in it where they are */
const uint8_t net_${lv.lower()}_image[${max(len(data), 1)}] __attribute__((aligned(8))) = {
${c_bytes(data)}
};

% endfor
