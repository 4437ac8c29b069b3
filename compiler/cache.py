"""Compile cache: in memory per process, and on disk (``$CONVT_CACHE_DIR`` or the user cache
dir) as ordinary artifacts keyed by spec, target and versions. Entries are written atomically;
a corrupted entry fails the artifact checks and is rebuilt."""
from __future__ import annotations

import hashlib
import os
import threading

from convt import runtime

from . import artifact
from .build import build, kernel_meta
from .targets import resolve

_memory = {}
_lock = threading.Lock()


def cache_dir() -> str:
    env = os.environ.get("CONVT_CACHE_DIR")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "convt")


def _key(spec, target) -> str:
    import tvm
    from convt import __version__
    from convt import artifact_format as F
    from convt.schedules import KNOB_SCHEMA
    # KNOB_SCHEMA: kernels cached by earlier schedule layers (out-of-bounds writes) are not reused
    blob = (f"{spec.key()}|{target}|{__version__}|{tvm.__version__}|{F.FORMAT_VERSION}|"
            f"{KNOB_SCHEMA}")
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def get_runner(spec, target="x86"):
    """A runner for ``spec`` (kernel and bias as call inputs), compiled at most once."""
    tgt = resolve(target)
    key = _key(spec, tgt)
    with _lock:
        hit = _memory.get(key)
    if hit is not None:
        return hit
    path = os.path.join(cache_dir(), key + ".convt")
    runner = None
    if os.path.exists(path):
        try:
            runner = runtime.load(path)
        except runtime.ArtifactError:
            runner = None  # corrupted or stale: rebuilt below
    if runner is None:
        kernel = build(spec, tgt)
        meta = kernel_meta(kernel, bound_params=False)
        try:
            artifact.write(path, tgt, [artifact.Entry("kernel", meta, kernel.lib)])
        except OSError:
            pass  # a read-only cache dir costs a rebuild next process, nothing more
        runner = runtime.Runner(kernel.lib, meta)
    with _lock:
        _memory.setdefault(key, runner)
    return runner
