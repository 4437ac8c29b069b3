"""Fallback CPU schedule: parallel outer loops, inner loop vectorized when it divides. Applies to
every spec; slower than the register-tile rule but never unscheduled."""
from __future__ import annotations

from convt.compiler import compute as C
from convt.compiler import tvm_api as T

from .knobs import Knob


def generic_cpu_knobs(spec, info):
    return [Knob("threads", 0, tuple(range(0, 65)), "parallel loop (0: all cores; 1: serial)")]


def _parallel_vector(sch, name, serial, inner_extent):
    blk = T.get_block(sch, name)
    loops = sch.get_loops(blk)
    if not serial:
        sch.parallel(sch.fuse(loops[0], loops[1]))
    lanes = next((v for v in (16, 8, 4) if inner_extent % v == 0), 0)
    if lanes:
        _, vi = sch.split(loops[-1], [None, lanes])
        sch.vectorize(vi)


def schedule_generic_cpu(sch, spec, values):
    serial = values.get("threads", 0) == 1
    _parallel_vector(sch, C.BLOCK_PAD, serial, spec.in_channels)
    conv = T.get_block(sch, C.BLOCK_CONV)
    loops = sch.get_loops(conv)
    if not serial:
        sch.parallel(sch.fuse(loops[0], loops[1]))
    last = spec.output_shape(1)[-1]
    _parallel_vector(sch, C.BLOCK_EPILOGUE, serial, last)
    return sch
