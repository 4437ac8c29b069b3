"""A compiled module: runs in this process and exports a .convt artifact."""
from __future__ import annotations

from convt.runtime import Runner

from .build import BuiltKernel, artifact_bytes, manifest, write_atomic


class CompiledModule:
    """``mod(x)`` runs (host targets only); ``mod.export(path)`` writes one artifact file."""

    def __init__(self, kernel: BuiltKernel, params=None, post_activation=None, source_hash=None):
        self.kernel = kernel
        self.params = params
        self.post_activation = post_activation
        self.source_hash = source_hash
        self._runner = None

    @property
    def spec(self):
        return self.kernel.spec

    @property
    def manifest(self):
        return manifest(self.kernel, self.params, self.post_activation, self.source_hash)

    def __call__(self, *args, **kwargs):
        if self._runner is None:
            if self.kernel.family not in ("x86", "cpu"):
                raise RuntimeError(f"a module compiled for {self.kernel.family} cannot run on "
                                   f"this host: export() it and load it on the device")
            self._runner = Runner(self.kernel.lib, self.manifest, self.params)
        return self._runner(*args, **kwargs)

    def export(self, path):
        data, _ = artifact_bytes(self.kernel, self.params, self.post_activation,
                                 self.source_hash)
        write_atomic(str(path), data)
        return str(path)
