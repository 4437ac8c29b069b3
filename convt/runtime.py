"""Load and run .convt artifacts with TVM's runtime alone (``tvm.runtime``; never the compiler).

Works under ``TVM_USE_RUNTIME_LIB=1``, where only ``libtvm_runtime.so`` is loaded.
"""
from __future__ import annotations

import io
import json
import os
import platform
import tempfile
import zipfile

import numpy as np

from . import artifact_format as F


class ArtifactError(RuntimeError):
    """The artifact is malformed, tampered with, or cannot run on this host."""


_CPUINFO_FLAGS = {"sse4_2": "sse4.2", "avx512_vnni": "avx512vnni", "avx512_bf16": "avx512bf16"}


def _host_x86_features():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return {_CPUINFO_FLAGS.get(x, x) for x in flags}
    except OSError:
        pass
    return set()


def _check_host(target: dict):
    host = platform.machine().lower()
    host = {"amd64": "x86_64", "arm64": "aarch64"}.get(host, host)
    arch = target.get("triple", "x86_64").split("-")[0]
    if arch != host:
        raise ArtifactError(f"artifact targets {arch} ({target.get('cpu', target.get('arch'))}) "
                            f"but this host is {host}")
    if target["kind"] == "cuda":
        import tvm
        if not tvm.cuda(0).exist:
            raise ArtifactError(f"artifact targets CUDA {target.get('arch')} but this host "
                                f"has no CUDA GPU")
    elif arch == "x86_64":
        missing = sorted(set(target.get("features", [])) - _host_x86_features())
        if missing:
            raise ArtifactError(f"artifact was built for CPU {target.get('cpu')} using "
                                f"{', '.join(missing)}, which this host's CPU lacks")


def read_artifact(path):
    """Validated (manifest, members) of an artifact; raises ArtifactError before loading code."""
    try:
        z = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile) as e:
        raise ArtifactError(f"{path}: not a convt artifact ({e})") from None
    try:
        with z:
            members = {n: z.read(n) for n in z.namelist()}
    except Exception as e:  # CRC and decompression errors of a damaged file
        raise ArtifactError(f"{path}: damaged artifact, refused ({e})") from None
    if F.MANIFEST not in members:
        raise ArtifactError(f"{path}: not a convt artifact (no {F.MANIFEST})")
    try:
        manifest = json.loads(members[F.MANIFEST])
    except ValueError as e:
        raise ArtifactError(f"{path}: manifest is not valid JSON ({e})") from None
    if manifest.get("format") != F.FORMAT:
        raise ArtifactError(f"{path}: not a convt artifact (format {manifest.get('format')!r})")
    if manifest.get("format_version") != F.FORMAT_VERSION:
        raise ArtifactError(f"{path}: artifact format version {manifest.get('format_version')} "
                            f"is not supported (this convt reads {F.FORMAT_VERSION})")
    hashes = manifest.get("sha256", {})
    for name in set(members) - {F.MANIFEST}:
        if name not in hashes:
            raise ArtifactError(f"{path}: member {name} is not listed in the manifest")
        if F.sha256(members[name]) != hashes[name]:
            raise ArtifactError(f"{path}: member {name} fails its SHA-256 check (tampered "
                                f"or corrupted)")
    for name in hashes:
        if name not in members:
            raise ArtifactError(f"{path}: member {name} is missing")
    return manifest, members


