"""Flash and RAM accounted like a vendor tool, and output that fits a terminal (issue 13,
"Accounting and output" 1-3):

* where the weights live (--weights): STM32L4 reads them in place from flash by default, STM32H7
  DMAs them from flash, GAP9 keeps them in L2; flash reads are priced with the hardware model's
  wait states, so moving weights between SRAM and flash moves the estimate by what those wait
  states cost;
* plan.json `footprint` (read-only / read-write, one arena per level) agrees with the memory plan
  and with the built program (`planner run` on QEMU: measured.json `sizes`);
* inspect and solve say what their MAC and weight totals count (before / after FWSA);
* the console summary of `solve` stays under 100 columns on every example and hardware model,
  with KiB said once, labelled percentages, no "None", and "1 core".
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from planner.cli import main
from planner.hw import HW_DIR, known_models, load_hw_model

from conftest import EXAMPLES, example_net

EXAMPLE_NETS = sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.glob("*/*.onnx")
                      if p.stem in ("int", "qdq", "qdq_per_channel"))


def _solve(tmp_path: Path, capsys, net, hw: str, *args: str, name: str = "out") -> tuple[dict, str]:
    out = tmp_path / name
    assert main(["solve", str(net), hw, "-o", str(out), "--no-emit", *args]) == 0
    text = capsys.readouterr().out
    return json.loads((out / "plan.json").read_text()), text


def _wait_per_byte(hw: str) -> float:
    """Core cycles waited per byte read in place from L3, from the model file's own figures."""
    d = json.loads((HW_DIR / f"{hw}.json").read_text())
    l3 = d["levels"]["L3"]
    return l3["read_wait_states"] * d["frequency_hz"] / l3["read_clock_hz"] / l3["read_width_bytes"]


# ------------------------------------------------------------------------- where the weights live


def test_stm32l4_reads_the_weights_in_place_from_flash_by_default(tmp_path, capsys):
    """radar_block on stm32l4: every constant but the softmax table (computed into RAM by
    net_init) lives in flash (L3) and is read in place; the flash wait states are priced: the
    fc1 weights (64 x 256 int8, 1 KiB bias) are streamed once per block of rows by the Arm DSP
    GEMM, 32 rows = 4 blocks of 6 + 2 of 4 = 6 passes, at 5 wait states per 8 B (RM0432)."""
    plan, text = _solve(tmp_path, capsys, example_net("radar_block"), "stm32l4")
    assert plan["weights"]["mode"] == "auto" and plan["weights"]["home"] == "L3"
    assert "copying them to L2 does not pay" in plan["weights"]["reason"]
    mem = plan["memory"]
    assert list(mem["L2"]["weights"]) == ["mhsa0_b0.o.matmul.out/softmax_lut"]
    assert len(mem["L3"]["weights"]) == plan["weights"]["in_l3"] > 10
    for lp in plan["layers"]:
        for b in lp["buffers"]:
            if b["kind"] != "weight":
                continue
            if b["name"] == "softmax_lut":
                assert (b["home"], b["access"]) == ("L2", "none")
            else:
                assert (b["home"], b["access"], b["level"]) == ("L3", "inplace", "L3"), (lp["name"], b["name"])
        assert lp["cycles"]["read_wait"] == sum(b["read_wait"] for b in lp["buffers"])
    fc1 = next(lp for lp in plan["layers"] if lp["name"] == "b0.fc1.matmul.out")
    w = {b["name"]: b for b in fc1["buffers"]}
    assert w["w"]["read_bytes"] == 6 * 64 * 256 and w["bias"]["read_bytes"] == 6 * 256 * 4
    assert fc1["cycles"]["read_wait"] == pytest.approx((6 * 64 * 256 + 6 * 1024) * _wait_per_byte("stm32l4"), abs=2)
    # nothing overlaps the waits: the parts add up to the estimate (each part is rounded up to
    # whole cycles on its own, so their sum may exceed it by less than one cycle per part)
    parts = fc1["cycles"]
    assert parts["dma_hidden"] == 0
    assert fc1["est_cycles"] <= sum(parts.values()) < fc1["est_cycles"] + len(parts)
    assert plan["estimate"]["read_wait_cycles"] == sum(lp["cycles"]["read_wait"] for lp in plan["layers"]) > 0
    assert "flash wait" in text and "waiting on flash reads" in text


