"""Linear: Y[S][N] = RQ(X[S][K] . W[N][K]^T + bias) by kl_linear_* (kernel_lib/src/kl_linear.c).

Tiles of S rows, N output features and K reduction; with K split the partial sums accumulate in
the int32 `psum` tile (kl_linear_*_i32, the bias with the first K chunk) and kl_linear_finalize
requantizes them after the last chunk. A full-matrix bias [S][N] (bias_kind "full") is the
accumulator itself: its tile is loaded and every K chunk is added into it.
"""

from __future__ import annotations

from codegen.model import EmitContext, describe_buffer, elem_bytes
from codegen.ops import Emitter, LayerCode, kernel_shape_2d
from codegen.render import render
from codegen import rq as rqm
from planner.errors import PlannerError
from planner.plan import LayerPlan


def emit(ctx: EmitContext, lp: LayerPlan, index: int) -> LayerCode:
    e = Emitter(ctx, lp, index)
    g, node = ctx.graph, e.node
    x, w = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    y = node.outputs[0]
    S, N, K = lp.dims["S"], lp.dims["N"], lp.dims["K"]
    rq = node.attrs.get("rq")
    full_bias = bias is not None and lp.bias_kind == "full"
    e.add(describe_buffer(ctx, lp, e.need("x"), (S, K), ("S", "K"), elem_bytes(g, x)))
    e.add(describe_buffer(ctx, lp, e.need("w"), (N, K), ("N", "K"), 1))
    bias_into_y = full_bias and e.need("bias").into == "y"
    if full_bias and not bias_into_y and e.need("bias").access != "dma":
        raise PlannerError(f"code generator: layer {lp.name}: a full [S][N] bias is the accumulator, "
                           "so it must be a tile of its own (on a target without L1 it would be "
                           "accumulated into the constant itself): not supported")
    if bias is not None and not bias_into_y:
        shape, dims = ((S, N), ("S", "N")) if full_bias else ((N,), ("N",))
        e.add(describe_buffer(ctx, lp, e.need("bias"), shape, dims, 4))
    if e.buf("rq") is not None:
        e.add(describe_buffer(ctx, lp, e.need("rq"), (e.need("rq").bytes // 4,), (None,), 4))
    yk = e.add(describe_buffer(ctx, lp, e.need("y"), (S, N), ("S", "N"), elem_bytes(g, y)))
    if bias_into_y:  # int32 output: the full bias tile is loaded straight into the y tile
        if rq is not None:
            raise PlannerError(f"code generator: layer {lp.name}: a bias loaded into y needs an int32 output")
        yd = e.code.bufs[yk]
        bd = describe_buffer(ctx, lp, e.need("bias"), (S, N), ("S", "N"), 4, check=False)
        bd.near_off, bd.copy_bytes, bd.copies, bd.into = yd.near_off, yd.copy_bytes, 1, yk + 1
        e.add(bd)
    for name in ("psum", "scratch"):
        if e.buf(name) is not None:
            e.add(describe_buffer(ctx, lp, e.need(name), (), (), 1))
    k_split = e.n_tiles("K") > 1
    xs = "u8" if g.tensors[x].dtype == "uint8" else "s8"
    rq_lines: list[str] = []
    if rq is not None:
        place = e.rq_places("rq", [("rq", rq)])["rq"]
        rq_lines = rqm.c_rq("rq", place, g.tensors[y].shape, (S, N), (e.off("S"), e.off("N")))
    L = {
        "ident": e.ident, "lp": lp, "xs": xs, "rq_lines": rq_lines, "has_rq": rq is not None,
        "k_split": k_split, "full_bias": full_bias and not bias_into_y, "bias_into_y": bias_into_y,
        "S": e.ext("S"), "N": e.ext("N"), "K": e.ext("K"),
        "x": e.ptr("x", "const void"), "x_rs": e.st("x", 0),
        "w": e.ptr("w", "const int8_t"), "w_rs": e.st("w", 0),
        "bias": e.ptr("bias", "int32_t") if bias is not None and not bias_into_y else "NULL",
        "bias_rs": e.st("bias", 0) if full_bias and not bias_into_y else "0",
        "y": e.ptr("y", "void"), "y_rs": e.st("y", 0),
        "psum": e.ptr("psum", "int32_t") if e.buf("psum") is not None else "NULL",
        "scratch": e.ptr("scratch", "void") if e.buf("scratch") is not None else "NULL",
        "k_first": f"t->idx[{e.li['K']}] == 0" if "K" in e.li else "1",
        "k_last": f"t->idx[{e.li['K']}] == t->n[{e.li['K']}] - 1" if "K" in e.li else "1",
    }
    L["decls"] = e.declarations()
    e.code.body = render("linear.c.mako", L=L)
    return e.code
