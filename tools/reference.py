"""Float64 oracles written from the definition, sharing nothing with convt's compiler (tests and
``convt check`` compare kernels with them).

``scatter_conv_transpose`` is the scatter form: input element ``j`` adds ``x[j] * w[t]`` at full
position ``j*s + t*d``; the result is then cropped by explicit pads and extended by
output_padding. ``onnx_node_reference`` reads a ConvTranspose node's attributes as the ONNX
operator text states them, as a window into the full result. ``keras_pads`` derives Keras' crops the way Keras' JAX backend does (padding of a
stride-1 conv over the zero-dilated input), not the way convt does.
"""
import itertools
import math

import numpy as np

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

ACTIVATIONS = {  # Keras' definitions with their default arguments, in numpy
    "linear": lambda x: x, "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.clip(x, 0, 6), "leaky_relu": lambda x: np.where(x >= 0, x, 0.2 * x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "selu": lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(x)),
    "celu": lambda x: np.maximum(x, 0) + np.minimum(0, np.expm1(x)),
    "gelu": lambda x: 0.5 * x * (1 + np.vectorize(math.erf)(x / np.sqrt(2))),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "hard_sigmoid": lambda x: np.clip(x + 3, 0, 6) / 6,
    "silu": lambda x: x / (1 + np.exp(-x)), "hard_silu": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "mish": lambda x: x * np.tanh(np.logaddexp(0, x)), "softplus": lambda x: np.logaddexp(0, x),
    "softsign": lambda x: x / (1 + np.abs(x)), "tanh": np.tanh, "exponential": np.exp,
    "squareplus": lambda x: (x + np.sqrt(x * x + 4)) / 2,
    "soft_shrink": lambda x: np.where(x > 0.5, x - 0.5, np.where(x < -0.5, x + 0.5, 0)),
    "hard_shrink": lambda x: np.where(np.abs(x) > 0.5, x, 0),
    "tanh_shrink": lambda x: x - np.tanh(x), "hard_tanh": lambda x: np.clip(x, -1, 1),
    "log_sigmoid": lambda x: -np.logaddexp(0, -x),
    "sparse_plus": lambda x: np.where(x <= -1, 0, np.where(x >= 1, x, (x + 1) ** 2 / 4)),
    "sparse_sigmoid": lambda x: np.clip((x + 1) / 2, 0, 1),
}


def activation_reference(x, name, args=(), alpha=None, channels_last=True):
    """``name`` applied in float64; ``args`` are ONNX attributes (LeakyRelu's alpha, Elu's alpha,
    HardSigmoid's alpha and beta, Clip's bounds); ``alpha`` a per-channel PRelu slope."""
    if name == "prelu":
        a = np.asarray(alpha, np.float64)
        if not channels_last:
            a = a.reshape((-1,) + (1,) * (x.ndim - 2))
        return np.where(x >= 0, x, a * x)
    if not args:
        return ACTIVATIONS[name](x)
    if name == "leaky_relu":
        return np.where(x >= 0, x, args[0] * x)
    if name == "elu":
        return np.where(x > 0, x, args[0] * np.expm1(x))
    if name == "hard_sigmoid":
        return np.clip(args[0] * x + args[1], 0, 1)
    if name == "clip":
        return np.clip(x, args[0], args[1])
    raise ValueError(f"no reference for activation {name!r} with arguments {args}")


def spec_reference(spec, x, kernel, bias=None, alpha=None, residual=None):
    """What a kernel of ``spec`` (a ``ConvTransposeSpec``: its explicit pads, layout, kernel
    layout, groups, bias and activation) computes, in float64."""
    y = scatter_conv_transpose(x, kernel, spec.strides, spec.dilation, spec.pads_begin,
                               spec.pads_end, spec.output_padding, spec.groups,
                               spec.layout == "channels_last", spec.kernel_layout)
    last = spec.layout == "channels_last"
    first_axis = 1 if last else 2   # conv_strides: every c-th entry of the stride-1 result
    y = y[(slice(None),) * first_axis + tuple(slice(None, None, c) for c in spec.conv_strides)]
    if bias is not None:
        y = y + np.asarray(bias, np.float64).reshape((-1,) if last else (-1,) + (1,) * spec.rank)
    if residual is not None:
        y = y + np.asarray(residual, np.float64)
    return activation_reference(y, spec.activation, spec.activation_args, alpha, last)


