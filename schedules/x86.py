"""x86 rules (AVX2 / AVX-512 through the target's vector width), first applicable wins."""
from . import cpu_width
from .cpu import cpu_compute_args, cpu_knobs, schedule_cpu
from .generic import generic_cpu_knobs, schedule_generic_cpu
from .rule import Rule

RULES = [
    Rule("x86.width_vector", lambda spec, info: info.family in ("x86", "cpu")
         and cpu_width.applies(spec, info), cpu_width.width_knobs, cpu_width.schedule_width,
         cpu_width.width_compute_args),
    Rule("x86.register_tile", lambda spec, info: info.family in ("x86", "cpu"),
         cpu_knobs, schedule_cpu, cpu_compute_args),
    Rule("cpu.fallback", lambda spec, info: True, generic_cpu_knobs, schedule_generic_cpu),
]
