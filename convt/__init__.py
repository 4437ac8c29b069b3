"""convt: an ahead-of-time compiler for transposed convolutions, built on Apache TVM.

Importing convt loads nothing of TVM's compiler: ``convt.load`` works with the runtime library
alone; everything that compiles imports it lazily.
"""
__version__ = "0.1.0"

from . import layers  # noqa: E402,F401  (numpy only)
from .api import compile, conv_transpose, load, set_num_threads  # noqa: E402,F401,A004
