"""Bad input gets a ValueError naming the argument, before any compilation."""
import numpy as np
import pytest

import convt
from convt.compiler import build as build_mod
from convt.compiler.spec import ConvTransposeSpec, SpecError


@pytest.fixture(autouse=True)
def no_compilation(monkeypatch):
    import convt.compiler.cache as cache  # before patching: it binds build at import

    def refuse(*a, **k):
        raise AssertionError("compiled despite bad input")
    monkeypatch.setattr(build_mod, "build", refuse)
    monkeypatch.setattr(cache, "build", refuse)


X = np.ones((1, 4, 4, 3), np.float32)
W = np.ones((3, 3, 2, 3), np.float32)


@pytest.mark.parametrize("kwargs,match", [
    (dict(inputs=np.ones((4, 3), np.float32)), "rank"),
    (dict(kernel=np.ones((3, 2, 3), np.float32)), "rank"),
    (dict(kernel=np.ones((3, 3, 2, 5), np.float32)), "input channels"),
    (dict(strides=0), "strides"),
    (dict(strides=(1, 2, 3)), "strides"),
    (dict(dilation_rate=-1), "dilation_rate"),
    (dict(padding="full"), "padding"),
    (dict(padding=3), "padding"),
    (dict(data_format="NHWC"), "data_format"),
    (dict(output_padding=-1), "output_padding"),
    (dict(inputs=np.ones((1, 0, 4, 3), np.float32)), "positive"),
])
def test_op_bad_arguments(kwargs, match):
    args = dict(inputs=X, kernel=W)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        convt.conv_transpose(**args)


def test_layer_bad_weights_and_inputs():
    layer = convt.layers.Conv2DTranspose(2, 3)
    with pytest.raises(ValueError, match="before it was built"):
        layer.set_weights([W])
    layer.build((1, 4, 4, 3))
    with pytest.raises(ValueError, match="not compatible"):
        layer.set_weights([np.ones((3, 3, 3, 2)), np.ones(2)])
    with pytest.raises(ValueError, match="length 1"):
        layer.set_weights([W])
    with pytest.raises(ValueError, match="expected ndim=4"):
        layer.build((1, 4, 3))
    with pytest.raises(ValueError, match="input_shape"):
        convt.compile(layer, input_shape=None)
    with pytest.raises(ValueError, match="callable"):
        convt.compile(convt.layers.Conv1DTranspose(2, 3, activation=np.tanh), input_shape=(1, 4, 2))


@pytest.mark.parametrize("field,value,match", [
    ("groups", 4, "divide by groups"), ("pads_begin", (-1, 0), "pads_begin"),
    ("pads_end", (9, 9), "output spatial shape"), ("layout", "NCHW", "layout"),
    ("activation", "softmax", "activation"), ("strides", (0, 1), "strides"),
])
def test_spec_rules(field, value, match):
    base = dict(in_spatial=(3, 3), in_channels=6, out_channels=6, kernel=(3, 3), strides=(2, 2),
                dilation=(1, 1), pads_begin=(0, 0), pads_end=(0, 0), output_padding=(0, 0))
    base[field] = value
    with pytest.raises(SpecError, match=match):
        ConvTransposeSpec(**base)


def test_bad_target_names():
    from convt.compiler.targets import TargetError, resolve
    with pytest.raises(TargetError, match="unknown target"):
        resolve("tpu")
    with pytest.raises(TargetError, match="sm_80"):
        resolve("cuda:volta")
