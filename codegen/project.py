"""Plan + deployed graph -> a self-contained C project (codegen/README of the emitted tree:
OUT/c/README.md).

Layout of the project:
  include/network.h        the API: net_init, net_run, inputs and outputs
  src/network.c            arenas (one per memory level, sizes from the plan), the runtime tables,
                           one tile body / layer function per layer, net_init, net_run
  src/net_consts.c         the weights images of L2 (and L3), at the plan's offsets
  src/net_test_inputs.c    seeded test inputs (`planner run` builds with its own)
  runtime/                 the tile engine and the platform API (nr_runtime.h)
  platform/<target>/       what differs per target (host: threads + emulated DMA), its build file
  kernel_lib/              the int8 kernels
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from codegen import abi
from codegen.model import EmitContext, c_ident, max_levels
from codegen.ops import LayerCode
from codegen.render import render
from codegen.views import Layouts
from planner.errors import PlannerError
from planner.ir import DTYPE_BYTES, LAYOUT_OPS, Graph
from planner.plan import Plan

CODEGEN_DIR = Path(__file__).resolve().parent
KERNEL_LIB = CODEGEN_DIR.parent / "kernel_lib"
PROJECT_DIR = "c"


@dataclass
class TensorIO:
    name: str        # graph tensor
    root: str        # buffer holding it
    offset: int      # L2 offset of the root
    nbytes: int      # bytes of the root
    dtype: str
    shape: tuple[int, ...]


@dataclass
class Emitted:
    root: Path
    files: dict[str, str] = field(default_factory=dict)  # relative path -> contents
    inputs: list[TensorIO] = field(default_factory=list)
    outputs: list[TensorIO] = field(default_factory=list)
    layer_outputs: list[TensorIO] = field(default_factory=list)
    ctx: EmitContext | None = None


def build_context(plan: Plan, graph: Graph) -> EmitContext:
    nodes = {}
    for n in graph.nodes:
        nodes[n.name] = n
        for p in n.parts:
            nodes.setdefault(p.name, p)
    needed: set[str] = set()
    for lp in plan.layers:
        n = nodes.get(lp.name)
        if n is not None:
            needed.update(t for t in n.inputs + n.outputs if t and not graph.tensors[t].is_const)
    needed |= set(graph.inputs) | set(graph.outputs)
    hw = plan.hardware
    from kernel_lib import descriptions  # noqa: F401  (kernel facts)
    from planner.tiling.kernels import isa_path
    return EmitContext(plan, graph, Layouts(graph, needed), nodes, hw["compute_level"], int(hw["cores"]),
                       isa_path(hw["isa"]))


def _emit_layer(ctx: EmitContext, index: int) -> LayerCode:
    from codegen.ops import linear, matmul, mhsa, rowwise
    lp = ctx.plan.layers[index]
    fn = {"Linear": linear.emit, "MatMul": matmul.emit, "MHSA": mhsa.emit, "Add": rowwise.emit,
          "RequantShift": rowwise.emit, "Softmax": rowwise.emit, "LayerNorm": rowwise.emit,
          "GELU": rowwise.emit, "Lut": rowwise.emit}.get(lp.op)
    if fn is None:
        raise PlannerError(f"code generator: layer {lp.name}: no kernel for {lp.op} (supported: Linear, "
                           "MatMul, MHSA, Add, RequantShift, Softmax, LayerNorm, GELU, Lut)")
    code = fn(ctx, lp, index)
    if code.engine and len(code.bufs) > abi.MAX_BUFS:
        raise PlannerError(f"code generator: layer {lp.name} has {len(code.bufs)} buffers, the tile "
                           f"engine takes {abi.MAX_BUFS}")
    for b in code.bufs:
        if max_levels(b) > 3:
            raise PlannerError(f"code generator: layer {lp.name}, buffer {b.name}: its tiles need a "
                               "DMA of more than 3 strided levels")
    return code


def _tensor_io(ctx: EmitContext, t: str) -> TensorIO:
    v = ctx.layouts.view(t)
    root = ctx.graph.tensors[v.root]
    off = ctx.plan.memory["L2"]["placements"][v.root]["offset"]
    tt = ctx.graph.tensors[t]
    return TensorIO(t, v.root, int(off), root.nbytes, tt.dtype, tuple(tt.shape))


@dataclass
class IOMap:
    """Where a built program's inputs, outputs and layer outputs are, and how to read them."""

    ctx: EmitContext
    inputs: list[TensorIO]
    outputs: list[TensorIO]
    layer_outputs: list[TensorIO]

    def decode(self, io: TensorIO, raw: bytes):
        """A root buffer's bytes (physical order) -> the tensor `io.name` (logical, int64)."""
        dt = {"int8": "<i1", "uint8": "<u1", "int16": "<i2", "int32": "<i4"}[self.ctx.graph.tensors[io.root].dtype]
        phys = np.frombuffer(raw, dt).astype(np.int64)
        root = self.ctx.layouts.physical_to_logical(io.root, phys).reshape(-1)
        return root[self.ctx.layouts._logical(io.name)]


