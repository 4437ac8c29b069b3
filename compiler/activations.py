"""Keras activations: the elementwise ones are fused into the kernel's epilogue (TE expressions);
the others (softmax and friends, callables) run after the kernel on numpy arrays.

Every definition follows ``keras.activations`` (Keras 3.15) with its default arguments.
"""
from __future__ import annotations

import math

import numpy as np

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _softplus(T, x):
    # max(x, 0) + log1p(exp(-|x|)): no overflow for large |x|
    return T.tmax(x, _c(T, x, 0)) + T.log1p(T.exp(-T.tabs(x)))


def _c(T, x, v):
    return T.const(v, T.dtype_of(x))


def _relu6(T, x):
    return T.tmin(T.tmax(x, _c(T, x, 0)), _c(T, x, 6))


def _hard_sigmoid(T, x):
    return _relu6(T, x + _c(T, x, 3)) / _c(T, x, 6)


def _elu(T, x, alpha=1.0):
    return T.select(x > _c(T, x, 0), x, _c(T, x, alpha) * (T.exp(x) - _c(T, x, 1)))


def _clip(T, x, lo, hi):
    return T.tmin(T.tmax(x, _c(T, x, lo)), _c(T, x, hi))


def _hard_sigmoid_ab(T, x, alpha=None, beta=None):
    """Keras' ``relu6(x + 3) / 6`` without arguments; ONNX's ``clip(alpha*x + beta, 0, 1)``."""
    if alpha is None:
        return _hard_sigmoid(T, x)
    return _clip(T, _c(T, x, alpha) * x + _c(T, x, beta), 0, 1)


# name -> f(T, x, *args) where T is convt.compiler.tvm_api (TE expression builders); args are the
# spec's ``activation_args`` (ONNX attributes), each activation's Keras default when absent.
FUSED = {
    "linear": lambda T, x: x,
    "relu": lambda T, x: T.tmax(x, _c(T, x, 0)),
    "relu6": _relu6,
    "leaky_relu": lambda T, x, alpha=0.2: T.select(x >= _c(T, x, 0), x, x * _c(T, x, alpha)),
    "elu": _elu,
    "selu": lambda T, x: _c(T, x, SELU_SCALE) * _elu(T, x, SELU_ALPHA),
    "celu": lambda T, x: T.tmax(x, _c(T, x, 0)) + T.tmin(_c(T, x, 0), T.exp(x) - _c(T, x, 1)),
    "gelu": lambda T, x: _c(T, x, 0.5) * x * (
        _c(T, x, 1) + T.erf(x * _c(T, x, 1 / math.sqrt(2)))),
    "sigmoid": lambda T, x: T.sigmoid(x),
    "hard_sigmoid": _hard_sigmoid_ab,
    "silu": lambda T, x: x * T.sigmoid(x),
    "hard_silu": lambda T, x: x * _hard_sigmoid(T, x),
    "mish": lambda T, x: x * T.tanh(_softplus(T, x)),
    "softplus": _softplus,
    "softsign": lambda T, x: x / (_c(T, x, 1) + T.tabs(x)),
    "tanh": lambda T, x: T.tanh(x),
    "exponential": lambda T, x: T.exp(x),
    "squareplus": lambda T, x: (x + T.sqrt(x * x + _c(T, x, 4))) / _c(T, x, 2),
    "soft_shrink": lambda T, x: T.select(
        x > _c(T, x, 0.5), x - _c(T, x, 0.5),
        T.select(x < _c(T, x, -0.5), x + _c(T, x, 0.5), _c(T, x, 0))),
    "hard_shrink": lambda T, x: T.select(T.tabs(x) > _c(T, x, 0.5), x, _c(T, x, 0)),
    "tanh_shrink": lambda T, x: x - T.tanh(x),
    "hard_tanh": lambda T, x: _clip(T, x, -1, 1),
    "log_sigmoid": lambda T, x: -_softplus(T, -x),
    "sparse_plus": lambda T, x: T.select(
        x <= _c(T, x, -1), _c(T, x, 0),
        T.select(x >= _c(T, x, 1), x, (x + _c(T, x, 1)) * (x + _c(T, x, 1)) / _c(T, x, 4))),
    "sparse_sigmoid": lambda T, x: _clip(T, (x + _c(T, x, 1)) / _c(T, x, 2), 0, 1),
    # not Keras activations: ONNX ops folded into the epilogue
    "clip": _clip,
    "prelu": None,  # per-channel slope: an extra kernel input, built in compute.py
}

# activation -> the numbers of ``activation_args`` it accepts (others: none)
ARITY = {"leaky_relu": (0, 1), "elu": (0, 1), "hard_sigmoid": (0, 2), "clip": (2,)}

ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}


def _np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _np_log_softmax(x, axis=-1):
    s = x - x.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


def _np_glu(x, axis=-1):
    a, b = np.split(x, 2, axis=axis)
    return a / (1 + np.exp(-b))


def _np_sparsemax(x, axis=-1):
    x = np.moveaxis(x, axis, -1)
    z = np.sort(x, axis=-1)[..., ::-1]
    k = np.arange(1, x.shape[-1] + 1, dtype=x.dtype)
    cssv = np.cumsum(z, axis=-1)
    support = (1 + k * z) > cssv
    kz = support.sum(axis=-1, keepdims=True)
    tau = (np.take_along_axis(cssv, kz - 1, axis=-1) - 1) / kz
    return np.moveaxis(np.maximum(x - tau, 0), -1, axis)


# Not elementwise over the tensor: applied to the kernel's output (Keras applies them on the last
# axis whatever the data format).
UNFUSED = {
    "softmax": _np_softmax,
    "log_softmax": _np_log_softmax,
    "glu": _np_glu,
    "sparsemax": _np_sparsemax,
}


def canonical(name: str) -> str:
    return ALIASES.get(name, name)


ONNX_ONLY = ("clip", "prelu")


def is_known(name: str) -> bool:
    """A Keras activation name convt can apply (fused or after the kernel)."""
    return (canonical(name) in FUSED and name not in ONNX_ONLY) or name in UNFUSED
