"""Load and run .convt artifacts with TVM's runtime alone (``tvm.runtime``; never the compiler).

Works under ``TVM_USE_RUNTIME_LIB=1``, where only ``libtvm_runtime.so`` is loaded.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import threading
import weakref
import zipfile

import numpy as np

from . import artifact_format as F
from . import threads

_ALIGN = 64   # bytes: what TVM's kernels assume of a buffer unless it is declared otherwise


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
    if not isinstance(manifest, dict) or manifest.get("format") != F.FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else None
        raise ArtifactError(f"{path}: not a convt artifact (format {got!r})")
    if manifest.get("format_version") != F.FORMAT_VERSION:
        raise ArtifactError(f"{path}: artifact format version {manifest.get('format_version')} "
                            f"is not supported (this convt reads {F.FORMAT_VERSION})")
    errors = F.schema_errors(manifest)
    if errors:
        raise ArtifactError(f"{path}: malformed manifest: {'; '.join(errors)}")
    hashes = manifest["sha256"]
    for name in set(members) - {F.MANIFEST}:
        if name not in hashes:
            raise ArtifactError(f"{path}: member {name} is not listed in the manifest")
        if F.sha256(members[name]) != hashes[name]:
            raise ArtifactError(f"{path}: member {name} fails its SHA-256 check (tampered "
                                f"or corrupted)")
    for name in hashes:
        if name not in members:
            raise ArtifactError(f"{path}: member {name} is missing")
    for name, e in manifest["entries"].items():
        for key in ("lib", "params", "test_vector", "fatbin", "fatbin_info"):
            if e.get(key) is not None and e[key] not in hashes:
                raise ArtifactError(f"{path}: entry {name!r} names member {e[key]!r}, which "
                                    f"the artifact does not hold")
    return manifest, members


class _Bound:
    """Binds call arguments (positional, by name, numpy or DLPack) to a signature's inputs."""

    test_vector = None          # {"in:<name>": array, "out:<i>": array} of a loaded artifact
    artifact_manifest = None    # the whole manifest of the artifact it came from

    def __init__(self, signature, device):
        import tvm
        import tvm_ffi

        self._tvm = tvm
        self._from_dlpack = tvm_ffi.from_dlpack   # tvm.runtime's insists on 64-byte alignment
        self.signature = signature
        self._device = device
        # per input: what a numpy argument must be to be passed as a view with no other check
        self._direct = [(np.dtype(i["dtype"]), tuple(i["shape"]), i.get("align", _ALIGN))
                        if all(isinstance(d, int) for d in i["shape"]) else None
                        for i in signature["inputs"]]
        self._on_host = device.dlpack_device_type() == 1   # kDLCPU
        if self._on_host:
            threads.ensure_default()

    @property
    def input_names(self):
        return [i["name"] for i in self.signature["inputs"]]

    @property
    def output_names(self):
        return [o["name"] for o in self.signature["outputs"]]

    def _to_tensor(self, value, spec, direct=None):
        if direct is not None and type(value) is np.ndarray and self._on_host:
            dtype, shape, align = direct   # the common call, in a few microseconds
            if value.dtype == dtype and value.shape == shape:
                view = self._view(value, align)
                if view is not None:
                    return view
        tvm = self._tvm
        name = spec["name"]
        if isinstance(value, np.ndarray) or not hasattr(value, "__dlpack__"):
            if isinstance(value, np.ndarray) and value.dtype != np.dtype(spec["dtype"]):
                raise TypeError(f"input {name!r}: dtype {value.dtype} does not match the "
                                f"compiled signature's {spec['dtype']}; convert it first, "
                                f"x.astype({spec['dtype']!r})")
            arr = np.asarray(value, dtype=spec["dtype"])   # Python lists and scalars
            self._check_shape(name, arr.shape, spec)
            return self._device_tensor(arr, spec.get("align", _ALIGN))
        t = tvm.runtime.from_dlpack(value)
        if str(t.dtype) != spec["dtype"]:
            raise TypeError(f"input {name!r}: dtype {t.dtype} must be {spec['dtype']}")
        self._check_shape(name, tuple(t.shape), spec)
        return t

    def _device_tensor(self, arr: np.ndarray, align: int = _ALIGN):
        """A numpy array as a tensor on the device: on the CPU a view of it when its data is
        contiguous and aligned as the compiled code requires (``align`` bytes: the element size
        for inputs only convt's kernels read, TVM's 64 for others), else one copy. Copies cost
        as much as a small layer's compute."""
        tvm = self._tvm
        if self._on_host:
            view = self._view(arr, align)
            if view is not None:
                return view
            t = tvm.runtime.empty(arr.shape, str(arr.dtype), self._device)
            np.copyto(np.from_dlpack(t), arr)
            return t
        return tvm.runtime.tensor(np.ascontiguousarray(arr), self._device)

    def _view(self, arr: np.ndarray, align: int):
        """A tensor on ``arr``'s own memory, or None when it is misaligned, strided or read-only."""
        try:
            return self._from_dlpack(arr, require_alignment=align, require_contiguous=True)
        except (BufferError, RuntimeError, ValueError):
            return None

    @staticmethod
    def _check_shape(name, shape, spec):
        want = spec["shape"]
        ok = len(shape) == len(want) and all(not isinstance(w, int) or w == int(s)
                                             for s, w in zip(shape, want))
        if not ok or any(int(s) <= 0 for s in shape):
            shown = tuple("N" if w is None else w for w in want)
            raise ValueError(f"input {name!r}: shape {tuple(shape)} does not match the "
                             f"compiled signature {shown}")

    def bind(self, args, kwargs) -> dict:
        """{input name: tvm tensor}, checked against the signature."""
        specs = self.signature["inputs"]
        if not kwargs and len(args) == len(specs):
            return {s["name"]: self._to_tensor(v, s, d)
                    for v, s, d in zip(args, specs, self._direct)}
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
            raise TypeError(f"missing inputs {missing}; inputs are {self.input_names}")
        return {s["name"]: self._to_tensor(values[s["name"]], s, d)
                for s, d in zip(specs, self._direct)}


