"""Keras 3 ``Conv{1,2,3}DTranspose`` layers: same constructors, configs, errors and values.

Regularizers, constraints and ``trainable`` act only in training, which convt does not do: they
are validated and kept so that ``get_config()`` round-trips, and otherwise have no effect.
"""
from __future__ import annotations

import itertools
import re

import numpy as np

from convt.compiler import activations as A

from . import keras_objects as K
from .keras_geometry import standardize_data_format, standardize_padding, standardize_tuple
from .keras_op import op_geometry

_counters = {}
_DTYPES = ("float32",)


def _auto_name(cls_name):
    base = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", cls_name).lower()
    n = _counters.setdefault(base, itertools.count())
    i = next(n)
    return base if i == 0 else f"{base}_{i}"


def _dtype_name(dtype):
    if dtype is None:
        return "float32"
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name", dtype.get("class_name"))
    name = str(getattr(dtype, "name", dtype))
    if name not in _DTYPES:
        raise ValueError(f"dtype {name!r} is not supported by convt layers (supported: "
                         f"{', '.join(_DTYPES)})")
    return name


def _activation(identifier):
    """-> (config name or callable, fused name, post-kernel name or callable)."""
    if identifier is None:
        return "linear", "linear", None
    if isinstance(identifier, dict):
        identifier = identifier.get("config", identifier.get("class_name"))
    if isinstance(identifier, str):
        name = A.canonical(identifier)
        if name in A.FUSED:
            return name, name, None
        if name in A.UNFUSED:
            return name, "linear", name
        raise ValueError(f"Could not interpret activation function identifier: {identifier}")
    if callable(identifier):
        name = getattr(identifier, "__name__", None)
        if isinstance(name, str) and A.canonical(name) in A.FUSED and \
                getattr(identifier, "__module__", "").startswith("keras"):
            return A.canonical(name), A.canonical(name), None
        return identifier, "linear", identifier
    raise ValueError(f"Could not interpret activation function identifier: {identifier!r}")


def _ctor_args(local_vars):
    """A constructor's arguments by name (the classes differ only in positional order)."""
    args = {k: v for k, v in local_vars.items() if k not in ("self", "kwargs", "__class__")}
    return {**args, **local_vars["kwargs"]}


