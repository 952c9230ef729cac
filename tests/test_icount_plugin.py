"""The project's QEMU instruction-count plugin (planner/qemu/icount_plugin.c): it builds into the
cache directory, and it counts a known program exactly, region by region, on qemu-m7, qemu-m4
and qemu-rv32. The expected counts come from the program's own disassembly (the straight-line
instructions between the markers plus the loop body times the extra trips), not from a run."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from planner import toolchain as tc

TRIPS = (1, 1000, 70000)

# spin(n) runs a two-instruction loop n times; the trip counts come from a volatile array so the
# compiler cannot fold them
PROG = r"""
#include <stdint.h>
#include "platform.h"
volatile uint32_t trips[3] = {%d, %d, %d};
static void spin(uint32_t n)
{
#if defined(__arm__)
    __asm__ volatile("1: subs %%0, %%0, #1\n\tbne 1b" : "+r"(n)::"cc");
#else
    __asm__ volatile("1: addi %%0, %%0, -1\n\tbnez %%0, 1b" : "+r"(n));
#endif
}
int main(void)
{
    uint32_t a = trips[0], b = trips[1], c = trips[2];
    prof_start(); prof_stop();
    prof_start(); spin(a); prof_stop();
    prof_start(); spin(b); prof_stop();
    prof_start(); spin(c); prof_stop();
    return 0;
}
""" % TRIPS

# markers of the generated network's kind (an argument, distinct bodies), one stop too many
PROG_NR = r"""
#include <stdint.h>
#include "platform.h"
volatile int sink;
__attribute__((noinline, used)) void nr_prof_begin(int k) { sink = k; }
__attribute__((noinline, used)) void nr_prof_end(int k) { sink = -k; }
int main(void)
{
    int k, i;
    nr_prof_end(9);                 /* stop without start: reported, not counted */
    for (k = 0; k < 3; k++) {
        nr_prof_begin(k);
        for (i = 0; i < 10 * (k + 1); i++)
            sink = i;
        nr_prof_end(k);
    }
    return 0;
}
"""

OBJDUMP = {"qemu-m7": "arm-none-eabi-objdump", "qemu-m4": "arm-none-eabi-objdump",
           "qemu-rv32": "riscv64-unknown-elf-objdump"}


def _need(target: str) -> None:
    if not tc.available(target):
        pytest.skip(f"{target}: missing {', '.join(tc.missing_tools(target))} "
                    "(Debian: gcc-arm-none-eabi qemu-system-arm / gcc-riscv64-unknown-elf qemu-system-misc)")
    reason = tc.icount_unavailable_reason(target)
    if reason:
        pytest.skip(reason)
    if shutil.which(OBJDUMP[target]) is None:
        pytest.skip(f"{OBJDUMP[target]} is missing")


def _disassembly(target: str, exe: Path) -> dict[str, list[tuple[int, str, str]]]:
    """function name -> [(address, mnemonic, operands)] from objdump -d."""
    out = subprocess.run([OBJDUMP[target], "-d", str(exe)], capture_output=True, text=True,
                         check=True).stdout
    funcs: dict[str, list] = {}
    cur = None
    for line in out.splitlines():
        m = re.match(r"^[0-9a-f]+ <(\w+)>:$", line)
        if m:
            cur = funcs.setdefault(m.group(1), [])
            continue
        m = re.match(r"^\s*([0-9a-f]+):\s+(?:[0-9a-f]{4,8}\s+)+(\S+)\s*(.*)$", line)
        if m and cur is not None and not m.group(2).startswith("."):
            cur.append((int(m.group(1), 16), m.group(2), m.group(3)))
    return funcs


def _body_length(insns) -> int:
    """Instructions of a straight-line function up to and including its return."""
    for i, (_, mn, ops) in enumerate(insns):
        if (mn == "bx" and ops.startswith("lr")) or mn == "ret" or (mn == "jr" and ops == "ra"):
            return i + 1
    raise AssertionError(f"no return in {insns}")


def _expected_regions(funcs, trips) -> list[int]:
    """Per prof_start ... prof_stop call pair in main: the start marker's body, then every
    instruction of main after the call up to and including the call of the stop marker, the
    loops in between repeated for their extra trips."""
    start_len = _body_length(funcs["prof_start"])
    main = funcs["main"]
    calls = [i for i, (_, mn, ops) in enumerate(main)
             if mn in ("bl", "jal", "call") and ("<prof_start>" in ops or "<prof_stop>" in ops)]
    regions, loops = [], iter(trips)
    for a, b in zip(calls[::2], calls[1::2]):
        assert "<prof_start>" in main[a][2] and "<prof_stop>" in main[b][2]
        between = main[a + 1:b + 1]
        count = start_len + len(between)
        for j, (addr, mn, ops) in enumerate(between):
            target = re.search(r"([0-9a-f]+) <main\+", ops)
            if mn.startswith("b") and target and int(target.group(1), 16) < addr:
                body = [x for x in between if int(target.group(1), 16) <= x[0] <= addr]
                count += (next(loops) - 1) * len(body)
        regions.append(count)
    return regions


def test_plugin_builds_into_the_cache(tmp_path, monkeypatch):
    """Built with the host gcc into $PLANNER_CACHE_DIR/qemu-plugin/<hash>/, once; another source
    gives another directory; nothing is written beside the source."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc (host C compiler) is missing")
    monkeypatch.setenv("PLANNER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(tc, "_PLUGIN_CACHE", {})
    before = sorted(p.name for p in tc.ICOUNT_PLUGIN_SRC.parent.iterdir())
    lib = tc.icount_plugin("qemu-m7")
    assert lib.is_file() and lib.parent.parent == tmp_path / "cache" / "qemu-plugin"
    assert re.fullmatch(r"[0-9a-f]{16}", lib.parent.name)
    syms = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True,
                          text=True).stdout
    assert "qemu_plugin_install" in syms and "qemu_plugin_version" in syms
    stamp = lib.stat().st_mtime_ns
    monkeypatch.setattr(tc, "_PLUGIN_CACHE", {})
    assert tc.icount_plugin("qemu-m7") == lib and lib.stat().st_mtime_ns == stamp
    # a changed source is another build
    (tmp_path / "src").mkdir()
    src = tmp_path / "src" / "icount_plugin.c"
    src.write_text(tc.ICOUNT_PLUGIN_SRC.read_text() + "\n/* changed */\n")
    monkeypatch.setattr(tc, "ICOUNT_PLUGIN_SRC", src)
    other = tc.icount_plugin("qemu-m7")
    assert other.is_file() and other.parent != lib.parent
    assert sorted(p.name for p in tc.ICOUNT_PLUGIN_SRC.parent.iterdir()) == ["icount_plugin.c"]
    assert sorted(p.name for p in (tc.REPO_ROOT / "planner" / "qemu").iterdir()) == before


