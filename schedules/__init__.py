"""Schedule rules per target family: an ordered list, first applicable rule wins, and the last
rule of every CPU list always applies. A schedule never changes results."""
from __future__ import annotations

from . import arm, cuda, x86
from .knobs import Knob, as_values, override  # noqa: F401
from .target_info import TargetInfo, describe  # noqa: F401

RULES = {"x86": x86.RULES, "cpu": x86.RULES, "arm": arm.RULES, "cuda": cuda.RULES}


def pick(spec, info: TargetInfo):
    for rule in RULES[info.family]:
        if rule.applies(spec, info):
            return rule
    raise LookupError(f"no schedule rule applies to {info.family}")  # lists end in a fallback


def plan(spec, info: TargetInfo, values=None):
    """(rule, knobs) for ``spec`` on ``info``: the rule's defaults, then ``values`` on top."""
    rule = pick(spec, info)
    return rule, override(rule.knobs(spec, info), values)


def schedule_pack(sch, info: TargetInfo):
    """The weight-packing function: run once per constant kernel, so simply parallel."""
    if info.family == "cuda":
        cuda.schedule_pack_cuda(sch)
        return
    from convt.compiler import compute as C
    from convt.compiler import tvm_api as T
    loops = sch.get_loops(T.get_block(sch, C.BLOCK_PACK))
    sch.parallel(sch.fuse(loops[0], loops[1]) if len(loops) > 1 else loops[0])

