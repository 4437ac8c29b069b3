"""LLVM CPU schedule shared by the x86 and ARM rule lists: a GEMM-like register tile per phase.

Each output axis splits into ``o = q*s + r`` (r: the stride phase). Inside one phase every output
reads the same sub-kernel, so the register tile is ``tile_h x tile_w`` outputs of one phase (rows
of the second-last axis x the last axis) x ``co_vecs`` vectors of ``lanes`` output channels: per
step of the reduction over ``ci_in_group x taps`` it loads ``co_vecs`` weight vectors and
``tile_h * tile_w`` broadcast inputs for ``tile_h * tile_w * co_vecs`` FMAs. Loop order (2D):
``[n, q_h/chunk] (parallel) | r_h, r_w, co blocks | [ci blocks] | rows of the chunk, q_w tiles |
taps, ci | tile`` — one reduction block of a phase's weight panel (``k_blocks`` of them, GEMM's
kc) stays in L1 while every pixel tile of a chunk streams past it. The bias/activation epilogue is fused into the tile's
write-back, in the spec's layout. The packed weights come in panels of one channel block
(``compute.WeightForm``), so the panel a tile streams is one contiguous run. In the fused form
(``fused`` knob) the phases join the channels and the same tile runs over ``(r..., co)``.
"""
from __future__ import annotations

import math
from typing import Dict, List

from convt.compiler import compute as C
from convt.compiler import tvm_api as T

from .knobs import Knob

_POW2 = (1, 2, 4, 8, 16, 32, 64)
_L1_PANEL = 16 << 10   # bytes of one reduction block of a weight panel (half an L1d)
# an input larger than this is padded per parallel task, where the padded rows stay in cache
# for the tile: HiFi-GAN up2 (8 MB) 12.3 -> 11.1 ms NCHW, 9.0 -> 8.2 NHWC; at 4 MB and under
# (SAM up1, pix2pix up) within noise either way
_PAD_AT_BYTES = 4 << 20


def _lanes(cout: int, max_lanes: int) -> int:
    lanes = max_lanes
    while lanes > 1 and cout % lanes:
        lanes //= 2
    return lanes if lanes >= 4 or lanes == cout else 1


def _phase_len(spec, axis):
    return C.phase_extents(spec)[axis]