def test_plugin_api_version_follows_qemu():
    assert tc.plugin_api_version((7, 2)) == 1 and tc.plugin_api_version((8, 2)) == 1
    assert tc.plugin_api_version((9, 0)) == 2 and tc.plugin_api_version((10, 1)) == 2


@pytest.mark.parametrize("target", ["qemu-m7", "qemu-m4", "qemu-rv32"])
def test_counts_a_known_program_exactly(target, tmp_path):
    _need(target)
    src = tmp_path / "prog.c"
    src.write_text(PROG)
    exe = tc.build([src], [], target, tmp_path)
    expected = _expected_regions(_disassembly(target, exe), TRIPS)
    first = tc.run(exe, target, icount=True)
    again = tc.run(exe, target, icount=True)
    assert first.exit_code == 0 and not first.icount_errors, (first.stdout, first.stderr)
    assert first.icount_regions == expected
    # the loop regions differ from the empty one by exactly the loop's instructions
    assert [r - expected[0] for r in first.icount_regions[1:]] == \
        [expected[i + 1] - expected[0] for i in range(3)]
    assert expected[3] - expected[2] == 2 * (TRIPS[2] - TRIPS[1])
    assert first.icount_total > sum(expected)
    assert (again.icount_regions, again.icount_total) == (first.icount_regions, first.icount_total)
    plain = tc.run(exe, target)  # without the plugin: same program result, nothing counted
    assert plain.exit_code == 0 and plain.icount_regions is None


