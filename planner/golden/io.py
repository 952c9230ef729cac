"""npz input/output files by position (the peer cases' convention) and exact comparison."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from planner.errors import PlannerError
from planner.frontend.onnx_io import is_integral
from planner.ir import DTYPE_RANGES, Graph


def _read_npz(path: str | Path) -> list[tuple[str, np.ndarray]]:
    path = Path(path)
    if not path.exists():
        raise PlannerError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as data:
            return [(k, data[k]) for k in data.files]
    except Exception as exc:
        raise PlannerError(f"{path}: not a readable .npz file ({exc})") from None


def _as_int64(path: Path, key: str, arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind not in "iuf" or not is_integral(arr):
        raise PlannerError(f"{path}: array '{key}' must hold integers (int8/int32/int64 or integral "
                           f"float32), got {arr.dtype} with non-integer values")
    return arr.astype(np.int64)


def load_npz_inputs(graph: Graph, path: str | Path) -> list[np.ndarray]:
    """The k-th array feeds the k-th graph input; names are irrelevant, surplus ignored.

    For QDQ graphs a float array holds real values and is quantized with the input's scale and
    zero point; an integer array is taken as already quantized.
    """
    path = Path(path)
    arrays = _read_npz(path)
    if len(arrays) < len(graph.inputs):
        raise PlannerError(f"{path}: has {len(arrays)} array(s), the graph needs {len(graph.inputs)} "
                           f"(inputs: {', '.join(graph.inputs)}); arrays are matched by position")
    result = []
    for (key, arr), name in zip(arrays, graph.inputs):
        t = graph.tensors[name]
        if tuple(arr.shape) != tuple(t.shape):
            raise PlannerError(f"{path}: array '{key}' has shape {list(arr.shape)}, graph input "
                               f"'{name}' expects {list(t.shape)}")
        if graph.flavour == "qdq" and arr.dtype.kind == "f":
            # a QDQ graph's inputs are real values: quantize them as its QuantizeLinear does
            from planner.frontend.qdq import quantize_input
            vals = quantize_input(graph, name, arr)
        else:
            vals = _as_int64(path, key, arr)
        lo, hi = DTYPE_RANGES["int32"]
        if vals.size and (vals.min() < lo or vals.max() > hi):
            raise PlannerError(f"{path}: array '{key}' has values outside int32")
        result.append(vals)
    return result


def load_npz_outputs(graph: Graph, path: str | Path) -> list[np.ndarray]:
    path = Path(path)
    arrays = _read_npz(path)
    if len(arrays) < len(graph.outputs):
        raise PlannerError(f"{path}: has {len(arrays)} array(s), the graph has {len(graph.outputs)} "
                           "output(s); arrays are matched by position")
    return [_as_int64(path, k, a) for k, a in arrays[:len(graph.outputs)]]


@dataclass
class Comparison:
    mismatches: int
    total: int
    max_abs_diff: int

    @property
    def exact(self) -> bool:
        return self.mismatches == 0


def compare_outputs(got: list[np.ndarray], expected: list[np.ndarray]) -> Comparison:
    mism = total = maxd = 0
    for g, e in zip(got, expected):
        if g.shape != e.shape:
            raise PlannerError(f"expected output of shape {list(e.shape)}, the graph gives {list(g.shape)}")
        d = np.abs(g.astype(np.int64) - e.astype(np.int64))
        mism += int((d != 0).sum())
        total += int(d.size)
        maxd = max(maxd, int(d.max()) if d.size else 0)
    return Comparison(mism, total, maxd)
