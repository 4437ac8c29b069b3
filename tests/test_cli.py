"""The convt CLI as a new user drives it: compile an ONNX model or a Keras document, run it from
.npy files, inspect, verify; every failure is one line with exit 1 (2 for usage)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import pytest
from conftest import assert_close

import convt
from convt.tools.cli import main

MODEL = os.path.join(os.path.dirname(__file__), "fixtures", "onnx", "dcgan_generator.onnx")


def _cli(*args, env=None):
    """(exit code, stdout, stderr) of ``convt ARGS`` in a fresh process. It runs outside the
    checkout, whose ``convt/`` folder would shadow the installed package."""
    proc = subprocess.run([sys.executable, "-m", "convt.tools.cli", *map(str, args)],
                          capture_output=True, text=True, env=dict(os.environ, **(env or {})),
                          cwd=tempfile.gettempdir())
    return proc.returncode, proc.stdout, proc.stderr


def _one_line_error(err: str, *words):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture(scope="module")
def onnx_artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "dcgan.convt"
    assert main(["compile", MODEL, "--target", "x86", "-o", str(out)]) == 0
    return out


def test_onnx_compile_run_matches_onnxruntime(onnx_artifact, tmp_path, rng):
    import onnxruntime as ort
    sess = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = rng.standard_normal((3, 16, 1, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(onnx_artifact), "--input", f"{name}={tmp_path / 'x.npy'}",
                 "--output", str(tmp_path / "y.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), sess.run(None, {name: x})[0],
                               rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("dims,batches", [("N,16,1,1", (1, 3)), ("4,16,1,1", (4,))])
def test_input_shape_may_leave_the_batch_open(tmp_path, rng, dims, batches):
    import onnxruntime as ort
    out = tmp_path / "m.convt"
    assert main(["compile", MODEL, "--input-shape", f"z={dims}", "-o", str(out)]) == 0
    sess = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
    for batch in batches:
        x = rng.standard_normal((batch, 16, 1, 1)).astype(np.float32)
        np.save(tmp_path / "x.npy", x)
        assert main(["run", str(out), "--input", f"z={tmp_path / 'x.npy'}",
                     "--output", str(tmp_path / "y.npy")]) == 0
        np.testing.assert_allclose(np.load(tmp_path / "y.npy"), sess.run(None, {"z": x})[0],
                                   rtol=1e-3, atol=1e-3)


def test_inspect_and_verify(onnx_artifact, capsys):
    assert main(["inspect", str(onnx_artifact)]) == 0
    text = capsys.readouterr().out
    for word in ("convt-artifact", "x86_64", "entry 'model' (graph)", "input ", "sha256"):
        assert word in text
    assert main(["inspect", str(onnx_artifact), "--json"]) == 0
    man = json.loads(capsys.readouterr().out)
    assert man["format_version"] == 3 and man["source"]["kind"] == "onnx"
    assert set(man["sha256"]) == {"model.so", "model.test.npz"}
    assert man["target"]["features"] and man["created"]
    assert main(["verify", str(onnx_artifact)]) == 0
    assert "model: ok" in capsys.readouterr().out


def test_runtime_only_process_runs_a_model_artifact(onnx_artifact, tmp_path, rng):
    x = rng.standard_normal((1, 16, 1, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code = ("import sys, numpy as np, convt\n"
            f"y = convt.load({str(onnx_artifact)!r})(np.load({str(tmp_path / 'x.npy')!r}))\n"
            "maps = open('/proc/self/maps').read()\n"
            "assert 'libtvm_runtime' in maps and 'libtvm_compiler' not in maps\n"
            "assert 'tvm.relax' not in sys.modules\n"
            f"np.save({str(tmp_path / 'y.npy')!r}, y)\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path,
                   env=dict(os.environ, TVM_USE_RUNTIME_LIB="1"))
    expected = convt.load(onnx_artifact)(x)
    assert_close(np.load(tmp_path / "y.npy"), expected)
    rc, out, err = _cli("verify", onnx_artifact, env={"TVM_USE_RUNTIME_LIB": "1"})
    assert rc == 0 and "ok" in out, err


def test_flipped_byte_is_refused_in_one_line(onnx_artifact, tmp_path):
    data = bytearray(onnx_artifact.read_bytes())
    with zipfile.ZipFile(onnx_artifact) as z:
        offset = z.getinfo("model.so").header_offset
    data[offset + 500] ^= 0x01
    bad = tmp_path / "bad.convt"
    bad.write_bytes(bytes(data))
    np.save(tmp_path / "x.npy", np.ones((1, 16, 1, 1), np.float32))
    rc, _, err = _cli("run", bad, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert rc == 1
    _one_line_error(err, "bad.convt")
    assert not (tmp_path / "y.npy").exists()


def test_missing_input_and_wrong_shape_are_one_line(onnx_artifact, tmp_path, capsys):
    assert main(["run", str(onnx_artifact), "--input", str(tmp_path / "nope.npy"),
                 "--output", str(tmp_path / "y.npy")]) == 1
    _one_line_error(capsys.readouterr().err, "nope.npy", "does not exist")
    np.save(tmp_path / "x.npy", np.ones((1, 16, 2, 1), np.float32))
    assert main(["run", str(onnx_artifact), "--input", str(tmp_path / "x.npy"),
                 "--output", str(tmp_path / "y.npy")]) == 1
    _one_line_error(capsys.readouterr().err, "shape (1, 16, 2, 1)", "signature")


def test_usage_errors_exit_2_and_debug_shows_the_traceback(onnx_artifact, tmp_path, capsys):
    assert main(["run", str(onnx_artifact), "--input", f"nosuch={tmp_path / 'x.npy'}",
                 "--output", str(tmp_path / "y.npy")]) == 2
    _one_line_error(capsys.readouterr().err, "nosuch")
    with pytest.raises(SystemExit) as e:
        main(["compile"])
    assert e.value.code == 2
    with pytest.raises(FileNotFoundError):
        main(["--debug", "run", str(onnx_artifact), "--input", str(tmp_path / "none.npy"),
              "--output", str(tmp_path / "y.npy")])


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None,
                    reason="needs Debian g++-aarch64-linux-gnu (.ci/run installs it)")
def test_arm_artifact_is_refused_on_x86_naming_the_architecture(tmp_path):
    out = tmp_path / "arm.convt"
    assert main(["compile", MODEL, "--target", "arm", "-o", str(out)]) == 0
    np.save(tmp_path / "x.npy", np.ones((1, 16, 1, 1), np.float32))
    rc, _, err = _cli("run", out, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert rc == 1
    _one_line_error(err, "aarch64", "x86_64")


def _keras_model(tmp_path):
    """A Sequential model.to_json() with two ConvTranspose layers between other layers."""
    def conv(name, cls, filters, shape, **kw):
        return {"module": "keras.layers", "class_name": cls, "build_config": {"input_shape": shape},
                "config": {"name": name, "filters": filters, "kernel_size": 3, "strides": 2,
                           "padding": "same", "use_bias": True, **kw}}
    doc = {"class_name": "Sequential", "config": {"name": "decoder", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 8, 8, 16]}},
        conv("up1", "Conv2DTranspose", 8, [None, 8, 8, 16], activation="relu"),
        {"class_name": "BatchNormalization", "config": {"name": "bn"}},
        conv("up2", "Convolution2DTranspose", 4, [None, 16, 16, 8], use_bias=False)]}}
    path = tmp_path / "decoder.json"
    path.write_text(json.dumps(doc))
    return path


def _reference_layers(path, weights):
    from convt.frontends.keras_model import conv_layers
    layers = []
    for layer, shape in conv_layers(json.loads(path.read_text())):
        layer.build(shape)
        layer.set_weights(weights[layer.name])
        layers.append(layer)
    return layers


@pytest.mark.parametrize("fmt", ["npz", "h5"])
def test_keras_model_json_becomes_named_entries(tmp_path, rng, fmt):
    path = _keras_model(tmp_path)
    weights = {"up1": [rng.standard_normal((3, 3, 8, 16)).astype(np.float32),
                       rng.standard_normal(8).astype(np.float32)],
               "up2": [rng.standard_normal((3, 3, 4, 8)).astype(np.float32)]}
    if fmt == "npz":
        wfile = tmp_path / "w.npz"
        np.savez(wfile, **{f"{n}/{k}": a for n, ws in weights.items()
                           for k, a in zip(("kernel", "bias"), ws)})
    else:
        h5py = pytest.importorskip("h5py")
        wfile = tmp_path / "decoder.weights.h5"
        with h5py.File(wfile, "w") as f:   # Keras 3 layout: layers/<name>/vars/<i>
            for n, ws in weights.items():
                for i, a in enumerate(ws):
                    f.create_dataset(f"layers/{n}/vars/{i}", data=a)
    out = tmp_path / "decoder.convt"
    assert main(["compile", str(path), "--weights", str(wfile), "-o", str(out)]) == 0
    bundle = convt.load(out)
    assert bundle.names == ["up1", "up2"]
    x1 = rng.standard_normal((2, 8, 8, 16)).astype(np.float32)
    x2 = rng.standard_normal((1, 16, 16, 8)).astype(np.float32)
    ref1, ref2 = _reference_layers(path, weights)
    assert_close(bundle["up1"](x1), ref1(x1))
    assert_close(bundle["up2"](x2), ref2(x2))
    np.save(tmp_path / "x.npy", x2)
    assert main(["run", str(out), "--entry", "up2", "--input", str(tmp_path / "x.npy"),
                 "--output", str(tmp_path / "y.npz")]) == 0
    assert_close(np.load(tmp_path / "y.npz")["y"], ref2(x2))
    assert [r[2] for r in convt.runtime.verify(bundle)] == [True, True]


def test_keras_errors_name_the_layer(tmp_path, capsys):
    path = _keras_model(tmp_path)
    np.savez(tmp_path / "w.npz", **{"up1/kernel": np.ones((3, 3, 8, 16), np.float32)})
    assert main(["compile", str(path), "--weights", str(tmp_path / "w.npz"),
                 "-o", str(tmp_path / "o.convt")]) == 1
    _one_line_error(capsys.readouterr().err, "up2")
    assert main(["run", str(tmp_path / "o.convt"), "--input", "x.npy", "--output", "y.npy"]) == 1
    _one_line_error(capsys.readouterr().err, "o.convt")


def test_loaded_module_is_safe_to_call_from_threads(onnx_artifact, rng):
    from concurrent.futures import ThreadPoolExecutor
    runner = convt.load(onnx_artifact)
    xs = [rng.standard_normal((n, 16, 1, 1)).astype(np.float32) for n in (1, 2, 3, 4) * 3]
    expected = [runner(x) for x in xs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(runner, xs))
    for g, e in zip(got, expected):
        assert_close(g, e)


def test_check_runs_each_rule_on_guarded_buffers(capsys):
    op = json.dumps({"inputs": [1, 1, 13, 1], "kernel": [5, 4, 3, 1], "strides": 2,
                     "padding": "valid", "data_format": "channels_last"})
    assert main(["check", "--op", op, "--every-rule"]) == 0
    out = capsys.readouterr().out
    for rule in ("x86.register_tile", "x86.width_vector", "cpu.fallback"):
        assert f"rule {rule}" in out
    assert out.count("buffers: in bounds") == out.count("rule ") and "FAILED" not in out
    layer = json.dumps({"class_name": "Conv1DTranspose", "config": {
        "filters": 2, "kernel_size": 3, "padding": "same", "data_format": "channels_first"}})
    assert main(["check", "--layer", layer, "--input-shape", "2,3,1",
                 "--knobs", '{"rule": "x86.register_tile", "tile_w": 1}']) == 0
    assert "tile_w=1" in capsys.readouterr().out


def test_check_usage_errors_are_one_line():
    code, _, err = _cli("check")
    assert code == 2
    _one_line_error(err, "--op", "--layer", "--spec")
    code, _, err = _cli("check", "--spec", json.dumps({"in_spatial": [4]}))
    assert code == 1
    _one_line_error(err, "convt check: error")
    code, _, err = _cli("check", "--op", '{"inputs": [1, 4, 2], "kernel": [3, 2, 2]}',
                        "--knobs", '{"rule": "x86.scatter_gemm", "tile_w": 99}')
    assert code == 1
    _one_line_error(err, "tile_w=99", "x86.scatter_gemm")
