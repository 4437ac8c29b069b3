"""ONNX ``ConvTranspose`` attributes -> the core spec's explicit pads: the only place that reads
``auto_pad``, ``output_shape`` and ``pads``.

Rules follow the ONNX operator definition and, where it is silent, onnxruntime (the oracle):

* ``output_shape`` (spatial sizes only) takes precedence over ``pads``; the total padding
  ``s*(i-1) + output_padding + (k-1)*d + 1 - out`` splits with the odd unit at the end for
  SAME_UPPER and at the beginning otherwise. A negative total appends zeros at the end, allowed
  while it stays below the stride (as output_padding would).
* SAME_UPPER / SAME_LOWER without ``output_shape`` target ``i*s``; the total is clamped at 0.
* ``pads`` together with an ``auto_pad`` other than NOTSET is an error, as are negative pads and
  ``output_padding >= stride``.
"""
from __future__ import annotations

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


class OnnxError(ValueError):
    """A model or node breaks a rule; the message names the node and the rule."""


def _attr_ints(attrs, name, rank, default, node):
    value = attrs.get(name)
    if value is None:
        return (default,) * rank
    value = tuple(int(v) for v in value)
    if len(value) != rank:
        raise OnnxError(f"node {node!r}: {name} {list(value)} must have {rank} entries "
                        f"(one per spatial axis)")
    return value


def attr_text(value):
    """ONNX string attributes arrive as bytes (or str, from TVM's attribute parser)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def resolve(attrs: dict, x_shape, w_shape, node: str = "ConvTranspose") -> dict:
    """Spec fields (channels_first, io_spatial kernel) for one ConvTranspose node.

    attrs: the node's attributes as Python values; x_shape: (N, C, *spatial) with int spatial
    sizes and channels (N may be anything); w_shape: (C_in, C_out/group, *kernel).
    """
    rank = len(x_shape) - 2
    if rank not in (1, 2, 3):
        raise OnnxError(f"node {node!r}: input rank {len(x_shape)} is not supported "
                        f"(ConvTranspose over 1, 2 or 3 spatial axes: rank 3, 4 or 5)")
    if len(w_shape) != rank + 2:
        raise OnnxError(f"node {node!r}: weight shape {list(w_shape)} must have rank "
                        f"{rank + 2} like the input {list(x_shape)}")
    for what, dims in (("input", x_shape[1:]), ("weight", w_shape)):
        if not all(isinstance(d, int) for d in dims):
            raise OnnxError(f"node {node!r}: {what} shape {list(dims)} must be static except the "
                            f"batch; give the open sizes with input_shapes")
    in_spatial, c_in = tuple(x_shape[2:]), x_shape[1]
    group = int(attrs.get("group", 1))
    if group <= 0:
        raise OnnxError(f"node {node!r}: group {group} must be positive")
    if c_in % group:
        raise OnnxError(f"node {node!r}: input channels {c_in} must divide by group {group}")
    if w_shape[0] != c_in:
        raise OnnxError(f"node {node!r}: weight shape {list(w_shape)} must start with the input "
                        f"channels {c_in} (layout C_in x C_out/group x kernel)")
    kernel = tuple(w_shape[2:])
    if attrs.get("kernel_shape") is not None and tuple(attrs["kernel_shape"]) != kernel:
        raise OnnxError(f"node {node!r}: kernel_shape {list(attrs['kernel_shape'])} disagrees "
                        f"with the weight's spatial shape {list(kernel)}")
    strides = _attr_ints(attrs, "strides", rank, 1, node)
    dilation = _attr_ints(attrs, "dilations", rank, 1, node)
    out_pad = _attr_ints(attrs, "output_padding", rank, 0, node)
    for name, vals in (("strides", strides), ("dilations", dilation)):
        if min(vals) <= 0:
            raise OnnxError(f"node {node!r}: {name} {list(vals)} must be positive")
    if min(out_pad) < 0 or any(op >= s for op, s in zip(out_pad, strides)):
        raise OnnxError(f"node {node!r}: output_padding {list(out_pad)} must be >= 0 and "
                        f"below strides {list(strides)} on every axis")
    auto_pad = attr_text(attrs.get("auto_pad", "NOTSET"))
    if auto_pad not in AUTO_PADS:
        raise OnnxError(f"node {node!r}: auto_pad {auto_pad!r} must be one of {AUTO_PADS}")
    pads = attrs.get("pads")
    if pads is not None:
        pads = tuple(int(p) for p in pads)
        if len(pads) != 2 * rank:
            raise OnnxError(f"node {node!r}: pads {list(pads)} must have {2 * rank} entries "
                            f"(all begins, then all ends)")
        if min(pads) < 0:
            raise OnnxError(f"node {node!r}: pads {list(pads)} must not be negative")
        if auto_pad != "NOTSET" and any(pads):
            raise OnnxError(f"node {node!r}: pads {list(pads)} cannot be combined with "
                            f"auto_pad {auto_pad}")

    full = tuple((i - 1) * s + (k - 1) * d + 1 + op for i, s, k, d, op in
                 zip(in_spatial, strides, kernel, dilation, out_pad))
    out_shape = attrs.get("output_shape")
    if out_shape is not None:
        out_shape = tuple(int(v) for v in out_shape)
        if len(out_shape) != rank:
            raise OnnxError(f"node {node!r}: output_shape {list(out_shape)} must give the "
                            f"{rank} spatial sizes only")
        if min(out_shape) <= 0:
            raise OnnxError(f"node {node!r}: output_shape {list(out_shape)} must be positive")
        targets = out_shape
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        targets = tuple(min(i * s, f) for i, s, f in zip(in_spatial, strides, full))
    else:
        begin = pads[:rank] if pads and auto_pad == "NOTSET" else (0,) * rank
        end = pads[rank:] if pads and auto_pad == "NOTSET" else (0,) * rank
        targets = tuple(f - b - e for f, b, e in zip(full, begin, end))

    pads_begin, pads_end, extra = [], [], list(out_pad)
    for axis, (f, o, s) in enumerate(zip(full, targets, strides)):
        total = f - o
        if total < 0:
            if out_pad[axis] - total >= s:
                raise OnnxError(
                    f"node {node!r}: output_shape {list(out_shape)} cannot be reached on axis "
                    f"{axis}: the largest output there is {f - out_pad[axis] + s - 1} (input "
                    f"{in_spatial[axis]}, stride {s}, kernel {kernel[axis]}, dilation "
                    f"{dilation[axis]})")
            pads_begin.append(0)
            pads_end.append(0)
            extra[axis] -= total
            continue
        if out_shape is None and auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
            b = pads[axis] if pads and auto_pad == "NOTSET" else 0
        elif auto_pad == "SAME_UPPER":
            b = total // 2
        else:
            b = total - total // 2
        pads_begin.append(b)
        pads_end.append(total - b)
        if o <= 0:
            raise OnnxError(f"node {node!r}: pads {list(pads)} crop the whole output on axis "
                            f"{axis} (full length {f})")
    return dict(in_spatial=in_spatial, in_channels=c_in, out_channels=w_shape[1] * group,
                kernel=kernel, strides=strides, dilation=dilation,
                pads_begin=tuple(pads_begin), pads_end=tuple(pads_end),
                output_padding=tuple(extra), groups=group, layout="channels_first",
                kernel_layout="io_spatial")
