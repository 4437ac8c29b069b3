"""A compiled kernel: runs in this process and exports a .convt artifact."""
from __future__ import annotations

from convt.runtime import Runner

from . import artifact
from .build import BuiltKernel, build, kernel_meta


class CompiledModule:
    """``mod(x)`` runs (host targets only); ``mod.export(path)`` writes one artifact file."""

    def __init__(self, kernel: BuiltKernel, params=None, post_activation=None, source=None,
                 name="conv_transpose"):
        self.kernel = kernel
        self.params = params
        self.post_activation = post_activation
        self.source = source      # {"kind": ..., "sha256": ...} of what it was compiled from
        self.name = name
        self._runner = None

    @property
    def spec(self):
        return self.kernel.spec

    @property
    def meta(self):
        return kernel_meta(self.kernel, bool(self.params), self.post_activation)

    @property
    def runs_here(self):
        return self.kernel.family in ("x86", "cpu")

    def __call__(self, *args, **kwargs):
        if self._runner is None:
            if not self.runs_here:
                raise RuntimeError(f"a module compiled for {self.kernel.family} cannot run on "
                                   f"this host: export() it and load it on the device")
            self._runner = Runner(self.kernel.lib, self.meta, self.params)
        return self._runner(*args, **kwargs)

    def host_twin(self):
        """The same kernel built for this host: computes test vectors of cross-compiled ones."""
        if self.runs_here:
            return self
        return CompiledModule(build(self.spec, "x86"), self.params, self.post_activation)

    def entry(self) -> artifact.Entry:
        meta = self.meta
        tv = artifact.with_expected(meta, self.host_twin())
        return artifact.Entry(self.name, meta, self.kernel.lib, self.params, tv)

    def export(self, path):
        return artifact.write(path, self.kernel.target, [self.entry()], self.source)
