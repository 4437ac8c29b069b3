"""LLVM CPU schedule shared by the x86 and ARM rule lists: a GEMM-like register tile per phase.

Each output axis splits into ``o = q*s + r`` (r: the stride phase). Inside one phase every output
reads the same sub-kernel, so the register tile is ``tile_w`` outputs of one phase along the last
axis x ``co_vecs`` vectors of ``lanes`` output channels: per step of the reduction over
``ci_in_group x taps`` it loads ``co_vecs`` weight vectors and ``tile_w`` broadcast inputs for
``tile_w * co_vecs`` FMAs. Loop order (2D): ``[n, q_h/chunk] (parallel) | r_h, r_w, co blocks |
rows of the chunk, q_w tiles | taps, ci | tile`` — a phase's weight panel stays in cache while
every pixel tile of a chunk streams past it. The bias/activation epilogue is fused into the tile's
write-back, in the spec's layout.
"""
from __future__ import annotations

import math
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


def _phase_len(spec, axis):
    return C.phase_extents(spec)[axis]


def _best_tile_w(budget, phase_len):
    """Largest tile within the register budget, preferring one that divides the phase length
    (no partial tile: the epilogue stays fused and the loop has no bounds checks)."""
    top = max(1, min(budget, phase_len))
    for t in range(top, 0, -1):
        if phase_len % t == 0 and 2 * t >= top:
            return t
    return top


def cpu_knobs(spec, info) -> List[Knob]:
    lanes = _lanes(spec.out_channels, info.f32_lanes)
    regs = info.vector_regs
    best = None
    for cv in (1, 2, 3, 4):
        if spec.out_channels % (lanes * cv):
            continue
        tw = _best_tile_w((regs - cv - 1) // cv, _phase_len(spec, -1))
        score = tw * cv / (tw + cv)    # FMAs per load of the tile's inner step
        if best is None or score > best[0] + 1e-9:
            best = (score, cv, tw)
    _, co_vecs, tile_w = best if best else (0, 1, 1)
    # parallel chunks: rows of the leading axis' phase grid, enough chunks for every core
    lead = _phase_len(spec, 0) if spec.rank > 1 else -(-_phase_len(spec, 0) // tile_w)
    n = spec.batch or 1
    want = max(2 * info.cores, 1)
    chunk = max(1, min(lead, (n * lead) // want))
    weights = spec.in_channels // spec.groups * spec.out_channels * math.prod(spec.kernel)
    inputs = n * spec.in_channels * math.prod(spec.in_spatial)
    co_blocks = spec.out_channels // (lanes * co_vecs)
    par_co = int(weights > 4 * inputs and co_blocks >= want)
    if par_co:
        chunk = lead
    elif spec.layout == "channels_first":
        # the chunk's outputs wait in a buffer for the row-wise write: keep it within L2
        row_bytes = 4 * spec.strides[0] * math.prod(spec.out_spatial[1:]) * spec.out_channels
        chunk = max(1, min(chunk, (256 << 10) // max(row_bytes, 1)))
    lane_choices = tuple(v for v in _POW2 if v <= info.f32_lanes and spec.out_channels % v == 0)
    return [
        Knob("lanes", lanes, lane_choices, "output channels per vector"),
        Knob("co_vecs", co_vecs, tuple(v for v in (1, 2, 3, 4)
                                        if spec.out_channels % (lanes * v) == 0),
             "vectors of output channels in the register tile"),
        Knob("tile_w", tile_w, tuple(range(1, 17)), "outputs of one phase along the last axis"),
        Knob("chunk", chunk, tuple(range(1, max(lead, 64) + 1)),
             "leading-axis rows (1D: width tiles) of one parallel task"),
        Knob("par_co", par_co, (0, 1), "parallel over output-channel blocks (1) or over "
             "batch x rows (0): 1 when the weights dwarf the input, so each is read once"),
        Knob("unroll_k", 1, (1, 2, 4, 8), "reduction steps unrolled in the register tile"),
        Knob("threads", 0, tuple(range(0, 65)), "parallel loop (0: all cores; 1: serial)"),
    ]


def schedule_pad(sch, spec, serial=False):
    """Channels-first input: walk it along its rows (contiguous reads); the transposed writes
    of one row stay in L1."""
    blk = T.get_block(sch, C.BLOCK_PAD)
    loops = sch.get_loops(blk)
    if spec.layout == "channels_first":
        sch.reorder(loops[-1], loops[-2])
        loops = sch.get_loops(blk)
    if not serial:
        sch.parallel(sch.fuse(loops[0], loops[1]))


def schedule_cpu(sch, spec, values: Dict[str, int]):
    R = spec.rank
    lanes, co_vecs, tile_w, chunk = (values["lanes"], values["co_vecs"], values["tile_w"],
                                     values["chunk"])
    serial = values.get("threads", 0) == 1
    schedule_pad(sch, spec, serial)

    conv = T.get_block(sch, C.BLOCK_CONV)
    loops = sch.get_loops(conv)
    n, qs, rs = loops[0], list(loops[1:2 * R:2]), list(loops[2:2 * R + 1:2])
    co, rci, taps = loops[2 * R + 1], loops[2 * R + 2], loops[2 * R + 3:]
    qs[-1], qwi = sch.split(qs[-1], [None, tile_w])
    outer, qs[0] = sch.split(qs[0], [None, chunk])
    coo, cob, col = sch.split(co, [None, co_vecs, lanes])
    uk = values.get("unroll_k", 1)
    rci, rk = sch.split(rci, [None, uk])
    if values.get("par_co", 0):
        sch.reorder(coo, n, outer, *rs, *qs, *taps, rci, rk, qwi, cob, col)
    else:
        sch.reorder(n, outer, *rs, coo, *qs, *taps, rci, rk, qwi, cob, col)
    sch.unroll(rk)

    acc = sch.cache_write(conv, 0, "local")
    sch.reverse_compute_at(acc, qs[-1])
    epi = T.get_block(sch, C.BLOCK_EPILOGUE)
    per_chunk = spec.layout == "channels_first" and not values.get("par_co", 0)
    if not per_chunk:
        sch.reverse_compute_inline(epi)
    tile = sch.get_loops(acc)[2 * R + 3:]
    if lanes > 1:
        sch.vectorize(tile[-1])
    for lp in tile[:-1]:
        sch.unroll(lp)

    par = sch.fuse(coo, n, outer) if values.get("par_co", 0) else sch.fuse(n, outer)
    if per_chunk:
        # channels_first: the tile's stores would scatter along channels (one element per
        # cache line); the chunk's outputs go out row by row instead, after its last phase
        sch.reverse_compute_at(epi, par)
        eloops = sch.get_loops(epi)   # par, channels, leading axes..., width
        sch.reorder(*eloops[2:-1], eloops[1])   # one output row at a time: its source is in L1
        width = spec.out_spatial[-1] if R > 1 else None
        if width and width % lanes == 0:
            sch.vectorize(sch.split(eloops[-1], [None, lanes])[1])
    if not serial:
        sch.parallel(par)
    for lp in (qwi, cob):
        sch.unroll(lp)
    if lanes > 1:
        sch.vectorize(col)
    sch.decompose_reduction(conv, taps[0] if taps else rci)
    return sch
