"""An independent check of a plan.json (a dict as read from the file): what must hold whatever the
solver did. It uses the IR graph only for tensor dtypes, shapes and node attributes, and
kernel_lib/descriptions.py only for kernel scratch sizes; nothing of the tiler, the cost model or
the memory planner.

    check_plan(plan_dict, graph)   # AssertionError naming the layer / buffer on the first violation

Every compute-level buffer's bytes are checked against the slice of the tensor it holds: the
tile sizes of the dims that cut the tensor x the whole extents of the others x element bytes.
"""

from __future__ import annotations

from math import prod

import numpy as np

from planner.ir import DTYPE_BYTES


def _a8(n: int) -> int:
    return -(-n // 8) * 8


def _isa_path(isa: str) -> str:
    return "arm-dsp" if isa.startswith(("armv7e-m", "armv8")) else "generic"


def _spans_overlap(a0: int, a1: int, b0: int, b1: int) -> bool:
    return a0 < b1 and b0 < a1


def check_plan(d: dict, graph) -> None:
    lvl = d["hardware"]["compute_level"]
    usable = d["memory"][lvl]["usable"]
    assert d["schedule"] == [l["name"] for l in d["layers"]], "layers are not in schedule order"
    nodes = {}
    for n in graph.nodes:
        nodes[n.name] = n
        for p in n.parts:
            nodes.setdefault(p.name, p)
    for k, l in enumerate(d["layers"]):
        assert l["step"] == k, l["name"]
        _check_tiles(l, lvl)
        if lvl == "L1":
            _check_l1_layer(l, d, usable)
        _check_buffer_bytes(l, d, graph, nodes)
    _check_memory(d)
    assert d["estimate"]["cycles"] == sum(l["est_cycles"] for l in d["layers"])


def _check_tiles(l: dict, lvl: str) -> None:
    tiles = l["tile"][lvl]
    n = 1
    for dim, full in l["dims"].items():
        t = tiles[dim]
        assert 1 <= t <= full, (l["name"], dim)
        n *= -(-full // t)  # tiles of size t cover the dim: ceil(full / t) of them
    assert l["n_tiles"] == n, l["name"]
    assert sorted(l["loop_order"]) == sorted(l["dims"]), l["name"]


def _check_l1_layer(l: dict, d: dict, usable: int) -> None:
    foot = sum(b["bytes"] * b["copies"] for b in l["buffers"] if b["level"] == "L1")
    assert foot == l["l1_bytes"] <= usable, l["name"]
    # the layer's L1 buffers do not overlap and lie below the L1 peak
    spans = sorted((b["offset"], b["offset"] + b["bytes"] * b["copies"]) for b in l["buffers"]
                   if b["level"] == "L1" and b["bytes"])
    for (a0, a1), (b0, _) in zip(spans, spans[1:]):
        assert a1 <= b0, l["name"]
    assert all(hi <= d["memory"]["L1"]["peak"] for _, hi in spans), l["name"]


def _eb(graph, t: str) -> int:
    return DTYPE_BYTES[graph.tensors[t].dtype]


def _rq_bytes(node, keys=("rq", "rq_a", "rq_b")) -> int:
    total = 0
    for key in keys:
        rq = node.attrs.get(key)
        if rq is not None:
            total += 4 * (int(np.asarray(rq.mul).size) + int(np.asarray(rq.add).size))
    return total


def _check_buffer_bytes(l: dict, d: dict, graph, nodes: dict) -> None:
    """bytes of every compute-level buffer == the tensor slice it holds."""
    lvl = d["hardware"]["compute_level"]
    node = nodes[l["name"]]
    t = l["tile"][lvl]
    full = l["dims"]
    isa, cores = _isa_path(d["hardware"]["isa"]), d["hardware"]["cores"]
    want: dict[str, int] = {}
    op = l["op"]
    if l["variant"] == "untiled":
        for b in l["buffers"]:
            want[b["name"]] = graph.tensors[b["tensor"]].nbytes
    elif op == "Linear":
        x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
        n, k = graph.tensors[w].shape
        s = graph.tensors[x].size // k
        assert (full["S"], full["N"], full["K"]) == (s, n, k), l["name"]
        want.update(x=t["S"] * t["K"] * _eb(graph, x), w=t["N"] * t["K"] * _eb(graph, w),
                    y=t["S"] * t["N"] * _eb(graph, y), psum=4 * t["S"] * t["N"], rq=_rq_bytes(node))
        bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
        if bias is not None:
            bt = graph.tensors[bias]
            assert bt.dtype == "int32", (l["name"], "bias must be int32")
            if bt.size == n:
                assert l["bias_kind"] == "vector", l["name"]
                want["bias"] = 4 * t["N"]
            else:
                assert bt.size == s * n and l["bias_kind"] == "full", l["name"]
                into_y = _eb(graph, y) == 4 and node.attrs.get("rq") is None
                want["bias"] = 0 if into_y else 4 * t["S"] * t["N"]
                names = {b["name"] for b in l["buffers"]}
                assert "psum" not in names, (l["name"], "a full bias is the accumulator")
                assert l["accumulator"] == ("y" if into_y else "bias"), l["name"]
        import kernel_lib.descriptions as kd
        want["scratch"] = kd.scratch_bytes("linear", {"S": t["S"], "N": t["N"], "K": t["K"]}, cores, isa)
    elif op == "MatMul":
        a, b_, y = node.inputs[0], node.inputs[1], node.outputs[0]
        ash, bsh = graph.tensors[a].shape, graph.tensors[b_].shape
        kk, nn = ash[-1], bsh[-1]
        a_b = prod(ash[:-2]) > 1 if len(ash) > 2 else False
        b_b = prod(bsh[:-2]) > 1 if len(bsh) > 2 else False
        want.update(a=(t["B"] if a_b else 1) * t["M"] * kk * _eb(graph, a),
                    b=(t["B"] if b_b else 1) * kk * nn * _eb(graph, b_),
                    y=t["B"] * t["M"] * nn * _eb(graph, y), rq=_rq_bytes(node))
    elif op == "MHSA":
        want.update(_mhsa_bytes(l, node, graph, t))
    elif "R" in full:  # row-wise kernels: rows R of a [R][C] view, broadcast operands whole
        y = node.outputs[0]
        c = graph.tensors[y].shape[-1]
        assert full["R"] * c == graph.tensors[y].size, l["name"]
        for b in l["buffers"]:
            if b["tensor"] is None:
                continue
            tt = graph.tensors[b["tensor"]]
            if tt.is_const or tt.size != full["R"] * c:
                want[b["name"]] = tt.nbytes
            else:
                want[b["name"]] = t["R"] * c * DTYPE_BYTES[tt.dtype]
        want["rq"] = _rq_bytes(node)
    for b in l["buffers"]:
        if b["access"] in ("none", "inplace") and b["kind"] not in ("local", "scratch"):
            # the whole tensor where it lives (home = compute level, or read in place)
            if b["tensor"] is not None and b["tensor"] in graph.tensors:
                assert b["bytes"] == graph.tensors[b["tensor"]].nbytes, (l["name"], b["name"])
            assert b["dims"] == [], (l["name"], b["name"])
            continue
        if b["level"] != lvl or b["name"] not in want:
            continue
        assert b["bytes"] == want[b["name"]], (l["name"], b["name"], b["bytes"], want[b["name"]])
        assert b["offset"] % b["align"] == 0 and b["align"] >= 4, (l["name"], b["name"])


def _mhsa_bytes(l: dict, node, graph, t: dict) -> dict[str, int]:
    a = node.attrs
    s, e, p = a["s"], a["e"], a["p"]
    x = node.inputs[0]
    ebx = _eb(graph, x)
    v = l["variant"]
    fwsa = v.startswith("FWSA")
    th, tx = t["h"], t["x"]
    acc_local = v.split("acc in ")[-1] == l["compute_level"]  # else rows streamed from L2
    want = {"x": s * e * ebx if "x resident" in v else tx * e * ebx, "y": 0,
            "acc": s * e * 4 if acc_local else tx * e * 4,
            "v_h": th * _a8(p * s), "wv": th * p * e, "wo": th * e * p, "bv": th * p * 4, "bo": e * 4}
    if fwsa:
        want.update(wf=th * e * e, bf=th * e * 4, w_row=th * e, istar_rows=tx * e)
    else:
        # K_h [S][P], then its zero-point correction [S] int32 when Q or K keeps a zero point
        zp_qk = bool(a["scores"].attrs.get("zp_a") or a["scores"].attrs.get("zp_b"))
        want.update(k_h=th * (_a8(s * p) + (4 * s if zp_qk else 0)),
                    q_rows=tx * p * _eb(graph, a["q"].outputs[0]),
                    wq=th * p * e, wk=th * p * e, bq=th * p * 4, bk=th * p * 4)
    if a["softmax"] is not None and a["softmax"].attrs.get("kind") in ("isoftmax", "itamax"):
        want["softmax_lut"] = 1024
    return want


def _check_memory(d: dict) -> None:
    for key, m in d["memory"].items():
        assert m["peak"] <= m["usable"], key
        b = m["breakdown"]
        if key == "L2":
            assert m["peak"] == b["activations"] + b["weights"] + b["runtime"]
    l2 = d["memory"]["L2"]
    # activations: placements that live at a common step do not share an address
    pl = sorted(l2["placements"].items())
    for i, (na, a) in enumerate(pl):
        assert a["offset"] >= 0 and a["offset"] + a["bytes"] <= l2["plan_peak"], na
        for nb, b in pl[i + 1:]:
            if a["start"] <= b["end"] and b["start"] <= a["end"] and a["bytes"] and b["bytes"]:
                assert not _spans_overlap(a["offset"], a["offset"] + a["bytes"], b["offset"],
                                          b["offset"] + b["bytes"]), (na, nb)
    # weights after the activation arena, disjoint, below the runtime block
    spans = sorted((w["offset"], w["offset"] + w["bytes"], n) for n, w in l2["weights"].items())
    for (a0, a1, na), (b0, _, nb) in zip(spans, spans[1:]):
        assert a1 <= b0, (na, nb)
    if spans:
        assert spans[0][0] >= l2["plan_peak"] and spans[-1][1] <= l2["runtime_offset"]
    if "L1" in d["memory"] and "placements" in d["memory"]["L1"]:
        l1 = d["memory"]["L1"]
        by_step: dict[int, list] = {}
        for n, p in l1["placements"].items():
            assert p["offset"] + p["bytes"] <= l1["peak"], n
            by_step.setdefault(p["step"], []).append((p["offset"], p["offset"] + p["bytes"], n))
        for items in by_step.values():
            items.sort()
            for (a0, a1, na), (b0, _, nb) in zip(items, items[1:]):
                assert a1 <= b0, (na, nb)
