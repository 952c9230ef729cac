"""Per-op tiling descriptions: IR node -> `LayerDesc` (one or more `Variant`s for the generic tiler).

Every figure about a kernel (core split, scratch bytes, rules, cost unit) comes from
kernel_lib/descriptions.py through `planner.tiling.kernels`; the tensor sizes come from the IR.
Layout-only nodes are not layers (aliases, see planner.memory).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from math import prod

from planner.analysis import node_macs
from planner.cost import CostParams
from planner.errors import PlannerError
from planner.golden.mhsa import mhsa_zero_points
from planner.ir import DTYPE_BYTES, Graph, Node
from planner.tiling.desc import (BufferSpec, ComputeTerm, LayerDesc, LoopDim, OverheadTerm, Variant,
                                 candidate_sizes)
from planner.tiling.kernels import KernelInfo, kernel
from kernel_lib import descriptions as kd
from planner.plan import filled_at_init, param_blob_name

TILED_OPS = ("Linear", "MatMul", "Add", "RequantShift", "Softmax", "LayerNorm", "GELU", "Lut", "MHSA")


@dataclass
class BuildContext:
    graph: Graph
    params: CostParams
    isa: str                                  # hardware model isa string
    level: str                                # compute level (L1, or L2 without L1)
    act_home: str = "L2"                      # where activation tensors live
    weight_home: dict[str, str] = field(default_factory=dict)  # constant -> level (tensor name
    #                                          or planner.plan.param_blob_name of a layer's blob)
    default_weight_home: str | None = None    # None: the target's (CostParams.default_weight_home)

    def __post_init__(self) -> None:
        if self.default_weight_home is None:
            self.default_weight_home = self.params.default_weight_home

    @property
    def cores(self) -> int:
        return self.params.cores

    def whome(self, tensor: str) -> str:
        """Home level of a constant (graph tensor or layer blob, planner.plan.param_blob_name)."""
        if tensor in self.weight_home:
            return self.weight_home[tensor]
        return "L2" if filled_at_init(tensor) else self.default_weight_home

    def tensor_bytes(self, name: str) -> int:
        return self.graph.tensors[name].nbytes

    def eb(self, name: str) -> int:
        return DTYPE_BYTES[self.graph.tensors[name].dtype]

    def tiles_allowed(self) -> bool:
        """Tiling exists only across a boundary: a target without L1 computes on whole tensors."""
        return self.level != self.act_home


def _rows_cols(shape: tuple[int, ...]) -> tuple[int, int]:
    c = shape[-1] if shape else 1
    return max(1, prod(shape) // max(c, 1)), c


def _rule(k: KernelInfo, full: dict[str, int], dim: str):
    """t -> the kernel's rules hold for a tile of t along `dim` (others full)."""
    def ok(t: int) -> bool:
        d = dict(full)
        d[dim] = t
        return k.ok(d)
    return ok


def kernel_terms(label: str, k: KernelInfo, dims: dict, cores: int, loops: dict[str, LoopDim],
                 calls: dict[str, str] | None = None, per_tile: tuple[str, ...] = (),
                 split_only: tuple[str, ...] = (), const: int = 1) -> list[ComputeTerm]:
    """The ComputeTerms of a kernel the layer calls: its cost terms (kernel_lib/descriptions.py,
    `cost_terms` at the layer's full `dims`) summed over the loop nest. `calls` maps call dims to
    the loop dims whose tiles give their extents (the others stay at `dims`); the kernel is
    called once per tile of every mapped loop dim and of `per_tile`, and, for `split_only` dims,
    once per tile of the others only when that dim is split (kl_linear_finalize after the last
    K chunk); `const` calls of each (e.g. one per head)."""
    calls = calls or {}
    tiled = dict.fromkeys([*calls.values(), *per_tile])
    # the terms depend only on these (kernel_lib is static): the tilings the placement and the
    # form decisions try repeat a layer's loop nests many times
    key = (label, k.name, k.isa, tuple(sorted(dims.items())), cores, tuple(calls.items()), per_tile,
           split_only, const, tuple((ld, loops[ld].size, loops[ld].candidates) for ld in [*tiled, *split_only]))
    if key not in _TERMS:
        _TERMS[key] = tuple(_kernel_terms(label, k, dims, cores, loops, calls, tiled, split_only, const))
    return list(_TERMS[key])


_TERMS: dict[tuple, tuple[ComputeTerm, ...]] = {}


def _kernel_terms(label: str, k: KernelInfo, dims: dict, cores: int, loops: dict[str, LoopDim],
                  calls: dict[str, str], tiled: dict, split_only: tuple[str, ...], const: int):
    from kernel_lib import descriptions as kd

    out = []
    for ct in kd.cost_terms(k.name, dims, k.isa, cores):
        c = ct.const * const
        by_loop: dict[str, list] = {ld: [] for ld in tiled}
        for cd, f in ct.factors:
            ld = calls.get(cd)
            if ld is None:
                c *= f(dims[cd])
            else:
                by_loop[ld].append(f)
        tables, exact = [], []
        for ld, fs in by_loop.items():
            d = loops[ld]
            fn = functools.partial(_tile_sum, d.size, fs=tuple(fs))
            tables.append((ld, tuple((t, fn(t)) for t in d.candidates)))
            exact.append(fn)
        for ld in split_only:
            d = loops[ld]
            fn = functools.partial(_is_split, d.size)
            tables.append((ld, tuple((t, fn(t)) for t in d.candidates)))
            exact.append(fn)
        if c:
            out.append(ComputeTerm(label, ct.key, ct.feature, tuple(tables), c, tuple(exact)))
    return out


def _is_split(size: int, t: int) -> int:
    return int(t < size)


def _tile_sum(size: int, t: int, fs: tuple = ()) -> int:
    """sum over the tiles of a dim of `size` cut in tiles of t of prod(f(extent) for f in fs)
    (the number of tiles when fs is empty)."""
    full, rem = divmod(size, t)

    def val(e: int) -> int:
        v = 1
        for f in fs:
            v *= f(e)
        return v
    return full * val(t) + (val(rem) if rem else 0)


_CANDIDATES: dict[tuple, tuple[int, ...]] = {}


