"""CPU rules for the PrimFuncs of a whole model that are not convt kernels (what TVM's
LegalizeOps and FuseOps/FuseTIR make of elementwise chains, broadcasts, pooling, norms, concat,
resize, reductions, softmax, and of the convolutions and matmuls convt does not take).

TVM 0.27 leaves these unscheduled on CPU (single-thread scalar loops) and its dlight CPU rules
cover GEMV and softmax-like reductions only (``cpu.Reduction`` also matches a fused
conv+add+relu and makes it slower). Each rule here returns a schedule or None; the list ends in a
fallback that always applies, and the module pass records the winner as ``convt.rule``.

* ``cpu.injective``: no reduction. Producers are inlined into the last block, whose innermost
  loops are vectorized where a vector divides them and whose outer loops run in parallel.
* ``cpu.reduction``: a register tile per reduction block (rows x vector over its last two
  spatial loops, accumulators in registers, reductions outside the tile), its elementwise
  consumers fused into the tile's write-back, blocks feeding it scheduled as ``cpu.injective``.
* ``cpu.graph_fallback``: the outer loop of each block in parallel, the inner vectorized where
  that is safe; never fails.

Every split is exact (a ragged split under a ``compute_at`` drops its predicate: ``steps``).
"""
from __future__ import annotations

from convt.compiler import tvm_api as T

PARALLEL_MIN = 1 << 15   # elements below which one thread does it (rule.SERIAL_MACS: why)
TILE_ROWS = (4, 3, 2)    # rows of a reduction tile (x one vector each: accumulators)


class GraphRule:
    name = ""

    def apply(self, func, info):
        """A scheduled ``tvm.s_tir.Schedule`` of ``func``, or None where the rule declines."""
        raise NotImplementedError


