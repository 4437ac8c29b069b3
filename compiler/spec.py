"""The frozen ConvTranspose spec: every frontend resolves its own padding language into this.

Geometry per spatial axis (input length ``i``, kernel ``k``, stride ``s``, dilation ``d``)::

    full   = (i - 1) * s + (k - 1) * d + 1            # length of the scatter result
    out    = full + output_padding - pad_begin - pad_end
    y[o]   = full_result[o + pad_begin]  (zero where o + pad_begin >= full)

Nothing after the spec re-derives padding: compute, schedules and shape checks read these fields.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Optional, Tuple

LAYOUTS = ("channels_last", "channels_first")
KERNEL_LAYOUTS = ("spatial_oi", "io_spatial")  # Keras: k... + (O, I); ONNX: (I, O/groups) + k...
DTYPES = ("float32", "float16")
SCHEMA_VERSION = 1


class SpecError(ValueError):
    """A spec field breaks a rule; the message names the field, the rule and the values."""


def _ints(name, value, rank):
    value = tuple(int(v) for v in value)
    if len(value) != rank:
        raise SpecError(f"{name} {value} must have {rank} entries, one per spatial axis")
    return value


@dataclasses.dataclass(frozen=True)
class ConvTransposeSpec:
    """One transposed convolution, fully resolved.

    ``in_channels``/``out_channels`` are totals; ``groups`` splits both. ``batch`` is an int or
    ``None`` (symbolic: the compiled module accepts any batch size). ``conv_strides`` (with
    ``strides`` 1) makes it a strided forward convolution with a flipped kernel
    (``frontends.onnx_forward``). ``residual`` adds a tensor of the output's shape before the
    activation (a ResNet block's ``relu(bn(conv(x)) + x)``). ``activation`` names an
    elementwise activation from :mod:`convt.compiler.activations`, applied after the bias, with
    ``activation_args`` (e.g. LeakyRelu's alpha); ``"prelu"`` adds a per-channel slope input.
    """

    in_spatial: Tuple[int, ...]
    in_channels: int
    out_channels: int
    kernel: Tuple[int, ...]
    strides: Tuple[int, ...]
    dilation: Tuple[int, ...]
    pads_begin: Tuple[int, ...]
    pads_end: Tuple[int, ...]
    output_padding: Tuple[int, ...]
    groups: int = 1
    batch: Optional[int] = None
    layout: str = "channels_last"
    kernel_layout: str = "spatial_oi"
    dtype: str = "float32"
    bias: bool = False
    activation: str = "linear"
    activation_args: Tuple[float, ...] = ()
    conv_strides: Optional[Tuple[int, ...]] = None
    residual: bool = False

    def __post_init__(self):
        rank = len(self.kernel)
        if self.conv_strides is None:
            object.__setattr__(self, "conv_strides", (1,) * rank)
        for name in ("in_spatial", "kernel", "strides", "dilation", "pads_begin", "pads_end",
                     "output_padding", "conv_strides"):
            object.__setattr__(self, name, _ints(name, getattr(self, name), rank))
        object.__setattr__(self, "activation_args", tuple(float(a) for a in self.activation_args))
        self.validate()

    # ---- rules -------------------------------------------------------------------------
    def validate(self):
        from .activations import ARITY, FUSED

        rank = self.rank
        if rank not in (1, 2, 3):
            raise SpecError(f"rank {rank} is not supported: 1, 2 or 3 spatial axes")
        for name in ("in_spatial", "kernel", "strides", "dilation", "conv_strides"):
            if any(v <= 0 for v in getattr(self, name)):
                raise SpecError(f"{name} {getattr(self, name)} must be positive on every axis")
        for name in ("pads_begin", "pads_end", "output_padding"):
            if any(v < 0 for v in getattr(self, name)):
                raise SpecError(f"{name} {getattr(self, name)} must be >= 0 on every axis")
        for name in ("in_channels", "out_channels", "groups"):
            if int(getattr(self, name)) <= 0:
                raise SpecError(f"{name} {getattr(self, name)} must be positive")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise SpecError(
                f"in_channels {self.in_channels} and out_channels {self.out_channels} must both "
                f"divide by groups {self.groups}")
        if self.batch is not None and int(self.batch) <= 0:
            raise SpecError(f"batch {self.batch} must be positive or None (any batch size)")
        if self.layout not in LAYOUTS:
            raise SpecError(f"layout {self.layout!r} must be one of {LAYOUTS}")
        if self.kernel_layout not in KERNEL_LAYOUTS:
            raise SpecError(f"kernel_layout {self.kernel_layout!r} must be one of {KERNEL_LAYOUTS}")
        if self.dtype not in DTYPES:
            raise SpecError(f"dtype {self.dtype!r} must be one of {DTYPES}")
        if self.activation not in FUSED:
            raise SpecError(f"activation {self.activation!r} is not a fused elementwise "
                            f"activation; known: {sorted(FUSED)}")
        counts = ARITY.get(self.activation, (0,))
        if len(self.activation_args) not in counts:
            raise SpecError(f"activation {self.activation!r} takes {' or '.join(map(str, counts))}"
                            f" arguments, got activation_args {self.activation_args}")
        if any(c != 1 for c in self.conv_strides) and (
                any(v != 1 for v in self.strides) or any(self.output_padding)):
            raise SpecError(f"conv_strides {self.conv_strides} (a forward convolution's) need "
                            f"strides 1 and output_padding 0, got {self.strides} and "
                            f"{self.output_padding}")
        if any(v < 0 for v in self.out_spatial):
            raise SpecError(
                f"output spatial shape {self.out_spatial} must not be negative: pads_begin "
                f"{self.pads_begin} + pads_end {self.pads_end} crop more than the whole result")

    # ---- derived geometry ----------------------------------------------------------------
    @property
    def rank(self) -> int:
        return len(self.kernel)

    @property
    def effective_kernel(self) -> Tuple[int, ...]:
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilation))

    @property
    def full_spatial(self) -> Tuple[int, ...]:
        return tuple((i - 1) * s + ek
                     for i, s, ek in zip(self.in_spatial, self.strides, self.effective_kernel))

    @property
    def out_spatial(self) -> Tuple[int, ...]:
        """The cropped scatter result; with ``conv_strides`` every ``c``-th entry of it (a
        forward convolution: output ``o`` reads the stride-1 result at ``o*c``)."""
        return tuple((n - 1) // c + 1 if n > 0 else n for n, c in zip(
            (f + op - pb - pe for f, op, pb, pe in zip(
                self.full_spatial, self.output_padding, self.pads_begin, self.pads_end)),
            self.conv_strides))

    @property
    def is_empty(self) -> bool:
        """A zero-length output axis (Keras gives one for some "same" layers): nothing to do."""
        return 0 in self.out_spatial

    def _shape(self, spatial, channels, batch):
        if self.layout == "channels_last":
            return (batch,) + tuple(spatial) + (channels,)
        return (batch, channels) + tuple(spatial)

    def input_shape(self, batch=None):
        return self._shape(self.in_spatial, self.in_channels, self.batch if batch is None else batch)

    def output_shape(self, batch=None):
        return self._shape(self.out_spatial, self.out_channels,
                           self.batch if batch is None else batch)

    @property
    def kernel_shape(self) -> Tuple[int, ...]:
        if self.kernel_layout == "spatial_oi":
            return self.kernel + (self.out_channels, self.in_channels // self.groups)
        return (self.in_channels, self.out_channels // self.groups) + self.kernel

    @property
    def param_names(self) -> Tuple[str, ...]:
        """Kernel inputs after ``x``, in call order."""
        return (("kernel",) + (("bias",) if self.bias else ())
                + (("alpha",) if self.activation == "prelu" else ())
                + (("residual",) if self.residual else ()))

    def param_shape(self, name, batch=None) -> Tuple[int, ...]:
        """Shape of kernel input ``name``: the kernel, the residual (the output's shape at
        ``batch``), or a per-output-channel vector."""
        if name == "residual":
            return self.output_shape(batch)
        return self.kernel_shape if name == "kernel" else (self.out_channels,)

    def macs(self, batch=1) -> int:
        """Useful multiply-adds: N * C_in * prod(in) * C_out/groups * prod(kernel)."""
        n = 1
        for v in self.in_spatial + self.kernel:
            n *= v
        return (self.batch or batch) * self.in_channels * n * (self.out_channels // self.groups)

    # ---- identity ------------------------------------------------------------------------
    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**d)

    def key(self) -> str:
        """Stable hash of every field plus the schema version (cache and tuning key)."""
        blob = json.dumps({"schema": SCHEMA_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def replace(self, **changes) -> "ConvTransposeSpec":
        return dataclasses.replace(self, **changes)
