"""LLVM CPU schedule for layers with few output channels (FSRCNN's 1, pix2pix's 3, FCN's 21):
vectors run along the output width inside one phase instead of along output channels.

The padded input is stored ``[n, spatial..., ci, w]`` so that ``lanes`` consecutive outputs of a
phase read ``lanes`` consecutive inputs; the register tile is ``co_t`` output channels x ``tile_v``
vectors of one phase's outputs: per reduction step ``tile_v`` vector loads and ``co_t`` weight
broadcasts feed ``co_t * tile_v`` FMAs. The phase grid's width rounds up to whole tiles; when that
adds outputs, the epilogue runs as its own pass and drops them.
"""
from __future__ import annotations

from typing import Dict, List

from convt.compiler import compute as C
from convt.compiler import tvm_api as T

from .knobs import Knob


def applies(spec, info) -> bool:
    """When output-channel vectors would be short or ragged and the width has room for vectors."""
    lanes = info.f32_lanes
    q_w = C.phase_extents(spec)[-1]
    return lanes > 1 and spec.out_channels % lanes != 0 and q_w >= lanes


def _co_tile(cout: int) -> int:
    return next(t for t in (4, 3, 2, 1) if cout % t == 0)


def width_knobs(spec, info) -> List[Knob]:
    lanes = info.f32_lanes
    q_w = C.phase_extents(spec)[-1]
    co_t = _co_tile(spec.out_channels)
    budget = max(1, (info.vector_regs - co_t - 1) // co_t)
    vecs = -(-q_w // lanes)
    tile_v = max(1, min(budget, vecs, 8))
    while tile_v > 1 and vecs % tile_v and (vecs % tile_v) * 2 < tile_v:
        tile_v -= 1   # prefer little ragged waste
    rows = C.phase_extents(spec)[0] if spec.rank > 1 else -(-vecs // tile_v)
    n = spec.batch or 1
    chunk = max(1, min(rows, (n * rows) // max(2 * info.cores, 1)))
    return [
        Knob("lanes", lanes, tuple(v for v in (4, 8, 16) if v <= lanes), "outputs per vector"),
        Knob("co_t", co_t, tuple(t for t in (1, 2, 3, 4, 5, 6, 7, 8) if spec.out_channels % t == 0),
             "output channels in the register tile"),
        Knob("tile_v", tile_v, tuple(range(1, 13)), "vectors along the width in the tile"),
        Knob("chunk", chunk, tuple(range(1, max(rows, 64) + 1)),
             "leading-axis rows (1D: width tiles) of one parallel task"),
        Knob("threads", 0, tuple(range(0, 65)), "parallel loop (0: all cores; 1: serial)"),
    ]


def width_compute_args(spec, values):
    return {"q_align": values["lanes"] * values["tile_v"]}


def _padded(spec, values) -> bool:
    q_w = C.phase_extents(spec)[-1]
    return q_w % (values["lanes"] * values["tile_v"]) != 0


def schedule_width(sch, spec, values: Dict[str, int]):
    R = spec.rank
    lanes, co_t, tile_v, chunk = values["lanes"], values["co_t"], values["tile_v"], values["chunk"]
    serial = values.get("threads", 0) == 1

    pad = T.get_block(sch, C.BLOCK_PAD)
    sch.transform_layout(pad, ("write", 0),
                         lambda n, *rest: (n, *rest[:R - 1], rest[R], rest[R - 1]))
    ploops = sch.get_loops(pad)
    if spec.layout == "channels_first":   # [n, rows..., ci, w]: both sides in order
        sch.reorder(ploops[-1], ploops[-2])
    # channels_last: along the input's channels (contiguous reads, the border test hoisted out
    # of that loop; consecutive positions write into the same C_in cache lines): pix2pix
    # outermost NHWC 4.2 -> 3.0 ms, FSRCNN 12.3 -> 11.9 ms against walking the writes in order
    ploops = sch.get_loops(pad)
    if not serial:
        sch.parallel(sch.fuse(ploops[0], ploops[1]))

    conv = T.get_block(sch, C.BLOCK_CONV)
    loops = sch.get_loops(conv)
    n, qs, rs = loops[0], list(loops[1:2 * R:2]), list(loops[2:2 * R + 1:2])
    co, rci, taps = loops[2 * R + 1], loops[2 * R + 2], loops[2 * R + 3:]
    qs[-1], qv, ql = sch.split(qs[-1], [None, tile_v, lanes])
    outer, qs[0] = sch.split(qs[0], [None, chunk])
    coo, cot = sch.split(co, [None, co_t])
    if R > 1:   # phases inside a chunk's row: they read the same input rows while cached
        sch.reorder(n, outer, coo, qs[0], *rs, *qs[1:], *taps, rci, cot, qv, ql)
    else:       # (pix2pix outermost 4.7 -> 4.3 ms, FSRCNN 11.4 -> 10.5 ms)
        sch.reorder(n, outer, *rs, coo, *qs, *taps, rci, cot, qv, ql)

    acc = sch.cache_write(conv, 0, "local")
    # the accumulators' own layout puts the width innermost, so that each is one register
    sch.transform_layout(conv, ("write", 0), lambda b, *rest: (
        b, *rest[:2 * R - 2], rest[2 * R], rest[2 * R - 1], rest[2 * R - 2]))
    sch.reverse_compute_at(acc, qs[-1])
    epi = T.get_block(sch, C.BLOCK_EPILOGUE)
    if _padded(spec, values):
        eloops = sch.get_loops(epi)
        if not serial:
            sch.parallel(sch.fuse(eloops[0], eloops[1]))
    else:
        sch.reverse_compute_inline(epi)
    par = sch.fuse(n, outer)
    if not serial:
        sch.parallel(par)
    sch.unroll(cot)
    sch.unroll(qv)
    sch.vectorize(ql)
    sch.decompose_reduction(conv, taps[0] if taps else rci)
    return sch
