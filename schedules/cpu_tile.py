"""LLVM CPU register tile, shared by the x86 and ARM rule lists: a GEMM-like tile per phase.

Each output axis splits into ``o = q*s + r`` (r: the stride phase). Inside one phase every output
reads the same sub-kernel, so the register tile is ``tile_h x tile_w`` outputs of one phase (rows
of the second-last axis x the last axis) x ``co_vecs`` vectors of ``lanes`` output channels: per
step of the reduction over ``ci_in_group x taps`` it loads ``co_vecs`` weight vectors and
``tile_h * tile_w`` broadcast inputs for ``tile_h * tile_w * co_vecs`` FMAs. Loop order (2D):
``[n, q_h/chunk] (parallel) | r_h, r_w, co blocks | [ci blocks] | rows of the chunk, q_w tiles |
taps, ci | tile`` — one reduction block of a phase's weight panel (``k_blocks`` of them, GEMM's
kc) stays in L1 while every pixel tile of a chunk streams past it. The bias/activation epilogue
is fused into the tile's write-back, in the spec's layout. The packed weights come in panels of
one channel block (``compute.WeightForm``), so the panel a tile streams is one contiguous run.
In the fused form (``fused`` knob) the phases join the channels and the same tile runs over
``(r..., co)``. The compute rounds each tiled extent up to whole tiles and chunks, so every
split is exact (``steps``).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict

from convt.compiler import compute as C
from convt.compiler import tvm_api as T

from .rule import Rule
from .space import Dim, Space, divisors, fixed, upto
from .steps import Axes, loops_inside, parallel, split_exact, transpose_pad, transpose_rows

POW2 = (1, 2, 4, 8, 16, 32, 64)
MAX_TILE_H, MAX_TILE_W = 8, 16
_L1_PANEL = 16 << 10   # bytes of one reduction block of a weight panel (half an L1d)
# an input larger than this is padded per parallel task, where the padded rows stay in cache
# for the tile: HiFi-GAN up2 (8 MB) 12.3 -> 11.1 ms NCHW, 9.0 -> 8.2 NHWC; at 4 MB and under
# (SAM up1, pix2pix up) within noise either way
_PAD_AT_BYTES = 4 << 20


def form_of(values) -> C.WeightForm:
    return C.WeightForm("fused" if values.get("fused") else "phase",
                        values["lanes"] * values["co_vecs"])


def channels(spec, fused) -> int:
    """Channels of the conv stage: the output's, or ``(r..., co)`` joined in the fused form."""
    return C.WeightForm("fused" if fused else "phase").channels(spec)


def tile_align(spec, values):
    """Per-axis multiples the conv stage's phase extents round up to: the tiles, and the
    leading axis' chunk (1D: ``chunk`` width tiles; 2D: whole ``tile_h`` rows)."""
    R = spec.rank
    if R == 1:
        return (values["tile_w"] * values["chunk"],)
    if R == 2:
        return (values["chunk"], values["tile_w"])
    return (values["chunk"], values["tile_h"], values["tile_w"])