def _dim(ctx: BuildContext, name: str, size: int, k: KernelInfo | None, full: dict[str, int] | None,
         kdim: str | None, tiled: bool = True, dominated: bool = True, minimum: int = 1) -> LoopDim:
    if not tiled or not ctx.tiles_allowed() or size <= 1:
        return LoopDim(name, size, (size,))
    ruled = k is not None and kdim is not None
    key = (k.name, k.isa, tuple(sorted(full.items())), kdim) if ruled else None
    key = (key, size, minimum, dominated)
    if key not in _CANDIDATES:  # the kernel rules are probed once per shape (kernel_lib is static)
        rule = _rule(k, full, kdim) if ruled else (lambda t: True)
        _CANDIDATES[key] = candidate_sizes(size, rule, minimum, dominated)
    return LoopDim(name, size, _CANDIDATES[key])


def _rq_bytes(node: Node) -> int:
    """Bytes of the per-channel requantization vectors of a node (int32 mul and add)."""
    total = 0
    for key in ("rq", "rq_a", "rq_b"):
        rq = node.attrs.get(key)
        if rq is None:
            continue
        import numpy as np
        total += 4 * (int(np.asarray(rq.mul).size) + int(np.asarray(rq.add).size))
    return total if total > 8 * 3 else 0


def rq_axes(rq) -> dict[str, int]:
    """Linear call flags of a requantization: rq_n when its parameters vary along the last axis
    (the output features), rq_s when along another (the rows); per-tensor: neither. Read by the
    gemm core's cost terms (the epilogue: kernel_lib/descriptions.py)."""
    if rq is None:
        return {}
    import numpy as np
    flags = {}
    for v in (np.asarray(rq.mul), np.asarray(rq.add)):
        if v.size <= 1:
            continue
        shape = v.shape
        if shape and shape[-1] > 1:
            flags["rq_n"] = 1
        if prod(shape[:-1]) > 1:
            flags["rq_s"] = 1
    return flags


def _weight(ctx: BuildContext, name: str, role: str, dims: tuple[str, ...], unit: int,
            **reads) -> BufferSpec:
    return BufferSpec(role, name, "weight", dims, unit, ctx.tensor_bytes(name), ctx.whome(name),
                      activation=False, **reads)


def _params_buf(ctx: BuildContext, node: Node, layer: str | None = None, role: str = "rq",
                **reads) -> list[BufferSpec]:
    """The node's requantization vectors, a constant of layer `layer` (default the node) named
    `role` (its home: ctx.whome of its blob name)."""
    b = _rq_bytes(node)
    if not b:
        return []
    home = ctx.whome(param_blob_name(layer or node.name, role))
    return [BufferSpec(role, None, "weight", (), b, b, home, activation=False, **reads)]


# How often kernels read their constants (BufferSpec.reads): what reading them in place from a
# flash costs. The figures are kernel_lib's (descriptions.gemm_q_streams, mhsa_row_groups).


def _over_tiles(d: LoopDim, per_tile) -> dict:
    """reads by tile size of `d`: per_tile(t) summed over the tiles of d (the last one partial)."""
    table = []
    for t in d.candidates:
        full, rem = divmod(d.size, t)
        table.append((t, full * per_tile(t) + (per_tile(rem) if rem else 0)))
    if len(table) == 1:
        return {"reads": table[0][1]}
    return {"reads_dim": d.name, "reads_table": tuple(table)}


def _q_reads(ctx: BuildContext, k: KernelInfo, d: LoopDim) -> dict:
    """A gemm's Q operand (a Linear's weights, bias and requantization vectors): streamed once
    per block of the rows of `d`."""
    return _over_tiles(d, lambda t: kd.gemm_q_streams(t, ctx.cores, k.isa))


def _group_reads(ctx: BuildContext, d: LoopDim) -> dict:
    """kl_mhsa_chunk's per-head constants: streamed once per group of query rows of `d`."""
    return _over_tiles(d, lambda t: kd.mhsa_row_groups(t, ctx.cores))


# --------------------------------------------------------------------------------------- Linear


def bias_kind(graph: Graph, node: Node) -> str | None:
    """"vector" (bias[N]) or "full" (an int32 [S][N] matrix, one value per output) of a Linear's
    bias as planner.transforms.fuse.fold_bias leaves it; None without a bias."""
    bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    if bias is None:
        return None
    kind = node.attrs.get("bias_kind")
    if kind is not None:
        return kind
    n_out = graph.tensors[node.inputs[1]].shape[0]
    return "vector" if graph.tensors[bias].size == n_out else "full"


