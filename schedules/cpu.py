"""LLVM CPU schedule shared by the x86 and ARM rule lists.

Register tile: ``tile_w`` x ``stride`` consecutive outputs along the last spatial axis (every phase
of ``tile_w`` input steps; the phases share one tap count, so the tile is dense in the output) x
``co_vecs`` vectors of ``lanes`` output channels, accumulated in a local (register) buffer over the
reduction ``ci_in_group x taps`` and written once through the fused bias/activation epilogue.
Parallel over batch x leading spatial axes x width tiles.
"""
from __future__ import annotations

from typing import Dict, List

from convt.compiler import compute as C
from convt.compiler import tvm_api as T

from .knobs import Knob

_POW2 = (1, 2, 4, 8, 16, 32, 64)


def _lanes(cout: int, max_lanes: int) -> int:
    lanes = max_lanes
    while lanes > 1 and cout % lanes:
        lanes //= 2
    return lanes if lanes >= 4 or lanes == cout else 1


def cpu_knobs(spec, info) -> List[Knob]:
    lanes = _lanes(spec.out_channels, info.f32_lanes)
    s_w = spec.strides[-1]
    co_vecs = 1
    for cand in (4, 3, 2):
        fits = s_w * cand <= info.vector_regs - cand - 2
        if fits and spec.out_channels % (lanes * cand) == 0:
            co_vecs = cand
            break
    budget = info.vector_regs - co_vecs - 2   # accumulators; weights + one broadcast stay live
    phase_len = -(-spec.out_spatial[-1] // s_w)
    tile_w = max(1, min(budget // (co_vecs * s_w), 8, phase_len))
    lane_choices = tuple(v for v in _POW2 if v <= info.f32_lanes and spec.out_channels % v == 0)
    return [
        Knob("lanes", lanes, lane_choices, "output channels per vector"),
        Knob("co_vecs", co_vecs, tuple(v for v in (1, 2, 3, 4)
                                        if spec.out_channels % (lanes * v) == 0),
             "vectors of output channels in the register tile"),
        Knob("tile_w", tile_w, tuple(range(1, 17)), "outputs of one phase along the last axis"),
        Knob("threads", 0, tuple(range(0, 65)), "parallel loop (0: all cores; 1: serial)"),
    ]


def _schedule_pad(sch, spec):
    blk = T.get_block(sch, C.BLOCK_PAD)
    loops = sch.get_loops(blk)
    sch.parallel(sch.fuse(loops[0], loops[1]))
    if 4 <= spec.in_channels <= 64:
        sch.vectorize(loops[-1])


def _schedule_pack(sch):
    blk = T.get_block(sch, C.BLOCK_PACK)
    loops = sch.get_loops(blk)
    sch.parallel(loops[0])


def schedule_cpu(sch, spec, values: Dict[str, int]):
    R = spec.rank
    lanes, co_vecs, tile_w = values["lanes"], values["co_vecs"], values["tile_w"]
    serial = values.get("threads", 0) == 1
    _schedule_pad(sch, spec)
    _schedule_pack(sch)

    conv = T.get_block(sch, C.BLOCK_CONV)
    loops = sch.get_loops(conv)
    n, spatial, co, rci, taps = loops[0], loops[1:R + 1], loops[R + 1], loops[R + 2], loops[R + 3:]
    qwo, qwi, rw = sch.split(spatial[-1], [None, tile_w, spec.strides[-1]])
    coo, cob, col = sch.split(co, [None, co_vecs, lanes])
    outer = [n, *spatial[:-1], qwo]
    sch.reorder(*outer, coo, *taps, rci, qwi, rw, cob, col)

    acc = sch.cache_write(conv, 0, "local")
    sch.reverse_compute_at(acc, coo)
    epi = T.get_block(sch, C.BLOCK_EPILOGUE)
    fused_epilogue = spec.layout == "channels_last"
    if fused_epilogue:
        sch.reverse_compute_inline(epi)
    tile = sch.get_loops(acc)[len(outer) + 1:]
    if lanes > 1:
        sch.vectorize(sch.fuse(*tile[-1:]))
    for lp in tile[:-1]:
        sch.unroll(lp)

    par = sch.fuse(*outer)
    if not serial:
        sch.parallel(par)
    for lp in (qwi, rw, cob):
        sch.unroll(lp)
    if lanes > 1:
        sch.vectorize(col)
    sch.decompose_reduction(conv, taps[0])

    if not fused_epilogue:
        eloops = sch.get_loops(epi)
        if not serial:
            sch.parallel(sch.fuse(eloops[0], eloops[1]))
        inner = eloops[-1]
        if spec.out_spatial[-1] >= 4:
            _, vi = sch.split(inner, [None, 8 if spec.out_spatial[-1] % 8 == 0 else
                                       4 if spec.out_spatial[-1] % 4 == 0 else 1])
            sch.vectorize(vi)
    return sch
