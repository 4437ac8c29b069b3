"""spec + target -> scheduled, built kernel -> artifact bytes. The only place that runs a build."""
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

import numpy as np

from convt import artifact_format as F
from convt import schedules

from . import tvm_api as T
from .compute import conv_transpose_prim_func, pack_prim_func, packed_shape
from .spec import ConvTransposeSpec
from .targets import describe, resolve

CROSS_CXX = "aarch64-linux-gnu-g++"
CUDA_GENCODE = ("80", "90")  # fatbin holds SASS for these and PTX of the newest


class ToolchainError(RuntimeError):
    pass


@dataclasses.dataclass
class BuiltKernel:
    spec: ConvTransposeSpec
    target: object          # tvm Target
    lib: object             # tvm runtime Module
    rule: str
    knobs: list
    compile_seconds: float

    @property
    def family(self):
        return schedules.describe(self.target).family


def schedule(spec: ConvTransposeSpec, target, knobs=None):
    """({"main": conv PrimFunc, "pack": weight-packing PrimFunc}, rule name, chosen knobs) of
    ``spec`` for ``target``, both scheduled."""
    info = schedules.describe(resolve(target))
    rule, chosen = schedules.plan(spec, info, knobs)
    values = schedules.as_values(chosen)
    sch = T.Schedule(conv_transpose_prim_func(spec, **rule.compute_args(spec, values)))
    rule.apply(sch, spec, values)
    pack = T.Schedule(pack_prim_func(spec))
    schedules.schedule_pack(pack, info)
    return {"main": sch.mod["main"], "pack": pack.mod["main"]}, rule.name, chosen


def build(spec: ConvTransposeSpec, target="x86", knobs=None) -> BuiltKernel:
    tgt = resolve(target)
    t0 = time.perf_counter()
    funcs, rule, chosen = schedule(spec, tgt, knobs)
    lib = T.build_tir(T.ir_module(funcs), tgt)
    return BuiltKernel(spec, tgt, lib, rule, chosen, time.perf_counter() - t0)


def _export_lib(kernel: BuiltKernel, path: str):
    family = kernel.family
    if family == "arm":
        if shutil.which(CROSS_CXX) is None:
            raise ToolchainError(f"exporting an arm artifact needs {CROSS_CXX}: install the "
                                 f"Debian package g++-aarch64-linux-gnu")
        kernel.lib.export_library(path, fcompile=T.cross_compiler(CROSS_CXX))
    else:
        kernel.lib.export_library(path)


_KERNEL_RE = re.compile(r'extern "C" __global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(([^)]*)\)')


def _cuda_members(kernel: BuiltKernel) -> dict:
    """Compile the CUDA source ahead of time: a fatbin (SASS sm_80/sm_90 + PTX) and its
    function table, so the device needs no CUDA compiler."""
    if shutil.which("nvcc") is None:
        raise ToolchainError("exporting a cuda artifact needs nvcc (CUDA toolkit) on PATH")
    src = kernel.lib.imports[0].inspect_source()
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
    return {F.FATBIN: fatbin, F.FATBIN_INFO: json.dumps({"fmap": fmap}).encode()}


def signature(spec: ConvTransposeSpec, bound_params: bool):
    def entry(name, shape):
        return {"name": name, "shape": [None if d is None else int(d)
                                        for d in shape], "dtype": spec.dtype}
    inputs = [entry("x", spec.input_shape())]
    if not bound_params:
        inputs += [entry(p, spec.param_shape(p)) for p in spec.param_names]
    for i in inputs:
        i["layout"] = spec.layout if i["name"] == "x" else None
    out = entry("y", spec.output_shape())
    out["layout"] = spec.layout
    return {"inputs": inputs, "outputs": [out]}


def manifest(kernel: BuiltKernel, params, post_activation=None, source_hash=None):
    import tvm
    from convt import __version__

    spec = kernel.spec
    args = ["x", *spec.param_names]
    return {
        "format": F.FORMAT, "format_version": F.FORMAT_VERSION,
        "convt_version": __version__, "tvm_version": tvm.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "target": describe(kernel.target),
        "schedule": {"rule": kernel.rule, "knobs": [k.to_dict() for k in kernel.knobs]},
        "spec": spec.to_dict(), "spec_key": spec.key(),
        "source_sha256": source_hash,
        "args": args, "signature": signature(spec, bool(params)),
        "packed_shape": list(packed_shape(spec)),
        "post_activation": post_activation,
    }


def artifact_bytes(kernel: BuiltKernel, params=None, post_activation=None, source_hash=None):
    members = {}
    with tempfile.TemporaryDirectory(prefix="convt-") as tmp:
        lib_path = os.path.join(tmp, F.LIB)
        _export_lib(kernel, lib_path)
        members[F.LIB] = open(lib_path, "rb").read()
    if kernel.family == "cuda":
        members.update(_cuda_members(kernel))
    if params:
        buf = io.BytesIO()
        np.savez(buf, **params)
        members[F.PARAMS] = buf.getvalue()
    man = manifest(kernel, params, post_activation, source_hash)
    man["sha256"] = {k: F.sha256(v) for k, v in members.items()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(F.MANIFEST, json.dumps(man, indent=1, sort_keys=True))
        for k, v in members.items():
            z.writestr(k, v)
    return buf.getvalue(), man


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
