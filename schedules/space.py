"""A rule's search space: the knobs it honours, each with exactly the values that change its kernel.

A space is an ordered list of dimensions; a dimension's choices may depend on the values taken
before it (``chunk`` counts whole ``tile_h`` rows, ``unroll_k`` divides what ``k_blocks`` left),
so every point of the space builds a correct kernel and no two points build the same one. The
heuristic proposes a point, a user or tuner overrides some knobs by name, and ``resolve`` walks
the dimensions in order: a given value must be one of its choices (else a ValueError naming the
knob and its choices), a proposed one that no longer fits moves to the nearest choice.

Stored keyed by spec key + target + ``KNOB_SCHEMA``; bump it when a knob changes meaning.
"""
from __future__ import annotations

import dataclasses
import numbers
import random
from typing import Callable, Dict, List, Optional, Tuple

KNOB_SCHEMA = 2   # 2: spaces per rule (``threads`` became ``serial``; ``rule`` selects a rule)
_SEARCH_NODES = 20000   # choices ``resolve`` tries before it reports the given knobs as misfits


@dataclasses.dataclass(frozen=True)
class Knob:
    """One decision of a built kernel: its value and the choices it had (manifest, CLI)."""
    name: str
    value: int
    choices: Tuple[int, ...]
    doc: str = ""

    def to_dict(self):
        return {"name": self.name, "value": self.value, "choices": list(self.choices),
                "doc": self.doc}


@dataclasses.dataclass(frozen=True)
class Dim:
    """A knob of a space: ``choices(values)`` from the values of the knobs before it."""
    name: str
    choices: Callable[[Dict[str, int]], Tuple[int, ...]]
    doc: str = ""


def fixed(*values):
    """Choices that do not depend on the other knobs."""
    return lambda _values: tuple(values)


def upto(n: int, start: int = 1, step: int = 1) -> Tuple[int, ...]:
    return tuple(range(start, max(start, n) + 1, step))


def divisors(n: int, among) -> Tuple[int, ...]:
    return tuple(v for v in among if v >= 1 and n % v == 0)


class Space:
    def __init__(self, rule: str, dims: List[Dim]):
        self.rule = rule
        self.dims = dims
        self.names = tuple(d.name for d in dims)

    def _walk(self, pick):
        """Values chosen dimension by dimension; ``pick(dim, choices, values) -> value``."""
        values: Dict[str, int] = {}
        for dim in self.dims:
            choices = dim.choices(values)
            if not choices:   # a rule's space is never empty along a knob: a bug if it is
                raise AssertionError(f"rule {self.rule}: knob {dim.name} has no choices")
            values[dim.name] = pick(dim, choices, values)
        return values

    def resolve(self, proposed: Dict[str, int], given: Optional[Dict[str, int]] = None):
        """The point with ``given`` values as they are and the rest as near ``proposed`` as the
        given ones allow (an earlier knob moves when a later given one needs it: ``tile_w=5``
        takes a ``tile_h`` that leaves registers for it)."""
        given = dict(given or {})
        unknown = sorted(set(given) - set(self.names))
        if unknown:
            raise ValueError(f"unknown schedule knobs {unknown} for rule {self.rule}; its "
                             f"knobs: {list(self.names)}")
        for name, v in given.items():
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ValueError(f"knob {name}={v!r} of rule {self.rule} must be an integer")
            given[name] = int(v)

        def near(dim, choices):
            want = proposed.get(dim.name, choices[0])
            return sorted(choices, key=lambda c: (abs(c - want), c))

        budget = [_SEARCH_NODES]

        def search(i, values):
            if i == len(self.dims):
                return values
            dim = self.dims[i]
            choices = dim.choices(values)
            if dim.name in given:
                candidates = [given[dim.name]] if given[dim.name] in choices else []
            else:
                candidates = near(dim, choices)
            for c in candidates:
                budget[0] -= 1
                if budget[0] < 0:
                    return None
                found = search(i + 1, {**values, dim.name: c})
                if found is not None:
                    return found
            return None

        found = search(0, {})
        if found is not None:
            return found

        def greedy(dim, choices, values):   # for the error: the first given knob that misfits
            if dim.name in given:
                if given[dim.name] not in choices:
                    raise ValueError(f"knob {dim.name}={given[dim.name]} of rule {self.rule} is "
                                     f"outside its choices {list(choices)}"
                                     + _given_before(values, given))
                return given[dim.name]
            return near(dim, choices)[0]

        self._walk(greedy)
        raise ValueError(f"knobs {given} of rule {self.rule} do not fit together")

    def sample(self, rnd: random.Random) -> Dict[str, int]:
        return self._walk(lambda dim, choices, values: rnd.choice(choices))

    def knobs(self, values: Dict[str, int]) -> List[Knob]:
        out, before = [], {}
        for dim in self.dims:
            out.append(Knob(dim.name, values[dim.name], dim.choices(before), dim.doc))
            before[dim.name] = values[dim.name]
        return out

    def contains(self, values: Dict[str, int]) -> bool:
        if set(values) != set(self.names):
            return False
        before = {}
        for dim in self.dims:
            if values[dim.name] not in dim.choices(before):
                return False
            before[dim.name] = values[dim.name]
        return True

    def size(self, limit: int = 10 ** 6) -> int:
        """Number of points, counted up to ``limit``."""
        def count(i, values):
            if i == len(self.dims):
                return 1
            total = 0
            for c in self.dims[i].choices(values):
                total += count(i + 1, {**values, self.dims[i].name: c})
                if total >= limit:
                    return limit
            return total
        return count(0, {})


def _given_before(values, given):
    shaped = {k: v for k, v in values.items() if k in given}
    return f" (given {shaped})" if shaped else ""
