"""x86 rules (AVX2 / AVX-512 through the target's vector width), in order of preference."""
from .cpu_gemm import ScatterGemm
from .cpu_tile import RegisterTile
from .cpu_width import WidthVector
from .generic import EmptyOutput, Fallback

RULES = [
    EmptyOutput(),
    # small inputs under big kernels: the phase form would multiply mostly padding
    ScatterGemm("x86.scatter_gemm"),
    # few output channels: vectors along a phase's width
    WidthVector("x86.width_vector"),
    # vectors along output channels; few channels still fill vectors once the phases join them
    RegisterTile("x86.register_tile"),
    Fallback(),
]
