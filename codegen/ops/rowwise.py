"""Row-wise layers (the row is the last axis, never split): LayerNorm (kl_ilayernorm), Softmax
(kl_isoftmax / kl_itamax / kl_ita_partial_max), GELU (kl_igelu_rq / kl_igelu_i32), RequantShift
(kl_requant) and the requantized Add (kl_add_rq). Tiles of R rows."""

from __future__ import annotations

import numpy as np

from codegen import rq as rqm
from codegen.model import EmitContext, ctype_of, describe_buffer, elem_bytes
from codegen.ops import Emitter, LayerCode, kernel_shape_2d, node_rqs
from codegen.render import render
from planner.errors import PlannerError
from planner.plan import LayerPlan


def emit(ctx: EmitContext, lp: LayerPlan, index: int) -> LayerCode:
    e = Emitter(ctx, lp, index)
    g, node = ctx.graph, e.node
    y = node.outputs[0]
    R, C = kernel_shape_2d(g.tensors[y].shape)
    ins: dict[str, str] = {}
    roles = {"LayerNorm": ("x", "weight", "bias"), "Add": ("a", "b"), "Lut": ("x", "table")}.get(node.op, ("x",))
    for role, t in zip(roles, node.inputs):
        if not t:
            continue
        tt = g.tensors[t]
        bp = e.need(role)
        if tt.is_const:
            e.add(describe_buffer(ctx, lp, bp, (tt.size,), (None,), elem_bytes(g, t)))
        elif tt.size == R * C:
            e.add(describe_buffer(ctx, lp, bp, (R, C), ("R", None), elem_bytes(g, t)))
        elif tt.size == C:   # broadcast along the rows
            e.add(describe_buffer(ctx, lp, bp, (1, C), (None, None), elem_bytes(g, t)))
        else:
            raise PlannerError(f"code generator: layer {lp.name}: input '{t}' of shape {tt.shape} "
                               f"broadcasts to [{R}][{C}] other than along the rows: not supported")
        ins[role] = t
    if e.buf("rq") is not None:
        e.add(describe_buffer(ctx, lp, e.need("rq"), (e.need("rq").bytes // 4,), (None,), 4))
    e.add(describe_buffer(ctx, lp, e.need("y"), (R, C), ("R", None), elem_bytes(g, y)))
    if e.buf("scratch") is not None:
        e.add(describe_buffer(ctx, lp, e.need("scratch"), (), (), 1))
    L = {"ident": e.ident, "op": node.op, "R": e.ext("R"), "C": C, "rq_lines": [],
         "y": e.ptr("y", "void"), "y_rs": e.st("y", 0)}
    for role, t in ins.items():
        L[role] = e.ptr(role, "const " + ctype_of(g.tensors[t].dtype))
        L[role + "_rs"] = e.st(role, 0) if not g.tensors[t].is_const else "0"
        L[role + "_signed"] = 0 if g.tensors[t].dtype == "uint8" else 1
        if not g.tensors[t].is_const and g.tensors[t].size == C:
            L[role + "_rs"] = "0"
    L["scratch"] = e.ptr("scratch", "int32_t") if e.buf("scratch") is not None else "NULL"
    out_shape = g.tensors[y].shape
    places = e.rq_places("rq", node_rqs(node))
    a = node.attrs
    if node.op == "Add":
        for k, role in (("rq_a", "a"), ("rq_b", "b")):
            if k not in places:  # an input without its own requantization: identity, in range
                dt = g.tensors[ins[role]].dtype
                ident = rqm.identity(256, dt != "uint8")
                nm = f"{e.ident}_{k}_id"
                e.code.consts.append(f"static const int32_t {nm}_mul[1] = {{1}};")
                e.code.consts.append(f"static const int32_t {nm}_add[1] = {{0}};")
                places[k] = rqm.RqPlace(ident, f"{nm}_mul", f"{nm}_add")
        if "rq" not in places:
            raise PlannerError(f"code generator: layer {lp.name}: an Add with an int32 output "
                               "(no output requantization) has no kernel")
    ydt = g.tensors[y].dtype
    for k, place in sorted(places.items()):
        L["rq_lines"] += rqm.c_rq(k, place, out_shape, (R, C), (e.off("R"), "0"),
                                  "int" if k in ("rq_a", "rq_b") else rqm.out_levels(ydt))
    dt = {"uint8": "KL_DT_U8", "int8": "KL_DT_S8", "int16": "KL_DT_S16"}
    for role, t in ins.items():
        if not g.tensors[t].is_const:
            if g.tensors[t].dtype not in dt:
                raise PlannerError(f"code generator: layer {lp.name}: input '{t}' is "
                                   f"{g.tensors[t].dtype}, the row-wise kernels take 8 or 16 bits")
            L[role + "_type"] = dt[g.tensors[t].dtype]
    L["y_type"] = dt.get(ydt, "KL_DT_S8")
    L["wide"] = any(g.tensors[t].dtype == "int16" for t in list(ins.values()) + [y])
    L["rqs"] = sorted(places)
    if node.op == "LayerNorm":
        d = int(a["d"])
        if d & (d - 1):
            raise PlannerError(f"code generator: layer {lp.name}: LayerNorm divisor {d} is not a power of two")
        L["d_log2"] = d.bit_length() - 1
        L["n_levels"] = int(a["n_levels"])
        L["qdq"] = a.get("mode") == "qdq"
        if L["qdq"]:
            L["in_shift"], L["eps"] = int(a["in_shift"]), int(a["eps"])
    elif node.op == "Lut":
        x_dt = g.tensors[ins["x"]].dtype
        if int(a["in_lo"]) != (-128 if x_dt == "int8" else 0) or g.tensors[ins["table"]].size != 256:
            raise PlannerError(f"code generator: layer {lp.name}: kl_lut8 takes a 256-entry table "
                               "indexed from the input's lowest value")
    elif node.op == "Softmax":
        L["kind"] = a["kind"]
        L["sm"] = {k: int(a[k]) for k in ("coeff_a", "coeff_b", "coeff_c", "log2", "n_levels",
                                           "group_width") if k in a}
        L["sm"]["rounded"] = int(bool(a.get("rounded", False)))
        if L["wide"] and (a["kind"] != "isoftmax" or not a.get("rounded")):
            raise PlannerError(f"code generator: layer {lp.name}: int16 softmax scores take the "
                               "rounded iSoftmax (kl_isoftmax_s16)")
    elif node.op == "GELU":
        L["b"], L["one"] = int(a["b"]), int(a["one"])
        L["gelu_rq"] = a.get("rq") is not None
    elif node.op == "RequantShift":
        pass
    elif node.op != "Add":
        raise PlannerError(f"code generator: no row-wise kernel for {node.op}")
    L["decls"] = e.declarations()
    e.code.body = render("rowwise.c.mako", L=L)
    return e.code