class Runner(_Bound):
    """Calls one compiled kernel: checks inputs against the signature, allocates the output."""

    def __init__(self, lib, entry, params=None, device=None):
        import tvm

        super().__init__(entry["signature"], device or tvm.cpu(0))
        self.entry = entry   # the artifact entry: signature, args, packed_shape, ...
        self._lib = lib
        self._func = lib["main"]
        self._pack = lib["pack"]
        self._params = {k: tvm.runtime.tensor(np.ascontiguousarray(v), self._device)
                        for k, v in (params or {}).items()}
        if "kernel" in self._params:  # constant weights: packed once, here
            self._params["kernel"] = self._packed(self._params["kernel"])
        self._post = entry.get("post_activation")
        self._lock = threading.Lock()
        self._last = None   # (weak reference to the array returned last, its output tensor)

    def _packed(self, kernel):
        out = self._tvm.runtime.empty(tuple(self.entry["packed_shape"]), "float32",
                                      self._device)
        self._pack(kernel, out)
        return out

    def _output(self, shape, dtype):
        """The previous call's output tensor when the caller has dropped every array on it, else
        a fresh one: fresh pages fault on first touch, which cost large layers 1.3-2x."""
        with self._lock:
            last, self._last = self._last, None
        if last is not None and last[0]() is None and tuple(last[1].shape) == shape:
            return last[1]
        return self._tvm.runtime.empty(shape, dtype, self._device)

    def __call__(self, *args, **kwargs):
        tensors = self.bind(args, kwargs)
        batch = int(tensors[self.input_names[0]].shape[0])
        out_spec = self.signature["outputs"][0]
        shape = tuple(batch if d is None else int(d) for d in out_spec["shape"])
        out = self._output(shape, out_spec["dtype"])
        if "kernel" in tensors:
            tensors["kernel"] = self._packed(tensors["kernel"])
        call_args = [tensors[n] if n in tensors else self._params[n]
                     for n in self.entry["args"]]
        self._func(*call_args, out)
        result = _to_numpy(out)
        if self._on_host:   # numpy views of ``out`` keep it (and this weak reference) alive
            self._last = (weakref.ref(result), out)
        if self._post:
            from .compiler.activations import UNFUSED
            result = UNFUSED[self._post](result).astype(result.dtype)
        return result


class GraphRunner(_Bound):
    """Runs a whole compiled model (a Relax VM executable) on numpy / DLPack inputs.

    One output comes back as an array, several as a tuple in the model's output order.
    The VM is created per thread: calls from several threads do not share its state.
    """

    def __init__(self, executable, signature, device=None):
        import tvm

        super().__init__(signature, device or tvm.cpu(0))
        self._exec = executable
        self._local = threading.local()

    def _vm(self):
        vm = getattr(self._local, "vm", None)
        if vm is None:
            from tvm.runtime.vm import VirtualMachine
            vm = self._local.vm = VirtualMachine(self._exec, self._device)
        return vm

    def __call__(self, *args, **kwargs):
        tensors = self.bind(args, kwargs)
        out = self._vm()["main"](*[tensors[n] for n in self.input_names])
        if len(self.output_names) == 1:
            return _to_numpy(out)
        return tuple(_to_numpy(o) for o in out)

    def profile(self, *args, **kwargs):
        """[(function symbol, seconds)] of every call one run makes (VM instrumentation)."""
        import time

        tensors = self.bind(args, kwargs)
        from tvm.runtime.vm import VirtualMachine
        vm = VirtualMachine(self._exec, self._device)
        calls, started = [], {}

        def instrument(func, symbol, before_run, ret_value, *rest):
            now = time.perf_counter()
            if before_run:
                started[symbol] = now
            else:
                calls.append((str(symbol), now - started.pop(symbol, now)))
            return 0  # VMInstrumentReturnKind.NO_OP

        vm.set_instrument(instrument)
        vm["main"](*[tensors[n] for n in self.input_names])
        return calls


