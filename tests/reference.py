"""Float64 oracles written from the definition, sharing nothing with convt's compiler.

``scatter_conv_transpose`` is the scatter form: input element ``j`` adds ``x[j] * w[t]`` at full
position ``j*s + t*d``; the result is then cropped by explicit pads and extended by
output_padding. ``keras_pads`` derives Keras' crops the way Keras' JAX backend does (padding of a
stride-1 conv over the zero-dilated input), not the way convt does.
"""
import itertools

import numpy as np


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
