"""A schedule is data: a list of named decisions, each with the range a tuner may search.

Rules derive defaults from shape and target features; ``convt tune`` searches the same knobs and
stores the chosen values keyed by spec key + target + ``KNOB_SCHEMA``.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Tuple

KNOB_SCHEMA = 1


@dataclasses.dataclass(frozen=True)
class Knob:
    name: str
    value: int
    choices: Tuple[int, ...]
    doc: str = ""

    def to_dict(self):
        return {"name": self.name, "value": self.value, "choices": list(self.choices),
                "doc": self.doc}


def as_values(knobs: List[Knob]) -> Dict[str, int]:
    return {k.name: k.value for k in knobs}


def override(knobs: List[Knob], values: Dict[str, int] | None) -> List[Knob]:
    """Apply user/tuner values; unknown names or values outside the range are errors."""
    if not values:
        return knobs
    by_name = {k.name: k for k in knobs}
    unknown = set(values) - set(by_name)
    if unknown:
        raise ValueError(f"unknown schedule knobs {sorted(unknown)}; known: {sorted(by_name)}")
    out = []
    for k in knobs:
        if k.name in values:
            v = int(values[k.name])
            if v not in k.choices:
                raise ValueError(f"knob {k.name}={v} is outside its choices {k.choices}")
            k = dataclasses.replace(k, value=v)
        out.append(k)
    return out
