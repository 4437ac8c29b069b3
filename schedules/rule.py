"""A schedule rule: when it applies, the knobs it exposes, and how it transforms a schedule."""
from __future__ import annotations

import dataclasses
from typing import Callable


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str
    applies: Callable    # (spec, TargetInfo) -> bool
    knobs: Callable      # (spec, TargetInfo) -> list[Knob]
    apply: Callable      # (Schedule, spec, {knob: value}) -> Schedule
    compute_args: Callable = lambda spec, values: {}  # keyword args of the compute definition