def _waste(extent, tile):
    """Fraction of a tiled loop's iterations that do useful work."""
    return extent / (-(-extent // tile) * tile)


def _register_tile(spec, info, lanes, channels):
    """(co_vecs, tile_h, tile_w) maximising FMAs per load of the tile's inner step, discounted
    by the ragged-tile waste along each axis. Ties go to more accumulators (latency hiding),
    then to the flatter tile."""
    phases = C.phase_extents(spec)
    pw, ph = phases[-1], (phases[-2] if spec.rank > 1 else 1)
    best = None
    for cv in (1, 2, 3, 4):
        if channels % (lanes * cv):
            continue
        budget = (info.vector_regs - cv - 1) // cv
        for th in range(1, min(ph, budget) + 1):
            for tw in range(1, min(pw, budget // th) + 1):
                acc = th * tw * cv
                score = acc / (th * tw + cv) * _waste(pw, tw) * _waste(ph, th)
                if spec.rank == 1 and pw % tw:
                    score *= 0.8    # the padded 1D tile costs a separate epilogue pass
                key = (round(score, 6), acc, -th)
                if best is None or key > best[0]:
                    best = (key, cv, th, tw)
    return best[1:] if best else (1, 1, 1)


def fuse_default(spec, info) -> int:
    """The fused form (phases join the channels, ``compute`` module) when the output channels
    alone leave vectors ragged, the phases share their inputs and the joint channels fill
    whole vectors (FCN's 21 x 64: 2.9x the width-vector rule). With whole vectors already
    it measured on par with the phase form (SAM, Mask R-CNN), which stays the default."""
    lanes = info.f32_lanes
    return int(spec.out_channels % lanes != 0 and C.can_fuse(spec)
               and C.fused_channels(spec) % lanes == 0)


def _channels(spec, fused):
    return C.WeightForm(bool(fused)).channels(spec)


def _balanced_chunk(lead, n, cores, want, most, step):
    """Rows per parallel task: a multiple of ``step`` (whole register tiles), at most ``most``,
    the largest giving ``want`` tasks that the cores share within 5%. TVM hands each thread
    an equal run of a parallel loop's iterations: FCN's 71 rows in chunks of 17 made 5 tasks,
    one core idle for a fifth of the run (17.6 ms against 8.7 ms in chunks of 4)."""
    def balance(c):
        sizes = [min(c, lead - j) for j in range(0, lead, c)] * n
        per = -(-len(sizes) // cores)
        return sum(sizes) / (cores * max(sum(sizes[t:t + per])
                                         for t in range(0, len(sizes), per)))

    best = None
    for c in range(max(step, most // step * step), 0, -step):
        if n * -(-lead // c) < want:
            continue
        b = balance(c)
        if b >= 0.95:
            return c
        if best is None or b > best[0]:
            best = (b, c)
    return best[1] if best else step


def cpu_knobs(spec, info) -> List[Knob]:
    fused = fuse_default(spec, info)
    channels = _channels(spec, fused)
    lanes = _lanes(channels, info.f32_lanes)
    co_vecs, tile_h, tile_w = _register_tile(spec, info, lanes, channels)
    # parallel chunks: rows of the leading axis' phase grid, enough chunks for every core
    lead = _phase_len(spec, 0) if spec.rank > 1 else -(-_phase_len(spec, 0) // tile_w)
    n = spec.batch or 1
    want = max(2 * info.cores, 1)
    chunk = lead
    weights = spec.in_channels // spec.groups * spec.out_channels * math.prod(spec.kernel)
    inputs = n * spec.in_channels * math.prod(spec.in_spatial)
    co_blocks = channels // (lanes * co_vecs)
    par_co = int(weights > 4 * inputs and co_blocks >= want)
    if par_co:
        chunk = lead
    elif spec.layout == "channels_first" and not fused:
        # the chunk's outputs wait in a buffer for the row-wise write: keep it within L2
        # (1D: a chunk counts width tiles; HiFi-GAN up2 11.7 -> 10.6 ms in 256 KB, not 1 MB)
        row_bytes = (4 * spec.strides[0] * math.prod(spec.out_spatial[1:]) * spec.out_channels
                     * (tile_w if spec.rank == 1 else 1))
        chunk = max(1, min(chunk, (256 << 10) // max(row_bytes, 1)))
    if not par_co:
        chunk = _balanced_chunk(lead, n, info.cores, want, chunk,
                                tile_h if spec.rank == 2 else 1)
    # GEMM kc blocking: one reduction block of a phase's weight panel stays in L1 while every
    # pixel tile of the task streams past it; the accumulators wait in an L1 buffer between blocks
    cin_g = spec.in_channels // spec.groups
    panel = 4 * cin_g * math.prod(p.taps for p in C.axis_plans(spec)) * lanes * co_vecs
    k_blocks = 1   # (with par_co each task owns its panel: blocks measured 2x slower, DCGAN)
    while (not par_co and panel // k_blocks > _L1_PANEL and cin_g % (2 * k_blocks) == 0
           and cin_g // k_blocks >= 16):
        k_blocks *= 2
    lane_choices = tuple(v for v in _POW2 if v <= info.f32_lanes and channels % v == 0)
    return [
        Knob("fused", fused, (0, 1) if C.can_fuse(spec) else (0,),
             "phases join the output channels (1) or run one after another (0)"),
        Knob("lanes", lanes, lane_choices, "output channels per vector"),
        Knob("co_vecs", co_vecs, tuple(v for v in (1, 2, 3, 4) if channels % (lanes * v) == 0),
             "vectors of output channels in the register tile"),
        Knob("tile_w", tile_w, tuple(range(1, 17)), "outputs of one phase along the last axis"),
        Knob("tile_h", tile_h, tuple(range(1, 9)) if spec.rank > 1 else (1,),
             "rows of one phase (second-last axis) in the register tile"),
        Knob("chunk", chunk, tuple(range(1, max(lead, 64) + 1)),
             "leading-axis rows (1D: width tiles) of one parallel task; 2D: rounded up to "
             "whole tile_h rows"),
        Knob("par_co", par_co, (0, 1), "parallel over output-channel blocks (1) or over "
             "batch x rows (0): 1 when the weights dwarf the input, so each is read once"),
        Knob("k_blocks", k_blocks, tuple(v for v in _POW2 if cin_g % v == 0), "reduction blocks outside the pixel loops (GEMM kc)"),
        Knob("unroll_k", 1, (1, 2, 4, 8), "reduction steps unrolled in the register tile"),
        Knob("pad_at", int(not par_co and 4 * inputs > _PAD_AT_BYTES), (0, 1),
             "each parallel task pads the input it reads (1) or one parallel pass pads the "
             "whole input first (0)"),
        Knob("threads", 0, tuple(range(0, 65)), "parallel loop (0: all cores; 1: serial)"),
    ]


def cpu_compute_args(spec, values):
    """1D: the phase width rounds up to whole tiles. A ragged last tile would put a bounds
    predicate on every tile of the parallel loop (2.5x slower on HiFi-GAN's up2)."""
    fused = bool(values.get("fused", 0))
    block = values["lanes"] * values["co_vecs"]
    if _channels(spec, fused) % block:
        raise ValueError(f"knobs lanes={values['lanes']} x co_vecs={values['co_vecs']} do not "
                         f"divide the {_channels(spec, fused)} output channels of the "
                         f"{'fused' if fused else 'phase'} form")
    args = {"form": C.WeightForm(fused, block)}
    if spec.rank == 1:
        args["q_align"] = values["tile_w"]
    return args


def _per_chunk(spec, values) -> bool:
    """channels_first writes each parallel chunk's outputs row by row after its last phase.
    Not in the fused form: TVM cannot bound the chunk's reads of (r, co) flattened; there the
    tile's scattered stores measured 1.8x faster than a separate pass (FCN, 27 MB out)."""
    return (spec.layout == "channels_first" and not values.get("par_co", 0)
            and not values.get("fused", 0))


def _padded(spec, values) -> bool:
    return spec.rank == 1 and C.phase_extents(spec)[-1] % values["tile_w"] != 0


def _loops_inside(sch, block, loop):
    """The loops of ``block`` nested inside ``loop``."""
    loops = sch.get_loops(block)
    target = sch.get_sref(loop)
    at = next(i for i, lp in enumerate(loops) if sch.get_sref(lp).same_as(target))
    return loops[at + 1:]


_PAD_BLOCK = 16   # positions x channels of a channels-first input transposed together


def schedule_pad(sch, spec, serial=False):
    """Channels-first input: transposed in ``_PAD_BLOCK`` squares, position runs unrolled, so
    that reads and writes both stay within a few cache lines. Channel-by-channel rows rewrote
    each line of the padded buffer once per channel: HiFi-GAN up2 14.1 against 12.1 ms, SAM up1
    5.8 against 5.0 ms."""
    blk = T.get_block(sch, C.BLOCK_PAD)
    _transpose_blocks(sch, spec, blk)
    loops = sch.get_loops(blk)
    if not serial:
        sch.parallel(sch.fuse(loops[0], loops[1]))


def _transpose_blocks(sch, spec, blk, inside=None):
    """The pad block's last two loops (positions, channels) in ``_PAD_BLOCK`` squares."""
    if spec.layout != "channels_first":
        return
    loops = _loops_inside(sch, blk, inside) if inside is not None else sch.get_loops(blk)
    w_o, w_i = sch.split(loops[-2], [None, _PAD_BLOCK])
    c_o, c_i = sch.split(loops[-1], [None, _PAD_BLOCK])
    sch.reorder(w_o, c_o, c_i, w_i)
    sch.unroll(w_i)


def _transpose_rows(sch, epi, co, w, lanes):
    """The channels-first write of a chunk in ``lanes x lanes`` squares: ``lanes`` vector loads
    along the channels into registers, ``lanes`` vector stores along the row, the transpose
    between them in registers (shuffles) instead of a gather per output element: depthwise
    128 x 56^2 k3 s2 1.24 -> 0.67 ms, HiFi-GAN up2 10.2 -> 9.2, U-Net 128->64 10.4 -> 9.6."""
    co_o, co_i = sch.split(co, [None, lanes])
    w_o, w_i = sch.split(w, [None, lanes])
    sch.reorder(co_o, w_o, co_i, w_i)
    src = sch.cache_read(epi, 0, "local")
    sch.compute_at(src, w_o)
    square = _loops_inside(sch, src, w_o)
    for lp in square[:-1]:
        sch.unroll(lp)
    sch.vectorize(square[-1])
    sch.unroll(co_i)
    sch.vectorize(w_i)


def schedule_cpu(sch, spec, values: Dict[str, int], scatter=False):
    """``scatter``: ``spec`` is the scatter form's GEMM (``cpu_gemm``), which schedules the
    pad stage itself; the epilogue (the gather of the taps) is a parallel pass of its own."""
    R = spec.rank
    lanes, co_vecs, tile_w, chunk = (values["lanes"], values["co_vecs"], values["tile_w"],
                                     values["chunk"])
    serial = values.get("threads", 0) == 1
    pad_at = values.get("pad_at", 0) and not values.get("par_co", 0) and not scatter
    if not scatter and not pad_at:
        schedule_pad(sch, spec, serial)

    fused = bool(values.get("fused", 0))
    conv = T.get_block(sch, C.BLOCK_CONV)
    loops = sch.get_loops(conv)
    if fused:   # [n, q..., (r..., co), rci, m...]
        n, qs, rs, co = loops[0], list(loops[1:R + 1]), [], loops[R + 1]
        rci, taps = loops[R + 2], loops[R + 3:]
    else:       # [n, q_0, r_0, ..., co, rci, m...]
        n, qs, rs = loops[0], list(loops[1:2 * R:2]), list(loops[2:2 * R + 1:2])
        co, rci, taps = loops[2 * R + 1], loops[2 * R + 2], loops[2 * R + 3:]
    qs[-1], qwi = sch.split(qs[-1], [None, tile_w])
    tile_h = values.get("tile_h", 1) if R > 1 else 1
    if R == 2:   # a task's rows are whole tiles: a ragged one would write the next task's rows
        chunk = -(-chunk // tile_h) * tile_h
    outer, qs[0] = sch.split(qs[0], [None, chunk])
    qhi = None
    if tile_h > 1:
        qs[-2], qhi = sch.split(qs[-2], [None, tile_h])
    inner = [qhi] if qhi is not None else []
    coo, cob, col = sch.split(co, [None, co_vecs, lanes])
    uk = values.get("unroll_k", 1)
    kb = values.get("k_blocks", 1)
    rko = []
    if kb > 1:
        rko0, rci = sch.split(rci, [kb, None])
        rko = [rko0]
    rci, rk = sch.split(rci, [None, uk])
    if values.get("par_co", 0):
        sch.reorder(coo, n, outer, *rs, *rko, *qs, *taps, rci, rk, *inner, qwi, cob, col)
    else:
        sch.reorder(n, outer, *rs, coo, *rko, *qs, *taps, rci, rk, *inner, qwi, cob, col)
    sch.unroll(rk)

    acc = sch.cache_write(conv, 0, "local")
    # k_blocks: the accumulators of a whole phase block live in L1 across the reduction blocks
    # (par_co: the loop just inside the parallel ones)
    block_loop = ((rs or [outer])[-1] if values.get("par_co", 0) else coo)
    anchor = qs[-1] if kb == 1 else block_loop
    sch.reverse_compute_at(acc, anchor)
    epi = T.get_block(sch, C.BLOCK_EPILOGUE)
    per_chunk = _per_chunk(spec, values) and not scatter
    padded = _padded(spec, values)
    if scatter:
        pass   # a pass of its own, scheduled by cpu_gemm
    elif padded and not per_chunk:
        eloops = sch.get_loops(epi)   # its own pass: it drops the tile padding
        if not serial:
            sch.parallel(sch.fuse(eloops[0], eloops[1]))
    elif not per_chunk:
        sch.reverse_compute_inline(epi)
    tile = _loops_inside(sch, acc, anchor) if kb == 1 else []
    if lanes > 1 and tile:
        sch.vectorize(tile[-1])
    for lp in tile[:-1]:
        sch.unroll(lp)

    par = sch.fuse(coo, n, outer) if values.get("par_co", 0) else sch.fuse(n, outer)
    if pad_at:   # each task pads the input rows it reads, into a buffer that stays in cache
        pad = T.get_block(sch, C.BLOCK_PAD)
        sch.compute_at(pad, par)
        _transpose_blocks(sch, spec, pad, par)
    if per_chunk:
        # channels_first: the tile's stores would scatter along channels (one element per
        # cache line); the chunk's outputs go out row by row instead, after its last phase
        sch.reverse_compute_at(epi, par)
        eloops = sch.get_loops(epi)   # par, channels, leading axes..., width
        sch.reorder(*eloops[2:-1], eloops[1])   # one output row at a time: its source is in L1
        width = spec.out_spatial[-1] if R > 1 else T.const_extent(sch, eloops[-1])
        if width and width % lanes == 0 and lanes > 1:
            _transpose_rows(sch, epi, eloops[1], eloops[-1], lanes)
    if not serial:
        sch.parallel(par)
    for lp in (*inner, qwi, cob):
        sch.unroll(lp)
    if lanes > 1:
        sch.vectorize(col)
    sch.decompose_reduction(conv, rko[0] if rko else taps[0] if taps else rci)
    return sch