def test_named_markers_and_marker_errors(tmp_path):
    """Markers chosen by name (the generated network's nr_prof_begin/nr_prof_end): one region
    per begin/end pair in order, a stop without a start reported as an error."""
    target = "qemu-m7"
    _need(target)
    src = tmp_path / "nr.c"
    src.write_text(PROG_NR)
    exe = tc.build([src], [], target, tmp_path)
    res = tc.run(exe, target, icount=True, markers=("nr_prof_begin", "nr_prof_end"))
    assert res.exit_code == 0
    assert len(res.icount_regions) == 3
    assert res.icount_regions[0] < res.icount_regions[1] < res.icount_regions[2]
    # the loop bodies differ by 10 trips each: equal steps
    assert res.icount_regions[2] - res.icount_regions[1] == res.icount_regions[1] - res.icount_regions[0] > 10
    assert len(res.icount_errors) == 1 and "stop marker reached without a start" in res.icount_errors[0]
    # the default markers are not called by this program: no regions, no errors
    res = tc.run(exe, target, icount=True)
    assert res.icount_regions == [] and res.icount_errors == [] and res.icount_total > 0


PROG_RANGES = r"""
#include <stdint.h>
#include "platform.h"
volatile uint32_t trips = 5000;
__attribute__((noinline, used)) void spin(uint32_t n)
{
#if defined(__arm__)
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n)::"cc");
#else
    __asm__ volatile("1: addi %0, %0, -1\n\tbnez %0, 1b" : "+r"(n));
#endif
}
int main(void)
{
    uint32_t t = trips;
    prof_start(); spin(t); spin(t); prof_stop();
    return 0;
}
"""


@pytest.mark.parametrize("target", ["qemu-m7", "qemu-rv32"])
def test_ranges_count_the_instructions_inside_them(target, tmp_path):
    """ranges=FILE ("START SIZE" lines): the instructions executed inside them are counted apart,
    per region and in total -- here exactly those of two calls of spin(5000), from the
    disassembly (the function's straight-line instructions plus the loop's extra trips)."""
    _need(target)
    src = tmp_path / "r.c"
    src.write_text(PROG_RANGES)
    exe = tc.build([src], [], target, tmp_path)
    funcs = _disassembly(target, exe)
    per_call = _body_length(funcs["spin"]) + (5000 - 1) * 2
    nm = tc.get_target(target).nm
    syms = subprocess.run([nm, "-S", "--defined-only", str(exe)], capture_output=True, text=True).stdout
    line = next(ln.split() for ln in syms.splitlines() if ln.split()[-1:] == ["spin"])
    ranges = tmp_path / "ranges.txt"
    ranges.write_text(f"{int(line[0], 16) & ~1:x} {int(line[1], 16):x}\n")
    start = tc._symbol_addr(exe, tc.get_target(target), "prof_start")
    stop = tc._symbol_addr(exe, tc.get_target(target), "prof_stop")
    report = tmp_path / "ic.txt"
    cmd = tc.qemu_command(exe, target, f"{tc.icount_plugin(target)},out={report},start={start:#x},"
                          f"stop={stop:#x},ranges={ranges}", tmp_path / "sh.txt")
    subprocess.run(cmd, capture_output=True, timeout=60, stdin=subprocess.DEVNULL, check=True)
    text = report.read_text()
    m = re.search(r"icount: region 0 insns (\d+) in_ranges (\d+)", text)
    assert m, text
    assert int(m.group(2)) == 2 * per_call
    assert int(m.group(1)) > int(m.group(2))
    tot = re.search(r"icount: total in_ranges (\d+)", text)
    assert tot and int(tot.group(1)) == 2 * per_call
