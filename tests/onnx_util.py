"""Building small ONNX models and running them in onnxruntime (the ONNX oracle)."""
import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 10  # onnxruntime 1.31 reads ir_version <= 13; onnx 1.23 writes 14 by default


def make_model(nodes, inputs, outputs, inits=(), opset=17):
    """inputs/outputs: [(name, shape, elem type)]; inits: {name: array}."""
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes, "g", [vi(n, t, s) for n, s, t in inputs], [vi(n, t, s) for n, s, t in outputs],
        initializer=[numpy_helper.from_array(v, k) for k, v in dict(inits).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = IR_VERSION
    return model


def conv_transpose_model(rng, x_shape, w_shape, attrs, bias=True, weights_as_inputs=False,
                         dtype=np.float32, opset=17, batch_dim="N"):
    """One ConvTranspose node; returns (model, feeds) with fresh random inputs."""
    et = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    group = attrs.get("group", 1)
    arrays = {"x": rng.standard_normal(x_shape).astype(dtype),
              "w": rng.standard_normal(w_shape).astype(dtype)}
    if bias:
        arrays["b"] = rng.standard_normal(w_shape[1] * group).astype(dtype)
    names = ["x", "w"] + (["b"] if bias else [])
    node = helper.make_node("ConvTranspose", names, ["y"], name="deconv", **attrs)
    graph_inputs = names if weights_as_inputs else ["x"]
    inputs = [(n, ([batch_dim] + list(x_shape[1:]) if n == "x" and batch_dim else
                   list(arrays[n].shape)), et) for n in graph_inputs]
    inits = {n: arrays[n] for n in names if n not in graph_inputs}
    model = make_model([node], inputs, [("y", [None] * len(x_shape), et)], inits, opset)
    return model, {n: arrays[n] for n in graph_inputs}


def ort_run(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


FLOAT = TensorProto.FLOAT