def test_moving_weights_between_sram_and_flash_moves_the_estimate(tmp_path, capsys):
    """The issue: `--l2 100K` on stm32l4 moved the weights to flash and the estimate by 240
    cycles of 14.3 M. Now flash reads cost their wait states: the estimate with every weight in
    SRAM (--weights l2) is the flash estimate minus exactly its flash waits (4.3% on radar); with
    --l2 100K the weights that no longer fit SRAM go back to flash and the estimate rises by
    exactly their waits, a meaningful share; auto already keeps them in flash (same estimate,
    less SRAM)."""
    net = example_net("radar_block")
    flash, _ = _solve(tmp_path, capsys, net, "stm32l4", name="flash")
    sram, _ = _solve(tmp_path, capsys, net, "stm32l4", "--weights", "l2", name="sram")
    small, text = _solve(tmp_path, capsys, net, "stm32l4", "--weights", "l2", "--l2", "100K", name="small")
    auto_small, _ = _solve(tmp_path, capsys, net, "stm32l4", "--l2", "100K", name="auto_small")
    e = {k: p["estimate"] for k, p in (("flash", flash), ("sram", sram), ("small", small), ("auto", auto_small))}
    assert sram["memory"].get("L3", {}).get("weights", {}) == {} and e["sram"]["read_wait_cycles"] == 0
    assert e["flash"]["cycles"] - e["sram"]["cycles"] == e["flash"]["read_wait_cycles"]
    assert e["flash"]["read_wait_cycles"] > 0.02 * e["sram"]["cycles"]
    left = small["memory"]["L3"]["weights"]
    assert left and small["memory"]["L2"]["weights"]  # some stay in SRAM, the largest in flash
    assert e["small"]["cycles"] - e["sram"]["cycles"] == e["small"]["read_wait_cycles"]
    assert e["small"]["read_wait_cycles"] > 0.01 * e["sram"]["cycles"]
    assert "weights left in L3 (do not fit L2)" in text and "flash wait" in text
    # the weights decision says what the copy would have bought
    w = flash["weights"]
    assert (w["cycles_in_l3"], w["cycles_in_l2"]) == (e["flash"]["cycles"], e["sram"]["cycles"])
    assert w["cycles_in_l3"] < (1 + w["uncertainty"]) * w["cycles_in_l2"]  # within: stays in flash
    assert e["auto"]["cycles"] == e["flash"]["cycles"]
    assert auto_small["footprint"]["arenas"]["L2"] == flash["footprint"]["arenas"]["L2"]


def test_stm32h7_dmas_the_weights_from_flash_at_the_mdma_rate(tmp_path, capsys):
    """On STM32H7 the weights stay in flash and the MDMA moves them straight into DTCM (no
    staging copy in SRAM): one transfer at the slower of its links, the flash's 32 B per 5 AXI
    cycles being faster than the MDMA's figure, so flash costs what SRAM costs."""
    from planner.cost import SCALE, CostParams

    hw = load_hw_model("stm32h7")
    p = CostParams.from_hw(hw)
    mdma = round(SCALE / hw.levels["L1"].bandwidth_bytes_per_cycle)
    assert p.transfer("L3", "L1") == (SCALE * hw.levels["L1"].dma_setup_cycles, mdma) == p.transfer("L2", "L1")
    gap9 = CostParams.from_hw(load_hw_model("gap9"))  # staged: one DMA per link, one after the other
    assert gap9.transfer("L3", "L1") == tuple(map(sum, zip(gap9.transfer("L3", "L2"), gap9.transfer("L2", "L1"))))
    net = example_net("radar_block")
    flash, _ = _solve(tmp_path, capsys, net, "stm32h7", name="flash")
    sram, _ = _solve(tmp_path, capsys, net, "stm32h7", "--weights", "l2", name="sram")
    ws = [b for lp in flash["layers"] for b in lp["buffers"] if b["kind"] == "weight" and b["name"] != "softmax_lut"]
    assert ws and all(b["home"] == "L3" and b["access"] == "dma" and b["staging"] is None for b in ws)
    assert flash["estimate"]["cycles"] == sram["estimate"]["cycles"]
    assert flash["weights"]["home"] == "L3" and flash["estimate"]["read_wait_cycles"] == 0


def test_gap9_keeps_the_weights_in_l2(tmp_path, capsys):
    plan, _ = _solve(tmp_path, capsys, example_net("radar_block"), "gap9")
    assert plan["weights"]["home"] == "L2" and "reached by DMA only" in plan["weights"]["reason"]
    assert plan["memory"]["L3"]["weights"] == {} and plan["weights"]["in_l3"] == 0
    streamed, _ = _solve(tmp_path, capsys, example_net("eeg_2block"), "gap9", "--l2", "310000", "--dft", "on",
                         name="tight")
    ws = [b for lp in streamed["layers"] for b in lp["buffers"] if b["kind"] == "weight" and b["home"] == "L3"]
    assert ws and all(b["staging"] is not None for b in ws)  # L3 -> L2 -> L1
    assert streamed["footprint"]["read_write"]["L3"]["arena"] == streamed["memory"]["L3"]["peak"] > 0


