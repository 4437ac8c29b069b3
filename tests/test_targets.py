"""arm and cuda builds: the artifact holds aarch64 machine code with NEON FMAs, or a CUDA fatbin."""
import shutil
import subprocess
import zipfile

import pytest

import convt
from convt.compiler import artifact as artifact_mod

LAYER = dict(filters=16, kernel_size=4, strides=2, padding="same", activation="relu")


def _member(path, suffix):
    with zipfile.ZipFile(path) as z:
        name, = [n for n in z.namelist() if n.endswith(suffix)]
        return z.read(name)


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None,
                    reason="needs Debian g++-aarch64-linux-gnu (.ci/run installs it)")
def test_arm_artifact_holds_neon_code(tmp_path):
    mod = convt.compile(convt.layers.Conv2DTranspose(**LAYER), input_shape=(None, 8, 8, 8),
                        target="arm")
    path = mod.export(tmp_path / "up.convt")
    lib = _member(path, ".so")
    assert lib[:4] == b"\x7fELF" and int.from_bytes(lib[18:20], "little") == 183  # EM_AARCH64
    (tmp_path / "lib.so").write_bytes(lib)
    dis = subprocess.run(["aarch64-linux-gnu-objdump", "-d", str(tmp_path / "lib.so")],
                         capture_output=True, text=True, check=True).stdout
    fmla = sum(1 for line in dis.splitlines() if "\tfmla\tv" in line)
    assert fmla >= 16, f"only {fmla} NEON fmla instructions"
    with pytest.raises(RuntimeError, match="aarch64"):
        convt.load(path)


def test_arm_export_without_cross_compiler_is_a_clear_error(tmp_path, monkeypatch):
    mod = convt.compile(convt.layers.Conv1DTranspose(4, 3), input_shape=(1, 8, 2), target="arm")
    monkeypatch.setattr(artifact_mod.shutil, "which", lambda name: None)
    with pytest.raises(artifact_mod.ToolchainError, match="g\\+\\+-aarch64-linux-gnu"):
        mod.export(tmp_path / "x.convt")


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_cuda_artifact_holds_fatbin(tmp_path, arch):
    mod = convt.compile(convt.layers.Conv2DTranspose(**LAYER), input_shape=(None, 8, 8, 8),
                        target=f"cuda:{arch}")
    path = mod.export(tmp_path / "up.convt")
    fatbin = _member(path, ".fatbin")
    assert fatbin[:4] == bytes.fromhex("50ed55ba")  # fatbin magic
    assert b"main_kernel" in _member(path, ".kernels.json")
    with pytest.raises(RuntimeError):
        mod(None)  # a CUDA module does not run on this host
