"""Models exported from PyTorch 2.13 (tools/make_onnx_fixtures.py) by both of its exporters,
against PyTorch's own outputs and onnxruntime, at the exported batch and at another batch (the
batch axis is dynamic)."""
import glob
import os

import numpy as np
import onnx
import pytest

import convt
from conftest import assert_close
from onnx_util import ort_run

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "onnx")
NAMES = sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(FIXTURES, "*.onnx")))

# what the fold must absorb after each ConvTranspose, in graph order (TorchScript exports; the
# torch.export-based exporter folds BatchNorm itself)
EXPECTED_FUSIONS = {
    "dcgan_generator": [["BatchNormalization", "Relu"]] * 3 + [["Tanh"]],
    "hifigan_upsampler": [["LeakyRelu"], ["LeakyRelu"]],
    "decoder3d": [["BatchNormalization", "Relu"], []],
    "grouped_depthwise": [["PRelu"], []],
    "dilated": [["HardSigmoid"], []],
}


def test_all_fixtures_present():
    legacy = set(EXPECTED_FUSIONS) | {"unet_decoder"}
    assert legacy | {f"{n}_dynamo" for n in legacy} == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_pytorch_export(name):
    path = os.path.join(FIXTURES, f"{name}.onnx")
    data = np.load(os.path.join(FIXTURES, f"{name}.npz"))
    inputs = {k[3:]: data[k] for k in data.files if k.startswith("in_")}
    expected = [data[k] for k in sorted(k for k in data.files if k.startswith("out_"))]
    mod = convt.compile(path, target="x86")
    model = onnx.load(path)
    if name in EXPECTED_FUSIONS:   # the Conv nodes on convt kernels are reported too
        deconvs = {n.name or n.output[0] for n in model.graph.node if n.op_type == "ConvTranspose"}
        assert [ops for node, ops in mod.fusions if node in deconvs] == EXPECTED_FUSIONS[name]
    got = mod(**inputs)
    got = got if isinstance(got, tuple) else (got,)
    for g, e, o in zip(got, expected, ort_run(model, inputs)):
        assert_close(g, e)
        assert_close(g, o)
    one = {k: v[:1] for k, v in inputs.items()}
    got1 = mod(**one)
    got1 = got1 if isinstance(got1, tuple) else (got1,)
    for g, o in zip(got1, ort_run(model, one)):
        assert_close(g, o)
