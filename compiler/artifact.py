"""Writes .convt artifacts: one zip holding one or more named entries (a kernel or a whole
model), each with its host library, bound weights and a test vector computed at compile time.
The layout is described in ``convt.artifact_format``; the loader is ``convt.runtime``."""
from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import zipfile
from typing import Callable, Dict, List, Optional

import numpy as np

from convt import artifact_format as F

from . import tvm_api as T
from .targets import describe

CROSS_CXX = "aarch64-linux-gnu-g++"
CUDA_GENCODE = ("80", "90")  # fatbin holds SASS for these and PTX of the newest
TEST_SEED = 20261121


class ToolchainError(RuntimeError):
    pass


@dataclasses.dataclass
class Entry:
    """One named entry on its way into an artifact."""
    name: str
    meta: dict                      # the manifest entry: kind, signature, ... (no member names)
    lib: object                     # tvm runtime Module (or Relax executable) to export
    params: Optional[Dict[str, np.ndarray]] = None
    test_vector: Optional[dict] = None   # {"inputs": {name: array}, "outputs": [array, ...]}


def export_library(lib, target, path: str):
    """The host library of ``lib`` for ``target``: cross-compiled for aarch64."""
    family = describe(target)["triple"].split("-")[0]
    if family == "aarch64":
        if shutil.which(CROSS_CXX) is None:
            raise ToolchainError(f"exporting an arm artifact needs {CROSS_CXX}: install the "
                                 f"Debian package g++-aarch64-linux-gnu")
        lib.export_library(path, fcompile=T.cross_compiler(CROSS_CXX))
    else:
        lib.export_library(path)


_KERNEL_RE = re.compile(r'extern "C" __global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(([^)]*)\)')


def cuda_members(lib) -> tuple:
    """(fatbin, function table): the CUDA source compiled ahead of time (SASS sm_80/sm_90 + PTX),
    so the device needs no CUDA compiler."""
    if shutil.which("nvcc") is None:
        raise ToolchainError("exporting a cuda artifact needs nvcc (CUDA toolkit) on PATH")
    src = lib.imports[0].inspect_source()
    with tempfile.TemporaryDirectory(prefix="convt-cuda-") as tmp:
        cu, out = os.path.join(tmp, "k.cu"), os.path.join(tmp, "k.fatbin")
        with open(cu, "w") as f:
            f.write(src)
        gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in CUDA_GENCODE]
        gencode.append(f"-gencode=arch=compute_{CUDA_GENCODE[-1]},code=compute_{CUDA_GENCODE[-1]}")
        proc = subprocess.run(["nvcc", "--fatbin", "-O3", *gencode, "-o", out, cu],
                              capture_output=True, text=True)
        if proc.returncode:
            raise ToolchainError(f"nvcc failed: {proc.stderr.strip()[:2000]}")
        fatbin = open(out, "rb").read()
    fmap = {}
    for name, args in _KERNEL_RE.findall(src):
        types = ["handle" if "*" in a else "int32" for a in args.split(",") if a.strip()]
        fmap[name] = {"name": name, "arg_types": types,
                      "launch_param_tags": ["blockIdx.x", "threadIdx.x"]}
    return fatbin, json.dumps({"fmap": fmap}).encode()


def test_inputs(signature) -> Dict[str, np.ndarray]:
    """Fresh (seeded) random inputs for a signature; open (None or named) dimensions are 1."""
    rng = np.random.default_rng(TEST_SEED)
    return {i["name"]: rng.standard_normal([d if isinstance(d, int) else 1 for d in i["shape"]])
            .astype(i["dtype"]) for i in signature["inputs"]}


def _npz(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def artifact_bytes(target, entries: List[Entry], source: Optional[dict] = None):
    """(zip bytes, manifest) of ``entries`` built for ``target``."""
    import tvm
    from convt import __version__

    tgt = describe(target)
    members, man_entries = {}, {}
    for e in entries:
        if not F.ENTRY_NAME.fullmatch(e.name):
            raise ValueError(f"entry name {e.name!r} must match {F.ENTRY_NAME.pattern}")
        meta = dict(e.meta, lib=f"{e.name}.so")
        with tempfile.TemporaryDirectory(prefix="convt-") as tmp:
            path = os.path.join(tmp, "lib.so")
            export_library(e.lib, target, path)
            members[meta["lib"]] = open(path, "rb").read()
        if tgt["kind"] == "cuda" and len(e.lib.imports):   # (an empty output has no device code)
            meta["fatbin"], meta["fatbin_info"] = f"{e.name}.fatbin", f"{e.name}.kernels.json"
            members[meta["fatbin"]], members[meta["fatbin_info"]] = cuda_members(e.lib)
        if e.params:
            meta["params"] = f"{e.name}.params.npz"
            members[meta["params"]] = _npz(e.params)
        if e.test_vector is not None:
            meta["test_vector"] = f"{e.name}.test.npz"
            tv = {f"in:{k}": v for k, v in e.test_vector["inputs"].items()}
            tv.update({f"out:{i}": v for i, v in enumerate(e.test_vector["outputs"])})
            members[meta["test_vector"]] = _npz(tv)
        man_entries[e.name] = meta
    man = {
        "format": F.FORMAT, "format_version": F.FORMAT_VERSION,
        "convt_version": __version__, "tvm_version": tvm.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "target": tgt, "source": source, "entries": man_entries,
        "sha256": {k: F.sha256(v) for k, v in members.items()},
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(F.MANIFEST, json.dumps(man, indent=1, sort_keys=True))
        for k, v in members.items():
            z.writestr(k, v)
    return buf.getvalue(), man


def write(path, target, entries: List[Entry], source: Optional[dict] = None) -> str:
    data, _ = artifact_bytes(target, entries, source)
    write_atomic(str(path), data)
    return str(path)


def write_atomic(path, data: bytes):
    """temp file + rename in the same folder: readers never see a partial file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".convt")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def with_expected(meta: dict, run: Callable) -> dict:
    """A test vector for ``meta``'s signature: seeded inputs and ``run(**inputs)``'s outputs."""
    inputs = test_inputs(meta["signature"])
    out = run(**inputs)
    outputs = list(out) if isinstance(out, tuple) else [out]
    return {"inputs": inputs, "outputs": [np.asarray(o) for o in outputs]}
