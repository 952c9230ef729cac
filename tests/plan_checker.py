"""An independent check of a plan.json (a dict as read from the file): what must hold whatever the
solver did. It uses the IR graph only for tensor dtypes and shapes; nothing of the tiler, the cost
model or the memory planner.

    check_plan(plan_dict, graph)   # AssertionError naming the layer / buffer on the first violation
"""

from __future__ import annotations

from planner.ir import DTYPE_BYTES


def _spans_overlap(a0: int, a1: int, b0: int, b1: int) -> bool:
    return a0 < b1 and b0 < a1


def check_plan(d: dict, graph) -> None:
    lvl = d["hardware"]["compute_level"]
    usable = d["memory"][lvl]["usable"]
    assert d["schedule"] == [l["name"] for l in d["layers"]], "layers are not in schedule order"
    for k, l in enumerate(d["layers"]):
        assert l["step"] == k, l["name"]
        _check_tiles(l, lvl)
        if lvl == "L1":
            _check_l1_layer(l, d, usable)
        _check_linear_buffers(l, lvl, graph)
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


def _check_linear_buffers(l: dict, lvl: str, graph) -> None:
    if l["op"] != "Linear" or lvl != "L1":
        return
    tiles = l["tile"][lvl]
    bufs = {b["name"]: b for b in l["buffers"]}
    x, w, y = bufs["x"], bufs["w"], bufs["y"]
    eb = DTYPE_BYTES[graph.tensors[x["tensor"]].dtype]
    assert x["bytes"] == tiles["S"] * tiles["K"] * eb, l["name"]
    assert w["bytes"] == tiles["N"] * tiles["K"], l["name"]
    assert y["bytes"] == tiles["S"] * tiles["N"] * DTYPE_BYTES[graph.tensors[y["tensor"]].dtype], l["name"]
    if tiles["K"] < l["dims"]["K"]:
        assert bufs["psum"]["bytes"] == 4 * tiles["S"] * tiles["N"], l["name"]


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
