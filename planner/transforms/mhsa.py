"""Multi-head self-attention detection: Q/K/V Linear → head split → Q·Kᵀ (+RQ) → [Softmax] → ·V
(+RQ) → head merge → output Linear becomes ONE fused MHSA node that keeps its parts."""

from __future__ import annotations

from dataclasses import dataclass

from planner.ir import Graph, Node

Q_PERM = [0, 2, 1, 3]
K_PERM = [0, 2, 3, 1]


@dataclass
class HeadSplit:
    linear: Node
    reshape: Node
    transpose: Node


def _sole_consumer(graph: Graph, tensor: str) -> Node | None:
    if tensor in graph.outputs:
        return None
    cons = graph.consumers(tensor)
    return cons[0] if len(cons) == 1 else None


def _head_split(graph: Graph, tensor: str, perm: list[int]) -> HeadSplit | None:
    """tensor ← Transpose(perm) ← Reshape[1,S,H,P] ← Linear(x)."""
    tr = graph.producer(tensor)
    if tr is None or tr.op != "Transpose" or tr.attrs.get("perm") != perm:
        return None
    rs = graph.producer(tr.inputs[0])
    if rs is None or rs.op != "Reshape" or _sole_consumer(graph, rs.outputs[0]) is not tr:
        return None
    lin = graph.producer(rs.inputs[0])
    if lin is None or lin.op != "Linear" or _sole_consumer(graph, lin.outputs[0]) is not rs:
        return None
    if len(graph.tensors[rs.outputs[0]].shape) != 4 or _sole_consumer(graph, tensor) is None:
        return None
    return HeadSplit(lin, rs, tr)


def _match(graph: Graph, av: Node) -> dict | None:
    """Try to read an MHSA block around the probabilities·V MatMul `av`."""
    v = _head_split(graph, av.inputs[1], Q_PERM)
    if v is None:
        return None
    probs_src = graph.producer(av.inputs[0])
    softmax = None
    if probs_src is not None and probs_src.op == "Softmax":
        softmax = probs_src
        if _sole_consumer(graph, softmax.outputs[0]) is not av:
            return None
        probs_src = graph.producer(softmax.inputs[0])
    scores = probs_src
    if scores is None or scores.op != "MatMul" or _sole_consumer(graph, scores.outputs[0]) is None:
        return None
    if av.attrs.get("zp_a"):
        return None  # probabilities with a zero point: the chunk kernel takes those of Q, K, V only
    q = _head_split(graph, scores.inputs[0], Q_PERM)
    k = _head_split(graph, scores.inputs[1], K_PERM)
    if q is None or k is None:
        return None
    x = q.linear.inputs[0]
    if k.linear.inputs[0] != x or v.linear.inputs[0] != x:
        return None  # cross-attention: not a self-attention block
    merge_t = _sole_consumer(graph, av.outputs[0])
    if merge_t is None or merge_t.op != "Transpose" or merge_t.attrs.get("perm") != Q_PERM:
        return None
    merge_r = _sole_consumer(graph, merge_t.outputs[0])
    if merge_r is None or merge_r.op != "Reshape":
        return None
    out = _sole_consumer(graph, merge_r.outputs[0])
    if out is None or out.op != "Linear":
        return None
    if any(lin.attrs.get("bias_kind") == "full" for lin in (q.linear, k.linear, v.linear, out)):
        return None  # the depth-first kernel takes per-feature biases; full ones stay Linear layers
    xs = graph.tensors[x].shape
    _, h, s, p = graph.tensors[q.transpose.outputs[0]].shape
    if len(xs) < 2 or xs[-2] != s or any(d != 1 for d in xs[:-2]):
        return None
    return dict(x=x, q=q, k=k, v=v, scores=scores, softmax=softmax, av=av, merge_t=merge_t,
                merge_r=merge_r, out=out, s=s, e=xs[-1], p=p, h=h)


def fuse_mhsa(graph: Graph) -> int:
    """Replace every matched block with one MHSA node; returns how many were fused."""
    count = 0
    for av in [n for n in graph.nodes if n.op == "MatMul"]:
        m = _match(graph, av)
        if m is None:
            continue
        parts_set = {id(n) for n in (
            m["q"].linear, m["q"].reshape, m["q"].transpose, m["k"].linear, m["k"].reshape,
            m["k"].transpose, m["v"].linear, m["v"].reshape, m["v"].transpose, m["scores"],
            m["softmax"], m["av"], m["merge_t"], m["merge_r"], m["out"]) if n is not None}
        parts = [n for n in graph.nodes if id(n) in parts_set]
        out = m["out"]

        def weights(lin: Node) -> list[str]:
            return lin.inputs[1:3] if len(lin.inputs) > 2 else [lin.inputs[1], ""]

        inputs = [m["x"]]
        for lin in (m["q"].linear, m["k"].linear, m["v"].linear, out):
            inputs += weights(lin)
        name = f"mhsa{count}_{out.name}"
        node = Node(name, "MHSA", inputs, list(out.outputs), {
            "s": m["s"], "e": m["e"], "p": m["p"], "h": m["h"], "parts": parts,
            "q": m["q"].linear, "k": m["k"].linear, "v": m["v"].linear, "scores": m["scores"],
            "softmax": m["softmax"], "av": m["av"], "o": out,
        })
        first = min(i for i, n in enumerate(graph.nodes) if id(n) in parts_set)
        rest = [n for n in graph.nodes if id(n) not in parts_set]
        before = [n for n in graph.nodes[:first] if id(n) not in parts_set]
        graph.nodes = before + [node] + rest[len(before):]
        count += 1
    return count
