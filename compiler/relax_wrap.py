"""Relax integration: the scheduled kernel as a ``call_tir`` callee, so whole-model import can
route each ConvTranspose through convt's spec, compute and schedules."""
from __future__ import annotations

from . import tvm_api as T
from .build import schedule

KERNEL_PREFIX = "convt_"  # PrimFuncs named so are convt kernels (profiles sum them apart)


def emit_call(bb, spec, args, batch, target="x86", knobs=None, funcs=None):
    """Emit ``call_tir(convt kernel, args)`` into the open function of BlockBuilder ``bb``.

    ``batch`` is the caller's batch (an int or its symbolic var); ``funcs`` maps spec keys to
    (pack, main, packed shape) already added, so equal layers share one kernel. The kernel goes through its own
    ``pack`` call: with a constant kernel, constant folding runs it once at compile time.
    """
    funcs = {} if funcs is None else funcs
    known = funcs.get(spec.key())
    if known is None:
        done = schedule(spec, target, knobs)
        name = f"{KERNEL_PREFIX}{len(funcs)}_{spec.rank}d"
        pack_gv, main_gv = (
            bb.add_func(T.mark_scheduled(done.funcs[part], done.rule).with_attr(
                "global_symbol", sym), sym)
            for part, sym in (("pack", name + "_pack"), ("main", name)))
        known = funcs[spec.key()] = (pack_gv, main_gv, done.definition.packed_shape)
    pack_gv, main_gv, packed_as = known
    x, kernel, *rest = args
    packed = bb.emit(T.relax.call_tir(pack_gv, [kernel], T.relax.TensorType(packed_as, "float32")))
    out = T.relax.TensorType(spec.output_shape(batch), spec.dtype)
    return bb.emit(T.relax.call_tir(main_gv, [x, packed, *rest], out))


def relax_module(spec, target="x86", knobs=None):
    """IRModule with Relax ``main(x, *spec.param_names)`` calling the scheduled kernel; a
    symbolic batch stays symbolic in the Relax signature."""
    rx = T.relax
    bb = rx.BlockBuilder()
    n = T.var("n", "int64") if spec.batch is None else spec.batch
    params = [rx.Var("x", rx.TensorType(spec.input_shape(n), spec.dtype))]
    params += [rx.Var(p, rx.TensorType(spec.param_shape(p, n), spec.dtype))
               for p in spec.param_names]
    with bb.function("main", params):
        out = emit_call(bb, spec, params, n, target, knobs)
        bb.emit_func_output(out)
    return bb.get()
