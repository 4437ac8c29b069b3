"""Public entry points: the Keras op, ``compile``, ``load``."""
from __future__ import annotations

import hashlib
import json

import numpy as np

from .runtime import load  # noqa: F401  (runtime-only: no compiler import)
from .threads import set_num_threads  # noqa: F401


def conv_transpose(inputs, kernel, strides=1, padding="valid", output_padding=None,
                   data_format=None, dilation_rate=1):
    """``keras.ops.conv_transpose``: compiled for this host on the first call of a signature.

    inputs: (N, *spatial, C_in) channels_last or (N, C_in, *spatial) channels_first
    kernel: (*kernel_spatial, C_out, C_in). Returns a float32 numpy array; where Keras returns
    one with a zero-length axis (some "same" layers with output_padding), so does this.
    """
    from .frontends.keras_op import op_geometry
    x = np.asarray(inputs)
    w = np.asarray(kernel)
    fields, _ = op_geometry(x.shape, w.shape, strides=strides, padding=padding,
                            output_padding=output_padding, data_format=data_format,
                            dilation_rate=dilation_rate)
    from .compiler.cache import get_runner
    from .compiler.spec import ConvTransposeSpec
    spec = ConvTransposeSpec(kernel_layout="spatial_oi", **fields)
    return get_runner(spec)(x.astype(np.float32, copy=False), w.astype(np.float32, copy=False))


def source_info(kind, obj) -> dict:
    """What an artifact was compiled from: its kind and a SHA-256 of the model or config."""
    data = obj if isinstance(obj, bytes) else json.dumps(obj, sort_keys=True,
                                                         default=str).encode()
    return {"kind": kind, "sha256": hashlib.sha256(data).hexdigest()}


def _onnx_bytes(source) -> bytes:
    """The model's bytes for its source hash (import_model has read and checked it already)."""
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    if hasattr(source, "SerializeToString"):
        return source.SerializeToString()
    with open(source, "rb") as f:
        return f.read()


def _is_onnx(source):
    import os
    if isinstance(source, (bytes, bytearray)):
        return True
    if isinstance(source, (str, os.PathLike)):
        return True
    return type(source).__name__ == "ModelProto"


def compile(source, input_shape=None, target="x86", knobs=None, input_shapes=None,  # noqa: A001
            fuse=True):
    """Compile for ``target``: a Keras-style layer (``convt.layers``), a ConvTransposeSpec, or an
    ONNX model (a path, bytes or an ``onnx.ModelProto``).

    ``input_shape`` (layers) includes the batch axis; ``None`` there gives a module for any batch
    size. ``input_shapes`` (ONNX) maps input names to shapes for the dimensions the model leaves
    open; open dimensions not given stay dynamic. ``fuse`` folds what follows each ONNX
    ConvTranspose (bias, BatchNormalization, activations) into its kernel.
    ``target``: "x86" (this host), "arm", "cuda", or a TVM target dict.
    """
    from .compiler.build import build
    from .compiler.module import CompiledModule
    from .compiler.spec import ConvTransposeSpec
    from .compiler.targets import resolve
    from .frontends.keras_layers import BaseConvTranspose

    resolve(target)  # a bad target is reported before the source is read
    if _is_onnx(source):
        from .compiler.graph_module import GraphModule
        from .frontends.onnx_model import import_model
        return GraphModule(*import_model(source, input_shapes, target, knobs, fuse), target,
                           source=source_info("onnx", _onnx_bytes(source)),
                           host_twin=lambda: compile(source, input_shapes=input_shapes,
                                                     fuse=fuse))  # a target's knobs stay there
    if isinstance(source, ConvTransposeSpec):
        return CompiledModule(build(source, target, knobs),
                              source=source_info("spec", source.to_dict()))
    if isinstance(source, BaseConvTranspose):
        spec, params, post = source.compile_parts(input_shape)
        config = {"class_name": type(source).__name__, "config": source.get_config(),
                  "input_shape": input_shape}
        return CompiledModule(build(spec, target, knobs), params, post,
                              source=source_info("keras", config), name=source.name)
    raise TypeError(f"compile() takes an ONNX model, a convt.layers layer or a ConvTransposeSpec, got "
                    f"{type(source).__name__}")
