"""x86 rules (AVX2 / AVX-512 through the target's vector width), first applicable wins."""
from . import cpu_gemm, cpu_width
from .cpu import cpu_compute_args, cpu_knobs, fuse_default, schedule_cpu
from .generic import generic_cpu_knobs, schedule_generic_cpu
from .rule import Rule


def _cpu(info):
    return info.family in ("x86", "cpu")


RULES = [
    # small inputs under big kernels: the phase form would multiply mostly padding
    Rule("x86.scatter_gemm", lambda spec, info: _cpu(info) and cpu_gemm.applies(spec, info),
         cpu_gemm.gemm_knobs, cpu_gemm.schedule_gemm, cpu_gemm.gemm_compute_args),
    # few output channels still fill vectors once the phases join them (FCN: 21 x 64)
    Rule("x86.register_tile", lambda spec, info: _cpu(info) and (
        fuse_default(spec, info) or not cpu_width.applies(spec, info)),
         cpu_knobs, schedule_cpu, cpu_compute_args),
    Rule("x86.width_vector", lambda spec, info: _cpu(info) and cpu_width.applies(spec, info),
         cpu_width.width_knobs, cpu_width.schedule_width, cpu_width.width_compute_args),
    Rule("cpu.fallback", lambda spec, info: True, generic_cpu_knobs, schedule_generic_cpu),
]
