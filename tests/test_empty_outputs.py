"""Where Keras returns an array with a zero-length axis, so does convt: op, layers, compiled
modules, artifacts (host, arm and cuda exports). Shapes as real Keras 3.15 returns them."""
import os
import shutil

import numpy as np
import pytest

import convt
from convt.compiler.spec import ConvTransposeSpec, SpecError

# Conv3DTranspose(3, (3, 4, 1), (3, 2, 3), "same", output_padding=0) on a 2x1x2 input: Keras
# gives (1, 4, 0, 4, 3)
LAYER = dict(filters=3, kernel_size=(3, 4, 1), strides=(3, 2, 3), padding="same",
             output_padding=0)
X_SHAPE = (1, 2, 1, 2, 3)
EXPECTED = (1, 4, 0, 4, 3)


def test_op_and_layer_return_the_empty_array(rng):
    x = rng.standard_normal(X_SHAPE).astype(np.float32)
    w = rng.standard_normal((3, 4, 1, 3, 3)).astype(np.float32)
    y = convt.conv_transpose(x, w, strides=(3, 2, 3), padding="same", output_padding=0)
    assert y.shape == EXPECTED and y.dtype == np.float32
    layer = convt.layers.Conv3DTranspose(**LAYER, activation="softmax")
    assert layer(x).shape == EXPECTED
    assert layer.compute_output_shape(X_SHAPE) == EXPECTED


def test_compiled_module_and_artifact(tmp_path, rng):
    layer = convt.layers.Conv3DTranspose(**LAYER)
    mod = convt.compile(layer, input_shape=(None,) + X_SHAPE[1:])
    assert mod.kernel.rule == "empty"
    x = rng.standard_normal((2,) + X_SHAPE[1:]).astype(np.float32)
    assert mod(x).shape == (2,) + EXPECTED[1:]
    loaded = convt.load(mod.export(tmp_path / "empty.convt"))
    assert loaded(x).shape == (2,) + EXPECTED[1:]
    assert [ok for _, _, ok in convt.runtime.verify(loaded)] == [True]


@pytest.mark.parametrize("target", [
    pytest.param("arm", marks=pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None,
                                                 reason="needs g++-aarch64-linux-gnu")),
    pytest.param("cuda:sm_90", marks=pytest.mark.skipif(shutil.which("nvcc") is None,
                                                        reason="needs nvcc"))])
def test_cross_targets_export_the_empty_kernel(target, tmp_path):
    mod = convt.compile(convt.layers.Conv3DTranspose(**LAYER), input_shape=X_SHAPE,
                        target=target)
    assert mod.kernel.rule == "empty"
    assert os.path.getsize(mod.export(tmp_path / "e.convt")) > 0


def test_a_negative_output_is_still_refused():
    with pytest.raises(SpecError, match="must not be negative"):
        ConvTransposeSpec((2,), 3, 4, (2,), (3,), (1,), (4,), (2,), (0,))
