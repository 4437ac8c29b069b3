"""Whole models from public packages (MONAI, segmentation_models_pytorch, torchvision,
ultralytics, speechbrain, diffusers; random weights), each exported by both PyTorch exporters
(tools/make_model_fixtures.py): every one compiles through ``convt.compile(path)`` and matches
onnxruntime and PyTorch to ``1e-4 x max|expected|``, at the exported batch and, where the
batch axis is open, at two others."""
import json
import os

import numpy as np
import pytest

import convt
from onnx_util import ort_run

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "models")
with open(os.path.join(FIXTURES, "manifest.json")) as _f:
    MANIFEST = [m for m in json.load(_f) if os.path.exists(os.path.join(FIXTURES, m["file"]))]
REL = 1e-4


def _close(got, expected, what):
    scale = float(np.max(np.abs(expected), initial=0)) or 1.0
    err = float(np.max(np.abs(got.astype(np.float64) - expected), initial=0))
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    assert err <= REL * scale, f"{what}: max |error| {err:.3g} > {REL} x {scale:.3g}"


def test_suite_spans_the_packages():
    packages = {m["package"] for m in MANIFEST}
    models = {m["name"] for m in MANIFEST}
    assert len(models) >= 8 and len(packages) >= 5, (models, packages)
    for name in models:   # both exporters of each committed model
        assert {m["exporter"] for m in MANIFEST if m["name"] == name} == {"torchscript",
                                                                            "dynamo"}, name


@pytest.mark.parametrize("entry", MANIFEST, ids=[m["file"][:-5] for m in MANIFEST])
def test_model_matches_onnxruntime_and_pytorch(entry, rng):
    import onnx
    path = os.path.join(FIXTURES, entry["file"])
    data = np.load(os.path.join(FIXTURES, f"{entry['name']}.npz"))
    model = onnx.load(path)
    names = [i.name for i in model.graph.input
             if i.name not in {t.name for t in model.graph.initializer}]
    feeds = {n: data[f"in_{n}"] for n in names}
    mod = convt.compile(path, target="x86")
    assert mod.kernels, "no ConvTranspose became a convt kernel"
    unscheduled = sorted(name for name, rule in mod.rules.items() if not rule)
    assert mod.rules and not unscheduled, f"PrimFuncs without a convt.rule: {unscheduled}"
    kinds = {n.op_type for n in model.graph.node}
    if "Conv" in kinds:   # forward convolutions run on convt kernels too
        convs = {n.name for n in model.graph.node if n.op_type == "Conv"}
        assert any(name in convs for name, _ in mod.kernels), "no Conv became a convt kernel"
    got = mod(**feeds)
    got = got if isinstance(got, tuple) else (got,)
    torch_out = [data[f"out_{o}"] for o in mod.output_names if f"out_{o}" in data.files]
    for i, (g, o) in enumerate(zip(got, ort_run(model, feeds))):
        _close(g, o, f"output {i} against onnxruntime")
    for i, (g, t) in enumerate(zip(got, torch_out)):
        _close(g, t, f"output {i} against PyTorch")
    if all(not isinstance(i["shape"][0], int) for i in mod.signature["inputs"]):
        for batch in (1, 3):   # the batch stayed open: other batches run too
            other = {n: rng.standard_normal((batch,) + v.shape[1:]).astype(v.dtype)
                     for n, v in feeds.items()}
            out = mod(**other)
            out = out if isinstance(out, tuple) else (out,)
            for i, (g, o) in enumerate(zip(out, ort_run(model, other))):
                _close(g, o, f"output {i} at batch {batch}")


@pytest.mark.parametrize("file", ["torchvision_maskrcnn_mask_head.onnx", "monai_basicunet2d.onnx"])
def test_model_builds_for_arm(file, tmp_path):
    """The same graph rules build for aarch64 (running it is the ARM tests' part)."""
    mod = convt.compile(os.path.join(FIXTURES, file), target="arm")
    assert mod.rules and all(mod.rules.values()), mod.rules
    for name, rule in mod.rules.items():   # convt kernels by ARM rules, the rest by graph rules
        assert rule.startswith("arm." if name.startswith("convt_") else "cpu."), (name, rule)
    mod.export(tmp_path / "model.convt")
    assert (tmp_path / "model.convt").stat().st_size > 0
