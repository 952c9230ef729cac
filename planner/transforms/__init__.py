"""Graph passes that turn an imported graph into the canonical fused IR."""

from __future__ import annotations

from planner.ir import Graph
from planner.transforms.fuse import RQ_PRODUCERS, fold_bias, fuse_add_inputs, fuse_requant
from planner.transforms.mhsa import fuse_mhsa


def canonicalize(graph: Graph) -> None:
    """Fuse biases and requantizations into producers, input RQs into Add, then detect MHSA.

    Every pass keeps the exact integer meaning (tests run fused and unfused graphs side by side).
    """
    fold_bias(graph)
    fuse_requant(graph, RQ_PRODUCERS)
    fuse_add_inputs(graph)
    fuse_requant(graph, frozenset({"Add"}))
    fuse_mhsa(graph)
    graph.toposort()
