"""Plan assembly: the tiled and placed network -> `planner.plan.Plan` (what plan.json holds).

Offsets: activation tile buffers at their place in the compute level's arena (L1 plan, or the L2
plan on targets without L1), whole tensors at their L2 placement, weights after the activation
arena in L2 (sorted by name) or in L3 when streamed, the runtime bytes after the L2 weights.
"""

from __future__ import annotations

from pathlib import Path

from planner.analysis import block_fwsa_figures
from planner.cost import SCALE, latency_ms
from planner.errors import PlannerError
from planner.hw import HardwareModel
from planner.ir import Graph
from planner.memory import alias_map, alias_root
from planner.placement import Placed, align
from planner.tiling.tiler import ALIGN
from planner.plan import FORMAT_VERSION, BufferPlan, LayerPlan, Plan, param_blob_name


def build_plan(network: str | Path, hw: HardwareModel, options: dict, graph: Graph, placed: Placed,
               block_info: dict, fwsa_decisions: dict, deviation: dict | None,
               warnings: list[str], input_model: dict | None = None) -> Plan:
    """The Plan of `placed` (`graph`: the network in its decided FWSA forms; `options`: as given;
    `input_model`: {macs, weight_bytes} of the network as loaded, before FWSA, as inspect counts)."""
    mem = placed.mem
    w_off_l2, w_off_l3, runtime_off = _weight_offsets(mem)
    layer_plans = _layer_plans(placed, hw, w_off_l2, w_off_l3)
    memory = _memory_section(hw, mem, layer_plans, w_off_l2, w_off_l3, runtime_off)
    blocks = _block_section(graph, block_info, fwsa_decisions, deviation)
    total_cycles = sum(lp.est_cycles for lp in layer_plans)
    consts = {**mem["w_l2"], **mem["w_l3"]}
    weight_bytes = sum(v for k, v in consts.items() if k in placed.graph.tensors)
    params_bytes = sum(consts.values())
    hardware = {"name": hw.name, "display_name": hw.display_name, "cores": options["cores"],
                "frequency_hz": hw.frequency_hz, "isa": hw.isa, "compute_level": placed.level,
                "levels": list(hw.levels)}
    estimate = {"cycles": total_cycles, "latency_ms": latency_ms(total_cycles, hw.frequency_hz),
                "params_bytes": params_bytes, "weight_bytes": weight_bytes,
                "kernel_constant_bytes": params_bytes - weight_bytes,
                "macs": sum(lp.macs for lp in layer_plans),
                "read_wait_cycles": sum(lp.cycles.get("read_wait", 0) for lp in layer_plans),
                "input_model": input_model,
                "counted": ("macs, weight_bytes: the deployed model (FWSA applied where blocks[].fwsa"
                            ".applied; layers as planned); kernel_constant_bytes: the kernels' "
                            "requantization vectors and softmax tables; params_bytes = weight_bytes "
                            "+ kernel_constant_bytes; input_model: the network as loaded, before "
                            "FWSA (what planner inspect counts)"),
                "note": "estimated from hw_models figures marked as assumptions until calibrated"}
    aliases = {k: v for k, v in alias_map(placed.graph, placed.schedule).items() if k != v}
    plan = Plan(FORMAT_VERSION, Path(network).name, hardware, options, memory, layer_plans, blocks,
                estimate, [n.name for n in placed.schedule], aliases, warnings, sorted(hw.assumptions),
                _fwsa_section(deviation))
    plan.weights = _weights_section(placed, hw)
    plan.footprint = footprint(hw, memory, layer_plans)
    return plan


def _weights_section(placed: Placed, hw: HardwareModel) -> dict:
    """plan.json `weights`: where the constants live (--weights) and why."""
    d = dict(placed.weights)
    w2, w3 = placed.mem["w_l2"], placed.mem["w_l3"]
    d["in_l2"], d["in_l3"] = len(w2), len(w3)
    d["bytes_l2"], d["bytes_l3"] = sum(w2.values()), sum(w3.values())
    d["l3"] = hw.levels["L3"].display_name if "L3" in hw.levels else None
    return d


