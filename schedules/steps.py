"""Small named schedule steps shared by the rules; loops are asked for by role.

Every split of a loop that a later ``compute_at`` / ``reverse_compute_at`` spans is exact
(``split_exact``): TVM 0.27 drops the bounds predicate of a ragged split when it regenerates a
consumer's loops under it, and the consumer then writes past its buffer (a (1, 13) input with a
(5, 4) kernel wrote 2 columns past the output: wrong values and a double free). The compute
rounds its stage extents up to the tiles instead (``compute.phase_extents``).
"""
from __future__ import annotations

from convt.compiler import tvm_api as T


class Axes:
    """The loops of one unscheduled block by role (``Definition.roles``)."""

    def __init__(self, sch, block_name, roles):
        self.block = T.get_block(sch, block_name)
        loops = sch.get_loops(self.block)
        if len(loops) != len(roles):
            raise AssertionError(f"block {block_name!r} has {len(loops)} loops, its roles "
                                 f"{roles} name {len(roles)}: it was scheduled already")
        self.loops = dict(zip(roles, loops))

    def __getitem__(self, role):
        return self.loops[role]

    def get(self, role):
        return self.loops.get(role)

    def each(self, prefix, rank):
        """The loops ``prefix0 .. prefix<rank-1>`` that exist, in axis order."""
        return [self.loops[f"{prefix}{a}"] for a in range(rank) if f"{prefix}{a}" in self.loops]


def split_exact(sch, loop, factors):
    """``sch.split`` that refuses a ragged split of a constant extent (a schedule bug)."""
    extent = T.const_extent(sch, loop)
    inner = 1
    for f in factors:
        if f is not None:
            inner *= f
    if extent is not None and extent % inner:
        raise AssertionError(f"split of a loop of {extent} by {factors} is ragged: the compute "
                             f"should have rounded this extent up to the tile")
    return sch.split(loop, factors)


def loops_inside(sch, block, loop):
    """The loops of ``block`` nested inside ``loop``."""
    loops = sch.get_loops(block)
    target = sch.get_sref(loop)
    at = next(i for i, lp in enumerate(loops) if sch.get_sref(lp).same_as(target))
    return loops[at + 1:]


def parallel(sch, loops, serial):
    """Fuse ``loops`` (outermost first) into one loop, parallel unless ``serial``."""
    loop = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    if not serial:
        sch.parallel(loop)
    return loop


def vectorize_tail(sch, loop, lanes):
    """Vectorize the last ``lanes`` of ``loop`` when they divide it; leaf blocks only."""
    extent = T.const_extent(sch, loop)
    if lanes > 1 and extent is not None and extent % lanes == 0 and extent > 1:
        sch.vectorize(sch.split(loop, [None, lanes])[1])


PAD_BLOCK = 16   # positions x channels of a channels-first input transposed together


def transpose_pad(sch, blk, positions, channels):
    """A channels-first input's last position loop and its channel loop in ``PAD_BLOCK``
    squares, the position run unrolled, so that reads and writes both stay within a few cache
    lines. Channel-by-channel rows rewrote each line of the padded buffer once per channel:
    HiFi-GAN up2 14.1 against 12.1 ms, SAM up1 5.8 against 5.0 ms. Ragged squares keep their
    predicate: nothing is computed at these loops."""
    w_o, w_i = sch.split(positions, [None, PAD_BLOCK])
    c_o, c_i = sch.split(channels, [None, PAD_BLOCK])
    sch.reorder(w_o, c_o, c_i, w_i)
    sch.unroll(w_i)


def transpose_rows(sch, epi, co, w, lanes):
    """A channels-first write in ``lanes x lanes`` squares: ``lanes`` vector loads along the
    channels into registers, ``lanes`` vector stores along the row, the transpose between them
    in registers (shuffles) instead of a gather per output element: depthwise 128 x 56^2 k3 s2
    1.24 -> 0.67 ms, HiFi-GAN up2 10.2 -> 9.2, U-Net 128->64 10.4 -> 9.6. Both extents divide
    by ``lanes`` (the caller checks)."""
    co_o, co_i = split_exact(sch, co, [None, lanes])
    w_o, w_i = split_exact(sch, w, [None, lanes])
    sch.reorder(co_o, w_o, co_i, w_i)
    src = sch.cache_read(epi, 0, "local")
    sch.compute_at(src, w_o, preserve_unit_loops=True)
    square = loops_inside(sch, src, w_o)
    for lp in square[:-1]:
        sch.unroll(lp)
    sch.vectorize(square[-1])
    sch.unroll(co_i)
    sch.vectorize(w_i)
