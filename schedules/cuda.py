"""CUDA rules: every stage thread-bound (one output element a thread, reduction in registers).

The conv stage's threads cover its static extent exactly (the batch goes to ``blockIdx.y``, the
last axis' phases round up so that 32 divides the rest): the accumulator's write-back is
regenerated under the thread loop, and TVM drops a ragged split's bound there.
"""
from __future__ import annotations

import math

from convt.compiler import compute as C
from convt.compiler import tvm_api as T

from .generic import EmptyOutput
from .rule import Rule
from .space import Dim, Space, divisors
from .steps import Axes, split_exact

_WARP = 32


def _align(spec):
    """q_align of the conv stage: the last axis' phases round up until 32 divides the
    threads (every output position and channel of one image)."""
    q = C.phase_extents(spec)
    rest = math.prod(qi * s for qi, s in zip(q[:-1], spec.strides[:-1])) * spec.strides[-1] \
        * spec.out_channels
    return (1,) * (spec.rank - 1) + (_WARP // math.gcd(_WARP, rest),)


def _threads(spec):
    q = C.phase_extents(spec, _align(spec))
    return math.prod(qi * s for qi, s in zip(q, spec.strides)) * spec.out_channels


def _bind(sch, loops, tpb):
    bx, tx = sch.split(sch.fuse(*loops), [None, tpb])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    return tx


class ThreadPerOutput(Rule):
    name = "cuda.thread_per_output"

    def space(self, spec, info):
        choices = divisors(_threads(spec), (32, 64, 128, 256, 512))
        return Space(self.name, [Dim("threads_per_block", lambda v: choices,
                                     "CUDA block size (dividing the threads of one image)")])

    def propose(self, spec, info):
        return {"threads_per_block": 128}

    def definition(self, spec, info, values):
        return C.define(spec, q_align=_align(spec))

    def schedule(self, sch, d, info, values):
        spec = d.spec
        tpb = values["threads_per_block"]
        _bind(sch, sch.get_loops(Axes(sch, C.BLOCK_PAD, d.roles[C.BLOCK_PAD]).block), tpb)
        ax = Axes(sch, C.BLOCK_CONV, d.roles[C.BLOCK_CONV])
        spatial = [ax[f"{p}{a}"] for a in range(spec.rank) for p in "qr"] + [ax["co"]]
        sch.bind(ax["n"], "blockIdx.y")
        bx, tx = split_exact(sch, sch.fuse(*spatial), [None, tpb])
        sch.bind(bx, "blockIdx.x")
        sch.bind(tx, "threadIdx.x")
        acc = sch.cache_write(ax.block, 0, "local")
        sch.reverse_compute_at(acc, tx)
        epi = T.get_block(sch, C.BLOCK_EPILOGUE)
        if spec.layout == "channels_last":
            sch.reverse_compute_inline(epi)
        else:
            _bind(sch, sch.get_loops(epi), tpb)
        sch.decompose_reduction(ax.block, ax["ci"])

    def schedule_pack(self, sch, d, info):
        if d.form.kind != "none":
            _bind(sch, sch.get_loops(Axes(sch, C.BLOCK_PACK, d.pack_roles).block), 128)


RULES = [EmptyOutput(), ThreadPerOutput()]