def io_map(plan: Plan, graph: Graph) -> IOMap:
    ctx = build_context(plan, graph)
    return IOMap(ctx, [_tensor_io(ctx, t) for t in graph.inputs], [_tensor_io(ctx, t) for t in graph.outputs],
                 [_tensor_io(ctx, ctx.node(lp.name).outputs[0]) for lp in plan.layers])


def _images(ctx: EmitContext, layers: list[LayerCode]) -> dict[str, tuple[int, bytes]]:
    """level -> (offset of the image in the level's arena, bytes): every constant at the plan's
    offset (graph tensors in their dtype, layer blobs as int32)."""
    blobs: dict[str, np.ndarray] = {}
    for c in layers:
        blobs.update(c.blobs)
    out = {}
    for lv in ("L2", "L3"):
        w = ctx.plan.memory.get(lv, {}).get("weights", {})
        if not w:
            continue
        # the L3 image starts at the arena's origin (where L3 is memory-mapped it IS the arena)
        lo = 0 if lv == "L3" else min(int(e["offset"]) for e in w.values())
        hi = max(int(e["offset"]) + int(e["bytes"]) for e in w.values())
        img = bytearray(hi - lo)
        for key, e in sorted(w.items()):
            t = ctx.graph.tensors.get(key)
            if t is not None and t.is_const:
                data = _const_bytes(t.data, t.dtype)
            elif key in blobs:
                data = np.asarray(blobs[key], dtype="<i4").tobytes()
            else:
                raise PlannerError(f"code generator: the plan places constant '{key}', which the "
                                   "network does not have (re-run planner solve)")
            if len(data) != int(e["bytes"]):
                raise PlannerError(f"code generator: constant '{key}' has {len(data)} B, the plan "
                                   f"reserved {e['bytes']} B")
            o = int(e["offset"]) - lo
            img[o:o + len(data)] = data
        missing = sorted(set(blobs) - set(w)) if lv == "L2" else []
        missing = [m for m in missing if not any(m in ctx.plan.memory.get(x, {}).get("weights", {})
                                                 for x in ("L2", "L3"))]
        if missing:
            raise PlannerError(f"code generator: constants without a place in the plan: {', '.join(missing)}")
        out[lv] = (lo, bytes(img))
    return out


def _const_bytes(data: np.ndarray, dtype: str) -> bytes:
    np_t = {"int8": "<i1", "uint8": "<u1", "int16": "<i2", "int32": "<i4"}[dtype]
    return np.asarray(data, dtype=np.int64).astype(np_t).tobytes()


_DECIMAL = [str(b) for b in range(256)]  # a table look-up: twice as fast as str() per byte


def c_bytes(data: bytes, per_line: int = 24) -> str:
    if not data:
        return "0"
    return ",\n".join("    " + ",".join(map(_DECIMAL.__getitem__, data[i:i + per_line]))
                       for i in range(0, len(data), per_line))


