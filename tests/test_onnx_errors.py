"""Bad ONNX input: one clear error naming the node (or input) and the rule, before compiling."""
import numpy as np
import pytest
from onnx import helper

import convt
from convt.frontends.onnx_node import OnnxError
from onnx_util import FLOAT, conv_transpose_model, make_model


def _node_model(rng, attrs, x_shape=(1, 4, 5, 5), w_shape=(4, 2, 3, 3)):
    return conv_transpose_model(rng, x_shape, w_shape, attrs)[0]


@pytest.mark.parametrize("attrs,x_shape,w_shape,match", [
    (dict(group=3), (1, 4, 5, 5), (4, 2, 3, 3), r"'deconv'.*input channels 4 must divide by group 3"),
    (dict(output_shape=[20, 20], strides=[2, 2]), (1, 4, 5, 5), (4, 2, 3, 3),
     r"'deconv'.*output_shape \[20, 20\] cannot be reached on axis 0"),
    (dict(output_shape=[1, 2, 9, 9]), (1, 4, 5, 5), (4, 2, 3, 3),
     r"'deconv'.*output_shape .* spatial sizes only"),
    (dict(pads=[1, 1, 1, 1], auto_pad="VALID"), (1, 4, 5, 5), (4, 2, 3, 3),
     r"'deconv'.*cannot be combined with auto_pad VALID"),
    (dict(output_padding=[2, 0], strides=[2, 2]), (1, 4, 5, 5), (4, 2, 3, 3),
     r"'deconv'.*output_padding \[2, 0\] must be >= 0 and below strides"),
    (dict(kernel_shape=[2, 2]), (1, 4, 5, 5), (4, 2, 3, 3), r"'deconv'.*kernel_shape \[2, 2\]"),
    (dict(pads=[4, 4, 4, 4]), (1, 4, 2, 2), (4, 2, 3, 3), r"'deconv'.*crop the whole output"),
    (dict(strides=[2]), (1, 4, 5, 5), (4, 2, 3, 3), r"'deconv'.*strides \[2\] must have 2"),
])
def test_bad_node(rng, attrs, x_shape, w_shape, match):
    model = _node_model(rng, attrs, x_shape, w_shape)
    with pytest.raises(OnnxError, match=match):
        convt.compile(model)


def test_negative_pads(rng):
    model = _node_model(rng, dict(pads=[-1, 0, 0, 0]))
    with pytest.raises(OnnxError, match=r"'deconv'.*pads \[-1, 0, 0, 0\] must not be negative"):
        convt.compile(model)


def test_unreadable_and_malformed_files(tmp_path, rng):
    with pytest.raises(OnnxError, match="does not exist"):
        convt.compile(str(tmp_path / "missing.onnx"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07this is not protobuf\xff\xff\xff")
    with pytest.raises(OnnxError, match="cannot read an ONNX model|holds no ONNX graph"):
        convt.compile(str(junk))
    model = _node_model(rng, {})
    model.graph.node[0].input[0] = "nowhere"
    with pytest.raises(OnnxError, match="malformed ONNX model"):
        convt.compile(model)


def test_unknown_opset(rng):
    model = _node_model(rng, {})
    model.opset_import[0].version = 99
    with pytest.raises(OnnxError, match="opset 99 .* unknown"):
        convt.compile(model)


def test_unimportable_ops_listed_in_one_error(rng):
    nodes = [helper.make_node("Relu", ["x"], ["a"]),
             helper.make_node("Foo", ["a"], ["b"], domain="acme"),
             helper.make_node("Bar", ["b"], ["y"], domain="acme")]
    model = make_model(nodes, [("x", [1, 2], FLOAT)], [("y", [1, 2], FLOAT)])
    model.opset_import.append(helper.make_opsetid("acme", 1))
    with pytest.raises(OnnxError, match="cannot convert these ops: Bar, Foo"):
        convt.compile(model)


def test_bad_input_shapes(rng):
    model = _node_model(rng, {})
    with pytest.raises(OnnxError, match=r"not model inputs \['x'\]"):
        convt.compile(model, input_shapes={"y": (1, 4, 5, 5)})
    with pytest.raises(OnnxError, match=r"input_shapes\['x'\] = \[1, 3, 5, 5\] does not fit"):
        convt.compile(model, input_shapes={"x": (1, 3, 5, 5)})


def test_open_spatial_dims_need_input_shapes(rng):
    model, _ = conv_transpose_model(rng, (1, 4, 5, 5), (4, 2, 3, 3), {})
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    with pytest.raises(OnnxError, match=r"'deconv'.*must be static except the batch"):
        convt.compile(model)
    x = rng.standard_normal((2, 4, 6, 5)).astype(np.float32)
    assert convt.compile(model, input_shapes={"x": (2, 4, 6, 5)})(x).shape == (2, 2, 8, 7)


def test_bad_target_and_input_shapes_type(rng):
    from convt.compiler.targets import TargetError
    model = _node_model(rng, {})
    with pytest.raises(TargetError, match="unknown target 'nonsense'"):
        convt.compile(model, target="nonsense")
    with pytest.raises(OnnxError, match="input_shapes must be a dict"):
        convt.compile(model, input_shapes=[1, 4, 5, 5])
