"""The rivals of the benchmark, each a ``() -> output`` callable on the same layer and input.

onnxruntime and OpenVINO read the same one-node ONNX model convt compiles; PyTorch runs
``conv_transpose{1,2,3}d`` on the same arrays. A rival that is not installed, or cannot express
the layer (PyTorch: asymmetric pads), is left out (None).
"""
from __future__ import annotations

import numpy as np


def layer_model(spec, w: np.ndarray):
    """One ConvTranspose node, NCHW, weights as an initializer (what an exporter writes)."""
    from onnx import TensorProto, helper, numpy_helper
    node = helper.make_node("ConvTranspose", ["x", "W"], ["y"], strides=list(spec.strides),
                            pads=list(spec.pads_begin + spec.pads_end),
                            output_padding=list(spec.output_padding),
                            dilations=list(spec.dilation), group=spec.groups)
    graph = helper.make_graph(
        [node], "layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, spec.input_shape())],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, spec.output_shape())],
        [numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def onnxruntime_fn(model_bytes: bytes, x, threads):
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, {"x": x})[0]


def openvino_fn(model_bytes: bytes, x, threads):
    """OpenVINO's CPU plugin in f32 (no bf16 downcast) with the latency hint."""
    try:
        import openvino as ov
    except ImportError:
        return None
    core = ov.Core()
    model = core.read_model(model_bytes, b"")
    compiled = core.compile_model(model, "CPU", {
        "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32"})
    req = compiled.create_infer_request()

    def run():
        req.infer({0: x})
        return req.get_output_tensor(0).data
    return run


def torch_fn(spec, w, x, threads):
    try:
        import torch
    except ImportError:
        return None
    if any(b != e for b, e in zip(spec.pads_begin, spec.pads_end)):
        return None
    torch.set_num_threads(threads)
    conv = {1: torch.nn.functional.conv_transpose1d, 2: torch.nn.functional.conv_transpose2d,
            3: torch.nn.functional.conv_transpose3d}[spec.rank]
    tw, tx = torch.from_numpy(w), torch.from_numpy(x)

    def run():
        with torch.no_grad():
            return conv(tx, tw, stride=spec.strides, padding=spec.pads_begin,
                        output_padding=spec.output_padding, groups=spec.groups,
                        dilation=spec.dilation).numpy()
    return run


def rivals(spec, w, x, threads):
    """{name: callable} of the rivals installed here."""
    data = layer_model(spec, w).SerializeToString()
    fns = {"ort": onnxruntime_fn(data, x, threads), "openvino": openvino_fn(data, x, threads),
           "torch": torch_fn(spec, w, x, threads)}
    return {k: v for k, v in fns.items() if v is not None}