def test_read_figures_are_checked(tmp_path):
    """The read_* figures come together, only on an addressable level, and each has a source."""
    from planner.errors import PlannerError

    base = json.loads((HW_DIR / "stm32l4.json").read_text())

    def load(d: dict):
        f = tmp_path / "m.json"
        f.write_text(json.dumps(d))
        return load_hw_model(f)

    d = json.loads(json.dumps(base))
    del d["levels"]["L3"]["read_clock_hz"]
    del d["_source"]["levels.L3.read_clock_hz"]
    with pytest.raises(PlannerError, match="levels.L3.read_clock_hz.*come together"):
        load(d)
    d = json.loads((HW_DIR / "gap9.json").read_text())
    d["levels"]["L3"].update(read_wait_states=1, read_width_bytes=8, read_clock_hz=1000)
    d["_source"].update({f"levels.L3.{k}": "assumed: test" for k in ("read_wait_states", "read_width_bytes",
                                                                      "read_clock_hz")})
    with pytest.raises(PlannerError, match="not addressable"):
        load(d)
    d = json.loads(json.dumps(base))
    del d["_source"]["levels.L3.read_wait_states"]
    with pytest.raises(PlannerError, match="levels.L3.read_wait_states.*without a source"):
        load(d)


# ------------------------------------------------------------------------------------ footprint


@pytest.mark.parametrize("hw", ["stm32l4", "stm32h7", "gap9"])
def test_footprint_agrees_with_the_memory_plan(tmp_path, capsys, hw):
    from planner.units import human_bytes

    plan, text = _solve(tmp_path, capsys, example_net("eeg_block"), hw)
    fp, mem = plan["footprint"], plan["memory"]
    ro, rw = fp["read_only"], fp["read_write"]
    assert ro["weights_in_l3"] == mem["L3"]["peak"]
    assert ro["weights_copied_to_l2"] == mem["L2"]["breakdown"]["weights"]
    assert ro["weights_in_l3"] + ro["weights_copied_to_l2"] >= plan["estimate"]["params_bytes"]
    assert ro["runtime_tables"] == mem["L2"]["breakdown"]["runtime"]
    assert ro["total"] == ro["weights_in_l3"] + ro["weights_copied_to_l2"] + ro["runtime_tables"] + ro["code_estimate"]
    assert rw["L2"]["arena"] == fp["arenas"]["L2"] == mem["L2"]["runtime_offset"]
    assert rw["L2"]["activations"] + rw["L2"]["weights"] == rw["L2"]["arena"]
    if "L1" in mem:
        assert rw["L1"]["arena"] == fp["arenas"]["L1"] == mem["L1"]["peak"]
    assert fp["ram_total"] == sum(fp["arenas"].values())
    flat = " ".join(text.split())  # prose wraps at 99 columns
    assert f"Read-only ({ro['memory']}): {ro['total']:,} B = {human_bytes(ro['total'])}" in flat
    name = "" if rw["L2"]["memory"] == "L2" else " " + rw["L2"]["memory"]
    assert f"L2{name} {rw['L2']['arena']:,} B = {human_bytes(rw['L2']['arena'])} (" in flat
    assert "code ~" in flat and "an estimate" in flat


TARGET_OF = {"stm32l4": "qemu-m4", "stm32h7": "qemu-m7", "gap9": "qemu-rv32"}
TOOLS = {"qemu-m7": ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm"),
         "qemu-m4": ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm"),
         "qemu-rv32": ("riscv64-unknown-elf-gcc", "riscv64-unknown-elf-size", "qemu-system-riscv32")}


