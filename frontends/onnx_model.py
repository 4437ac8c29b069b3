"""Whole ONNX models: read and check the model, fold its shape subgraphs, fold ConvTranspose
chains, import the graph with TVM's Relax importer while every ConvTranspose is converted into a
convt kernel call.

Acceptance is onnxruntime's: ``onnx.checker`` is stricter than the runtimes users compare
against (it wants a shape on every graph output), so its complaints about a model onnxruntime
loads are a warning. Everything that can be wrong with the model is reported (``OnnxError``,
naming the node or input and the rule) before any code is compiled.
"""
from __future__ import annotations

import os
import warnings

import onnx
from onnx import helper

from .onnx_fold import (OnnxWarning, fold_probing_batch, fold_shapes, onnxruntime_refusal,
                        open_batch_inputs)
from .onnx_forward import forward_ops
from .onnx_fuse import constants as onnx_constants, fuse, tensor_dims, value_types
from .onnx_node import OnnxError, attr_text, resolve


class ImporterError(OnnxError):
    """TVM's importer failed on a model convt's own checks passed."""


def read_model(source) -> onnx.ModelProto:
    """A checked ModelProto from a path, bytes or a ModelProto."""
    if isinstance(source, onnx.ModelProto):
        model = source
    else:
        try:
            if isinstance(source, (bytes, bytearray)):
                model = onnx.load_from_string(bytes(source))
            else:
                if not os.path.isfile(os.fspath(source)):
                    raise OnnxError(f"model file {os.fspath(source)!r} does not exist")
                model = onnx.load(os.fspath(source))
        except OnnxError:
            raise
        except Exception as err:  # noqa: BLE001  (protobuf raises several types)
            raise OnnxError(f"cannot read an ONNX model from {_shown(source)}: "
                            f"{type(err).__name__}: {err}") from None
    if not model.graph.node and not model.graph.output:
        raise OnnxError(f"{_shown(source)} holds no ONNX graph")
    try:
        onnx.checker.check_model(model)
    except Exception as err:  # noqa: BLE001  (onnx raises ValidationError and friends)
        problem = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        refusal = onnxruntime_refusal(model)
        if refusal is not None:
            raise OnnxError(f"malformed ONNX model {_shown(source)}: onnxruntime: {refusal}; "
                            f"onnx.checker: {problem}") from None
        warnings.warn(OnnxWarning(f"onnx.checker: {problem}; onnxruntime loads the model, "
                                  f"so convt compiles it"), stacklevel=3)
    return model


def _shown(source):
    if isinstance(source, onnx.ModelProto):
        return "the ModelProto"
    if isinstance(source, (bytes, bytearray)):
        return "bytes"
    return repr(os.fspath(source))


def model_opset(model) -> int:
    known = onnx.defs.onnx_opset_version()
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            if not 1 <= entry.version <= known:
                raise OnnxError(f"opset {entry.version} of the default ONNX domain is unknown: "
                                f"onnx {onnx.__version__} knows opsets 1 to {known}")
            return int(entry.version)
    raise OnnxError("the model imports no opset of the default ONNX domain (ai.onnx)")


def check_ops(model, importable: set):
    missing = sorted({n.op_type for n in model.graph.node} - importable)
    if missing:
        raise OnnxError(f"TVM's ONNX importer cannot convert these ops: {', '.join(missing)}")


def graph_inputs(model, input_shapes=None):
    """[(name, shape, dtype)] of the real inputs (initializers excluded); open dims keep their
    ``dim_param`` name (or None) unless ``input_shapes`` fixes them (None there leaves a dim
    open)."""
    if input_shapes is not None and not hasattr(input_shapes, "items"):
        raise OnnxError(f"input_shapes must be a dict {{input name: shape}}, got "
                        f"{type(input_shapes).__name__}")
    input_shapes = dict(input_shapes or {})
    inits = {t.name for t in model.graph.initializer}
    found = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        t = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            raise OnnxError(f"input {vi.name!r} is not a tensor")
        shape = tensor_dims(t)
        if vi.name in input_shapes:
            given = [None if v is None else int(v) for v in input_shapes.pop(vi.name)]
            if len(given) != len(shape) or any(
                    isinstance(d, int) and g is not None and d != g for d, g in zip(shape, given)):
                raise OnnxError(f"input_shapes[{vi.name!r}] = {given} does not fit the model's "
                                f"shape {shape}")
            if any(g is not None and g <= 0 for g in given):
                raise OnnxError(f"input_shapes[{vi.name!r}] = {given} must be positive")
            shape = [d if g is None else g for d, g in zip(shape, given)]
        found.append((vi.name, shape, str(helper.tensor_dtype_to_np_dtype(t.elem_type))))
    if input_shapes:
        raise OnnxError(f"input_shapes names {sorted(input_shapes)}, which are not model inputs "
                        f"{[f[0] for f in found]}")
    return found


