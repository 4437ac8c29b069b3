"""Export, load, refusals, and the runtime-only loader."""
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from conftest import assert_close

import convt
from convt.runtime import ArtifactError


def _lib_member(path):
    name, = [n for n in zipfile.ZipFile(path).namelist() if n.endswith(".so")]
    return name


@pytest.fixture
def exported(tmp_path, rng):
    layer = convt.layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="softmax")
    layer.build((1, 6, 5, 3))
    layer.set_weights([rng.standard_normal(w.shape).astype(np.float32)
                       for w in layer.get_weights()])
    mod = convt.compile(layer, input_shape=(None, 6, 5, 3), target="x86")
    return layer, mod, mod.export(tmp_path / "up.convt")


def test_roundtrip_matches_layer_any_batch(exported, rng):
    layer, mod, path = exported
    loaded = convt.load(path)
    for n in (1, 3):
        x = rng.standard_normal((n, 6, 5, 3)).astype(np.float32)
        assert_close(loaded(x), layer(x))
        assert_close(mod(x), layer(x))
    assert np.allclose(loaded(x).sum(-1), 1, atol=1e-5)  # softmax ran after the kernel


def test_wrong_input_shape_is_refused(exported, rng):
    _, _, path = exported
    with pytest.raises(ValueError, match="does not match the compiled signature"):
        convt.load(path)(rng.standard_normal((1, 6, 6, 3)).astype(np.float32))


def test_wrong_input_dtype_is_refused(exported, rng):
    _, _, path = exported
    with pytest.raises(TypeError, match="dtype float64 does not match"):
        convt.load(path)(rng.standard_normal((1, 6, 5, 3)))


def test_tampered_artifact_is_refused(exported, tmp_path):
    _, _, path = exported
    data = bytearray(open(path, "rb").read())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(_lib_member(path))
    data[info.header_offset + 200] ^= 0xFF
    bad = tmp_path / "bad.convt"
    bad.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="SHA-256|damaged"):
        convt.load(bad)


def test_foreign_file_is_refused(tmp_path):
    f = tmp_path / "x.convt"
    f.write_bytes(b"\x7fELF not an artifact")
    with pytest.raises(ArtifactError, match="not a convt artifact"):
        convt.load(f)


def test_missing_cpu_features_are_refused(exported, tmp_path, monkeypatch):
    from convt import runtime
    _, _, path = exported
    monkeypatch.setattr(runtime, "_host_x86_features", lambda: set())
    man = json.loads(zipfile.ZipFile(path).read("manifest.json"))
    if man["target"]["features"]:
        with pytest.raises(ArtifactError, match="lacks"):
            convt.load(path)


def test_loads_with_runtime_library_only(exported, rng, tmp_path):
    layer, _, path = exported
    x = rng.standard_normal((2, 6, 5, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code = (
        "import numpy as np, convt\n"
        f"y = convt.load({str(path)!r})(np.load({str(tmp_path / 'x.npy')!r}))\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, y)\n"
        "maps = open('/proc/self/maps').read()\n"
        "assert 'libtvm_runtime' in maps, 'runtime not loaded'\n"
        "assert 'libtvm_compiler' not in maps, 'compiler library was loaded'\n")
    env = dict(os.environ, TVM_USE_RUNTIME_LIB="1")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path)
    assert_close(np.load(tmp_path / "y.npy"), layer(x))


def test_rezipped_member_fails_its_hash(exported, tmp_path):
    _, _, path = exported
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    lib = bytearray(members[_lib_member(path)])
    lib[-10] ^= 0x01
    members[_lib_member(path)] = bytes(lib)
    bad = tmp_path / "rezipped.convt"
    with zipfile.ZipFile(bad, "w") as z:
        for n, v in members.items():
            z.writestr(n, v)
    with pytest.raises(ArtifactError, match="SHA-256"):
        convt.load(bad)