@pytest.mark.parametrize("hw", ["stm32l4", "gap9"])
def test_built_elf_sizes_match_the_plan(tmp_path, capsys, hw):
    """planner run on QEMU measures the built ELF: its weights images and arenas are the plan's
    bytes, and its code is within the stated tolerance of the plan's code estimate."""
    from codegen.abi import CODE_ESTIMATE_TOLERANCE

    target = TARGET_OF[hw]
    missing = [t for t in TOOLS[target] if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{target} needs {', '.join(missing)} (bash scripts/setup.sh --test installs them)")
    out = tmp_path / "out"
    assert main(["solve", str(example_net("radar_block")), hw, "-o", str(out), "-q"]) == 0
    assert main(["run", str(out), "--target", target]) == 0
    text = capsys.readouterr().out
    plan = json.loads((out / "plan.json").read_text())
    m = json.loads((out / "measured.json").read_text())
    if "sizes" not in m:
        pytest.skip("the instruction-count plugin could not be built here (no measured.json sizes)")
    sz, fp = m["sizes"], plan["footprint"]
    imgs = sz["read_only"]["weights_images"]
    l2_image = imgs["net_l2_image"]
    assert imgs["net_l3_image"] == fp["read_only"]["weights_in_l3"]
    assert fp["read_only"]["weights_copied_to_l2"] - 64 < l2_image <= fp["read_only"]["weights_copied_to_l2"]
    assert sz["read_only"]["runtime_tables"] == fp["read_only"]["runtime_tables"]
    assert sz["read_write"]["arenas"]["net_l2"] == fp["arenas"]["L2"]
    est, code = fp["read_only"]["code_estimate"], sz["read_only"]["code"]
    assert abs(code - est) <= CODE_ESTIMATE_TOLERANCE * code, (code, est)
    assert "ELF (measured" in text and "plan.json estimated" in text
    # the images are 8-byte aligned: where L3 is the mapped flash, the L3 image is the arena the
    # kernels read int32 vectors from
    nm = TOOLS[target][1][:-4] + "nm"
    syms = subprocess.run([nm, str(out / "c" / "build" / target / "network.elf")], capture_output=True,
                          text=True).stdout.split("\n")
    addrs = {line.split()[2]: int(line.split()[0], 16) for line in syms if line.endswith("_image")}
    assert addrs and all(a % 8 == 0 for a in addrs.values()), addrs


# --------------------------------------------------------------------------------- the totals


def test_inspect_and_solve_say_what_they_count(tmp_path, capsys):
    """inspect counts the network as loaded; solve records those figures (input_model) and the
    deployed model's (after FWSA), and says which is which. Without FWSA they are the same."""
    net = example_net("eeg_block")
    assert main(["inspect", str(net), "--json"]) == 0
    total = json.loads(capsys.readouterr().out)["total"]
    assert main(["inspect", str(net)]) == 0
    assert "before any FWSA" in " ".join(capsys.readouterr().out.split())
    fused, text = _solve(tmp_path, capsys, net, "gap9", name="fused")
    off, _ = _solve(tmp_path, capsys, net, "gap9", "--fwsa", "off", name="off")
    for p in (fused, off):
        e = p["estimate"]
        assert e["input_model"] == {"macs": total["macs"], "weight_bytes": total["weight_bytes"]}
        assert e["params_bytes"] == e["weight_bytes"] + e["kernel_constant_bytes"]
        assert "before FWSA" in e["counted"]
    assert off["estimate"]["macs"] == total["macs"] and off["estimate"]["weight_bytes"] == total["weight_bytes"]
    assert fused["blocks"][0]["fwsa"]["applied"]
    assert fused["estimate"]["macs"] < total["macs"] and fused["estimate"]["weight_bytes"] < total["weight_bytes"]
    assert (f"the input model before FWSA (planner inspect): {total['macs']:,} MACs, "
            f"{total['weight_bytes']:,} B weights") in " ".join(text.split())


# ------------------------------------------------------------------------------ console width


@pytest.mark.parametrize("hw", known_models())
def test_console_summary_fits_100_columns(tmp_path, capsys, monkeypatch, hw):
    """Every example x hardware model: every line of solve's output under 100 columns, the KiB
    convention stated once, percentages labelled, no None, the core count in words."""
    monkeypatch.chdir(tmp_path)
    cores = load_hw_model(hw).cores
    for k, net in enumerate(EXAMPLE_NETS):
        assert main(["solve", str(EXAMPLES / net), hw, "-o", f"o{k}", "--no-emit"]) == 0, net
        text = capsys.readouterr().out
        long = [line for line in text.splitlines() if len(line) >= 100]
        assert not long, (net, long)
        assert text.count("KiB = 1024 B") == 1, net
        assert "% of usable" in text and "use = peak as % of usable" in text
        assert "None" not in text, net
        assert ("1 core:" in text) if cores == 1 else (f"{cores} cores:" in text)
        assert "1 cores" not in text
        report = (tmp_path / f"o{k}" / "report.md").read_text()
        assert "None" not in report and "KiB = 1024 B" in report