def _to_numpy(value):
    """Host tensors come back as numpy views of their memory (no copy); device ones copied."""
    if hasattr(value, "numpy"):
        if value.device.dlpack_device_type() == 1:   # kDLCPU
            return np.from_dlpack(value)
        return value.numpy()
    return tuple(_to_numpy(v) for v in value)


def _device(target: dict):
    import tvm
    return tvm.cuda(0) if target["kind"] == "cuda" else tvm.cpu(0)


@contextlib.contextmanager
def _native_stderr_muted():
    """TVM's VM executable loader logs a "Scope Loaded" line per function to fd 2 (a debug
    leftover); errors still arrive as exceptions."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _load_lib(members, entry):
    import tvm

    with tempfile.TemporaryDirectory(prefix="convt-") as tmp:
        lib_path = os.path.join(tmp, "lib.so")
        with open(lib_path, "wb") as f:
            f.write(members[entry["lib"]])
        with _native_stderr_muted():
            lib = tvm.runtime.load_module(lib_path)
    if entry.get("fatbin"):
        import tvm_ffi
        info = json.loads(members[entry["fatbin_info"]])
        fmap = tvm_ffi.get_global_func("runtime.LoadMetaDataFromJSON")(json.dumps(info["fmap"]))
        create = tvm_ffi.get_global_func("ffi.Module.create.cuda")
        lib.import_module(create(members[entry["fatbin"]], "fatbin", fmap, {}))
    return lib


def _npz(data: bytes) -> dict:
    with np.load(io.BytesIO(data)) as z:
        return {k: z[k] for k in z.files}


def _entry_runner(manifest, entry, members):
    lib = _load_lib(members, entry)
    device = _device(manifest["target"])
    if entry["kind"] == "graph":
        runner = GraphRunner(lib, entry["signature"], device)
    else:
        params = _npz(members[entry["params"]]) if entry.get("params") else None
        runner = Runner(lib, entry, params, device)
    runner.test_vector = _npz(members[entry["test_vector"]]) if entry.get("test_vector") else None
    return runner


class Bundle:
    """An artifact of several named entries: ``bundle["name"](x)``; ``bundle.names``."""

    def __init__(self, runners: dict, manifest: dict):
        self.runners = runners
        self.manifest = manifest

    @property
    def names(self):
        return list(self.runners)

    def __getitem__(self, name):
        if name not in self.runners:
            raise KeyError(f"no entry {name!r}; entries are {self.names}")
        return self.runners[name]

    def __iter__(self):
        return iter(self.runners.items())

    def __call__(self, *args, **kwargs):
        raise TypeError(f"this artifact holds {len(self.runners)} entries {self.names}: call "
                        f"one, e.g. artifact[{self.names[0]!r}](x)")


def load(path):
    """Load a .convt artifact after checking its manifest, hashes and this host's capability:
    a runner for a one-entry artifact, a ``Bundle`` of runners for several."""
    manifest, members = read_artifact(path)
    _check_host(manifest["target"])
    runners = {name: _entry_runner(manifest, e, members)
               for name, e in manifest["entries"].items()}
    for r in runners.values():
        r.artifact_manifest = manifest
    if len(runners) == 1:
        return next(iter(runners.values()))
    return Bundle(runners, manifest)


def entries_of(loaded) -> list:
    """[(name, runner)] of what ``load`` returned."""
    if isinstance(loaded, Bundle):
        return list(loaded)
    return [(next(iter(loaded.artifact_manifest["entries"])), loaded)]


def verify(loaded, rtol=1e-4, atol=1e-4) -> list:
    """[(entry, max |error|, passed)]: each entry's embedded test vector run on this host."""
    results = []
    for name, runner in entries_of(loaded):
        tv = runner.test_vector
        if tv is None:
            results.append((name, None, False))
            continue
        inputs = {k[3:]: v for k, v in tv.items() if k.startswith("in:")}
        expected = [tv[f"out:{i}"] for i in range(sum(k.startswith("out:") for k in tv))]
        got = runner(**inputs)
        got = list(got) if isinstance(got, tuple) else [got]
        err = max(float(np.max(np.abs(g - e), initial=0)) for g, e in zip(got, expected))
        ok = len(got) == len(expected) and all(
            g.shape == e.shape and np.allclose(g, e, rtol=rtol, atol=atol)
            for g, e in zip(got, expected))
        results.append((name, err, ok))
    return results
