"""The .convt artifact: one uncompressed zip. Shared by the writer (compiler) and the loader
(runtime), so it imports neither TVM nor the compiler.

Members: ``manifest.json`` (below), ``lib.so`` (host library), ``params.npz`` (bound weights,
optional), ``kernels.fatbin`` + ``kernels.json`` (CUDA: device code compiled ahead of time).
The manifest lists the SHA-256 of every other member; the loader checks them before any code
is loaded.
"""
from __future__ import annotations

import hashlib

FORMAT = "convt-artifact"
FORMAT_VERSION = 2   # 2: lib.so exports ``pack`` (kernel -> per-phase sub-kernels) beside ``main``
MANIFEST = "manifest.json"
LIB = "lib.so"
PARAMS = "params.npz"
FATBIN = "kernels.fatbin"
FATBIN_INFO = "kernels.json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