def linear(ctx: BuildContext, node: Node) -> LayerDesc:
    """kl_linear over S x N x K tiles. The int32 accumulator of a tile lives in
      * `psum` (S x N int32, local) when K is split and the bias is a vector (or absent);
      * the `bias` tile when the bias is full ([S][N] int32): it is DMA'd in, every K chunk is
        added to it (kl_linear_*_i32, KL_ACC_ADD) and kl_linear_finalize (bias NULL)
        requantizes it into y -- no psum;
      * the `y` tile itself when the output is int32 (no requantization): a full bias is DMA'd
        straight into y (`bias` has no footprint, its traffic is counted) and y accumulates.
    variant attrs: bias_kind, accumulator ("psum" | "bias" | "y" | None: no int32 buffer)."""
    g = ctx.graph
    x, w = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    y = node.outputs[0]
    k_ = kernel("linear", ctx.isa)
    n_out, kk = g.tensors[w].shape
    s = prod(g.tensors[x].shape) // kk
    full = {"S": s, "N": n_out, "K": kk}
    cores = ctx.cores
    row_split = s >= cores
    dS = _dim(ctx, "S", s, k_, full, "S", tiled=row_split, dominated=False, minimum=min(cores, s))
    dN = _dim(ctx, "N", n_out, k_, full, "N", dominated=row_split)
    dK = _dim(ctx, "K", kk, k_, full, "K")
    kind = bias_kind(g, node)
    out_i32 = node.attrs.get("rq") is None and ctx.eb(y) == 4
    q_reads = _q_reads(ctx, k_, dS)  # weights, bias and rq vectors streamed per block of rows
    bufs = [
        BufferSpec("x", x, "in", ("S", "K"), ctx.eb(x), ctx.tensor_bytes(x), ctx.act_home),
        _weight(ctx, w, "w", ("N", "K"), ctx.eb(w), **q_reads),
    ]
    accumulator = None
    if kind == "vector":
        bufs.append(_weight(ctx, bias, "bias", ("N",), 4, **q_reads))
    elif kind == "full" and out_i32:  # loaded into the int32 y tile, which accumulates
        bufs.append(BufferSpec("bias", bias, "weight", ("S", "N"), 0, ctx.tensor_bytes(bias),
                               ctx.whome(bias), activation=False, into="y"))
        accumulator = "y"
    elif kind == "full":  # the bias tile is the accumulator, requantized into y at the end
        bufs.append(_weight(ctx, bias, "bias", ("S", "N"), 4))
        accumulator = "bias"
    bufs += _params_buf(ctx, node, **q_reads)
    bufs.append(BufferSpec("y", y, "out", ("S", "N"), ctx.eb(y), ctx.tensor_bytes(y), ctx.act_home))
    if accumulator is None:
        bufs.append(BufferSpec("psum", None, "local", ("S", "N"), 4, only_if_split="K"))
        accumulator = "psum" if dK.tiled else None
    sdims, sunit = k_.scratch_product(full, ["K"] if dK.tiled else [], cores)
    if sunit:
        bufs.append(BufferSpec("scratch", None, "scratch", sdims, sunit,
                               align=k_.desc.operand_align("scratch", k_.isa)))
    loopd = {"S": dS, "N": dN, "K": dK}
    ldims = {**full, "trans": 0, **rq_axes(node.attrs.get("rq")),
             "out_i32": int(out_i32 or kind == "full")}  # (a K-split psum: priced as its rq)
    terms = kernel_terms("linear", k_, ldims, cores, loopd, {"S": "S", "N": "N", "K": "K"})
    fin = kernel("linear_finalize", ctx.isa)
    if accumulator == "bias":  # the bias tile is requantized after the last K chunk
        terms += kernel_terms("finalize", fin, {"S": s, "N": n_out}, cores, loopd, {"S": "S", "N": "N"})
    elif accumulator == "psum" and dK.tiled:  # psum requantized after the last K chunk, if split
        terms += kernel_terms("finalize", fin, {"S": s, "N": n_out}, cores, loopd, {"S": "S", "N": "N"},
                              split_only=("K",))
    variants = []
    for order in (("N", "S", "K"), ("S", "N", "K")):
        loops = [loopd[d] for d in order]
        variants.append(Variant(node.name, "Linear", k_.function, f"order {','.join(order)}", ctx.level,
                                loops, bufs, terms, _overheads(order), node_macs(g, node),
                                min_tile={"S": min(cores, s)} if row_split else {},
                                attrs={"kernel": k_.name, "rules": _rules(k_, full, ("S", "N", "K")),
                                       "bias_kind": kind, "accumulator": accumulator}))
        if not (dS.tiled or dN.tiled):
            break  # the order does not matter
    return LayerDesc(node.name, "Linear", variants, node_macs(g, node))


def _overheads(dims: tuple[str, ...], calls: int = 1) -> list[OverheadTerm]:
    """The generated code's own work for a layer with one kernel call per tile of `dims`: the
    layer, each tile (tile engine) and each call of its body."""
    return [OverheadTerm((), 1, "layer"), OverheadTerm(dims, 1, "tile"), OverheadTerm(dims, calls, "call")]


def _rules(k: KernelInfo, full: dict[str, int], dims) -> dict:
    return {d: _rule(k, full, d) for d in dims}


# --------------------------------------------------------------------------------------- MatMul


def matmul(ctx: BuildContext, node: Node) -> LayerDesc:
    g = ctx.graph
    a, b = node.inputs[0], node.inputs[1]
    y = node.outputs[0]
    ash, bsh, ysh = g.tensors[a].shape, g.tensors[b].shape, g.tensors[y].shape
    m, kk = ash[-2], ash[-1]
    n = bsh[-1]
    batch = prod(ysh[:-2]) if len(ysh) > 2 else 1
    a_batched = prod(ash[:-2]) > 1 if len(ash) > 2 else False
    b_batched = prod(bsh[:-2]) > 1 if len(bsh) > 2 else False
    prod_b = g.producer(b)
    kname = "matmul_nt" if prod_b is not None and prod_b.op == "Transpose" else "matmul_nn"
    if "int32" in (g.tensors[a].dtype, g.tensors[b].dtype):
        kname = "bmatmul_i32"  # int32 activations: the portable int32-operand kernel
    k_ = kernel(kname, ctx.isa)
    full = {"batch": batch, "M": m, "N": n, "K": kk}
    cores = ctx.cores
    dB = _dim(ctx, "B", batch, None, None, None)
    dM = _dim(ctx, "M", m, k_, full, "M", dominated=False)
    bufs = [
        BufferSpec("a", a, "in", (("B",) if a_batched else ()) + ("M",), kk * ctx.eb(a),
                   ctx.tensor_bytes(a), ctx.act_home),
        BufferSpec("b", b, "in", ("B",) if b_batched else (), kk * n * ctx.eb(b), ctx.tensor_bytes(b),
                   ctx.act_home),
    ]
    bufs += _params_buf(ctx, node, reads=batch * kd.gemm_q_streams(m, cores, k_.isa))
    bufs.append(BufferSpec("y", y, "out", ("B", "M"), n * ctx.eb(y), ctx.tensor_bytes(y), ctx.act_home))
    # operands that keep their zero points (QDQ): kl_bmatmul_zp forms the corrections (its
    # scratch, at the full sizes: the tiles' calls need no more)
    zp = bool(node.attrs.get("zp_a") or node.attrs.get("zp_b"))
    sk = kernel("bmatmul_zp", ctx.isa) if zp else k_
    sdims, sunit = sk.scratch_product(full, [], cores)
    if sunit:
        bufs.append(BufferSpec("scratch", None, "scratch", sdims, sunit,
                               align=sk.desc.operand_align("scratch", sk.isa)))
    if kname == "bmatmul_i32":
        terms = kernel_terms("matmul", k_, full, cores, {"B": dB, "M": dM}, {"batch": "B", "M": "M"})
    else:  # the generated code calls kl_bmatmul (B^T: the K_h of the scores, else V_h)
        terms = kernel_terms("matmul", kernel("bmatmul_zp" if zp else "bmatmul", ctx.isa),
                             {**full, "b_trans": int(kname == "matmul_nt"),
                              "rq16": int(g.tensors[y].dtype == "int16")}, cores, {"B": dB, "M": dM},
                             {"batch": "B", "M": "M"})
    v = Variant(node.name, "MatMul", k_.function, "order B,M", ctx.level, [dB, dM], bufs, terms,
                _overheads(("B", "M")), node_macs(g, node),
                attrs={"kernel": k_.name, "rules": _rules(k_, full, ("M",))})
    return LayerDesc(node.name, "MatMul", [v], node_macs(g, node))


