"""aarch64 rules (NEON, 32 vector registers), first applicable wins."""
from .cpu import cpu_compute_args, cpu_knobs, schedule_cpu
from .generic import generic_cpu_knobs, schedule_generic_cpu
from .rule import Rule

RULES = [
    Rule("arm.register_tile", lambda spec, info: info.family == "arm", cpu_knobs,
         schedule_cpu, cpu_compute_args),
    Rule("cpu.fallback", lambda spec, info: True, generic_cpu_knobs, schedule_generic_cpu),
]
