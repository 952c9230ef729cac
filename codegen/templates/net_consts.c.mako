<%page args="N, c_bytes"/>\
/* net_consts.c - the constants of ${N['plan'].network} (weights, biases, requantization vectors),
 * one image per memory level, laid out at the offsets of plan.json memory.<level>.weights.
 * Generated; do not edit. */
#include <stdint.h>

% for lv, (off, data) in sorted(N['images'].items()):
/* ${lv} arena bytes [${off}, ${off + len(data)}) */
const uint32_t net_${lv.lower()}_image_offset = ${off}u;
const uint32_t net_${lv.lower()}_image_bytes = ${len(data)}u;
const uint8_t net_${lv.lower()}_image[${max(len(data), 1)}] = {
${c_bytes(data)}
};

% endfor
