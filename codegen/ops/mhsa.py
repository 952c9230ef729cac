"""Depth-first multi-head self-attention (one fused node), standard or FWSA form.

The plan tiles it as heads (outer, tiles of HT heads) x query-row chunks (inner, XT rows), as
planner/tiling/ops.py describes it. Per head tile: its weight slices are loaded (the next tile's
in flight when double-buffered); pass 1 projects K_h [S][P] and V_h^T [P][S] of every head of
the tile over all S tokens (kl_linear / kl_linear_t; FWSA: V_h^T only, the keys are X itself);
pass 2, per chunk and head, projects the query rows (Q_h, or FWSA's I* = RQ_i(X.W_f^T + b_f))
and calls kl_mhsa_chunk: scores against all S keys, the exact softmax on full rows, . V_h, and
the output projection accumulated head by head into the int32 accumulator (in the compute level,
or in L2 streamed by chunks). Last, Y = RQ_o(acc + b_o) in place in the accumulator, rows
compacted and written out. The H x S x S map never exists; neither do all heads' outputs.
"""

from __future__ import annotations

import numpy as np

from codegen import rq as rqm
from codegen.model import EmitContext, describe_buffer, elem_bytes
from codegen.ops import Emitter, LayerCode, node_rqs
from codegen.render import render
from kernel_lib import descriptions as kd
from planner.errors import PlannerError
from planner.golden.mhsa import fwsa_head_rq, mhsa_zero_points
from planner.plan import LayerPlan