def _vector_factor(extent, lanes):
    """The widest of ``lanes``, ``lanes/2``, ``lanes/4`` (at least 4) dividing ``extent``."""
    if extent is None:
        return 1
    for f in (lanes, lanes // 2, lanes // 4):
        if f >= 4 and extent % f == 0:
            return f
    return 1


def _elements(sch, loops):
    total = 1
    for lp in loops:
        ext = T.const_extent(sch, lp)
        if ext is None:
            return None
        total *= ext
    return total


def schedule_spatial(sch, block, info):
    """A block without reduction: trailing loops vectorized, leading ones fused in parallel."""
    loops = sch.get_loops(block)
    if not loops:
        return
    lanes = info.f32_lanes
    # trailing short loops join the innermost until a vector fits (a 7x7 plane: 49)
    while len(loops) > 1 and all(T.const_extent(sch, lp) for lp in loops[-2:]) \
            and T.const_extent(sch, loops[-1]) < lanes * 4 \
            and _vector_factor(T.const_extent(sch, loops[-1]), lanes) == 1:
        loops = [*loops[:-2], sch.fuse(loops[-2], loops[-1])]
    total = _elements(sch, loops)
    inner = loops[-1]
    f = _vector_factor(T.const_extent(sch, inner), lanes)
    if f > 1 and T.const_extent(sch, inner) > f:
        outer, vec = sch.split(inner, [None, f])
        sch.vectorize(vec)
        loops = [*loops[:-1], outer]
    elif f > 1:
        sch.vectorize(inner)
        loops = loops[:-1]
    elif len(loops) > 1:
        loops = loops[:-1]
    if loops and (total is None or total >= PARALLEL_MIN):
        sch.parallel(sch.fuse(*loops) if len(loops) > 1 else loops[0])


def _blocks(sch):
    return list(sch.get_child_blocks(T.root_block(sch)))


def _inline_elementwise(sch, keep):
    """Inline every block but the outputs and those ``keep`` names (repeated until stable)."""
    changed = True
    while changed:
        changed = False
        for blk in _blocks(sch):
            if keep(blk):
                continue
            try:
                sch.compute_inline(blk)
                changed = True
            except T.ScheduleError:
                continue


class Injective(GraphRule):
    name = "cpu.injective"

    def apply(self, func, info):
        sch = T.Schedule(func)
        if any("R" in T.block_kinds(sch, b) or "O" in T.block_kinds(sch, b) for b in _blocks(sch)):
            return None
        _inline_elementwise(sch, keep=lambda b: False)
        for blk in _blocks(sch):
            schedule_spatial(sch, blk, info)
        return sch


class ReductionTile(GraphRule):
    name = "cpu.reduction"

    def apply(self, func, info):
        sch = T.Schedule(func)
        kinds = {T.block_name(sch, b): T.block_kinds(sch, b) for b in _blocks(sch)}
        reductions = [n for n, k in kinds.items() if "R" in k]
        if not reductions or any(k.rstrip("R").count("R") or "O" in k or not k.startswith("S")
                                 for k in kinds.values()):
            return None   # reductions must follow the spatial iterators (TE's order)

        def feeds_reduction(blk):
            return any("R" in T.block_kinds(sch, c) for c in sch.get_consumers(blk))

        _inline_elementwise(sch, keep=lambda b: "R" in T.block_kinds(sch, b) or
                            feeds_reduction(b))
        rest = [T.block_name(sch, b) for b in _blocks(sch)
                if T.block_name(sch, b) not in reductions]
        for name in reductions:
            self._tile(sch, T.get_block(sch, name), info)
        for name in rest:   # what feeds a reduction, and consumers the tiles did not absorb
            blk = T.find_block(sch, name)
            if blk is not None:
                schedule_spatial(sch, blk, info)
        return sch

    def _tile(self, sch, blk, info):
        kinds = T.block_kinds(sch, blk)
        ns = len(kinds) - len(kinds.lstrip("S"))
        loops = sch.get_loops(blk)
        spatial, reduce = loops[:ns], loops[ns:]
        fv = _vector_factor(T.const_extent(sch, spatial[-1]), info.f32_lanes)
        fr = _vector_factor(T.const_extent(sch, reduce[-1]), info.f32_lanes)
        if fv == 1 and fr > 1:
            return self._rows(sch, blk, spatial, reduce, fr)
        vo, vi = sch.split(spatial[-1], [None, fv])
        outer = list(spatial[:-1])
        ui = None
        if outer:
            eu = T.const_extent(sch, outer[-1])
            fu = next((r for r in TILE_ROWS if eu is not None and eu % r == 0), 1)
            uo, ui = sch.split(outer[-1], [None, fu])
            outer[-1] = uo
            sch.reorder(*outer, vo, *reduce, ui, vi)
        else:
            sch.reorder(vo, *reduce, vi)
        wb = sch.cache_write(blk, 0, "local")
        sch.reverse_compute_at(wb, vo, preserve_unit_loops=True)
        while True:   # elementwise consumers join the write-back
            nxt = list(sch.get_consumers(wb))
            if len(nxt) != 1 or "R" in T.block_kinds(sch, nxt[0]):
                break
            try:
                sch.reverse_compute_inline(nxt[0])
            except T.ScheduleError:
                break
        wb_loops = sch.get_loops(wb)[len(outer) + 1:]
        if fv > 1:
            sch.vectorize(wb_loops[-1])
            sch.vectorize(vi)
        if ui is not None:
            sch.unroll(ui)
        total = _elements(sch, outer)
        if outer and (total is None or total * fv >= PARALLEL_MIN // 8):
            sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])
        # last: the loops above a decomposed update hold a block that is no longer a reduction
        init = sch.decompose_reduction(blk, reduce[0])
        if fv > 1:
            sch.vectorize(sch.get_loops(init)[-1])


    @staticmethod
    def _rows(sch, blk, spatial, reduce, fr):
        """A reduction along contiguous rows (a mean over a plane, a norm's statistics):
        ``fr`` partial sums in a vector (``rfactor``), added up once per output."""
        _, ki = sch.split(reduce[-1], [None, fr])
        rf = sch.rfactor(ki, len(spatial))   # partial sums innermost: one vector per output
        sch.vectorize(sch.get_loops(rf)[-1])
        total = _elements(sch, spatial)
        outer = len(spatial)
        if total is None or total >= 2:
            for b in (rf, blk):
                lp = sch.get_loops(b)[:len(spatial)]
                sch.parallel(sch.fuse(*lp) if len(lp) > 1 else lp[0])
            outer = 1
        sch.decompose_reduction(rf, sch.get_loops(rf)[outer])


class GraphFallback(GraphRule):
    """Always applies: each block's outer spatial loop in parallel, what else is safe."""
    name = "cpu.graph_fallback"

    def apply(self, func, info):
        sch = T.Schedule(func)
        for blk in _blocks(sch):
            try:
                kinds = T.block_kinds(sch, blk)
                loops = sch.get_loops(blk)
                if kinds and "R" not in kinds and "O" not in kinds:
                    schedule_spatial(sch, blk, info)
                elif loops and kinds.startswith("S") and len(loops) == len(kinds):
                    sch.parallel(loops[0])
            except T.ScheduleError:
                continue
        return sch


RULES = [Injective(), ReductionTile(), GraphFallback()]


def schedule_func(func, info, rules=RULES):
    """(scheduled PrimFunc, rule name): the first rule of ``rules`` that schedules ``func``."""
    for rule in rules:
        try:
            sch = rule.apply(func, info)
        except Exception:  # noqa: BLE001  (a rule that trips on a func leaves it to the next)
            sch = None
        if sch is not None:
            return sch.mod["main"], rule.name
    raise LookupError("no graph rule applies")   # the list ends in a fallback