class Runner:
    """Calls one compiled kernel: checks inputs against the signature, allocates the output."""

    def __init__(self, lib, manifest, params=None):
        import tvm

        self._tvm = tvm
        self.manifest = manifest
        self.signature = manifest["signature"]
        self._lib = lib
        self._func = lib["main"]
        self._device = tvm.cuda(0) if manifest["target"]["kind"] == "cuda" else tvm.cpu(0)
        self._params = {k: tvm.runtime.tensor(np.ascontiguousarray(v), self._device)
                        for k, v in (params or {}).items()}
        self._post = manifest.get("post_activation")

    @property
    def input_names(self):
        return [i["name"] for i in self.signature["inputs"]]

    def _to_tensor(self, value, spec):
        tvm = self._tvm
        name = spec["name"]
        if isinstance(value, np.ndarray) or not hasattr(value, "__dlpack__"):
            arr = np.asarray(value)
            if arr.dtype != np.dtype(spec["dtype"]):
                if arr.dtype.kind not in "fiu":
                    raise TypeError(f"input {name!r}: dtype {arr.dtype} is not numeric")
                arr = arr.astype(spec["dtype"])
            self._check_shape(name, arr.shape, spec)
            return tvm.runtime.tensor(np.ascontiguousarray(arr), self._device)
        t = tvm.runtime.from_dlpack(value)
        if str(t.dtype) != spec["dtype"]:
            raise TypeError(f"input {name!r}: dtype {t.dtype} must be {spec['dtype']}")
        self._check_shape(name, tuple(t.shape), spec)
        return t

    @staticmethod
    def _check_shape(name, shape, spec):
        want = spec["shape"]
        ok = len(shape) == len(want) and all(w is None or int(w) == int(s)
                                             for s, w in zip(shape, want))
        if not ok or any(int(s) <= 0 for s in shape):
            shown = tuple("N" if w is None else w for w in want)
            raise ValueError(f"input {name!r}: shape {tuple(shape)} does not match the "
                             f"compiled signature {shown}")

    def __call__(self, *args, **kwargs):
        specs = self.signature["inputs"]
        if len(args) > len(specs):
            raise TypeError(f"expected at most {len(specs)} inputs {self.input_names}, got "
                            f"{len(args)}")
        values = dict(zip(self.input_names, args))
        for k, v in kwargs.items():
            if k not in self.input_names:
                raise TypeError(f"unknown input {k!r}; inputs are {self.input_names}")
            if k in values:
                raise TypeError(f"input {k!r} given twice")
            values[k] = v
        missing = [n for n in self.input_names if n not in values]
        if missing:
            raise TypeError(f"missing inputs {missing}")
        tensors = {s["name"]: self._to_tensor(values[s["name"]], s) for s in specs}
        batch = int(tensors[specs[0]["name"]].shape[0])
        out_spec = self.signature["outputs"][0]
        shape = tuple(batch if d is None else int(d) for d in out_spec["shape"])
        out = self._tvm.runtime.empty(shape, out_spec["dtype"], self._device)
        call_args = [tensors[n] if n in tensors else self._params[n]
                     for n in self.manifest["args"]]
        self._func(*call_args, out)
        result = out.numpy()
        if self._post:
            from .compiler.activations import UNFUSED
            result = UNFUSED[self._post](result).astype(result.dtype)
        return result


def _load_lib(members, manifest):
    import tvm

    with tempfile.TemporaryDirectory(prefix="convt-") as tmp:
        lib_path = os.path.join(tmp, F.LIB)
        with open(lib_path, "wb") as f:
            f.write(members[F.LIB])
        lib = tvm.runtime.load_module(lib_path)
    if F.FATBIN in members:
        import tvm_ffi
        info = json.loads(members[F.FATBIN_INFO])
        fmap = tvm_ffi.get_global_func("runtime.LoadMetaDataFromJSON")(json.dumps(info["fmap"]))
        create = tvm_ffi.get_global_func("ffi.Module.create.cuda")
        lib.import_module(create(members[F.FATBIN], "fatbin", fmap, {}))
    return lib


def load(path) -> Runner:
    """Load a .convt artifact after checking its manifest, hashes and this host's capability."""
    manifest, members = read_artifact(path)
    _check_host(manifest["target"])
    params = None
    if F.PARAMS in members:
        with np.load(io.BytesIO(members[F.PARAMS])) as z:
            params = {k: z[k] for k in z.files}
    return Runner(_load_lib(members, manifest), manifest, params)
