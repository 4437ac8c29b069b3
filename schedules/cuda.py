"""CUDA rules: every stage thread-bound (one output element a thread, reduction in registers)."""
from __future__ import annotations

from convt.compiler import compute as C
from convt.compiler import tvm_api as T

from .knobs import Knob
from .rule import Rule


def cuda_knobs(spec, info):
    return [Knob("threads_per_block", 128, (32, 64, 128, 256, 512), "CUDA block size")]


def _bind(sch, loops, tpb):
    bx, tx = sch.split(sch.fuse(*loops), [None, tpb])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    return tx


def schedule_cuda(sch, spec, values):
    tpb = values["threads_per_block"]
    _bind(sch, sch.get_loops(T.get_block(sch, C.BLOCK_PAD)), tpb)
    conv = T.get_block(sch, C.BLOCK_CONV)
    tx = _bind(sch, sch.get_loops(conv)[:2 * spec.rank + 2], tpb)
    acc = sch.cache_write(conv, 0, "local")
    sch.reverse_compute_at(acc, tx)
    epi = T.get_block(sch, C.BLOCK_EPILOGUE)
    if spec.layout == "channels_last":
        sch.reverse_compute_inline(epi)
    else:
        _bind(sch, sch.get_loops(epi), tpb)
    sch.decompose_reduction(conv, sch.get_loops(conv)[2])
    return sch


def schedule_pack_cuda(sch):
    _bind(sch, sch.get_loops(T.get_block(sch, C.BLOCK_PACK)), 128)


RULES = [
    Rule("cuda.thread_per_output", lambda spec, info: info.family == "cuda",
         cuda_knobs, schedule_cuda),
]
