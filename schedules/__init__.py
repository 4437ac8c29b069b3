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


def apply(sch, spec, info: TargetInfo, values=None):
    rule, knobs = plan(spec, info, values)
    rule.apply(sch, spec, as_values(knobs))
    return rule, knobs