def footprint(hw: HardwareModel, memory: dict, layer_plans: list[LayerPlan]) -> dict:
    """plan.json `footprint`: what the program image holds (read-only: constants, runtime tables,
    code) and the RAM the network needs per level (read-write: the arenas the generated C
    defines), the way vendor tools (stedgeai analyze, the TFLite Micro arena) report them."""
    from codegen.abi import code_estimate
    from planner.tiling.kernels import isa_path

    l2 = memory["L2"]
    w2 = l2["breakdown"]["weights"]
    w3 = memory.get("L3", {}).get("peak", 0)
    runtime = l2["breakdown"]["runtime"]
    code = code_estimate(isa_path(hw.isa), len(layer_plans))
    l3 = hw.levels.get("L3")
    image_mem = l3.display_name if l3 is not None and l3.addressable else "the program image"
    read_only = {"weights_in_l3": w3, "weights_copied_to_l2": w2, "runtime_tables": runtime,
                 "code_estimate": code, "total": w3 + w2 + runtime + code, "memory": image_mem}
    if l3 is not None and l3.addressable:
        read_only["capacity"] = l3.size
    arenas = {}
    rw = {}
    if "L1" in memory:
        m = memory["L1"]
        arenas["L1"] = m["peak"]
        rw["L1"] = {"arena": m["peak"], "activations": m["breakdown"]["activations"],
                    "weights": m["breakdown"]["weights"], "capacity": m["capacity"],
                    "usable": m["usable"], "memory": m["display_name"]}
    arenas["L2"] = l2["runtime_offset"]
    rw["L2"] = {"arena": l2["runtime_offset"], "activations": l2["plan_peak"], "weights": w2,
                "capacity": l2["capacity"], "usable": l2["usable"], "memory": l2["display_name"]}
    if l3 is not None and not l3.addressable and w3:  # GAP9: an external RAM holds them
        arenas["L3"] = w3
        rw["L3"] = {"arena": w3, "activations": 0, "weights": w3, "capacity": l3.size,
                    "usable": l3.usable, "memory": l3.display_name}
    notes = [
        "read_only: the program image (flash) holds every constant: weights_in_l3 are read there "
        "in place or DMA'd from there" + ("" if l3 is None or l3.addressable else
                                          f" (copied into {l3.display_name} at start-up)")
        + ", weights_copied_to_l2 are copied into the L2 arena by net_init",
        "runtime_tables: the const layer and buffer descriptors (net_runtime); memory.L2.peak "
        "reserves them in L2 (on GAP9 the program, its constants included, is loaded into L2)",
        "code_estimate: an estimate (codegen/abi.py CODE_ESTIMATE, measured on the examples' "
        "ELFs); planner run --target qemu-* measures the built ELF (measured.json sizes)",
        "read_write: the arenas the generated C defines (net_l1, net_l2, net_l3: NET_<level>_BYTES) "
        "to reserve in the firmware; stacks, heap and the runtime's own state are in the hardware "
        "model's reserve (capacity - usable)",
    ]
    return {"read_only": read_only, "read_write": rw, "arenas": arenas,
            "ram_total": sum(arenas.values()), "notes": notes}


def _weight_offsets(mem: dict) -> tuple[dict[str, int], dict[str, int], int]:
    """Weights after the L2 activation arena (by name), then the runtime bytes; L3 from 0."""
    w_off_l2, w_off_l3 = {}, {}
    cur = align(mem["L2"].peak)
    for name in sorted(mem["w_l2"]):
        w_off_l2[name] = cur
        cur += align(mem["w_l2"][name])
    runtime_off = cur
    cur3 = 0
    for name in sorted(mem["w_l3"]):
        w_off_l3[name] = cur3
        cur3 += align(mem["w_l3"][name])
    return w_off_l2, w_off_l3, runtime_off


