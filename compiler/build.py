"""spec + target -> scheduled, built kernel. The only place that builds a kernel."""
from __future__ import annotations

import dataclasses
import time

from convt import schedules

from . import tvm_api as T
from .artifact import ToolchainError  # noqa: F401  (raised by exports; re-exported)
from .spec import ConvTransposeSpec
from .targets import resolve


@dataclasses.dataclass
class BuiltKernel:
    spec: ConvTransposeSpec
    target: object          # tvm Target
    lib: object             # tvm runtime Module
    rule: str
    knobs: list             # [schedules.Knob] of the point the rule built
    compile_seconds: float
    packed_shape: tuple     # of the ``pack`` function's output, which ``main`` reads

    @property
    def family(self):
        return schedules.describe(self.target).family


def schedule(spec: ConvTransposeSpec, target, knobs=None) -> "schedules.Scheduled":
    """The scheduled ``main`` (conv) and ``pack`` (weight packing) PrimFuncs of ``spec`` for
    ``target``, with the rule and knob values that made them (``knobs`` may force a rule)."""
    info = schedules.describe(resolve(target))
    on_host = info.family != "cuda"   # callers' arrays are passed to host kernels uncopied
    return schedules.apply(spec, info, knobs, unaligned_inputs=on_host)


def build(spec: ConvTransposeSpec, target="x86", knobs=None) -> BuiltKernel:
    tgt = resolve(target)
    t0 = time.perf_counter()
    done = schedule(spec, tgt, knobs)
    lib = T.build_tir(T.ir_module(done.funcs), tgt)
    return BuiltKernel(spec, tgt, lib, done.rule, done.knobs, time.perf_counter() - t0,
                       tuple(done.definition.packed_shape))


def signature(spec: ConvTransposeSpec, bound_params: bool, unaligned_inputs=False):
    """Inputs and output; ``align`` (bytes) is what the kernel needs of an input's data."""
    def entry(name, shape):
        return {"name": name, "shape": [None if d is None else int(d)
                                        for d in shape], "dtype": spec.dtype}
    inputs = [entry("x", spec.input_shape())]
    if not bound_params:
        inputs += [entry(p, spec.param_shape(p)) for p in spec.param_names]
    for i in inputs:
        i["layout"] = spec.layout if i["name"] == "x" else None
        if unaligned_inputs:
            i["align"] = T.dtype_bytes(spec.dtype)
    out = entry("y", spec.output_shape())
    out["layout"] = spec.layout
    return {"inputs": inputs, "outputs": [out]}


def kernel_meta(kernel: BuiltKernel, bound_params: bool, post_activation=None) -> dict:
    """The artifact entry of a kernel: what the runtime needs to call it."""
    spec = kernel.spec
    return {
        "kind": "kernel",
        "schedule": {"rule": kernel.rule, "knobs": [k.to_dict() for k in kernel.knobs],
                     "knob_schema": schedules.KNOB_SCHEMA},
        "spec": spec.to_dict(), "spec_key": spec.key(),
        "args": ["x", *spec.param_names],
        "signature": signature(spec, bound_params, kernel.family != "cuda"),
        "packed_shape": list(kernel.packed_shape),
        "post_activation": post_activation,
    }
