"""Relax integration: the scheduled kernel as a ``call_tir`` callee, so whole-model import can
route each ConvTranspose through convt's spec, compute and schedules."""
from __future__ import annotations

from . import tvm_api as T
from .compute import conv_transpose_prim_func


def relax_module(spec, target="x86", knobs=None, func_name="conv_transpose"):
    """IRModule with the scheduled PrimFunc ``func_name`` and Relax ``main(x, kernel[, bias])``
    calling it; a symbolic batch stays symbolic in the Relax signature."""
    from convt import schedules
    from .targets import resolve

    sch = T.Schedule(conv_transpose_prim_func(spec))
    schedules.apply(sch, spec, schedules.describe(resolve(target)), knobs)
    prim = sch.mod["main"].with_attr("global_symbol", func_name)

    rx = T.relax
    bb = rx.BlockBuilder()
    n = T.var("n", "int64") if spec.batch is None else spec.batch
    params = [rx.Var("x", rx.TensorType(spec.input_shape(n), spec.dtype)),
              rx.Var("kernel", rx.TensorType(spec.kernel_shape, spec.dtype))]
    if spec.bias:
        params.append(rx.Var("bias", rx.TensorType((spec.out_channels,), spec.dtype)))
    with bb.function("main", params):
        gv = bb.add_func(prim, func_name)
        out = bb.emit(rx.call_tir(gv, params, rx.TensorType(spec.output_shape(n),
                                                                   spec.dtype)))
        bb.emit_func_output(out)
    return bb.get()
