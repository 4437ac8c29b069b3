"""aarch64 rules (NEON, 32 vector registers), in order of preference."""
from .cpu_tile import RegisterTile
from .generic import EmptyOutput, Fallback

RULES = [
    EmptyOutput(),
    RegisterTile("arm.register_tile"),
    Fallback(),
]
