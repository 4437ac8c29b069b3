"""CUDA rules: every stage thread-bound (one output element a thread, reduction in registers)."""
from __future__ import annotations

from convt.compiler import compute as C
from convt.compiler import tvm_api as T

from .generic import EmptyOutput
from .rule import Rule
from .space import Dim, Space, fixed
from .steps import Axes


def _bind(sch, loops, tpb):
    bx, tx = sch.split(sch.fuse(*loops), [None, tpb])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    return tx


class ThreadPerOutput(Rule):
    name = "cuda.thread_per_output"

    def space(self, spec, info):
        return Space(self.name, [Dim("threads_per_block", fixed(32, 64, 128, 256, 512),
                                     "CUDA block size")])

    def propose(self, spec, info):
        return {"threads_per_block": 128}

    def definition(self, spec, info, values):
        return C.define(spec)

    def schedule(self, sch, d, info, values):
        spec = d.spec
        tpb = values["threads_per_block"]
        _bind(sch, sch.get_loops(Axes(sch, C.BLOCK_PAD, d.roles[C.BLOCK_PAD]).block), tpb)
        ax = Axes(sch, C.BLOCK_CONV, d.roles[C.BLOCK_CONV])
        spatial = [ax["n"]] + [ax[f"{p}{a}"] for a in range(spec.rank) for p in "qr"] + \
            [ax["co"]]
        tx = _bind(sch, spatial, tpb)
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
            _bind(sch, sch.get_loops(T.get_block(sch, C.BLOCK_PACK)), 128)


RULES = [EmptyOutput(), ThreadPerOutput()]
