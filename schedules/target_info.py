"""What a schedule rule may ask of a target: family, SIMD width, register count, cores."""
from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class TargetInfo:
    family: str          # "x86" | "arm" | "cuda" | "cpu" (another LLVM CPU)
    vector_bits: int     # SIMD register width (CPU); 0 on GPUs
    vector_regs: int     # architectural SIMD registers
    cores: int
    arch: str = ""       # CUDA sm_XX

    @property
    def f32_lanes(self) -> int:
        return max(1, self.vector_bits // 32)


def describe(target) -> TargetInfo:
    """Classify a ``tvm.target.Target``."""
    from convt.compiler import tvm_api as T

    kind = target.kind.name
    attrs = dict(target.attrs)
    if kind == "cuda":
        return TargetInfo("cuda", 0, 0, 0, str(attrs.get("arch", "sm_80")))
    triple = str(attrs.get("mtriple", "") or "")
    cores = int(attrs.get("num-cores", 0) or 0) or (os.cpu_count() or 1)
    feats = T.cpu_features(target)
    bits = T.vector_bits(target)
    if triple.startswith("aarch64") or "neon" in feats:
        return TargetInfo("arm", 128, 32, cores)
    if triple in ("", "x86_64-linux-gnu", "x86_64-pc-linux-gnu") or "sse2" in feats:
        return TargetInfo("x86", bits, 32 if "avx512f" in feats else 16, cores)
    return TargetInfo("cpu", bits, 16, cores)
