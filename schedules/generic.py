"""Rules every target family ends or starts with.

``Fallback`` applies to every spec with an output: parallel outer loops, inner loops vectorized
where the vector divides them; slower than the register tile but never unscheduled.
``EmptyOutput`` takes the specs whose output has a zero-length axis (Keras returns such arrays
for some "same" layers): a kernel with the spec's signature that does nothing.
"""
from __future__ import annotations

from convt.compiler import compute as C

from .cpu_tile import serial_dim
from .rule import Rule
from .space import Space
from .steps import Axes, parallel, vectorize_tail


class Fallback(Rule):
    name = "cpu.fallback"

    def space(self, spec, info):
        return Space(self.name, [serial_dim()])

    def definition(self, spec, info, values):
        return C.define(spec)

    def schedule(self, sch, d, info, values):
        serial = values["serial"]
        lanes = info.f32_lanes
        for block in (C.BLOCK_PAD, C.BLOCK_CONV, C.BLOCK_EPILOGUE):
            ax = Axes(sch, block, d.roles[block])
            loops = sch.get_loops(ax.block)
            if block != C.BLOCK_CONV:   # the conv block's innermost loop is a reduction
                vectorize_tail(sch, loops[-1], lanes)
            parallel(sch, loops[:2], serial)


class EmptyOutput(Rule):
    name = "empty"

    def decline(self, spec, info):
        return None if spec.is_empty else "the output is not empty"

    def space(self, spec, info):
        return Space(self.name, [])

    def definition(self, spec, info, values):
        return C.define(spec, C.WeightForm("none"))

    def schedule(self, sch, d, info, values):
        pass
