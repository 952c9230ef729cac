"""Activation x activation MatMul by kl_bmatmul: Y[B][M][N] = RQ(A[B][M][K] . B[B][K][N]), the
B operand stored [N][K] (b_trans) when the plan's kernel is matmul_nt (the key side of attention
scores, read through its transposing view). Tiles of batches B and rows M."""

from __future__ import annotations

from math import prod

from codegen import rq as rqm
from codegen.model import EmitContext, describe_buffer, elem_bytes
from codegen.ops import Emitter, LayerCode
from codegen.render import render
from codegen.views import View
from planner.errors import PlannerError
from planner.plan import LayerPlan


def _swap_last(v: View) -> View:
    return View(v.root, v.shape[:-2] + (v.shape[-1], v.shape[-2]),
                v.strides[:-2] + (v.strides[-1], v.strides[-2]), v.base)


def emit(ctx: EmitContext, lp: LayerPlan, index: int) -> LayerCode:
    e = Emitter(ctx, lp, index)
    g, node = ctx.graph, e.node
    a, b = node.inputs[0], node.inputs[1]
    y = node.outputs[0]
    za, zb = int(node.attrs.get("zp_a", 0)), int(node.attrs.get("zp_b", 0))
    wide = "bmatmul_i32" in lp.kernel
    if wide and (za or zb):
        raise PlannerError(f"code generator: layer {lp.name}: int32 MatMul operands with zero "
                           "points have no kernel")
    for t in (a, b):
        if g.tensors[t].dtype not in (("int32",) if wide else ("int8", "uint8")):
            raise PlannerError(f"code generator: layer {lp.name}: operand '{t}' is "
                               f"{g.tensors[t].dtype}; {lp.kernel} takes "
                               f"{'int32' if wide else '8-bit'} operands")
    ash, bsh, ysh = g.tensors[a].shape, g.tensors[b].shape, g.tensors[y].shape
    M, K, N = ash[-2], ash[-1], bsh[-1]
    B = prod(ysh[:-2]) if len(ysh) > 2 else 1
    a_batched = len(ash) > 2 and prod(ash[:-2]) > 1
    b_batched = len(bsh) > 2 and prod(bsh[:-2]) > 1
    nt = "matmul_nt" in lp.kernel
    ea, eb, ey = elem_bytes(g, a), elem_bytes(g, b), elem_bytes(g, y)
    if a_batched:
        e.add(describe_buffer(ctx, lp, e.need("a"), (B, M, K), ("B", "M", None), ea))
    else:
        e.add(describe_buffer(ctx, lp, e.need("a"), (M, K), ("M", None), ea))
    bp = e.need("b")
    base, view = ctx.act_home(b)
    view = view.reshaped(((B,) if b_batched else ()) + (K, N))
    if bp.access != "dma":
        # read where it lives: the kernel needs the operand's inner axis contiguous; either
        # storage of B is one kl_bmatmul call (b_trans), so take the one the layout gives
        nn_ok = view.strides[-1] in (0, 1)
        nt_ok = view.strides[-2] in (0, 1)
        if nt and not nt_ok and nn_ok:
            nt = False
        elif not nt and not nn_ok and nt_ok:
            nt = True
    if nt:
        view = _swap_last(view)
    bshape = (N, K) if nt else (K, N)
    e.add(describe_buffer(ctx, lp, bp, ((B,) if b_batched else ()) + bshape,
                          (("B",) if b_batched else ()) + (None, None), eb,
                          home="L2", home_off=base + view.base * eb,
                          home_strides=tuple(s * eb for s in view.strides)))
    if e.buf("rq") is not None:
        e.add(describe_buffer(ctx, lp, e.need("rq"), (e.need("rq").bytes // 4,), (None,), 4))
    e.add(describe_buffer(ctx, lp, e.need("y"), (B, M, N), ("B", "M", None), ey))
    if e.buf("scratch") is not None:
        e.add(describe_buffer(ctx, lp, e.need("scratch"), (), (), 1))
    rq = node.attrs.get("rq")
    if rq is None:
        raise PlannerError(f"code generator: layer {lp.name}: MatMul without requantization "
                           "(int32 output) has no kernel")
    place = e.rq_places("rq", [("rq", rq)])["rq"]
    L = {
        "ident": e.ident, "B": e.ext("B"), "M": e.ext("M"), "N": N, "K": K,
        "rq_lines": rqm.c_rq("rq", place, ysh, (B, M, N), (e.off("B"), e.off("M"), "0"),
                             rqm.out_levels(g.tensors[y].dtype)),
        "a": e.ptr("a", "const void"), "a_signed": int(g.tensors[a].dtype != "uint8"),
        "a_bs": e.st("a", 0) if a_batched else "0", "a_rs": e.st("a", 1 if a_batched else 0),
        "b": e.ptr("b", "const void"), "b_signed": int(g.tensors[b].dtype != "uint8"), "b_trans": int(nt),
        "b_bs": e.st("b", 0) if b_batched else "0", "b_rs": e.st("b", 1 if b_batched else 0),
        "y": e.ptr("y", "void"), "y_bs": e.st("y", 0), "y_rs": e.st("y", 1),
        "scratch": e.ptr("scratch", "void") if e.buf("scratch") is not None else "NULL",
        "wide": wide, "za": za, "zb": zb,
    }
    L["decls"] = e.declarations()
    e.code.body = render("matmul.c.mako", L=L)
    return e.code