def tile_dims(spec, info, fused_choices=None):
    """The register tile's knobs over a phase-form (or fused-form) conv stage of ``spec``."""
    R = spec.rank
    q = C.phase_extents(spec)
    cin_g = spec.in_channels // spec.groups
    regs = info.vector_regs
    lane_set = tuple(v for v in POW2 if v <= info.f32_lanes)
    fused_choices = fused_choices or ((0, 1) if C.can_fuse(spec) else (0,))

    def chans(v):
        return channels(spec, v["fused"])

    def tile_h(v):
        return upto(min(MAX_TILE_H, q[-2], regs // v["co_vecs"])) if R > 1 else (1,)

    def tile_w(v):
        return upto(min(MAX_TILE_W, q[-1], max(1, regs // (v["co_vecs"] * v["tile_h"]))))

    def chunk(v):
        if R == 1:
            return upto(-(-q[0] // v["tile_w"]))
        if R == 2:
            th = v["tile_h"]
            return upto(-(-q[0] // th) * th, th, th)
        return upto(q[0])

    def par_co(v):
        return (0, 1) if chans(v) // (v["lanes"] * v["co_vecs"]) >= 2 else (0,)

    return [
        Dim("fused", fixed(*fused_choices),
            "phases join the output channels (1) or run one after another (0)"),
        Dim("lanes", lambda v: divisors(chans(v), lane_set), "output channels per vector"),
        Dim("co_vecs", lambda v: divisors(chans(v) // v["lanes"], (1, 2, 3, 4)),
            "vectors of output channels in the register tile"),
        Dim("tile_h", tile_h, "rows of one phase (second-last axis) in the register tile"),
        Dim("tile_w", tile_w, "outputs of one phase along the last axis in the register tile"),
        Dim("chunk", chunk, "leading-axis rows of one parallel task (1D: width tiles; 2D: "
            "whole tile_h rows)"),
        Dim("par_co", par_co, "parallel over output-channel blocks (1) or over batch x rows "
            "(0): 1 when the weights dwarf the input, so each is read once"),
        Dim("k_blocks", fixed(*divisors(cin_g, POW2)),
            "reduction blocks outside the pixel loops (GEMM kc)"),
        Dim("unroll_k", lambda v: divisors(cin_g // v["k_blocks"], (1, 2, 4, 8)),
            "reduction steps unrolled in the register tile"),
    ]


def serial_dim():
    return Dim("serial", fixed(0, 1), "one thread (1) or all cores (0)")


def _lanes(cout: int, max_lanes: int) -> int:
    lanes = max_lanes
    while lanes > 1 and cout % lanes:
        lanes //= 2
    return lanes if lanes >= 4 or lanes == cout else 1


def _waste(extent, tile):
    """Fraction of a tiled loop's iterations that do useful work."""
    return extent / (-(-extent // tile) * tile)


def _register_tile(spec, info, lanes, chans):
    """(co_vecs, tile_h, tile_w) maximising FMAs per load of the tile's inner step, discounted
    by the ragged-tile waste along each axis. Ties go to more accumulators (latency hiding),
    then to the flatter tile."""
    phases = C.phase_extents(spec)
    pw, ph = phases[-1], (phases[-2] if spec.rank > 1 else 1)
    best = None
    for cv in (1, 2, 3, 4):
        if chans % (lanes * cv):
            continue
        budget = (info.vector_regs - cv - 1) // cv
        for th in range(1, min(ph, budget, MAX_TILE_H) + 1):
            for tw in range(1, min(pw, budget // th, MAX_TILE_W) + 1):
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


def propose_tile(spec, info, fused) -> Dict[str, int]:
    """The heuristic's register tile, chunks and reduction blocks for ``spec``."""
    chans = channels(spec, fused)
    lanes = _lanes(chans, info.f32_lanes)
    co_vecs, tile_h, tile_w = _register_tile(spec, info, lanes, chans)
    # parallel chunks: rows of the leading axis' phase grid, enough chunks for every core
    lead = C.phase_extents(spec)[0] if spec.rank > 1 else -(-C.phase_extents(spec)[0] // tile_w)
    n = spec.batch or 1
    want = max(2 * info.cores, 1)
    chunk = lead
    weights = spec.in_channels // spec.groups * spec.out_channels * math.prod(spec.kernel)
    inputs = n * spec.in_channels * math.prod(spec.in_spatial)
    co_blocks = chans // (lanes * co_vecs)
    par_co = int(weights > 4 * inputs and co_blocks >= want)
    if not par_co and spec.layout == "channels_first" and not fused:
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
    return dict(fused=fused, lanes=lanes, co_vecs=co_vecs, tile_h=tile_h, tile_w=tile_w,
                chunk=chunk, par_co=par_co, k_blocks=k_blocks, unroll_k=1, serial=0,
                pad_at=int(not par_co and 4 * inputs > _PAD_AT_BYTES))


@dataclasses.dataclass
class TileLoops:
    """What ``tile_conv`` leaves for the rule to place around it."""
    outer: list        # loops to fuse into the parallel loop, outermost first
    unroll: list       # loops to unroll once everything is placed
    vector: object     # the channel-vector loop (vectorized when lanes > 1)
    init_at: object    # where the reduction's init goes (``decompose_reduction``)
    conv: object       # the conv block


def tile_conv(sch, d: C.Definition, values) -> TileLoops:
    """The register tile over ``d``'s conv stage: splits, order, accumulators in registers and
    their write-back (the conv stage's buffer, or the epilogue once inlined into it)."""
    R = d.stage_spec.rank
    ax = Axes(sch, C.BLOCK_CONV, d.roles[C.BLOCK_CONV])
    lanes, co_vecs, tile_w = values["lanes"], values["co_vecs"], values["tile_w"]
    tile_h = values["tile_h"] if R > 1 else 1
    kb, uk, par_co = values["k_blocks"], values["unroll_k"], values["par_co"]
    n, qs, rs, rci, taps = ax["n"], ax.each("q", R), ax.each("r", R), ax["ci"], ax.each("m", R)
    qs[-1], qwi = split_exact(sch, qs[-1], [None, tile_w])
    outer, qs[0] = split_exact(sch, qs[0], [None, values["chunk"]])
    inner = []
    if tile_h > 1:
        qs[-2], qhi = split_exact(sch, qs[-2], [None, tile_h])
        inner = [qhi]
    coo, cob, col = split_exact(sch, ax["co"], [None, co_vecs, lanes])
    rko = []
    if kb > 1:
        rko0, rci = split_exact(sch, rci, [kb, None])
        rko = [rko0]
    rci, rk = split_exact(sch, rci, [None, uk])
    if par_co:
        sch.reorder(coo, n, outer, *rs, *rko, *qs, *taps, rci, rk, *inner, qwi, cob, col)
    else:
        sch.reorder(n, outer, *rs, coo, *rko, *qs, *taps, rci, rk, *inner, qwi, cob, col)
    sch.unroll(rk)
    conv = ax.block
    acc = sch.cache_write(conv, 0, "local")
    # k_blocks: the accumulators of a whole phase block live in L1 across the reduction blocks
    # (par_co: the loop just inside the parallel ones)
    anchor = qs[-1] if kb == 1 else ((rs or [outer])[-1] if par_co else coo)
    sch.reverse_compute_at(acc, anchor, preserve_unit_loops=True)
    if kb == 1:
        tile = loops_inside(sch, acc, anchor)
        for lp in tile[:-1]:
            sch.unroll(lp)
        if lanes > 1:
            sch.vectorize(tile[-1])
    return TileLoops([coo, n, outer] if par_co else [n, outer], [*inner, qwi, cob], col,
                     rko[0] if rko else taps[0] if taps else rci, conv)


def finish_tile(sch, tile: TileLoops, values):
    """Unroll and vectorize the tile's inner loops, then split off the reduction's init."""
    for lp in tile.unroll:
        sch.unroll(lp)
    if values["lanes"] > 1:
        sch.vectorize(tile.vector)
    sch.decompose_reduction(tile.conv, tile.init_at)


def schedule_pad(sch, d: C.Definition, serial):
    """The pad stage as one parallel pass; channels-first inputs transposed in squares."""
    ax = Axes(sch, C.BLOCK_PAD, d.roles[C.BLOCK_PAD])
    R = d.stage_spec.rank
    if d.spec.layout == "channels_first":
        transpose_pad(sch, ax.block, ax[f"j{R - 1}"], ax["ci"])
    loops = sch.get_loops(ax.block)
    parallel(sch, loops[:2], serial)


class RegisterTile(Rule):
    """Vectors along output channels, one phase (or all of them, fused) per register tile."""

    def __init__(self, name):
        self.name = name

    def space(self, spec, info):
        dims = tile_dims(spec, info)
        dims.append(Dim("pad_at", lambda v: (0,) if v["par_co"] else (0, 1),
                        "each parallel task pads the input it reads (1) or one parallel pass "
                        "pads the whole input first (0)"))
        return Space(self.name, dims + [serial_dim()])

    def propose(self, spec, info):
        return propose_tile(spec, info, fuse_default(spec, info))

    def definition(self, spec, info, values):
        return C.define(spec, form_of(values), tile_align(spec, values))

    def schedule(self, sch, d, info, values):
        serial = values["serial"]
        if not values["pad_at"]:
            schedule_pad(sch, d, serial)
        tile = tile_conv(sch, d, values)
        per_chunk = place_epilogue(sch, d, values)
        par = sch.fuse(*tile.outer)
        if values["pad_at"]:
            pad_in_task(sch, d, par)
        if per_chunk:
            write_rows_per_chunk(sch, d, par, values["lanes"])
        if not serial:
            sch.parallel(par)
        finish_tile(sch, tile, values)


def place_epilogue(sch, d, values) -> bool:
    """The bias/activation epilogue: inlined into the tile's write-back; a parallel pass of its
    own for a 1D conv stage padded past the output (a bounds test in every tile's write
    measured 2.5x slower, HiFi-GAN up2); or, channels-first, left for ``write_rows_per_chunk``
    (returns True): the tile's stores would scatter along channels, one element per cache
    line. Not in the fused form: TVM cannot bound a chunk's reads of (r, co) flattened, and
    there the tile's scattered stores measured 1.8x faster than a separate pass (FCN, 27 MB)."""
    spec = d.spec
    epi = T.get_block(sch, C.BLOCK_EPILOGUE)
    if spec.layout == "channels_first" and not values["par_co"] and not values["fused"]:
        return True
    if spec.rank == 1 and C.phase_extents(spec, d.q_align) != C.phase_extents(spec):
        parallel(sch, sch.get_loops(epi)[:2], values["serial"])
    else:
        sch.reverse_compute_inline(epi)
    return False


def pad_in_task(sch, d, par):
    """Each parallel task pads the input rows it reads, into a buffer that stays in cache."""
    pad = T.get_block(sch, C.BLOCK_PAD)
    sch.compute_at(pad, par, preserve_unit_loops=True)
    if d.spec.layout == "channels_first":
        inside = loops_inside(sch, pad, par)
        transpose_pad(sch, pad, inside[-2], inside[-1])


def write_rows_per_chunk(sch, d, par, lanes):
    """A channels-first chunk's outputs go out row by row after its last phase, each row while
    its source is in L1, in ``lanes x lanes`` squares transposed in registers where a square
    spans whole phases (else its source region varies from square to square)."""
    spec = d.spec
    epi = T.get_block(sch, C.BLOCK_EPILOGUE)
    sch.reverse_compute_at(epi, par, preserve_unit_loops=True)
    _, co, *os = loops_inside(sch, epi, par)   # n, channels, positions...
    if len(os) > 1:
        sch.reorder(*os[:-1], co)
    width = T.const_extent(sch, os[-1])
    if lanes > 1 and width and width % lanes == 0 and lanes % spec.strides[-1] == 0:
        transpose_rows(sch, epi, co, os[-1], lanes)
