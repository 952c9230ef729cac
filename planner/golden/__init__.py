"""Golden model: exact integer execution of the IR (the executable specification of kernel_lib)."""

from planner.golden.io import compare_outputs, load_npz_inputs, load_npz_outputs
from planner.golden.run import run_graph

__all__ = ["run_graph", "load_npz_inputs", "load_npz_outputs", "compare_outputs"]
