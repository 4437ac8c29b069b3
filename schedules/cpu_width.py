"""LLVM CPU schedule for layers with few output channels (FSRCNN's 1, pix2pix's 3, FCN's 21):
vectors run along the output width inside one phase instead of along output channels.

The padded input is stored ``[n, spatial..., ci, w]`` so that ``lanes`` consecutive outputs of a
phase read ``lanes`` consecutive inputs; the register tile is ``co_t`` output channels x ``tile_v``
vectors of one phase's outputs: per reduction step ``tile_v`` vector loads and ``co_t`` weight
broadcasts feed ``co_t * tile_v`` FMAs. The phase grid's width rounds up to whole tiles (and its
leading axis to whole chunks); when that adds outputs along the width, the epilogue runs as its
own pass and drops them.
"""
from __future__ import annotations

from convt.compiler import compute as C
from convt.compiler import tvm_api as T

from .cpu_tile import fuse_default, serial_dim
from .rule import Rule
from .space import Dim, Space, divisors, fixed, upto
from .steps import Axes, parallel, split_exact

MAX_TILE_V = 12


def _co_tile(cout: int) -> int:
    return next(t for t in (4, 3, 2, 1) if cout % t == 0)


def _align(spec, values):
    w = values["lanes"] * values["tile_v"]
    if spec.rank == 1:
        return (w * values["chunk"],)
    return (values["chunk"],) + (1,) * (spec.rank - 2) + (w,)


class WidthVector(Rule):
    """Vectors along the output width of one phase: for output channels that fill no vector."""

    def __init__(self, name):
        self.name = name

    def decline(self, spec, info):
        if info.f32_lanes < 4:
            return f"its vectors need 4 lanes or more, the target has {info.f32_lanes}"
        if any(c != 1 for c in spec.conv_strides):
            return f"conv_strides {spec.conv_strides}: it reads the input at stride 1"
        return super().decline(spec, info)

    def passes_over(self, spec, info):
        lanes = info.f32_lanes
        if spec.out_channels % lanes == 0:
            return f"the {spec.out_channels} output channels fill whole {lanes}-lane vectors"
        if C.phase_extents(spec)[-1] < lanes:
            return f"a phase's width {C.phase_extents(spec)[-1]} fills no {lanes}-lane vector"
        if fuse_default(spec, info):
            return "its phases joined with its channels fill whole vectors (the fused tile)"
        return None

    def space(self, spec, info):
        q = C.phase_extents(spec)
        rows = q[0] if spec.rank > 1 else None
        regs = info.vector_regs

        def tile_v(v):
            return upto(min(MAX_TILE_V, -(-q[-1] // v["lanes"]), max(1, regs // v["co_t"] - 1)))

        def chunk(v):
            return upto(rows if rows else -(-q[-1] // (v["lanes"] * v["tile_v"])))

        return Space(self.name, [
            Dim("lanes", fixed(*(v for v in (4, 8, 16) if v <= info.f32_lanes)),
                "outputs per vector"),
            Dim("co_t", fixed(*divisors(spec.out_channels, range(1, 9))),
                "output channels in the register tile"),
            Dim("tile_v", tile_v, "vectors along the width in the tile"),
            Dim("chunk", chunk, "leading-axis rows (1D: width tiles) of one parallel task"),
            serial_dim(),
        ])

    def propose(self, spec, info):
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
        return dict(lanes=lanes, co_t=co_t, tile_v=tile_v, chunk=chunk, serial=0)

    def definition(self, spec, info, values):
        return C.define(spec, C.WeightForm(), _align(spec, values))

    def schedule(self, sch, d, info, values):
        spec = d.spec
        R = spec.rank
        lanes, co_t, tile_v, chunk = (values["lanes"], values["co_t"], values["tile_v"],
                                      values["chunk"])
        serial = values["serial"]

        pad = Axes(sch, C.BLOCK_PAD, d.roles[C.BLOCK_PAD]).block
        sch.transform_layout(pad, ("write", 0),
                             lambda n, *rest: (n, *rest[:R - 1], rest[R], rest[R - 1]))
        ploops = sch.get_loops(pad)
        if spec.layout == "channels_first":   # [n, rows..., ci, w]: both sides in order
            sch.reorder(ploops[-1], ploops[-2])
        # channels_last: along the input's channels (contiguous reads, the border test hoisted
        # out of that loop; consecutive positions write into the same C_in cache lines):
        # pix2pix outermost NHWC 4.2 -> 3.0 ms, FSRCNN 12.3 -> 11.9 ms against in write order
        parallel(sch, sch.get_loops(pad)[:2], serial)

        ax = Axes(sch, C.BLOCK_CONV, d.roles[C.BLOCK_CONV])
        n, qs, rs, rci, taps = ax["n"], ax.each("q", R), ax.each("r", R), ax["ci"], \
            ax.each("m", R)
        qs[-1], qv, ql = split_exact(sch, qs[-1], [None, tile_v, lanes])
        outer, qs[0] = split_exact(sch, qs[0], [None, chunk])
        coo, cot = split_exact(sch, ax["co"], [None, co_t])
        if R > 1:   # phases inside a chunk's row: they read the same input rows while cached
            sch.reorder(n, outer, coo, qs[0], *rs, *qs[1:], *taps, rci, cot, qv, ql)
        else:       # (pix2pix outermost 4.7 -> 4.3 ms, FSRCNN 11.4 -> 10.5 ms)
            sch.reorder(n, outer, *rs, coo, *qs, *taps, rci, cot, qv, ql)

        conv = ax.block
        acc = sch.cache_write(conv, 0, "local")
        # the accumulators' own layout puts the width innermost, so that each is one register
        sch.transform_layout(conv, ("write", 0), lambda b, *rest: (
            b, *rest[:2 * R - 2], rest[2 * R], rest[2 * R - 1], rest[2 * R - 2]))
        sch.reverse_compute_at(acc, qs[-1], preserve_unit_loops=True)
        epi = T.get_block(sch, C.BLOCK_EPILOGUE)
        if C.phase_extents(spec, d.q_align)[-1] != C.phase_extents(spec)[-1]:
            parallel(sch, sch.get_loops(epi)[:2], serial)
        else:
            sch.reverse_compute_inline(epi)
        parallel(sch, [n, outer], serial)
        sch.unroll(cot)
        sch.unroll(qv)
        sch.vectorize(ql)
        sch.decompose_reduction(conv, taps[0] if taps else rci)
