"""Schedule rules per target family: an ordered list, the first rule that does not decline wins,
and the last rule of every list applies to every spec. A schedule never changes results.

``knobs={"rule": name, ...}`` forces a rule (tests, the tuner); forcing one where it declines is
a ValueError that names the rule and its reason.
"""
from __future__ import annotations

from . import arm, cuda, x86
from .rule import Rule, Scheduled  # noqa: F401
from .space import KNOB_SCHEMA, Knob, Space  # noqa: F401
from .target_info import TargetInfo, describe  # noqa: F401

RULES = {"x86": x86.RULES, "cpu": x86.RULES, "arm": arm.RULES, "cuda": cuda.RULES}


def rules(info: TargetInfo):
    return RULES[info.family]


def rule_named(name, info: TargetInfo) -> Rule:
    for rule in rules(info):
        if rule.name == name:
            return rule
    raise ValueError(f"knob rule={name!r} is not a rule for {info.family} targets; rules: "
                     f"{[r.name for r in rules(info)]}")


def applicable(spec, info: TargetInfo):
    """The rules that can build ``spec`` for ``info`` (what a tuner may force)."""
    return [r for r in rules(info) if r.decline(spec, info) is None]


def pick(spec, info: TargetInfo, knobs=None) -> Rule:
    """The rule a build of ``spec`` with ``knobs`` uses."""
    name = (knobs or {}).get("rule")
    if name is not None:
        rule = rule_named(name, info)
        reason = rule.decline(spec, info)
        if reason:
            raise ValueError(f"knob rule={name!r}: {name} declines this spec: {reason}")
        return rule
    for rule in rules(info):
        if rule.decline(spec, info) is None and rule.passes_over(spec, info) is None:
            return rule
    raise LookupError(f"no schedule rule applies to {info.family}")  # lists end in a fallback


def apply(spec, info: TargetInfo, knobs=None, unaligned_inputs=False) -> Scheduled:
    """The scheduled kernel of ``spec``: the picked rule, its heuristic's knobs under
    ``knobs``."""
    knobs = dict(knobs or {})
    rule = pick(spec, info, knobs)
    forced = knobs.pop("rule", None) is not None
    return rule.apply(spec, info, knobs, forced=forced, unaligned_inputs=unaligned_inputs)
