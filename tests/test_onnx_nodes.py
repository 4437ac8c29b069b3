"""ONNX ConvTranspose node semantics against onnxruntime and ONNX's own backend cases."""
import warnings

import numpy as np
import pytest
from onnx.backend.test.case.node import collect_testcases

import convt
from conftest import assert_close
from onnx_util import conv_transpose_model, ort_run
from reference import scatter_conv_transpose

with warnings.catch_warnings(), np.errstate(all="ignore"):  # other ops' cases warn on import
    warnings.simplefilter("ignore")
    BACKEND = [c for c in collect_testcases(None) if "convtranspose" in c.name]


def test_backend_case_count():
    assert len(BACKEND) == 11


@pytest.mark.parametrize("case", BACKEND, ids=[c.name for c in BACKEND])
def test_onnx_backend_case(case):
    mod = convt.compile(case.model, target="x86")
    for inputs, outputs in case.data_sets:
        assert_close(mod(*inputs), outputs[0])


# (x_shape, w_shape, attrs): odd total paddings, every auto_pad, output_shape in 1D/2D/3D,
# asymmetric pads, dilation, groups, depthwise, output_padding, kernel_shape given
NODES = {
    "same_upper_odd_1d": ((2, 3, 7), (3, 2, 4), dict(strides=[3], auto_pad="SAME_UPPER")),
    "same_lower_odd_1d": ((2, 3, 7), (3, 2, 4), dict(strides=[3], auto_pad="SAME_LOWER")),
    "same_upper_odd_2d": ((1, 4, 5, 6), (4, 3, 3, 2), dict(strides=[2, 3], auto_pad="SAME_UPPER")),
    "same_lower_odd_2d": ((1, 4, 5, 6), (4, 3, 3, 2), dict(strides=[2, 3], auto_pad="SAME_LOWER")),
    "same_upper_op_3d": ((1, 2, 3, 4, 3), (2, 3, 3, 3, 2),
                         dict(strides=[2, 2, 3], auto_pad="SAME_UPPER", output_padding=[1, 0, 2])),
    "same_k_below_s": ((1, 2, 5), (2, 2, 1), dict(strides=[3], auto_pad="SAME_LOWER")),
    "valid_op_2d": ((2, 3, 4, 5), (3, 4, 3, 3),
                    dict(strides=[2, 2], auto_pad="VALID", output_padding=[1, 0])),
    "notset_asym_pads_2d": ((2, 3, 6, 5), (3, 2, 4, 3), dict(strides=[2, 1], pads=[2, 0, 1, 2])),
    "asym_pads_dilation_3d": ((1, 2, 4, 3, 5), (2, 2, 2, 3, 2),
                              dict(strides=[1, 2, 2], dilations=[2, 1, 3], pads=[0, 1, 2, 3, 0, 1])),
    "output_shape_1d_odd": ((2, 3, 6), (3, 4, 5), dict(strides=[2], output_shape=[14])),
    "output_shape_1d_upper": ((2, 3, 6), (3, 4, 5),
                              dict(strides=[2], output_shape=[14], auto_pad="SAME_UPPER")),
    "output_shape_2d": ((1, 4, 5, 4), (4, 2, 3, 3), dict(strides=[2, 3], output_shape=[10, 11])),
    "output_shape_grows": ((1, 2, 5, 4), (2, 2, 3, 3), dict(strides=[3, 3], output_shape=[17, 13])),
    "output_shape_over_pads": ((1, 2, 5), (2, 3, 3), dict(strides=[2], output_shape=[9], pads=[3, 0])),
    "output_shape_3d_op": ((1, 2, 3, 3, 4), (2, 2, 3, 2, 3),
                           dict(strides=[2, 2, 2], output_shape=[6, 7, 8], output_padding=[1, 1, 0])),
    "group3": ((2, 6, 5, 5), (6, 2, 3, 3), dict(strides=[2, 2], pads=[1, 1, 1, 1], group=3)),
    "depthwise": ((1, 8, 6, 7), (8, 1, 4, 4), dict(strides=[2, 2], pads=[1, 1, 1, 1], group=8)),
    "kernel_shape_given": ((1, 3, 4), (3, 2, 5), dict(strides=[4], kernel_shape=[5])),
    "dilation_and_stride": ((1, 3, 6, 5), (3, 2, 3, 3), dict(strides=[2, 3], dilations=[2, 2])),
    "stride_large": ((1, 2, 3, 4), (2, 3, 16, 16), dict(strides=[8, 8], pads=[4, 4, 4, 4])),
}


@pytest.mark.parametrize("name", sorted(NODES))
@pytest.mark.parametrize("weights_as_inputs", [False, True], ids=["init", "runtime_w"])
def test_node_matches_onnxruntime(name, weights_as_inputs, rng):
    x_shape, w_shape, attrs = NODES[name]
    model, feeds = conv_transpose_model(rng, x_shape, w_shape, attrs,
                                        weights_as_inputs=weights_as_inputs)
    expected = ort_run(model, feeds)[0]
    got = convt.compile(model)(**feeds)
    assert got.shape == expected.shape
    assert_close(got, expected)


def test_node_matches_float64_oracle(rng):
    """Explicit pads checked against the scatter definition, independently of onnxruntime."""
    attrs = dict(strides=[2, 3], dilations=[1, 2], pads=[1, 0, 2, 1], output_padding=[1, 2],
                 group=2)
    model, feeds = conv_transpose_model(rng, (2, 4, 5, 4), (4, 3, 3, 2), attrs,
                                        weights_as_inputs=True)
    ref = scatter_conv_transpose(feeds["x"], feeds["w"], [2, 3], [1, 2], [1, 0], [2, 1], [1, 2],
                                 groups=2) + feeds["b"].reshape(1, -1, 1, 1)
    assert_close(convt.compile(model)(**feeds), ref)


def test_dynamic_batch_stays_dynamic(rng):
    model, feeds = conv_transpose_model(rng, (2, 3, 4, 4), (3, 2, 3, 3), dict(strides=[2, 2]))
    mod = convt.compile(model)
    assert mod.signature["inputs"][0]["shape"][0] == "N"
    for n in (1, 5):
        x = rng.standard_normal((n, 3, 4, 4)).astype(np.float32)
        assert_close(mod(x), ort_run(model, {"x": x})[0])


def test_input_shapes_fix_open_dims(rng):
    model, feeds = conv_transpose_model(rng, (3, 3, 4, 4), (3, 2, 3, 3), dict(strides=[2, 2]))
    mod = convt.compile(model, input_shapes={"x": (3, 3, 4, 4)})
    assert mod.kernels[0][1].batch == 3
    assert_close(mod(feeds["x"]), ort_run(model, feeds)[0])
    with pytest.raises(ValueError, match="shape"):
        mod(np.zeros((2, 3, 4, 4), np.float32))


def test_old_opset_model(rng):
    model, feeds = conv_transpose_model(rng, (1, 3, 5, 5), (3, 2, 3, 3),
                                        dict(strides=[2, 2], pads=[1, 1, 0, 0]), opset=7)
    assert_close(convt.compile(model)(feeds["x"]), ort_run(model, feeds)[0])


def test_float16(rng):
    model, feeds = conv_transpose_model(rng, (1, 4, 5, 5), (4, 3, 3, 3),
                                        dict(strides=[2, 2], pads=[1, 1, 1, 1]), dtype=np.float16)
    got = convt.compile(model)(feeds["x"])
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float32),
                               ort_run(model, feeds)[0].astype(np.float32), rtol=1e-2, atol=1e-2)