def _layer_plans(placed: Placed, hw: HardwareModel, w_off_l2: dict[str, int],
                 w_off_l3: dict[str, int]) -> list[LayerPlan]:
    """One LayerPlan per tiled layer: tiles, buffers (level, offset, bytes, copies, traffic)."""
    level, mem, pg = placed.level, placed.mem, placed.graph
    l2_off = mem["L2"].offsets()
    l1_off = mem["L1"].offsets() if mem["L1"] is not None else {}
    roots: dict[str, str] = {}

    def root(t: str) -> str:
        if t not in roots:
            roots[t] = alias_root(pg, t)
        return roots[t]

    layer_plans = []
    layers = placed.layers
    for l in layers:
        ev, v = l.result.evaluation, l.result.variant
        bplans = []
        for b in ev.buffers:
            spec = next(s for s in v.buffers if s.name == b.name)
            bname = f"{l.node.name}/{b.name}"
            if not b.present:
                continue
            if b.access == "inplace":
                key = spec.tensor or param_blob_name(l.node.name, b.name)
                lv, off, nbytes = spec.home, w_off_l3.get(key, 0), spec.full_bytes
            elif b.access == "none" and b.kind not in ("local", "scratch"):
                lv = spec.home
                off = l2_off.get(root(spec.tensor), w_off_l2.get(spec.tensor, 0)) \
                    if spec.tensor else w_off_l2.get(param_blob_name(l.node.name, b.name), 0)
                nbytes = spec.full_bytes
            else:
                lv = level
                off = (l1_off if level == "L1" else l2_off).get(bname, 0)
                nbytes = b.tile_bytes
            staging = None
            if b.staging is not None:
                staging = {"level": b.staging, "offset": l2_off.get(bname + ".stage", 0),
                           "bytes": b.tile_bytes, "copies": b.copies}
            tiled = not (b.access == "inplace" or (b.access == "none" and b.kind not in ("local", "scratch")))
            # (a tile in the compute level; else the whole tensor at its home)
            bplans.append(BufferPlan(b.name, spec.tensor, b.kind, lv, off, nbytes, b.copies, spec.home,
                                     b.access, b.loads, b.traffic, staging,
                                     list(spec.dims) if tiled else [],
                                     max(ALIGN, spec.align) if tiled else ALIGN, spec.into,
                                     b.read_bytes, -(-b.wait // SCALE)))
        dims = {d.name: d.size for d in v.loops}
        tile = {level: dict(ev.tiles)}
        if level != "L2":
            tile["L2"] = dict(dims)
        cyc = ev.cycles
        layer_plans.append(LayerPlan(
            l.node.name, l.node.op, v.kernel, v.label, v.macs, tile, dims, [d.name for d in v.loops],
            ev.total_tiles, bplans, ev.footprint if level != "L2" else 0, level, ev.dma_bytes, cyc,
            {"compute": -(-ev.compute // SCALE), "dma_hidden": -(-ev.hidden // SCALE),
             "dma_exposed": -(-ev.exposed // SCALE), "read_wait": -(-ev.wait // SCALE),
             "overhead": -(-ev.overhead // SCALE)},
            l.result.optimal, l.result.status, l.step, l.parts_of, list(v.notes),
            v.attrs.get("bias_kind"), _accumulator(v.attrs.get("accumulator"), bplans)))
    return layer_plans


def _accumulator(acc: str | None, buffers: list[BufferPlan]) -> str | None:
    """The variant's accumulator buffer when this tiling has it (psum exists only with K split)."""
    return acc if acc is not None and any(b.name == acc for b in buffers) else None


def _memory_section(hw: HardwareModel, mem: dict, layer_plans: list[LayerPlan], w_off_l2: dict[str, int],
                    w_off_l3: dict[str, int], runtime_off: int) -> dict:
    """plan.json `memory`: per level capacity, peak, breakdown, placements, weights."""
    l2, l1 = mem["L2"], mem["L1"]
    memory = {}
    runtime_l2 = mem["runtime_L2"]
    for key, lv in hw.levels.items():
        entry = {"capacity": lv.size, "usable": lv.usable, "display_name": lv.display_name,
                 "addressable": lv.addressable}
        if key == "L1" and l1 is not None:
            peak_layer = max(layer_plans, key=lambda lp: (lp.l1_bytes, lp.name))
            w_part = sum(b.bytes * b.copies for b in peak_layer.buffers
                         if b.level == "L1" and b.kind == "weight")
            entry.update({"peak": l1.peak, "lower_bound": l1.lower_bound, "optimal": l1.optimal,
                          "plan_peak": l1.peak,
                          "breakdown": {"activations": l1.peak - w_part, "weights": w_part, "runtime": 0},
                          "peak_layer": peak_layer.name,
                          "runtime_note": "DMA command buffers and barrier state are inside the "
                                          "hardware model's L1 reserve (size - usable)"})
        elif key == "L2":
            entry.update({"peak": runtime_off + runtime_l2,
                          "lower_bound": l2.lower_bound, "optimal": l2.optimal, "solver": l2.solver,
                          "plan_peak": l2.peak,
                          "breakdown": {"activations": l2.peak, "weights": mem["weights_L2"],
                                        "runtime": runtime_l2},
                          "runtime_offset": runtime_off,
                          "placements": {p.name: {"offset": p.offset, "bytes": p.size, "start": p.start,
                                                  "end": p.end} for p in l2.placements},
                          "weights": {k: {"offset": w_off_l2[k], "bytes": mem["w_l2"][k]} for k in sorted(mem["w_l2"])}})
        elif key == "L3":
            w3 = sum(align(v) for v in mem["w_l3"].values())
            entry.update({"peak": w3, "lower_bound": 0,
                          "breakdown": {"activations": 0, "weights": w3, "runtime": 0},
                          "weights": {k: {"offset": w_off_l3[k], "bytes": mem["w_l3"][k]} for k in sorted(mem["w_l3"])}})
        else:
            entry.update({"peak": 0, "lower_bound": 0, "breakdown": {"activations": 0, "weights": 0, "runtime": 0}})
        if entry["peak"] > lv.usable:
            raise PlannerError(f"{key}: peak {entry['peak']:,} B exceeds the usable {lv.usable:,} B: "
                               f"{entry['peak'] - lv.usable:,} B missing at {key}")
        memory[key] = entry
    if l1 is not None:
        memory["L1"]["placements"] = {p.name: {"offset": p.offset, "bytes": p.size, "step": p.start}
                                      for p in l1.placements}
    return memory


def _block_section(graph: Graph, block_info: dict, fwsa_decisions: dict, deviation: dict | None) -> list[dict]:
    """plan.json `blocks`: both forms of every MHSA block and its FWSA decision."""
    blocks = []
    for name, info in block_info.items():
        info = {k: v for k, v in info.items() if not k.startswith("_")}
        d = fwsa_decisions.get(name)
        if d is None:
            node = next(n for n in graph.nodes if n.name == name)
            f = block_fwsa_figures(node)
            pb, pa, mb, ma = f.params_unfused, f.params_fused, f.macs_unfused, f.macs_fused
            applied, reason, cb, ca = False, "--fwsa off", None, None
        else:
            pb, pa, mb, ma = d.params_before, d.params_after, d.macs_before, d.macs_after
            applied, reason, cb, ca = d.applied, d.reason, d.cost_before, d.cost_after
        info["fwsa"] = {
            "applied": bool(applied), "reason": reason,
            "form": "fused-weight (FWSA)" if applied else "standard (W_Q, W_K)",
            "params_unfused": pb, "params_fused": pa, "macs_unfused": mb, "macs_fused": ma,
            "param_ratio": round(pa / pb, 4), "mac_ratio": round(ma / mb, 4), "pays": pa < pb and ma < mb,
            "cycles_standard": None if cb is None or cb == float("inf") else int(cb),
            "cycles_fused": None if ca is None or ca == float("inf") else int(ca),
            "deviation": (deviation or {}).get("blocks", {}).get(name) if applied else None,
            "fused_with": _fused_with(graph, name) if applied else None,
        }
        blocks.append(info)
    return blocks


def _fused_with(graph: Graph, name: str) -> dict:
    """How the block was fused (planner.transforms.fwsa.fuse_qk arguments): what
    planner.deployed.deployed_graph repeats to rebuild the deployed model."""
    fw = next(n for n in graph.nodes if n.name == name).attrs["fwsa"]
    return {"granularity": fw.granularity, "scale": fw.scale_method, "row_term": fw.w_row is not None}


def _fwsa_section(deviation: dict | None) -> dict | None:
    fwsa = None
    if deviation is not None:
        fwsa = {"inputs": deviation["inputs"], "samples": deviation["samples"],
                "blocks": sorted(deviation["blocks"]), "deviation": deviation["network"],
                "note": ("fused (FWSA) vs unfused integer model, golden model, in LSB; softmax: the "
                         "probabilities (without softmax: the scores feeding .V); block: the MHSA "
                         "output; output: the graph outputs; end to end over all blocks")}
    return fwsa