# ------------------------------------------------------------------------- row-wise / element-wise


def rowwise(ctx: BuildContext, node: Node) -> LayerDesc:
    g = ctx.graph
    y = node.outputs[0]
    r, c = _rows_cols(g.tensors[y].shape)
    wide = any(g.tensors[t].dtype == "int16" for t in node.inputs + node.outputs if t)
    if node.op == "Softmax":
        kname = {"isoftmax": "isoftmax", "itamax": "itamax", "itapartialmax": "ita_partial_max"}.get(
            node.attrs.get("kind"), "isoftmax")
        if wide:  # int16 scores of QDQ graphs
            kname = "isoftmax_s16"
    elif node.op == "LayerNorm" and node.attrs.get("mode") == "qdq":
        kname = "layernorm_qdq"
    elif node.op == "Add" and wide:  # int16 residual stream (planner/transforms/int16.py)
        kname = "add_rq_x"
    elif node.op == "Lut":
        kname = "lut8"
    else:
        kname = {"LayerNorm": "ilayernorm", "GELU": "igelu", "Add": "add_rq",
                 "RequantShift": "requant"}[node.op]
    k_ = kernel(kname, ctx.isa)
    kd_dims = k_.desc.dims  # (rows, L) or (rows, cols)
    full = {kd_dims[0]: r, kd_dims[1]: c}
    dR = _dim(ctx, "R", r, k_, full, kd_dims[0], dominated=False)
    bufs = []
    for i, t in enumerate(node.inputs):
        if not t:
            continue
        tt = g.tensors[t]
        role = "x" if len(node.inputs) == 1 or node.op != "Add" else ("a", "b")[i] if i < 2 else f"in{i}"
        if tt.is_const:
            cname = ({1: "weight", 2: "bias"}.get(i, role) if node.op == "LayerNorm"
                     else "table" if node.op == "Lut" else role)
            # a table is looked up per element; a per-feature vector is read per row
            reads = {"lookups": r * c} if node.op == "Lut" else {"reads": 1 if tt.size == r * c else r}
            bufs.append(_weight(ctx, t, cname, (), tt.nbytes, **reads))
        elif tt.size == r * c:
            bufs.append(BufferSpec(role, t, "in", ("R",), c * ctx.eb(t), tt.nbytes, ctx.act_home))
        else:  # a broadcast operand: kept whole
            bufs.append(BufferSpec(role, t, "in", (), tt.nbytes, tt.nbytes, ctx.act_home))
    bufs += _params_buf(ctx, node, reads=r)
    bufs.append(BufferSpec("y", y, "out", ("R",), c * ctx.eb(y), ctx.tensor_bytes(y), ctx.act_home))
    # a row-split kernel is called with min(rows, cores) cores: its per-core scratch follows
    table = tuple((t, _row_scratch(k_, kd_dims, t, c, ctx.cores)) for t in dR.candidates)
    if any(b for _, b in table):
        bufs.append(BufferSpec("scratch", None, "scratch", ("R",), 0, table=table,
                               align=k_.desc.operand_align("scratch", k_.isa)))
    flags = {"rq": int(node.attrs.get("rq") is not None)} if kname == "igelu" else {}
    if node.op == "Add":  # the requantizations with a shift (a missing one is the identity)
        flags = {"shifts": sum(int(node.attrs.get(k) is not None and node.attrs[k].shift > 0)
                               for k in ("rq_a", "rq_b", "rq"))}
    terms = kernel_terms(kname, k_, {**full, **flags}, ctx.cores, {"R": dR}, {kd_dims[0]: "R"})
    v = Variant(node.name, node.op, k_.function, "rows", ctx.level, [dR], bufs, terms,
                _overheads(("R",)), 0, attrs={"kernel": k_.name, "rules": _rules(k_, full, (kd_dims[0],))})
    return LayerDesc(node.name, node.op, [v], 0)


def _row_scratch(k: KernelInfo, kd_dims, rows: int, cols: int, cores: int) -> int:
    used = min(rows, cores) if k.split == "rows" else cores
    return k.scratch({kd_dims[0]: rows, kd_dims[1]: cols}, used)


# ----------------------------------------------------------------------------- untiled fallback


def untiled(ctx: BuildContext, node: Node) -> LayerDesc:
    """Ops without a tiled kernel description (Conv2d, MaxPool, ...): whole tensors in the compute
    level, one tile, priced as element-wise requantization (or MACs at the linear rate)."""
    g = ctx.graph
    bufs = []
    for i, t in enumerate(node.inputs):
        if not t:
            continue
        tt = g.tensors[t]
        if tt.is_const:
            bufs.append(_weight(ctx, t, f"const{i}", (), tt.nbytes))
        else:
            bufs.append(BufferSpec(f"in{i}", t, "in", (), tt.nbytes, tt.nbytes, ctx.act_home))
    for i, t in enumerate(node.outputs):
        tt = g.tensors[t]
        bufs.append(BufferSpec(f"out{i}", t, "out", (), tt.nbytes, tt.nbytes, ctx.act_home))
    macs = node_macs(g, node)
    out_elems = sum(g.tensors[t].size for t in node.outputs)
    if macs:
        term = ComputeTerm("macs", "gemm", "mac", (), macs)
    else:
        term = ComputeTerm("elements", "requant", "elem", (), out_elems)
    # one core: the generic fallback is not parallelized in the model
    v = Variant(node.name, node.op, "(golden model only: no kernel-library description)", "untiled",
                ctx.level, [], bufs, [term], [OverheadTerm((), 1, "layer")], macs,
                notes=[f"{node.op}: not yet tiled (whole tensors in {ctx.level})"])
    return LayerDesc(node.name, node.op, [v], macs, untiled_reason=f"{node.op} is not yet tiled")


# ------------------------------------------------------- MHSA: the chunk kernel's view (kernel_lib)


_DTYPE_B = {"int8": 1, "uint8": 1, "8bit": 1, "int8|uint8": 1, "uint8|int8": 1, "int32": 4}