def emit(ctx: EmitContext, lp: LayerPlan, index: int) -> LayerCode:
    e = Emitter(ctx, lp, index)
    g, node = ctx.graph, e.node
    a = node.attrs
    S, E, P, H = a["s"], a["e"], a["p"], a["h"]
    fw = a.get("fwsa")
    x = node.inputs[0]
    y = node.outputs[0]
    ex = elem_bytes(g, x)
    if fw is not None:
        names = ["x", "wf", "bf", "wv", "bv", "wo", "bo", "w_row"]
    else:
        names = ["x", "wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo"]
    tens = {n: (node.inputs[i] if i < len(node.inputs) and node.inputs[i] else None)
            for i, n in enumerate(names)}
    shapes = {"wq": ((H, P, E), ("h", None, None), 1), "wk": ((H, P, E), ("h", None, None), 1),
              "wv": ((H, P, E), ("h", None, None), 1), "wo": ((E, H, P), (None, "h", None), 1),
              "bq": ((H, P), ("h", None), 4), "bk": ((H, P), ("h", None), 4),
              "bv": ((H, P), ("h", None), 4), "bo": ((E,), (None,), 4),
              "wf": ((H, E, E), ("h", None, None), 1), "bf": ((H, E), ("h", None), 4),
              "w_row": ((H, E), ("h", None), 1)}
    variant_x_res = e.need("x").bytes == S * E * ex
    acc_bp = e.need("acc")
    acc_local = acc_bp.kind == "local"
    # --- descriptors, in a fixed order: per-head-tile weights, layer constants, x, locals
    head_bufs, once_bufs = [], []
    for n in names[1:]:
        if tens[n] is None:
            continue
        shp, dims, el = shapes[n]
        k = e.add(describe_buffer(ctx, lp, e.need(n), shp, dims, el))
        (head_bufs if "h" in dims else once_bufs).append(k)
    rq_parts = (("rq_i", fw.rq_i), ("rq_s", fw.rq_scores), ("rq_row", fw.rq_row)) if fw is not None else ()
    fw_layout: dict[str, tuple[bool, int, int]] = {}
    for nm, r in rq_parts:
        bp = e.buf(nm)
        if bp is None or r is None:
            continue
        if _per_head_ok(r, H):
            data, m, ad = rqm.head_blob(r, H)
            k = e.add(describe_buffer(ctx, lp, bp, (H, m + ad), ("h", None), 4))
            head_bufs.append(k)
            fw_layout[nm] = (True, m, ad)
        else:
            data, offs = rqm.blob([r])
            k = e.add(describe_buffer(ctx, lp, bp, (data.size,), (None,), 4))
            once_bufs.append(k)
            fw_layout[nm] = (False, offs[0][0], offs[0][1])
        e.code.blobs[f"{lp.name}/{nm}"] = data
    parts = ("v", "av", "o") if fw is not None else ("q", "k", "v", "scores", "av", "o")
    part_places: dict[str, rqm.RqPlace] = {}
    for part in parts:
        pn = a[part]
        rqs = node_rqs(pn)
        if not rqs:
            raise PlannerError(f"code generator: layer {lp.name}: MHSA part {pn.name} has no "
                               "requantization (8-bit kernels need one)")
        bname = f"rq_{part}"
        if e.buf(bname) is not None:
            k = e.add(describe_buffer(ctx, lp, e.need(bname), (e.need(bname).bytes // 4,), (None,), 4))
            once_bufs.append(k)
            base = f"((const int32_t *)nr_buf_view(&B[{k}], off, 0))"
            part_places[part] = e.rq_places(bname, rqs, ptr_expr=base)["rq"]
        else:
            part_places[part] = e.rq_places(bname, rqs)["rq"]
    sm = a["softmax"]
    kind = 0 if sm is None else kd.SOFTMAX_KINDS[sm.attrs.get("kind", "isoftmax")]
    lut = e.buf("softmax_lut")
    if lut is not None:
        k = e.add(describe_buffer(ctx, lp, lut, (256,), (None,), 4))
        once_bufs.append(k)
    xk = e.add(describe_buffer(ctx, lp, e.need("x"), (S, E), (None, None) if variant_x_res else ("x", None), ex))
    if acc_local:
        acck = e.add(describe_buffer(ctx, lp, acc_bp, (), (), 4))
    else:
        acck = e.add(describe_buffer(ctx, lp, acc_bp, (S, E), ("x", None), 4, home="L2",
                                     home_off=ctx.l2_place(f"{lp.name}.acc"), home_strides=(4 * E, 4)))
    yb = describe_buffer(ctx, lp, e.need("y"), (S, E), (None, None) if acc_local else ("x", None),
                         elem_bytes(g, y), check=False)
    yb.near_off = e.code.bufs[acck].near_off  # y is requantized in place in the accumulator
    yk = e.add(yb)
    locals_ = {}
    for n in ("k_h", "v_h", "q_rows", "istar_rows", "scratch"):
        if e.buf(n) is not None:
            locals_[n] = e.add(describe_buffer(ctx, lp, e.need(n), (), (), 1))
    # --- requantizations per head (C statements with the head index `h` and chunk row `r0`)
    v_out = g.tensors[a["v"].outputs[0]].shape
    rq_lines: dict[str, list[str]] = {}
    hp = "(h * %d)" % P
    if fw is None:
        rq_lines["q"] = rqm.c_rq("rq_q", part_places["q"], g.tensors[a["q"].outputs[0]].shape, (S, H * P), ("r0", hp))
        rq_lines["k"] = rqm.c_rq("rq_k", part_places["k"], g.tensors[a["k"].outputs[0]].shape, (S, H * P), ("t0", hp))
        sc_out = g.tensors[a["scores"].outputs[0]].shape
        rq_lines["s"] = rqm.c_rq("rq_s", part_places["scores"], sc_out, (H, S, S), ("h", "r0", "0"),
                                 "16bit" if part_places["scores"].rq.n_levels > 256 else "8bit")
    rq_lines["v"] = rqm.c_rq("rq_v", part_places["v"], v_out, (S, H * P), ("t0", hp))
    av_out = g.tensors[a["av"].outputs[0]].shape
    rq_lines["av"] = rqm.c_rq("rq_av", part_places["av"], av_out, (H, S, P), ("h", "r0", "0"))
    rq_lines["o"] = rqm.c_rq("rq_o", part_places["o"], (S, E), (S, E), ("r0", "0"))
    if fw is not None:
        for nm, var, r, out in (("rq_i", "rq_i", fw.rq_i, (H, S, E)), ("rq_s", "rq_s", fw.rq_scores, (H, S, S)),
                                ("rq_row", "rq_row", fw.rq_row, (H, S, 1))):
            if r is None:
                continue
            lines = _fwsa_rq(e, nm, var, r, out, fw_layout.get(nm), H)
            rq_lines[var.replace("rq_", "")] = lines
    tiles = lp.tile[lp.compute_level]
    HT, XT = int(tiles["h"]), int(tiles["x"])
    zq, zk, zv = mhsa_zero_points(node)
    kv = kd.mhsa_kv_bytes({"S": S, "P": P, "fwsa": int(fw is not None), "zp_k": int(bool(zq or zk))})
    idx = {n: i for i, b in enumerate(e.code.bufs) for n in [b.name]}
    L = {
        "ident": e.ident, "lp": lp, "first": None, "id": index, "S": S, "E": E, "P": P, "H": H,
        "HT": HT, "XT": XT, "NHT": -(-H // HT), "NX": -(-S // XT),
        "fwsa": fw is not None, "row_term": fw is not None and tens.get("w_row") is not None,
        "x_res": variant_x_res, "acc_local": acc_local, "xs": "u8" if g.tensors[x].dtype == "uint8" else "s8",
        "x_signed": int(g.tensors[x].dtype != "uint8"),
        "head_bufs": head_bufs, "once_bufs": once_bufs, "idx": idx,
        "copies": {i: b.copies for i, b in enumerate(e.code.bufs)},
        "xk": xk, "acck": acck, "yk": yk, "locals": locals_,
        "kh_bytes": kv["k_h"], "vh_bytes": kv["v_h"],
        # zero points kept by Q, K, V (QDQ): K_h's correction follows K_h in its buffer
        "zq": zq, "zk": zk, "zv": zv, "zp_k": bool(zq or zk), "kcorr_off": kd.mhsa_k_corr_offset(S, P),
        "rq": rq_lines, "sm_kind": kind,
        "sm": {k: int(sm.attrs.get(k, 0)) for k in ("coeff_a", "coeff_b", "coeff_c", "log2", "group_width",
                                                   "n_levels", "rounded")} if sm is not None else None,
        "q_signed": rqm.signed(part_places["q"].rq) if fw is None else None,
        "k_signed": rqm.signed(part_places["k"].rq) if fw is None else None,
        "i_signed": rqm.signed(fw.rq_i) if fw is not None else None,
        "v_signed": rqm.signed(part_places["v"].rq),
        "has": {n: tens.get(n) is not None for n in names},
        "lut": lut is not None,
        # W_o [E][H][P]: a head tile's columns are rows of hn * P in a dense copy, but rows of
        # H * P where it is read in place (no L1, or a weight read from flash)
        "wo_rs": f"{H * P}" if e.code.bufs[idx["wo"]].kind == "direct" else f"hn * {P}",
        "comment": f"{lp.name}: depth-first MHSA{' (FWSA)' if fw is not None else ''}, {lp.variant}; "
                   f"S={S} E={E} P={P} H={H}; tiles h={HT}/{H} x={XT}/{S}; est. {lp.est_cycles:,} cycles",
    }
    if lut is not None:
        L["lut_home"] = ctx.l2_weight_offset(f"{lp.name}/softmax_lut")
        e.code.init.append(render("mhsa_lut_init.c.mako", L=L))
        e.code.blobs[f"{lp.name}/softmax_lut"] = np.zeros(256, np.int64)  # filled by net_init
    e.code.function = render("mhsa.c.mako", L=L)
    return e.code


def _blob_words(r) -> int:
    mul, add = rqm.rq_values(r)
    return mul.size + add.size


def _per_head_ok(r, h: int) -> bool:
    """The tiler's rule for a per-head FWSA requantization buffer (planner/tiling/ops.py)."""
    mul = np.asarray(r.mul)
    total = 4 * _blob_words(r)
    return total % h == 0 and mul.size % h == 0 and mul.size >= h


def _fwsa_rq(e: Emitter, nm: str, var: str, r, out: tuple[int, ...], layout, H: int) -> list[str]:
    """kl_rq_t of one head (C index `h`, tile head `j`) of an FWSA requantization."""
    wide = "ignored" if r.n_levels > 65536 else ("16bit" if r.n_levels > 256 else "8bit")
    if layout is None:  # small: code constants
        place = e.rq_places(nm, [(nm, r)])[nm]
        return rqm.c_rq(var, place, out, out, ("h", "r0", "0"), wide)
    else:
        per_head, m, ad = layout
        k = e.index_of(nm)
        if per_head:
            hr = fwsa_head_rq(r, 0)
            unit = m + ad
            base = f"((const int32_t *)nr_buf_view(&B[{k}], off, wslot[{k}]) + j * {unit})"
            place = rqm.RqPlace(hr, base, base, 0, m)
            return rqm.c_rq(var, place, (1,) + out[1:], out[1:], ("r0", "0"), wide)
    base = f"((const int32_t *)nr_buf_view(&B[{k}], off, 0))"
    return rqm.c_rq(var, rqm.RqPlace(r, base, base, m, ad), out, out, ("h", "r0", "0"), wide)
