"""x86 rules (AVX2 / AVX-512 through the target's vector width), first applicable wins."""
from .cpu import cpu_knobs, schedule_cpu
from .generic import generic_cpu_knobs, schedule_generic_cpu
from .rule import Rule

RULES = [
    Rule("x86.register_tile", lambda spec, info: info.family in ("x86", "cpu"),
         cpu_knobs, schedule_cpu),
    Rule("cpu.fallback", lambda spec, info: True, generic_cpu_knobs, schedule_generic_cpu),
]