def test_inputs(graph: Graph, seed: int, arrays: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """Inputs of the graph: `arrays`, or seeded random values over each input's integer range."""
    if arrays is not None:
        return [np.asarray(a, dtype=np.int64) for a in arrays]
    from planner.ir import DTYPE_RANGES
    rng = np.random.default_rng(seed)
    out = []
    for name in graph.inputs:
        t = graph.tensors[name]
        lo, hi = DTYPE_RANGES[t.dtype]
        lo, hi = max(lo, -128), min(hi, 127 if lo < 0 else 255)
        out.append(rng.integers(lo, hi + 1, size=t.shape, dtype=np.int64))
    return out


def render_inputs(inputs: list[TensorIO], arrays: list[np.ndarray]) -> str:
    items = []
    for io, arr in zip(inputs, arrays):
        items.append({"ident": c_ident(io.name), "name": io.name, "k": len(items),
                      "data": c_bytes(_const_bytes(arr, io.dtype)), "nbytes": io.nbytes})
    return render("net_test_inputs.c.mako", items=items)


def emit(plan: Plan, graph: Graph, out_dir: str | Path) -> Emitted:
    """Write the C project of `plan` into out_dir/c (replacing an older one)."""
    if not plan.deployable:
        raise PlannerError("code generator: the plan is marked not deployable "
                           f"({'; '.join(plan.not_deployable)}): no C project")
    io = io_map(plan, graph)
    ctx = io.ctx
    layers = [_emit_layer(ctx, k) for k in range(len(plan.layers))]
    first = 0
    for c in layers:
        c.first_buf = first  # type: ignore[attr-defined]
        first += len(c.bufs)
    images = _images(ctx, layers)
    em = Emitted(Path(out_dir) / PROJECT_DIR, ctx=ctx)
    em.inputs, em.outputs, em.layer_outputs = io.inputs, io.outputs, io.layer_outputs
    mem = plan.memory
    arenas = {"L1": int(mem["L1"]["peak"]) if "L1" in mem else 0,
              "L2": int(mem["L2"].get("runtime_offset", mem["L2"]["peak"])),
              "L3": int(mem["L3"]["peak"]) if "L3" in mem else 0}
    runtime = abi.runtime_bytes([len(c.bufs) for c in layers])
    planned_rt = int(mem["L2"]["breakdown"]["runtime"])
    if runtime != planned_rt:
        raise PlannerError(f"code generator: the runtime tables need {runtime} B, the plan reserved "
                           f"{planned_rt} B (planner and code generator disagree: a bug)")
    net = {
        "plan": plan, "layers": layers, "arenas": arenas, "images": images, "cores": ctx.cores,
        "inputs": em.inputs, "outputs": em.outputs, "layer_outputs": em.layer_outputs,
        "n_bufs": first, "runtime_bytes": runtime,
    }
    em.files["include/network.h"] = render("network.h.mako", N=net)
    em.files["src/network.c"] = render("network.c.mako", N=net)
    em.files["src/net_consts.c"] = render("net_consts.c.mako", N=net, c_bytes=c_bytes)
    em.files["src/net_test_inputs.c"] = render_inputs(em.inputs, test_inputs(graph, int(plan.options.get("seed") or 0)))
    em.files["Makefile"] = render("Makefile.host.mako", N=net)
    from codegen.platforms import platforms_for
    for plat in platforms_for(plan.hardware["name"]):
        for rel, tmpl in plat.makefiles.items():
            em.files[f"platform/{plat.name}/{rel}"] = render(tmpl, N=net, T=plat.variables)
        if plat.name != "host":
            for p in plat.static_files():
                em.files[f"platform/{plat.name}/{p.relative_to(CODEGEN_DIR / 'platforms' / plat.name).as_posix()}"] = \
                    p.read_text(encoding="utf-8")
    em.files["README.md"] = render("README.md.mako", N=net)
    static = {
        "runtime/nr_runtime.h": CODEGEN_DIR / "runtime" / "nr_runtime.h",
        "runtime/nr_tiles.c": CODEGEN_DIR / "runtime" / "nr_tiles.c",
        "runtime/nr_io.h": CODEGEN_DIR / "runtime" / "nr_io.h",
        "runtime/nr_io.c": CODEGEN_DIR / "runtime" / "nr_io.c",
        # the libc shim and the semihosting console of the bare-metal builds, shared with kernel_lib's tests
        "runtime/kl_rt.c": KERNEL_LIB / "targets" / "common" / "kl_rt.c",
        "runtime/semihost_io.c": KERNEL_LIB / "targets" / "common" / "semihost_io.c",
        "runtime/platform.h": KERNEL_LIB / "targets" / "platform.h",
        "platform/host/nr_plat_host.c": CODEGEN_DIR / "platforms" / "host" / "nr_plat_host.c",
        "platform/host/main.c": CODEGEN_DIR / "platforms" / "host" / "main.c",
        "platform/host/nr_platform.h": CODEGEN_DIR / "platforms" / "host" / "nr_platform.h",
    }
    for p in sorted((KERNEL_LIB / "include").glob("*.h")):
        static[f"kernel_lib/include/{p.name}"] = p
    for p in sorted((KERNEL_LIB / "src").glob("*.c")):
        static[f"kernel_lib/src/{p.name}"] = p
    for rel, src in static.items():
        em.files[rel] = src.read_text(encoding="utf-8")
    _write(em)
    return em


def _write(em: Emitted) -> None:
    root = em.root
    if root.exists():
        shutil.rmtree(root)
    for rel, text in sorted(em.files.items()):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")


def digest(files: dict[str, str]) -> str:
    h = hashlib.sha256()
    for rel, text in sorted(files.items()):
        h.update(rel.encode() + b"\0" + text.encode() + b"\0")
    return h.hexdigest()
