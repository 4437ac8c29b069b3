"""Property-based tests over the whole spec space, against independent oracles.

* every rule of every CPU target, forced on random specs where it applies, at random points of
  its space, on guarded buffers against the float64 scatter oracle (x86: this host and an AVX2
  target; arm and cuda: built here, run under emulation or on a GPU by their own tests);
* the Keras op and layers, with random valid arguments, against the float64 oracle that
  derives Keras' padding the way Keras' JAX backend does;
* ONNX ConvTranspose nodes with random attributes, against onnxruntime and the float64 reading
  of the operator text.

``CONVT_FUZZ=long`` runs the long profile (``strategies.EXAMPLES``).
"""
import random

import numpy as np
import pytest
from conftest import assert_close, run_spec
from hypothesis import given
from hypothesis import strategies as st
from onnx import numpy_helper
from onnx_util import conv_transpose_model, ort_run
from reference import activation_reference, keras_reference, onnx_node_reference
from strategies import fuzz_settings, keras_layer_args, keras_op_args, onnx_attrs, specs

import convt
from convt import schedules
from convt.compiler.build import build
from convt.compiler.targets import resolve

X86_TARGETS = ["x86", {"kind": "llvm", "mcpu": "haswell", "num-cores": 2}]
BUILD_ONLY = ["arm", "cuda"]   # no aarch64 CPU or GPU here: these must build


@fuzz_settings("rules")
@given(spec=specs(), data=st.data())
def test_every_rule_at_any_point_is_exact_and_in_bounds(spec, data):
    target = data.draw(st.sampled_from(X86_TARGETS + BUILD_ONLY), label="target")
    info = schedules.describe(resolve(target))
    rule = data.draw(st.sampled_from(schedules.applicable(spec, info)), label="rule")
    point = rule.space(spec, info).sample(random.Random(data.draw(st.integers(0, 2 ** 32))))
    knobs = {"rule": rule.name, **point}
    if target in BUILD_ONLY:
        assert build(spec, target, knobs).rule == rule.name
        return
    batch = spec.batch or data.draw(st.integers(1, 3), label="batch")
    y, ref, kernel = run_spec(spec, np.random.default_rng(0), batch=batch, knobs=knobs,
                              target=target)
    assert kernel.rule == rule.name
    assert y.shape == ref.shape
    assert_close(y, ref)


@fuzz_settings("op")
@given(args=keras_op_args(), seed=st.integers(0, 2 ** 32))
def test_keras_op_with_random_arguments(args, seed):
    x_shape, k_shape, kwargs = args
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(k_shape).astype(np.float32)
    y = convt.conv_transpose(x, w, **kwargs)
    r = len(x_shape) - 2
    op = kwargs["output_padding"]
    ref = keras_reference(x, w, tuple(kwargs["strides"]), kwargs["padding"],
                          None if op is None else (op,) * r if isinstance(op, int) else tuple(op),
                          kwargs["data_format"], tuple(kwargs["dilation_rate"]))
    assert y.shape == ref.shape
    assert_close(y, ref)


@fuzz_settings("layer")
@given(args=keras_layer_args(), seed=st.integers(0, 2 ** 32),
       via=st.sampled_from(["call", "artifact"]))
def test_keras_layers_with_random_configs(args, seed, via, tmp_path_factory):
    cls_name, kwargs, x_shape = args
    rng = np.random.default_rng(seed)
    layer = getattr(convt.layers, cls_name)(**kwargs)
    x = rng.standard_normal(x_shape).astype(np.float32)
    layer.build(x.shape)
    weights = [rng.standard_normal(w.shape).astype(np.float32) for w in layer.get_weights()]
    layer.set_weights(weights)
    if via == "call":
        y = layer(x)
    else:   # compiled for any batch, exported, loaded by the runtime alone
        mod = convt.compile(layer, input_shape=(None,) + x.shape[1:])
        path = mod.export(tmp_path_factory.mktemp("fuzz") / "layer.convt")
        y = convt.load(path)(x)
    last = kwargs["data_format"] == "channels_last"
    ref = keras_reference(x, weights[0], tuple(kwargs["strides"]), kwargs["padding"],
                          None if kwargs["output_padding"] is None
                          else tuple(kwargs["output_padding"]), kwargs["data_format"],
                          tuple(kwargs["dilation_rate"]))
    if kwargs["use_bias"]:
        ref = ref + weights[1].reshape((-1,) if last else (-1,) + (1,) * (x.ndim - 2))
    act = kwargs["activation"]
    if act == "softmax":   # Keras applies it on the last axis whatever the data format
        e = np.exp(ref - ref.max(axis=-1, keepdims=True))
        ref = e / e.sum(axis=-1, keepdims=True)
    elif act:
        ref = activation_reference(ref, act)
    assert y.shape == ref.shape
    assert_close(y, ref)


@fuzz_settings("onnx")
@given(case=onnx_attrs(), seed=st.integers(0, 2 ** 32))
def test_onnx_nodes_with_random_attributes(case, seed):
    x_shape, w_shape, attrs, bias = case
    model, feeds = conv_transpose_model(np.random.default_rng(seed), x_shape, w_shape, attrs,
                                        bias=bias)
    try:
        expected = ort_run(model, feeds)[0]
    except Exception:   # onnxruntime refuses it: so must convt, with a clear error
        with pytest.raises(ValueError):
            convt.compile(model)
        return
    got = convt.compile(model)(**feeds)
    assert got.shape == expected.shape
    assert_close(got, expected)
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    ref = onnx_node_reference(feeds["x"], weights["w"], weights.get("b"), attrs)
    assert_close(got, ref)      # the second oracle: the operator text, in float64
