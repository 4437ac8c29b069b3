"""A schedule rule, in the style of TVM's dlight: ``apply`` returns a schedule or None.

Each rule decides for itself. ``decline`` says why it cannot build a spec at all (forcing it
there is an error that names the rule and this reason); ``passes_over`` says why the default
choice prefers a later rule of the list (a forced rule ignores it). Its ``space`` lists exactly
the knob values it honours and ``propose`` is its heuristic's point of that space.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

from convt.compiler import compute as C
from convt.compiler import tvm_api as T

from .space import Knob, Space
from .steps import Axes

SERIAL_MACS = 1 << 19   # multiply-adds under which a kernel runs on one thread (~10 us)


@dataclasses.dataclass
class Scheduled:
    """A rule's result: the scheduled ``main`` and ``pack`` PrimFuncs and what chose them."""
    rule: str
    values: Dict[str, int]
    knobs: List[Knob]
    definition: C.Definition
    main: object
    pack: object

    @property
    def funcs(self):
        return {"main": self.main, "pack": self.pack}


class Rule:
    name = ""

    def decline(self, spec, info) -> Optional[str]:
        """Why this rule cannot build ``spec`` for ``info`` (None: it can)."""
        return "the output is empty (the empty rule handles it)" if spec.is_empty else None

    def passes_over(self, spec, info) -> Optional[str]:
        """Why the default choice leaves ``spec`` to a later rule (None: it takes it)."""
        return None

    def space(self, spec, info) -> Space:
        raise NotImplementedError

    def propose(self, spec, info) -> Dict[str, int]:
        """The heuristic's point (``Space.resolve`` moves it into the space)."""
        return {}

    def definition(self, spec, info, values) -> C.Definition:
        raise NotImplementedError

    def schedule(self, sch, d: C.Definition, info, values) -> None:
        raise NotImplementedError

    def schedule_pack(self, sch, d: C.Definition, info) -> None:
        """The weight-packing function runs once per constant kernel: simply parallel."""
        if d.form.kind == "none":
            return
        ax = Axes(sch, C.BLOCK_PACK, d.pack_roles)
        sch.parallel(sch.fuse(ax["blk"], sch.get_loops(ax.block)[1]))

    def proposal(self, spec, info) -> Dict[str, int]:
        """``propose``, with one thread for small kernels (``serial``): a parallel kernel waits
        for every worker, and in a model a few microseconds of work do not pay for the
        wake-up, nor for a worker that another runtime's threads keep off its core."""
        return {"serial": int(spec.macs(spec.batch or 1) < SERIAL_MACS), **self.propose(spec, info)}

    def point(self, spec, info, given=None) -> Dict[str, int]:
        """The knob values a build uses: ``given`` ones, the heuristic's for the rest."""
        return self.space(spec, info).resolve(self.proposal(spec, info), given)

    def apply(self, spec, info, given=None, forced=False, unaligned_inputs=False
              ) -> Optional[Scheduled]:
        """The scheduled kernel, or None when the rule declines (or, unless ``forced``, passes
        the spec over)."""
        if self.decline(spec, info) or (not forced and self.passes_over(spec, info)):
            return None
        space = self.space(spec, info)
        values = space.resolve(self.proposal(spec, info), given)
        d = self.definition(spec, info, values)
        sch = T.Schedule(d.prim_func(unaligned_inputs))
        self.schedule(sch, d, info, values)
        pack = T.Schedule(d.pack_prim_func(unaligned_inputs))
        self.schedule_pack(pack, d, info)
        return Scheduled(self.name, values, space.knobs(values), d, sch.mod["main"],
                         pack.mod["main"])