class _ConvTransposeConverter:
    """Converts each (fused) ConvTranspose node into a call of a convt kernel."""

    def __init__(self, target, knobs, T):
        self.target, self.knobs, self.T = target, knobs, T
        self.funcs = {}
        self.specs = []  # (node name, spec) in graph order

    def __call__(self, bb, inputs, attrs):
        from convt.compiler.relax_wrap import emit_call
        from convt.compiler.spec import ConvTransposeSpec, SpecError

        T = self.T
        node = attr_text(attrs.get("convt_node", "ConvTranspose"))
        x, w, b, slope, residual = (inputs[i] for i in range(5))
        x_shape, w_shape = T.relax_shape(x), T.relax_shape(w)
        channels_last = attr_text(attrs.get("convt_layout", "")) == "channels_last"
        if channels_last:   # a MatMul or Gemm (onnx_forward): (batch, rows, K)
            x_shape = [x_shape[0], x_shape[-1], *x_shape[1:-1]]
        conv_strides = attrs.get("convt_conv_strides")
        fields = resolve(attrs, x_shape, w_shape, node)
        if channels_last:
            fields["layout"] = "channels_last"
        if conv_strides is not None:   # a strided Conv (onnx_forward)
            fields["conv_strides"] = tuple(int(c) for c in conv_strides)
        dtype = T.relax_dtype(x)
        if dtype not in ("float32", "float16") or T.relax_dtype(w) != dtype:
            raise OnnxError(f"node {node!r}: input and weight types {dtype}, "
                            f"{T.relax_dtype(w)} must both be float32 or both float16")
        if b is not None and T.relax_shape(b) != [fields["out_channels"]]:
            raise OnnxError(f"node {node!r}: bias shape {T.relax_shape(b)} must be "
                            f"[{fields['out_channels']}] (the output channels)")
        batch = x_shape[0]
        try:
            spec = ConvTransposeSpec(
                **fields, batch=batch if isinstance(batch, int) else None, dtype=dtype,
                bias=b is not None, residual=residual is not None,
                activation=attr_text(attrs.get("convt_activation", "linear")),
                activation_args=tuple(attrs.get("convt_activation_args", ())))
        except SpecError as err:
            raise OnnxError(f"node {node!r}: {err}") from None
        if residual is not None and T.relax_shape(residual)[1:] != list(spec.output_shape()[1:]):
            raise OnnxError(f"node {node!r}: residual shape {T.relax_shape(residual)} must be "
                            f"the output's {list(spec.output_shape())}")
        self.specs.append((node, spec))
        args = [a for a in (x, w, b, slope, residual) if a is not None]
        return emit_call(bb, spec, args, batch, self.target, self.knobs, self.funcs)


def import_model(model, input_shapes=None, target="x86", knobs=None, fuse_epilogues=True):
    """(Relax IRModule, signature, info) of an ONNX model; info holds the fusion report and the
    (node, spec) list of its ConvTranspose kernels."""
    from convt import schedules
    from convt.compiler import tvm_api as T
    from convt.compiler.targets import resolve as resolve_target

    target = resolve_target(target)  # a bad target fails here, not inside the importer
    model = read_model(model)
    opset = model_opset(model)
    inputs = graph_inputs(model, input_shapes)
    try:
        folded = fold_shapes(model, inputs)
    except OnnxError:
        # onnxruntime refuses it: convt's own checks name the op or node where they can
        check_ops(model, T.onnx_importable_ops())
        _import(model, opset, inputs, _ConvTransposeConverter(target, knobs, T), T, False)
        raise
    check_ops(folded, T.onnx_importable_ops())
    converter = _ConvTransposeConverter(target, knobs, T)
    try:
        mod, report = _import(folded, opset, inputs, converter, T, fuse_epilogues)
    except ImporterError:
        if not open_batch_inputs(inputs):
            raise
        # what holds the open batch stays computed and the importer cannot take it
        folded, inputs = fold_probing_batch(model, inputs)
        converter = _ConvTransposeConverter(target, knobs, T)
        mod, report = _import(folded, opset, inputs, converter, T, fuse_epilogues)
    names = [o.name for o in folded.graph.output]
    signature = {
        "inputs": [{"name": n, "shape": s, "dtype": d, "layout": None} for n, s, d in inputs],
        "outputs": [{"name": n, "shape": s, "dtype": d, "layout": None}
                    for n, (s, d) in zip(names, T.main_outputs(mod))],
    }
    if schedules.describe(target).family != "cuda":   # host kernels read callers' arrays as is
        from convt.compiler.relax_wrap import KERNEL_PREFIX
        loose = T.params_fed_only_to(mod, KERNEL_PREFIX)
        for i in signature["inputs"]:
            if i["name"] in loose:   # only convt kernels read it: element alignment will do
                i["align"] = T.dtype_bytes(i["dtype"])
    return mod, signature, {"fusions": report, "kernels": converter.specs}


def _import(model, opset, inputs, converter, T, fuse_epilogues):
    """(Relax module, fusion report) from TVM's importer with ``converter`` for ConvTranspose."""
    types = value_types(model)
    model, _ = forward_ops(model, onnx_constants(model.graph), types)
    model, report = fuse(model, opset, enabled=fuse_epilogues, known_types=types)
    # fully known shapes are passed on; open dims stay the importer's symbolic variables
    shape_dict = {n: s for n, s, _ in inputs if all(isinstance(d, int) for d in s)}
    try:
        mod = T.import_onnx(model, shape_dict, {n: d for n, _, d in inputs},
                            {"ConvTranspose": converter})
    except OnnxError:
        raise
    except Exception as err:  # noqa: BLE001  (TVM's converters raise anything)
        raise ImporterError(f"TVM's ONNX importer failed: {type(err).__name__}: "
                            f"{str(err).strip().splitlines()[-1] if str(err).strip() else ''}"
                            ) from None
    unknown = T.unknown_shapes(mod)
    if unknown:
        raise ImporterError(f"TVM's ONNX importer leaves {len(unknown)} tensors of unknown shape "
                            f"(first: {unknown[0][:80]}); give input_shapes")
    return mod, (report if fuse_epilogues else [])
