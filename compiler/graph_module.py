"""A whole model compiled through Relax: convt kernels for ConvTranspose, TVM for the rest."""
from __future__ import annotations

import time

from convt.runtime import GraphRunner

from . import tvm_api as T
from .relax_wrap import KERNEL_PREFIX
from .targets import resolve


class GraphModule:
    """``mod(x)``, ``mod(*xs)``, ``mod(**{name: x})``: one output as an array, several as a
    tuple. ``fusions`` lists ``(node, [absorbed op types])``; ``kernels`` ``(node, spec)``."""

    def __init__(self, relax_mod, signature, info, target="x86"):
        self.target = resolve(target)
        self.signature = signature
        self.input_names = [i["name"] for i in signature["inputs"]]
        self.output_names = [o["name"] for o in signature["outputs"]]
        self.fusions = info["fusions"]
        self.kernels = info["kernels"]
        t0 = time.perf_counter()
        self.executable = T.build_relax(relax_mod, self.target)
        self.compile_seconds = time.perf_counter() - t0
        self._runner = None

    def _run(self):
        if self._runner is None:
            from convt import schedules
            if schedules.describe(self.target).family not in ("x86", "cpu"):
                raise RuntimeError(f"a model compiled for {self.target} cannot run on this host")
            self._runner = GraphRunner(self.executable, self.signature)
        return self._runner

    def __call__(self, *args, **kwargs):
        return self._run()(*args, **kwargs)

    def time_split(self, *args, **kwargs):
        """(ms in convt kernels, ms in TVM's kernels for the other ops) in one profiled run;
        the VM's own bookkeeping calls (``vm.builtin.*``) count in neither. A first run warms
        the thread pool and caches and is not counted."""
        self._run().profile(*args, **kwargs)
        calls = [(n, s) for n, s in self._run().profile(*args, **kwargs)
                 if not n.startswith("vm.builtin.")]
        convt_s = sum(s for name, s in calls if name.startswith(KERNEL_PREFIX))
        return convt_s * 1e3, (sum(s for _, s in calls) - convt_s) * 1e3