def _operand_bytes(k: KernelInfo, name: str) -> int:
    """Bytes per element of operand `name` of a kernel description."""
    return _DTYPE_B[next(o for o in k.desc.operands if o.name == name).dtype]


@dataclass
class _Chunk:
    """What the depth-first MHSA step needs from kernel_lib/descriptions.py: kl_mhsa_chunk (mode,
    rules, scratch by chunk size, MACs per query row), the resident K_h / V_h^T of one head
    (mhsa_kv_bytes, as kl_mhsa_block lays them out), the softmax table (a model constant passed
    as kl_softmax_t.lut), the int32 accumulator (mhsa_block operand `acc`)."""

    k: KernelInfo
    sm: KernelInfo
    dims: dict                      # chunk kernel dims and flags (rows = 1)
    kv: dict                        # {"k_h": bytes, "v_h": bytes} per head
    lut: int                        # softmax table bytes (weight), 0 when none
    acc_b: int                      # bytes per accumulator element
    macs_row: int                   # kernel MACs per query row and head

    def at(self, rows: int) -> dict:
        d = dict(self.dims)
        d["rows"] = rows
        return d

    def ok(self, rows: int) -> bool:
        return self.k.ok(self.at(rows))

    def scratch(self, rows: int, cores: int) -> int:
        """Total scratch of a call on `rows` query rows: the kernel splits the rows, cores beyond
        them idle, so it is called with min(rows, cores) cores (the per-core part does not depend
        on the rows)."""
        return self.k.scratch(self.at(rows), min(rows, cores))


def _mhsa_chunk(ctx: BuildContext, s: int, d: int, p: int, e_out: int, sm_node, fwsa: bool,
                row_term: bool, wide_scores: bool = False, rq_i_cols: bool = False,
                zp: tuple[bool, bool] = (False, False)) -> _Chunk:
    """zp: (Q/K, V) keep zero points (QDQ graphs), the kernel's zp_k / zp_v corrections."""
    from kernel_lib import descriptions as kd

    k = kernel("mhsa_chunk", ctx.isa)
    kind = 0 if sm_node is None else kd.SOFTMAX_KINDS[sm_node.attrs.get("kind", "isoftmax")]
    dims = {"rows": 1, "S": s, "D": d, "P": p, "E_out": e_out, "fwsa": int(fwsa),
            "row_term": int(row_term), "softmax": kind, "lut_given": 1, "fused_out": 1,
            "wide_scores": int(wide_scores), "rq_i_cols": int(rq_i_cols),
            "zp_k": int(zp[0]), "zp_v": int(zp[1])}
    lut = kd.softmax_lut_bytes(dims)
    return _Chunk(k, kernel("softmax_rows", ctx.isa), dims,
                  kd.mhsa_kv_bytes({"S": s, "P": p, "fwsa": int(fwsa), "zp_k": int(zp[0])}), lut,
                  _operand_bytes(kernel("mhsa_block", ctx.isa), "acc"), k.desc.cost(dims))


def _wide_scores(scores: Node) -> bool:
    """int16 softmax scores (QDQ graphs): kl_mhsa_chunk's wide-score mode."""
    rq = scores.attrs.get("rq")
    return rq is not None and rq.n_levels > 256


def _chunk_candidates(key: tuple, s: int, rule) -> tuple[int, ...]:
    if key not in _CANDIDATES:
        _CANDIDATES[key] = candidate_sizes(s, rule, dominated=False)
    return _CANDIDATES[key]


def _chunk_scratch(ch: _Chunk, candidates, proj_scratch: int, cores: int, lin: KernelInfo) -> list[BufferSpec]:
    """One scratch buffer shared by the step's kernels (projections by kl_linear, then
    kl_mhsa_chunk), by chunk size, at the stricter of their alignments."""
    table = tuple((t, max(proj_scratch, ch.scratch(t, cores))) for t in candidates)
    if not any(b for _, b in table):
        return []
    align = max(lin.desc.operand_align("scratch", lin.isa), ch.k.desc.operand_align("scratch", ch.k.isa))
    return [BufferSpec("scratch", None, "scratch", ("x",), 0, table=table, align=align)]


def _chunk_terms(ch: _Chunk, h: int, s: int, cores: int, loops: dict[str, LoopDim]) -> list[ComputeTerm]:
    """kl_mhsa_chunk per chunk (rows = the x tile) and head: the cost terms of its description
    (its gemm calls per group of rows, the softmax rows, the FWSA row term, the groups)."""
    return kernel_terms("mhsa_chunk", ch.k, ch.at(s), cores, loops, {"rows": "x"}, const=h)


def _proj_terms(label: str, lin: KernelInfo, rows_on_x: bool, s: int, n: int, e: int, h: int,
                trans: int, cores: int, loops: dict[str, LoopDim], rq=None) -> list[ComputeTerm]:
    """A per-head kl_linear projection (K = E) over the s tokens: once per head (rows_on_x False)
    or once per x tile and head on its rows; `rq` its requantization (a head's slice)."""
    dims = {"S": s, "N": n, "K": e, "trans": trans, **rq_axes(rq)}
    return kernel_terms(label, lin, dims, cores, loops, {"S": "x"} if rows_on_x else {}, const=h)