def scatter_conv_transpose(x, w, strides, dilation, pads_begin, pads_end, output_padding,
                           groups=1, channels_last=False, kernel_layout="io_spatial"):
    """x: (N, C, *sp) or channels_last (N, *sp, C); w: ONNX (C, O/g, *k) or Keras (*k, O, C/g)."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    if channels_last:
        x = np.moveaxis(x, -1, 1)
    if kernel_layout == "spatial_oi":  # (*k, O, C/g) -> (C, O/g, *k)
        r = w.ndim - 2
        O, Cg = w.shape[r], w.shape[r + 1]
        w = np.moveaxis(w, (r, r + 1), (0, 1))  # (O, C/g, *k)
        w = w.reshape((groups, O // groups, Cg) + w.shape[2:]).swapaxes(1, 2)
        w = w.reshape((groups * Cg, O // groups) + w.shape[3:])
    N, C = x.shape[:2]
    sp, k = x.shape[2:], w.shape[2:]
    og = w.shape[1]
    O = og * groups
    cg = C // groups
    full = [(i - 1) * s + (kk - 1) * d + 1 for i, s, kk, d in zip(sp, strides, k, dilation)]
    y = np.zeros((N, O) + tuple(full))
    for g in range(groups):
        xs = x[:, g * cg:(g + 1) * cg]
        ws = w[g * cg:(g + 1) * cg]
        for t in itertools.product(*[range(kk) for kk in k]):
            wt = ws[(slice(None), slice(None)) + t]  # (cg, og)
            contrib = np.einsum("nc...,co->no...", xs, wt)
            sl = tuple(slice(tt * d, tt * d + (i - 1) * s + 1, s)
                       for tt, d, i, s in zip(t, dilation, sp, strides))
            y[(slice(None), slice(g * og, (g + 1) * og)) + sl] += contrib
    ext = [f + op for f, op in zip(full, output_padding)]
    yy = np.zeros((N, O) + tuple(ext))
    yy[(slice(None), slice(None)) + tuple(slice(0, f) for f in full)] = y
    out = yy[(slice(None), slice(None)) + tuple(
        slice(b, e - pe) for b, e, pe in zip(pads_begin, ext, pads_end))]
    if channels_last:
        out = np.moveaxis(out, 1, -1)
    return out


def onnx_node_reference(x, w, b, attrs):
    """One ONNX ConvTranspose node (x: (N, C, *sp), w: (C, O/g, *k), attributes as Python
    values) in float64: the full result ``(i-1)*s + (k-1)*d + 1 + output_padding`` long, read
    through a window of the output's length. The window starts at ``pads`` begin, or, with
    ``output_shape`` (spatial sizes), after the total ``full - out`` split as the operator text
    says (the odd unit at the end for SAME_UPPER, at the beginning otherwise); SAME_* without it
    ask for ``i*s`` and never pad. Where the text is silent, onnxruntime: a window longer than
    the full result reads zeros past its end."""
    rank = x.ndim - 2
    sp = x.shape[2:]
    s = list(attrs.get("strides", [1] * rank))
    d = list(attrs.get("dilations", [1] * rank))
    op = list(attrs.get("output_padding", [0] * rank))
    auto = attrs.get("auto_pad", "NOTSET")
    zero = [0] * rank
    y = scatter_conv_transpose(x, w, s, d, zero, zero, op, attrs.get("group", 1))
    full = y.shape[2:]
    starts, lengths = [], []
    for i in range(rank):
        if "output_shape" in attrs:
            out = attrs["output_shape"][i]
            total = full[i] - out
            start = (total // 2 if auto == "SAME_UPPER" else total - total // 2) if total > 0 else 0
        elif auto in ("SAME_UPPER", "SAME_LOWER"):
            total = max(0, full[i] - sp[i] * s[i])
            start = total // 2 if auto == "SAME_UPPER" else total - total // 2
            out = full[i] - total
        elif auto == "VALID" or "pads" not in attrs:
            start, out = 0, full[i]
        else:
            start, out = attrs["pads"][i], full[i] - attrs["pads"][i] - attrs["pads"][rank + i]
        starts.append(start)
        lengths.append(out)
    window = np.zeros(y.shape[:2] + tuple(lengths))
    part = tuple(slice(st, min(st + n, f)) for st, n, f in zip(starts, lengths, full))
    window[(slice(None), slice(None)) + tuple(slice(0, p.stop - p.start) for p in part)] = \
        y[(slice(None), slice(None)) + part]
    if b is not None:
        window += np.asarray(b, np.float64).reshape((-1,) + (1,) * rank)
    return window


def keras_pads(kernel, strides, dilation, padding, output_padding):
    """Per-axis (crop_begin, crop_end, extra_end) in Keras' JAX-backend terms."""
    res = []
    for i, (k, s, d) in enumerate(zip(kernel, strides, dilation)):
        op = None if output_padding is None else output_padding[i]
        kk = (k - 1) * d + 1
        if padding == "valid":
            op = max(kk, s) - kk if op is None else op
            left, right = kk - 1, kk - 1 + op
        else:
            pad_len = s + kk - 2 if op is None else kk + kk % 2 - 2 + op
            left = min(pad_len // 2 + pad_len % 2, kk - 1)
            right = pad_len - left
        crop_b, crop_e = kk - 1 - left, kk - 1 - right
        res.append((crop_b, max(crop_e, 0), max(-crop_e, 0)))
    return res


def keras_reference(x, kernel, strides, padding, output_padding, data_format, dilation):
    """keras.ops.conv_transpose in float64 (normalized int tuples in)."""
    p = keras_pads(kernel.shape[:-2], strides, dilation, padding, output_padding)
    return scatter_conv_transpose(
        x, kernel, strides, dilation, [a for a, _, _ in p], [b for _, b, _ in p],
        [c for _, _, c in p], channels_last=data_format == "channels_last",
        kernel_layout="spatial_oi")
