"""One kernel on guarded buffers against the float64 oracle: the test suite's check of every
rule and knob, and ``convt check`` for a user's suspect shape.

Random normal inputs (never zeros) go into buffers framed by canary zones (``convt.guard``);
the kernel is drawn at the scale a layer is initialised to (std 1/sqrt(fan-in)), so outputs are
O(1) and float32 rounding over a long reduction (2048 channels x 16 taps) stays far under the
tolerance while one missing term (about 1/sqrt(fan-in)) does not. The kernel's output is compared with ``reference.spec_reference`` at ``rtol = atol = 1e-4``
and every margin is checked after each call.
"""
from __future__ import annotations

import dataclasses
from typing import List

import numpy as np

from . import reference

RTOL = ATOL = 1e-4


@dataclasses.dataclass
class Checked:
    kernel: object            # compiler.build.BuiltKernel
    output: np.ndarray
    expected: np.ndarray
    faults: List[str]         # buffer margins written or inputs modified (convt.guard)
    max_error: float

    @property
    def ok(self) -> bool:
        return not self.faults and self.output.shape == self.expected.shape and bool(
            np.allclose(self.output, self.expected, rtol=RTOL, atol=ATOL))

    def summary(self) -> str:
        k = self.kernel
        knobs = ", ".join(f"{x.name}={x.value}" for x in k.knobs)
        lines = [f"rule {k.rule}" + (f": {knobs}" if knobs else ""),
                 f"output {self.output.shape}, max |error| {self.max_error:.2e} against the "
                 f"float64 reference"]
        lines += [f"OUT OF BOUNDS {f}" for f in self.faults] or ["buffers: in bounds"]
        lines.append("ok" if self.ok else "FAILED")
        return "\n".join(lines)


def inputs_for(spec, batch, rng) -> dict:
    """Random inputs of ``spec`` by name: x, kernel (std 1/sqrt(fan-in)), then bias / PRelu
    slope / residual."""
    fan_in = max(1, spec.in_channels // spec.groups * int(np.prod(spec.kernel)))
    values = {"x": rng.standard_normal(spec.input_shape(batch)).astype(np.float32),
              "kernel": (rng.standard_normal(spec.kernel_shape)
                         / np.sqrt(fan_in)).astype(np.float32)}
    if spec.bias:
        values["bias"] = rng.standard_normal(spec.out_channels).astype(np.float32)
    if spec.activation == "prelu":
        values["alpha"] = rng.uniform(0, 0.5, spec.out_channels).astype(np.float32)
    if spec.residual:
        values["residual"] = rng.standard_normal(spec.output_shape(batch)).astype(np.float32)
    return values


def check_spec(spec, target="x86", knobs=None, batch=None, seed=0, misalign=True) -> Checked:
    """Build ``spec`` for ``target`` (a host target: it runs here) with ``knobs`` and check it."""
    from convt.compiler.build import build, kernel_meta
    from convt.guard import guarded_call

    kernel = build(spec, target, knobs)
    batch = spec.batch or batch or 2
    values = inputs_for(spec, batch, np.random.default_rng(seed))
    y, faults = guarded_call(kernel.lib, kernel_meta(kernel, bound_params=False), values,
                             misalign=misalign)
    ref = reference.spec_reference(spec, values["x"], values["kernel"], values.get("bias"),
                                   values.get("alpha"), values.get("residual"))
    err = float(np.max(np.abs(y - ref), initial=0)) if y.shape == ref.shape else float("inf")
    return Checked(kernel, y, ref, faults, err)