class BaseConvTranspose:
    rank = None

    def _setup(self, filters, kernel_size, strides, padding, output_padding, data_format,
               dilation_rate, activation, use_bias, kernel_initializer, bias_initializer,
               kernel_regularizer, bias_regularizer, activity_regularizer, kernel_constraint,
               bias_constraint, trainable=True, name=None, dtype=None, autocast=True, **kwargs):
        kwargs.pop("input_dim", None)
        kwargs.pop("input_shape", None)
        if kwargs:
            raise ValueError(f"Unrecognized keyword arguments passed to "
                             f"{type(self).__name__}: {kwargs}")
        if not isinstance(trainable, bool):
            raise ValueError(f"Expected `trainable` to be a boolean. Received: "
                             f"trainable={trainable} (of type {type(trainable)})")
        r = self.rank
        self.name = name if name is not None else _auto_name(type(self).__name__)
        self.trainable = trainable
        self.dtype = _dtype_name(dtype)
        self.autocast = autocast
        self.kernel_size = standardize_tuple(kernel_size, r, "kernel_size")
        self.strides = standardize_tuple(strides, r, "strides")
        self.dilation_rate = standardize_tuple(dilation_rate, r, "dilation_rate")
        self.padding = standardize_padding(padding)
        self.output_padding = None if output_padding is None else standardize_tuple(
            output_padding, r, "output_padding", allow_zero=True)
        self.data_format = standardize_data_format(data_format)
        self._activation_config, self._fused, self._post = _activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = K.serialize_initializer(kernel_initializer)
        self.bias_initializer = K.serialize_initializer(bias_initializer)
        self.kernel_regularizer = K.serialize_regularizer(kernel_regularizer)
        self.bias_regularizer = K.serialize_regularizer(bias_regularizer)
        self.activity_regularizer = K.serialize_regularizer(activity_regularizer)
        self.kernel_constraint = K.serialize_constraint(kernel_constraint)
        self.bias_constraint = K.serialize_constraint(bias_constraint)
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)):
            raise ValueError(f"Invalid value for argument `filters`. Expected a strictly "
                             f"positive integer. Received filters={filters}.")
        if filters <= 0:
            raise ValueError(f"Invalid value for argument `filters`. Expected a strictly "
                             f"positive value. Received filters={filters}.")
        self.filters = int(filters)
        if self.output_padding is not None:
            for i, (op, s) in enumerate(zip(self.output_padding, self.strides)):
                if op >= s:
                    raise ValueError(
                        f"`output_padding` must be strictly less than `strides` for all "
                        f"dimensions. At dimension {i}, `output_padding` is {op} but "
                        f"`strides` is {s}. Received: output_padding={self.output_padding}, "
                        f"strides={self.strides}")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"`strides > 1` not supported in conjunction with "
                             f"`dilation_rate > 1`. Received: strides={self.strides} and "
                             f"dilation_rate={self.dilation_rate}")
        self.built = False
        self.kernel = self.bias = None
        self._input_channels = None

    # ---- Keras Layer surface -------------------------------------------------------------
    @property
    def activation(self):
        return self._activation_config

    def _channels(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != self.rank + 2:
            raise ValueError(f"Input 0 of layer \"{self.name}\" is incompatible with the layer: "
                             f"expected ndim={self.rank + 2}, found ndim={len(input_shape)}. "
                             f"Full shape received: {input_shape}")
        c = input_shape[-1] if self.data_format == "channels_last" else input_shape[1]
        if c is None:
            raise ValueError(f"layer {self.name!r}: the channel dimension of the input must be "
                             f"known. Received input_shape={input_shape}")
        return int(c)

    @property
    def kernel_shape(self):
        return self.kernel_size + (self.filters, self._input_channels)

    def build(self, input_shape):
        c = self._channels(input_shape)
        if self.built and c != self._input_channels:
            raise ValueError(f"layer {self.name!r} was built for {self._input_channels} input "
                             f"channels, got input_shape={tuple(input_shape)}")
        if self.built:
            return
        self._input_channels = c
        self.kernel = K.sample(self.kernel_initializer, self.kernel_shape)
        if self.use_bias:
            self.bias = K.sample(self.bias_initializer, (self.filters,))
        self.built = True

    def get_weights(self):
        return [w.copy() for w in ([self.kernel, self.bias] if self.use_bias else [self.kernel])
                if w is not None]

    def set_weights(self, weights):
        if not self.built:
            raise ValueError(f"You called `set_weights(weights)` on layer {self.name!r} before "
                             f"it was built: call build(input_shape) first")
        expected = [self.kernel_shape] + ([(self.filters,)] if self.use_bias else [])
        if len(weights) != len(expected):
            raise ValueError(f"You called `set_weights(weights)` on layer {self.name!r} with a "
                             f"weight list of length {len(weights)}, but the layer was "
                             f"expecting {len(expected)} weights (kernel"
                             f"{', bias' if self.use_bias else ''})")
        arrays = []
        for w, shape, what in zip(weights, expected, ("kernel", "bias")):
            w = np.asarray(w, np.float32)
            if w.shape != tuple(shape):
                raise ValueError(f"Layer {self.name!r} {what} weight shape {tuple(shape)} is not "
                                 f"compatible with provided weight shape {w.shape}")
            arrays.append(np.ascontiguousarray(w))
        self.kernel = arrays[0]
        self.bias = arrays[1] if self.use_bias else None

    @property
    def weights(self):
        return self.get_weights()

    def compute_output_shape(self, input_shape):
        _, out = op_geometry(self._shape_with_batch(input_shape), self.kernel_size +
                             (self.filters, self._channels(input_shape)), **self._op_args())
        b = tuple(input_shape)[0]
        return ((b,) + out + (self.filters,) if self.data_format == "channels_last"
                else (b, self.filters) + out)

    @staticmethod
    def _shape_with_batch(input_shape):
        return tuple(1 if d is None else d for d in input_shape)

    def _op_args(self):
        return dict(strides=self.strides, padding=self.padding,
                    output_padding=self.output_padding, data_format=self.data_format,
                    dilation_rate=self.dilation_rate)

    def spec(self, input_shape):
        """The ConvTransposeSpec of this layer for ``input_shape`` (batch None: any batch)."""
        from convt.compiler.spec import ConvTransposeSpec
        input_shape = tuple(input_shape)
        for d in input_shape[1:]:
            if d is None:
                raise ValueError(f"layer {self.name!r}: only the batch dimension may be None; "
                                 f"received input_shape={input_shape}")
        fields, _ = op_geometry(self._shape_with_batch(input_shape), self.kernel_size +
                                (self.filters, self._channels(input_shape)), **self._op_args())
        return ConvTransposeSpec(batch=input_shape[0], kernel_layout="spatial_oi",
                                 bias=self.use_bias, activation=self._fused, dtype=self.dtype,
                                 **fields)

    def compile_parts(self, input_shape):
        """(spec, params, post_activation) for convt.compile()."""
        if input_shape is None:
            raise ValueError(f"compile() of layer {self.name!r} needs input_shape, e.g. "
                             f"(None, 64, 64, 16)")
        if callable(self._post):
            raise ValueError(f"layer {self.name!r}: a Python callable activation cannot be "
                             f"compiled into an artifact; use a Keras activation name")
        self.build(input_shape)
        params = {"kernel": self.kernel}
        if self.use_bias:
            params["bias"] = self.bias
        return self.spec(input_shape), params, self._post

    def __call__(self, inputs):
        from convt.compiler.cache import get_runner
        x = np.asarray(inputs, np.float32)
        self.build(x.shape)
        spec = self.spec((None,) + x.shape[1:])
        args = [x, self.kernel] + ([self.bias] if self.use_bias else [])
        y = get_runner(spec)(*args)
        if self._post is None:
            return y
        post = A.UNFUSED[self._post] if isinstance(self._post, str) else self._post
        return np.asarray(post(y), np.float32)

    # ---- config --------------------------------------------------------------------------
    def get_config(self):
        act = self._activation_config
        return {
            "name": self.name, "trainable": self.trainable,
            "dtype": {"module": "keras", "class_name": "DTypePolicy",
                      "config": {"name": self.dtype}, "registered_name": None},
            "filters": self.filters, "kernel_size": self.kernel_size, "strides": self.strides,
            "padding": self.padding, "output_padding": self.output_padding,
            "data_format": self.data_format, "dilation_rate": self.dilation_rate,
            "activation": act if isinstance(act, str) else getattr(act, "__name__", str(act)),
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer,
            "bias_initializer": self.bias_initializer,
            "kernel_regularizer": self.kernel_regularizer,
            "bias_regularizer": self.bias_regularizer,
            "activity_regularizer": self.activity_regularizer,
            "kernel_constraint": self.kernel_constraint, "bias_constraint": self.bias_constraint,
        }

    @classmethod
    def from_config(cls, config):
        try:
            return cls(**config)
        except Exception as e:  # Keras wraps constructor errors in TypeError
            raise TypeError(f"Error when deserializing class '{cls.__name__}' using "
                            f"config={config}.\n\nException encountered: {e}") from e

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"





class Conv1DTranspose(BaseConvTranspose):
    rank = 1

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        self._setup(**_ctor_args(locals()))


class Conv2DTranspose(BaseConvTranspose):
    rank = 2

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 output_padding=None, data_format=None, dilation_rate=(1, 1), activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        self._setup(**_ctor_args(locals()))


class Conv3DTranspose(BaseConvTranspose):
    rank = 3

    def __init__(self, filters, kernel_size, strides=(1, 1, 1), padding="valid",
                 data_format=None, output_padding=None, dilation_rate=(1, 1, 1),
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 **kwargs):
        self._setup(**_ctor_args(locals()))


Convolution1DTranspose = Conv1DTranspose
Convolution2DTranspose = Conv2DTranspose
Convolution3DTranspose = Conv3DTranspose

_CLASSES = {c.__name__: c for c in (Conv1DTranspose, Conv2DTranspose, Conv3DTranspose)}
_CLASSES.update({f"Convolution{r}DTranspose": _CLASSES[f"Conv{r}DTranspose"] for r in (1, 2, 3)})


def deserialize(entry):
    """A ``{"class_name", "config"}`` entry (as in ``model.to_json()``) -> layer."""
    if not isinstance(entry, dict) or "class_name" not in entry:
        raise ValueError(f"expected a dict with 'class_name' and 'config', got {entry!r:.200}")
    cls = _CLASSES.get(entry["class_name"])
    if cls is None:
        raise ValueError(f"unknown layer class {entry['class_name']!r}; convt provides "
                         f"{sorted(_CLASSES)}")
    return cls.from_config(entry.get("config") or {})