def _head_rq(part: Node, h: int):
    """The requantization of a per-head projection as one head's call sees it (its columns)."""
    rq = part.attrs.get("rq") if part is not None else None
    if rq is None:
        return None
    import numpy as np
    mul = np.asarray(rq.mul)
    if mul.size > 1 and mul.shape and mul.shape[-1] % h == 0:
        return _Slice(mul.reshape(-1)[: mul.shape[-1] // h].reshape(1, -1))
    return rq


def _per_head(rq, h: int):
    """An FWSA requantization [H, 1, n] as one head's call sees it ([1, n])."""
    if rq is None:
        return None
    import numpy as np
    mul = np.asarray(rq.mul)
    if mul.ndim == 3 and mul.shape[0] == h:
        return _Slice(mul[0])
    return rq


@dataclass
class _Slice:
    """The multipliers of one call's part of a requantization (rq_axes reads mul and add)."""

    mul: object
    add: object = 0


def _writeout_terms(ctx: BuildContext, s: int, e: int, acc_local: bool, loops) -> list[ComputeTerm]:
    """The final RQ_o of the accumulator (nr_finalize_rows: kl_linear_finalize on each core's
    rows): once, or per x tile when the accumulator is streamed from L2."""
    fin = kernel("linear_finalize", ctx.isa)
    return kernel_terms("writeout", fin, {"S": s, "N": e}, ctx.cores, loops,
                        {} if acc_local else {"S": "x"})


def _mhsa_overheads(s: int, e: int, h: int, kv_calls: int, q_calls: int, x_res: bool,
                    acc_local: bool) -> list[OverheadTerm]:
    """The depth-first MHSA body's own work (codegen/templates/mhsa.c.mako): per head tile and
    per (head tile, chunk); per kernel call (pass 1: kv_calls per head, once or per x tile; pass
    2: q_calls + the chunk per chunk and head; the writeout); the compaction of the output rows
    (nr_compact_rows, about S x E bytes)."""
    return [OverheadTerm((), 1, "layer"), OverheadTerm(("h",), 1, "tile"), OverheadTerm(("h", "x"), 1, "tile"),
            OverheadTerm(() if x_res else ("x",), h * kv_calls, "call"),
            OverheadTerm(("x",), h * (q_calls + 1), "call"),
            OverheadTerm(() if acc_local else ("x",), 1, "call"),
            OverheadTerm((), max(s - 1, 1) * e, "compact")]


def _lut_buf(ctx: BuildContext, ch: _Chunk, layer: str, h: int, s: int) -> list[BufferSpec]:
    """The softmax table: one lookup per score element (h heads x s x s)."""
    if not ch.lut:
        return []
    return [BufferSpec("softmax_lut", None, "weight", (), ch.lut, ch.lut,
                       ctx.whome(param_blob_name(layer, "softmax_lut")), activation=False,
                       lookups=h * s * s)]


def _part_rq(ctx: BuildContext, node: Node, part: str, **reads) -> list[BufferSpec]:
    """The requantization vectors of MHSA part `part` (buffer rq_<part> of the MHSA layer)."""
    return _params_buf(ctx, node.attrs[part], node.name, f"rq_{part}", **reads)



# --------------------------------------------------------------------------- MHSA, depth-first


def mhsa_dft(ctx: BuildContext, node: Node) -> LayerDesc:
    """Depth-first MHSA: heads outer (tile h_t heads, K_h [S][P] and V_hᵀ [P][S] resident, projected
    by kl_linear), query-row chunks of x rows inner: Q_h rows by kl_linear (q_rows, x × P), then
    kl_mhsa_chunk (scores, the exact table softmax on full rows, ·V, the output projection fused
    and accumulated head by head into an int32 [S][E] accumulator). The H×S×S map and the outputs
    of all heads never exist. Scratch, rules and MACs of the chunk step are kl_mhsa_chunk's
    (kernel_lib/descriptions.py: groups of 6 rows per core, independent of x).

    Variants: the layer input x resident in the compute level or streamed by row chunks; the
    accumulator resident in the compute level or kept in L2 and streamed by row chunks.
    """
    g = ctx.graph
    a = node.attrs
    s, e, p, h = a["s"], a["e"], a["p"], a["h"]
    x = node.inputs[0]
    wq, bq, wk, bk, wv, bv, wo, bo = node.inputs[1:9]
    y = node.outputs[0]
    cores = ctx.cores
    lin = kernel("linear", ctx.isa)
    sm_node = a["softmax"]
    zq, zk, zv = mhsa_zero_points(node)
    ch = _mhsa_chunk(ctx, s, p, p, e, sm_node, False, False, _wide_scores(a["scores"]),
                     zp=(bool(zq or zk), bool(zv)))
    ebx, eby = ctx.eb(x), ctx.eb(y)
    q_t, k_t, v_t = a["q"].outputs[0], a["k"].outputs[0], a["v"].outputs[0]
    eq = ctx.eb(q_t)
    # dims
    dh = LoopDim("h", h, candidate_sizes(h, lambda t: True))
    chunk_rule = lambda t: lin.ok({"S": t, "N": p, "K": e}) and ch.ok(t)  # noqa: E731
    dx = LoopDim("x", s, _chunk_candidates(("mhsa chunk", ch.k.isa, tuple(sorted(ch.dims.items()))), s,
                                           chunk_rule))
    loopd = {"h": dh, "x": dx}
    common = (_proj_terms("q_proj", lin, True, s, p, e, h, 0, cores, loopd, _head_rq(a["q"], h))
              + _chunk_terms(ch, h, s, cores, loopd))
    zps = kernel("zp_sums", ctx.isa)
    if zq or zk:  # K_h's zero-point correction [S], once per head (kl_zp_sums)
        common += kernel_terms("k_zp", zps, {"n": s, "K": p}, cores, loopd, {}, const=h)
    # how often each constant is read (in place): Q per chunk rows (kl_linear), K over all rows,
    # V once (kl_linear_t: its weights are the expanded rows), W_o per group (kl_mhsa_chunk)
    rq_ = _q_reads(ctx, lin, dx)
    rk_ = {"reads": kd.gemm_q_streams(s, cores, lin.isa)}
    rg_ = _group_reads(ctx, dx)
    wbufs = [_weight(ctx, wq, "wq", ("h",), p * e, **rq_), _weight(ctx, wk, "wk", ("h",), p * e, **rk_),
             _weight(ctx, wv, "wv", ("h",), p * e), _weight(ctx, wo, "wo", ("h",), e * p, **rg_)]
    for nm, t, rd in (("bq", bq, rq_), ("bk", bk, rk_), ("bv", bv, {})):
        if t:
            wbufs.append(_weight(ctx, t, nm, ("h",), p * 4, **rd))
    if bo:
        wbufs.append(_weight(ctx, bo, "bo", (), e * 4, **rg_))
    for part, rd in (("q", rq_), ("k", rk_), ("v", {}), ("scores", rg_), ("av", rg_), ("o", {"reads": s})):
        wbufs += _part_rq(ctx, node, part, **rd)
    wbufs += _lut_buf(ctx, ch, node.name, h, s)
    local = [
        BufferSpec("k_h", k_t, "local", ("h",), ch.kv["k_h"]),
        BufferSpec("v_h", v_t, "local", ("h",), ch.kv["v_h"]),
        BufferSpec("q_rows", q_t, "local", ("x",), p * eq),
    ]
    # the projections (kl_linear, K = E) share the chunk kernel's scratch buffer
    proj = max(lin.scratch({"S": 1, "N": p, "K": e}, cores), lin.scratch({"S": s, "N": p, "K": e}, cores),
               zps.scratch({"n": s, "K": p}, cores) if zq or zk else 0)
    scratch = _chunk_scratch(ch, dx.candidates, proj, cores, lin)
    acc_b = ch.acc_b
    variants = []
    single = not ctx.tiles_allowed()  # compute level is the activations' home (no L1)
    for x_res in ((True,) if single else (True, False)):
        for acc_local in ((True,) if single else (True, False)):
            bufs = list(wbufs)
            if x_res:
                bufs.append(BufferSpec("x", x, "in", (), s * e * ebx, s * e * ebx, ctx.act_home))
            else:  # streamed twice per head tile: K/V projection pass, then the chunk pass
                bufs.append(BufferSpec("x", x, "in", ("x",), e * ebx, s * e * ebx, ctx.act_home, passes=2))
            bufs += local
            l2_extra = []
            if acc_local:
                bufs.append(BufferSpec("acc", None, "local", (), s * e * acc_b))
                # the output is requantized in place in the accumulator and written once
                bufs.append(BufferSpec("y", y, "out", (), 0, s * e * eby, ctx.act_home, once=True))
            else:  # accumulator in L2, rows loaded and stored per chunk and head tile
                bufs.append(BufferSpec("acc", None, "inout", ("x",), e * acc_b, s * e * acc_b, ctx.act_home,
                                       passes=2))
                bufs.append(BufferSpec("y", y, "out", ("x",), 0, s * e * eby, ctx.act_home, once=True))
                l2_extra.append((f"{node.name}.acc", s * e * acc_b))
            bufs += scratch
            label = f"x {'resident' if x_res else 'streamed'}, acc {'in ' + ctx.level if acc_local else 'in ' + ctx.act_home}"
            terms = (_proj_terms("k_proj", lin, not x_res, s, p, e, h, 0, cores, loopd, _head_rq(a["k"], h))
                     + _proj_terms("v_proj", lin, not x_res, s, p, e, h, 1, cores, loopd, _head_rq(a["v"], h))
                     + common + _writeout_terms(ctx, s, e, acc_local, loopd))
            variants.append(Variant(node.name, "MHSA", "depth-first MHSA (kl_linear K/V/Q projections, "
                                    "kl_mhsa_chunk per chunk)", label, ctx.level, [dh, dx], bufs,
                                    terms, _mhsa_overheads(s, e, h, 2, 1, x_res, acc_local),
                                    node_macs(g, node),
                                    l2_extra=l2_extra,
                                    attrs={"x_resident": x_res, "acc_local": acc_local, "dft": True,
                                           "kernel": ch.k.name, "rules": {"x": chunk_rule}}))
    return LayerDesc(node.name, "MHSA", variants, node_macs(g, node))


# ----------------------------------------------------------------------- MHSA, FWSA depth-first


def _fwsa_rq_buf(name: str, rq, h: int, home: str, **reads) -> list[BufferSpec]:
    """The int32 mul/add vectors of an FWSA requantization ([H,1,n]): per head when they vary per
    head, else one small block (per-tensor constants live in the layer descriptor)."""
    if rq is None:
        return []
    import numpy as np
    total = 4 * (int(np.asarray(rq.mul).size) + int(np.asarray(rq.add).size))
    if total <= 8 * 3:
        return []
    if total % h == 0 and np.asarray(rq.mul).size % h == 0 and np.asarray(rq.mul).size >= h:
        return [BufferSpec(name, None, "weight", ("h",), total // h, total, home, activation=False,
                           **reads)]
    return [BufferSpec(name, None, "weight", (), total, total, home, activation=False, **reads)]


def mhsa_fwsa_dft(ctx: BuildContext, node: Node) -> LayerDesc:
    """Depth-first MHSA in the fused-weight (FWSA) form (docs/fwsa.md, "The C FWSA kernel").

    Heads outer (tile of h_t heads: W_f,h [E][E], b_f,h, V_hᵀ [P][S] resident), query-row chunks
    of x rows inner, the keys being the raw input X itself -- there is no K projection and no
    K_h: X is resident in the compute level for the whole node (it is also the residual's
    input). Per chunk and head, kl_mhsa_chunk (kernel_lib/descriptions.py):

    * without a row term: I* rows = RQ_i(X_rows · W_f,hᵀ + b_f,h) by kl_linear (istar_rows,
      x × E), then kl_mhsa_chunk in its standard mode with q = I*, k = X, D = E;
    * with a row term (blocks without softmax): kl_mhsa_chunk in its FWSA mode (w_f given),
      which computes I* and r = X_rows · w_row,h per group of 6 rows in its own scratch;

    scores against X, the exact table softmax on full rows, · V_h, and the output projection
    fused and accumulated head by head into the int32 [S][E] accumulator. Variants: the
    accumulator in the compute level or in L2 (X is always resident).
    """
    g = ctx.graph
    a = node.attrs
    fw = a["fwsa"]
    s, e, p, h = a["s"], a["e"], a["p"], a["h"]
    x, wf, bf, wv, bv, wo, bo = node.inputs[:7]
    w_row = node.inputs[7] if len(node.inputs) > 7 and node.inputs[7] else None
    y = node.outputs[0]
    cores = ctx.cores
    lin = kernel("linear", ctx.isa)
    sm_node = a["softmax"]
    kmode = bool(w_row)  # the kernel's FWSA mode: only it takes the row term
    ch = _mhsa_chunk(ctx, s, e, p, e, sm_node, kmode, kmode,
                     fw.rq_scores is not None and fw.rq_scores.n_levels > 256,
                     rq_i_cols=bool(rq_axes(_per_head(fw.rq_i, h)).get("rq_n")) if kmode else False,
                     zp=(False, bool(mhsa_zero_points(node)[2])))
    ebx, eby = ctx.eb(x), ctx.eb(y)
    v_t = a["v"].outputs[0]
    dh = LoopDim("h", h, candidate_sizes(h, lambda t: True))
    chunk_rule = lambda t: lin.ok({"S": t, "N": e, "K": e}) and ch.ok(t)  # noqa: E731
    dx = LoopDim("x", s, _chunk_candidates(("fwsa chunk", ch.k.isa, tuple(sorted(ch.dims.items()))), s,
                                           chunk_rule))
    loopd = {"h": dh, "x": dx}
    common = _proj_terms("v_proj", lin, False, s, p, e, h, 1, cores, loopd, _head_rq(a["v"], h))
    if not kmode:
        common += _proj_terms("istar", lin, True, s, e, e, h, 0, cores, loopd, _per_head(fw.rq_i, h))
    common += _chunk_terms(ch, h, s, cores, loopd)

    def home(role: str) -> str:
        return ctx.whome(param_blob_name(node.name, role))

    # reads (in place): W_f per chunk rows (kl_linear I*) or per group (the kernel's FWSA mode),
    # V once (kl_linear_t), W_o and the chunk kernel's vectors per group
    rg_ = _group_reads(ctx, dx)
    rf_ = rg_ if kmode else _q_reads(ctx, lin, dx)
    wbufs = [_weight(ctx, wf, "wf", ("h",), e * e, **rf_), _weight(ctx, wv, "wv", ("h",), p * e),
             _weight(ctx, wo, "wo", ("h",), e * p, **rg_)]
    if bf:
        wbufs.append(_weight(ctx, bf, "bf", ("h",), e * 4, **rf_))
    if bv:
        wbufs.append(_weight(ctx, bv, "bv", ("h",), p * 4))
    if w_row:
        wbufs.append(_weight(ctx, w_row, "w_row", ("h",), e, **rg_))
    if bo:
        wbufs.append(_weight(ctx, bo, "bo", (), e * 4, **rg_))
    wbufs += _fwsa_rq_buf("rq_i", fw.rq_i, h, home("rq_i"), **rf_)
    wbufs += _fwsa_rq_buf("rq_s", fw.rq_scores, h, home("rq_s"), **rg_)
    wbufs += _fwsa_rq_buf("rq_row", fw.rq_row, h, home("rq_row"), **rg_)
    for part, rd in (("v", {}), ("av", rg_), ("o", {"reads": s})):
        wbufs += _part_rq(ctx, node, part, **rd)
    wbufs += _lut_buf(ctx, ch, node.name, h, s)
    local = [BufferSpec("v_h", v_t, "local", ("h",), ch.kv["v_h"])]
    if not kmode:  # kl_linear's output, the chunk kernel's q input (8 bit)
        local.append(BufferSpec("istar_rows", None, "local", ("x",), e))
    proj = max(lin.scratch({"S": 1, "N": e, "K": e}, cores), lin.scratch({"S": s, "N": p, "K": e}, cores))
    scratch = _chunk_scratch(ch, dx.candidates, proj, cores, lin)
    acc_b = ch.acc_b
    single = not ctx.tiles_allowed()
    variants = []
    for acc_local in ((True,) if single else (True, False)):
        bufs = list(wbufs)
        bufs.append(BufferSpec("x", x, "in", (), s * e * ebx, s * e * ebx, ctx.act_home))  # keys: resident
        bufs += local
        l2_extra = []
        if acc_local:
            bufs.append(BufferSpec("acc", None, "local", (), s * e * acc_b))
            bufs.append(BufferSpec("y", y, "out", (), 0, s * e * eby, ctx.act_home, once=True))
        else:
            bufs.append(BufferSpec("acc", None, "inout", ("x",), e * acc_b, s * e * acc_b, ctx.act_home,
                                   passes=2))
            bufs.append(BufferSpec("y", y, "out", ("x",), 0, s * e * eby, ctx.act_home, once=True))
            l2_extra.append((f"{node.name}.acc", s * e * acc_b))
        bufs += scratch
        label = f"FWSA, x resident, acc in {ctx.level if acc_local else ctx.act_home}"
        kern = ("depth-first FWSA MHSA (kl_mhsa_chunk FWSA mode: I* and row term in the kernel)" if kmode
                else "depth-first FWSA MHSA (kl_linear I* = X.W_f^T, kl_mhsa_chunk against X)")
        terms = common + _writeout_terms(ctx, s, e, acc_local, loopd)
        variants.append(Variant(node.name, "MHSA", kern, label,
                                ctx.level, [dh, dx], bufs, terms,
                                _mhsa_overheads(s, e, h, 1, 0 if kmode else 1, True, acc_local),
                                node_macs(g, node), l2_extra=l2_extra,
                                attrs={"x_resident": True, "acc_local": acc_local, "dft": True,
                                       "fwsa": True, "kernel": ch.k.name, "rules": {"x": chunk_rule}}))
    return LayerDesc(node.name, "MHSA", variants, node_macs(g, node))


def mhsa(ctx: BuildContext, node: Node) -> LayerDesc:
    """An MHSA node: its depth-first description in the form it is in (FWSA or standard)."""
    if node.attrs.get("fwsa") is not None:
        return mhsa_fwsa_dft(ctx, node)
    return mhsa_dft(ctx, node)


BUILDERS = {
    "Linear": linear, "MatMul": matmul, "Add": rowwise, "RequantShift": rowwise, "Softmax": rowwise,
    "LayerNorm": rowwise, "GELU": rowwise, "Lut": rowwise, "MHSA": mhsa,
}


def not_deployable(graph: Graph) -> list[str]:
    """Why the graph cannot run on the kernel library as planned: one reason per node whose op
    has no kernel (it would be planned "untiled", golden model only) or that a kernel cannot
    compute as the IR states it. Empty: every layer has a kernel."""
    from planner.ir import LAYOUT_OPS

    supported = ", ".join(sorted(BUILDERS))
    out = []
    for node in graph.nodes:
        if node.op in LAYOUT_OPS:
            continue
        if node.op not in BUILDERS:
            out.append(f"node {node.name}: op {node.op} has no kernel in kernel_lib (golden model only; "
                       f"not yet tiled); ops with kernels: {supported}")
        elif node.op == "Linear" and node.attrs.get("alpha", 1) != 1:
            out.append(f"node {node.name}: Linear with alpha = {node.attrs['alpha']} and no "
                       "requantization after it: kl_linear has no alpha scaling")
    return out


def describe(ctx: BuildContext, node: Node) -> LayerDesc:
    b = BUILDERS.get(node.op)
    if b is None:
        return untiled(ctx, node)
    try:
        return b(ctx, node)
    except KeyError as exc:
        raise PlannerError(f"layer {node.name} ({node.op}): cannot describe it for tiling: "
                           f"missing {exc}") from None
