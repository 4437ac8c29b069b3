"""Short target names -> TVM targets, and the description of a target that goes in a manifest."""
from __future__ import annotations

import json
import os
import platform

from . import tvm_api as T

ARM_DEFAULT_CPU = "cortex-a72"
CUDA_DEFAULT_ARCH = "sm_80"
# Features a host must have to run an x86 artifact built with them (checked by the loader).
X86_FEATURES = ("sse4.2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq",
                "avx512vl", "avx512vnni", "avx512bf16")


class TargetError(ValueError):
    pass


def resolve(target):
    """``"x86"`` (this host's CPU), ``"arm"``/``"arm:<cpu>"``, ``"cuda"``/``"cuda:sm_XX"``, a TVM
    target dict, or its JSON text -> ``tvm.target.Target``."""
    if isinstance(target, T.Target):
        return target
    if isinstance(target, str) and target.lstrip().startswith("{"):
        try:
            target = json.loads(target)
        except json.JSONDecodeError as e:
            raise TargetError(f"target JSON is not valid: {e}") from None
    if isinstance(target, dict):
        try:
            return T.Target(target)
        except Exception as e:  # TVM raises its own error types for bad dicts
            raise TargetError(f"target {target} is not a valid TVM target: {e}") from None
    if not isinstance(target, str):
        raise TargetError(f"target must be a name or a TVM target dict, got {type(target).__name__}")
    name, _, sub = target.partition(":")
    if name in ("x86", "host", "llvm"):
        if platform.machine() not in ("x86_64", "AMD64") and name == "x86":
            raise TargetError(f"target 'x86' means this host's CPU, but this host is "
                              f"{platform.machine()}; pass a TVM target dict instead")
        return T.Target({"kind": "llvm", "mcpu": sub or T.host_cpu(),
                         "num-cores": os.cpu_count() or 1})
    if name in ("arm", "aarch64"):
        return T.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu",
                         "mcpu": sub or ARM_DEFAULT_CPU})
    if name == "cuda":
        arch = sub or CUDA_DEFAULT_ARCH
        if not arch.startswith("sm_") or not arch[3:].isdigit():
            raise TargetError(f"cuda arch {arch!r} must look like sm_80 or sm_90")
        return T.Target({"kind": "cuda", "arch": arch}, host={"kind": "llvm"})
    raise TargetError(f"unknown target {target!r}: use 'x86', 'arm', 'cuda' or a TVM target dict")


def describe(target) -> dict:
    """Manifest description: kind, triple, cpu, features the code was allowed to use."""
    attrs = dict(target.attrs)
    if target.kind.name == "cuda":
        return {"kind": "cuda", "arch": str(attrs.get("arch", CUDA_DEFAULT_ARCH)),
                "triple": "x86_64-linux-gnu", "json": str(target)}
    triple = str(attrs.get("mtriple", "") or "x86_64-linux-gnu")
    feats = sorted(f for f in T.cpu_features(target) if f in X86_FEATURES or "neon" in f)
    return {"kind": "llvm", "triple": triple, "cpu": str(attrs.get("mcpu", "") or "generic"),
            "features": feats, "json": str(target)}
