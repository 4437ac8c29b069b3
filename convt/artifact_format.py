"""The .convt artifact: one uncompressed zip. Shared by the writer (compiler) and the loader
(runtime), so it imports neither TVM nor the compiler.

Members: ``manifest.json`` and, per named entry (a kernel or a whole model), ``<name>.so`` (host
library), ``<name>.params.npz`` (bound weights, optional), ``<name>.test.npz`` (a test vector:
``in:<input>`` and ``out:<i>`` arrays computed at compile time), and for CUDA
``<name>.fatbin`` + ``<name>.kernels.json`` (device code compiled ahead of time). The manifest
lists the SHA-256 of every other member; the loader checks them before any code is loaded.
"""
from __future__ import annotations

import hashlib
import re

FORMAT = "convt-artifact"
FORMAT_VERSION = 3   # 3: named entries, test vectors; 2: lib.so exports ``pack`` beside ``main``
MANIFEST = "manifest.json"
ENTRY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")
ENTRY_KINDS = ("kernel", "graph")
# manifest keys and their types, checked before anything else is read
SCHEMA = {"format": str, "format_version": int, "convt_version": str, "tvm_version": str,
          "created": str, "target": dict, "entries": dict, "sha256": dict}
ENTRY_SCHEMA = {"kind": str, "lib": str, "signature": dict}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def schema_errors(manifest) -> list:
    """What is wrong with a manifest's shape (empty: nothing)."""
    if not isinstance(manifest, dict):
        return ["the manifest is not a JSON object"]
    errs = [f"{k!r} must be {t.__name__}" for k, t in SCHEMA.items()
            if not isinstance(manifest.get(k), t)]
    if errs:
        return errs
    if not manifest["entries"]:
        return ["'entries' is empty"]
    for name, e in manifest["entries"].items():
        if not ENTRY_NAME.fullmatch(name) or not isinstance(e, dict):
            errs.append(f"entry {name!r} is malformed")
            continue
        errs += [f"entry {name!r}: {k!r} must be {t.__name__}" for k, t in ENTRY_SCHEMA.items()
                 if not isinstance(e.get(k), t)]
        if e.get("kind") not in ENTRY_KINDS:
            errs.append(f"entry {name!r}: kind {e.get('kind')!r} is not one of {ENTRY_KINDS}")
    return errs
