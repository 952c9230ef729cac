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
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise PlannerError(f"{path}: a single .npy array, not an .npz archive; save the "
                                   "arrays with numpy.savez")
            arrays = [(k, data[k]) for k in data.files]
    except PlannerError:
        raise
    except Exception as exc:
        raise PlannerError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    for k, a in arrays:
        if not isinstance(a, np.ndarray):  # numpy returns a member without the .npy header as bytes
            raise PlannerError(f"{path}: member '{k}' is not a numpy array (no .npy header, "
                               f"{len(a)} bytes); write the file with numpy.savez")
    return arrays


def _surplus(path: Path, arrays: list, used: int, what: str, notes: list[str]) -> None:
    if len(arrays) > used:
        extra = ", ".join(f"'{k}'" for k, _ in arrays[used:])
        notes.append(f"{path}: {len(arrays)} arrays for {used} {what}: ignored {extra} (arrays are "
                     "matched by position)")


def _check_dtype_range(graph: Graph, path: Path, key: str, name: str, vals: np.ndarray,
                       notes: list[str]) -> None:
    """Values must fit the input's integer type; an assumed type (float in ONNX) is only noted."""
    if not vals.size:
        return
    dtype = graph.tensors[name].dtype
    lo, hi = DTYPE_RANGES[dtype]
    vmin, vmax = int(vals.min()), int(vals.max())
    if lo <= vmin and vmax <= hi:
        return
    what = (f"array '{key}' (graph input '{name}') has values from {vmin} to {vmax}, outside "
            f"{dtype} [{lo}, {hi}]")
    i32lo, i32hi = DTYPE_RANGES["int32"]
    if name in graph.assumed_dtypes and i32lo <= vmin and vmax <= i32hi:
        notes.append(f"{path}: {what}, the type assumed for planning (the ONNX input is float): the "
                     "golden model runs on the values as given; the plan counts the input as "
                     f"{dtype}")
        return
    raise PlannerError(f"{path}: {what}, its type in the model; quantize the input to {dtype} "
                       "(or check that the arrays are in input order)")


def _as_int64(path: Path, key: str, arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind not in "iuf" or not is_integral(arr):
        raise PlannerError(f"{path}: array '{key}' must hold integers (int8/int32/int64 or integral "
                           f"float32), got {arr.dtype} with non-integer values")
    return arr.astype(np.int64)


def load_npz_inputs(graph: Graph, path: str | Path, notes: list[str] | None = None) -> list[np.ndarray]:
    """The k-th array feeds the k-th graph input; names are irrelevant, surplus ignored (and
    noted). Integer values must fit the input's dtype (noted only when the dtype is assumed).

    For QDQ graphs a float array holds real values and is quantized with the input's scale and
    zero point; an integer array is taken as already quantized.
    notes: where the notes go (default: graph.notes).
    """
    path = Path(path)
    notes = graph.notes if notes is None else notes
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
        _check_dtype_range(graph, path, key, name, vals, notes)
        result.append(vals)
    _surplus(path, arrays, len(graph.inputs), "graph input(s)", notes)
    return result


def load_npz_outputs(graph: Graph, path: str | Path, notes: list[str] | None = None) -> list[np.ndarray]:
    path = Path(path)
    notes = graph.notes if notes is None else notes
    arrays = _read_npz(path)
    if len(arrays) < len(graph.outputs):
        raise PlannerError(f"{path}: has {len(arrays)} array(s), the graph has {len(graph.outputs)} "
                           "output(s); arrays are matched by position")
    _surplus(path, arrays, len(graph.outputs), "graph output(s)", notes)
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
