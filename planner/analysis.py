"""Static figures of a graph: MACs per node, weight bytes, MHSA blocks and FWSA eligibility."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.ir import Graph, Node


def node_macs(graph: Graph, node: Node) -> int:
    """Multiply-accumulates of one node (0 for element-wise and layout ops)."""
    if node.op == "MHSA" and node.attrs.get("fwsa") is not None:
        return block_fwsa_figures(node).macs_fused
    if node.parts:
        return sum(node_macs(graph, p) for p in node.parts)
    out = graph.tensors[node.outputs[0]].shape
    if node.op == "Linear":
        k = graph.tensors[node.inputs[1]].shape[1]
        return int(np.prod(out, dtype=np.int64)) * k
    if node.op == "MatMul":
        k = graph.tensors[node.inputs[0]].shape[-1]
        return int(np.prod(out, dtype=np.int64)) * k
    if node.op == "Conv2d":
        w = graph.tensors[node.inputs[1]].shape
        return int(np.prod(out, dtype=np.int64)) * int(np.prod(w[1:], dtype=np.int64))
    return 0


@dataclass(frozen=True)
class FwsaFigures:
    """Fused-Weight Self-Attention versus the standard form, for the whole attention block.

    Standard per head: Q, K, V projections E→P and the output slice P→E (4·E·P weights), scores
    S·S·P MACs. Fused: one E×E matrix per head replaces W_Q, W_K (E² weights + E bias), the key
    side is X itself, scores cost S·E·E (I* = X·W_h) + S·S·E (I*·Xᵀ); with the row term (a block
    without softmax, where X·u_h does not cancel) H·E more weights and H·S·E more MACs.

    The one source of these figures: `planner inspect`, `planner solve` (plan.json blocks[].fwsa),
    apply_fwsa's decisions and node_macs all read them from `fwsa_figures` / `block_fwsa_figures`.
    """

    params_unfused: int
    params_fused: int
    macs_unfused: int
    macs_fused: int

    @property
    def param_ratio(self) -> float:
        return self.params_fused / self.params_unfused

    @property
    def mac_ratio(self) -> float:
        return self.macs_fused / self.macs_unfused

    @property
    def pays(self) -> bool:
        return self.param_ratio < 1 and self.mac_ratio < 1


def fwsa_figures(s: int, e: int, p: int, h: int, row_term: bool = False) -> FwsaFigures:
    qk_params = 2 * e * p * h + 2 * p * h
    vo_params = 2 * e * p * h + p * h + e
    fused_qk_params = e * e * h + e * h + (h * e if row_term else 0)
    qk_macs = h * (2 * s * e * p + s * s * p)
    fused_qk_macs = h * (s * e * e + s * s * e) + (h * s * e if row_term else 0)
    vo_macs = h * (s * e * p + s * s * p + s * p * e)
    return FwsaFigures(qk_params + vo_params, fused_qk_params + vo_params,
                       qk_macs + vo_macs, fused_qk_macs + vo_macs)


def fwsa_row_term(node: Node) -> bool:
    """Whether the fused form of an MHSA node carries the row term: as fused when it is (its
    w_row), else the default of fuse_qk (kept exactly when the block has no softmax)."""
    fw = node.attrs.get("fwsa")
    if fw is not None:
        return fw.w_row is not None
    return node.attrs["softmax"] is None


def block_fwsa_figures(node: Node, row_term: bool | None = None) -> FwsaFigures:
    """fwsa_figures of one MHSA node (row term as fwsa_row_term unless given)."""
    a = node.attrs
    rt = fwsa_row_term(node) if row_term is None else row_term
    return fwsa_figures(a["s"], a["e"], a["p"], a["h"], rt)


@dataclass(frozen=True)
class MhsaBlock:
    node: str
    s: int
    e: int
    p: int
    h: int
    softmax: str | None
    fwsa: FwsaFigures


def mhsa_blocks(graph: Graph) -> list[MhsaBlock]:
    blocks = []
    for n in graph.nodes:
        if n.op == "MHSA":
            a = n.attrs
            sm = a["softmax"].attrs["kind"] if a["softmax"] is not None else None
            blocks.append(MhsaBlock(n.name, a["s"], a["e"], a["p"], a["h"], sm, block_fwsa_figures(n)))
    return blocks
