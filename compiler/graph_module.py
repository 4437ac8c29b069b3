"""A whole model compiled through Relax: convt kernels for ConvTranspose, TVM for the rest."""
from __future__ import annotations

import time

from convt.runtime import GraphRunner

from . import artifact
from . import tvm_api as T
from .relax_wrap import KERNEL_PREFIX
from .targets import resolve


def graph_schedule(target):
    """What schedules a model's PrimFuncs that are not convt kernels, for ``target`` (None:
    TVM's default pipeline, which applies dlight's GPU rules on CUDA)."""
    from convt import schedules
    from convt.schedules import cpu_graph

    info = schedules.describe(target)
    if info.family == "cuda":
        return None
    return lambda func: cpu_graph.schedule_func(func, info)


class GraphModule:
    """``mod(x)``, ``mod(*xs)``, ``mod(**{name: x})``: one output as an array, several as a
    tuple. ``fusions`` lists ``(node, [absorbed op types])``; ``kernels`` ``(node, spec)``."""

    def __init__(self, relax_mod, signature, info, target="x86", source=None, host_twin=None,
                 name="model"):
        self.target = resolve(target)
        self.source = source          # {"kind": "onnx", "sha256": ...}
        self._host_twin = host_twin   # () -> the same model compiled for this host
        self.name = name
        self.signature = signature
        self.input_names = [i["name"] for i in signature["inputs"]]
        self.output_names = [o["name"] for o in signature["outputs"]]
        self.fusions = info["fusions"]
        self.kernels = info["kernels"]
        t0 = time.perf_counter()
        self.rules = {}   # PrimFunc name -> the rule that scheduled it (convt.rule)
        self.executable = T.build_relax(relax_mod, self.target, graph_schedule(self.target),
                                        self.rules)
        self.compile_seconds = time.perf_counter() - t0
        self._runner = None

    @property
    def runs_here(self):
        from convt import schedules
        return schedules.describe(self.target).family in ("x86", "cpu")

    def _run(self):
        if self._runner is None:
            if not self.runs_here:
                raise RuntimeError(f"a model compiled for {self.target} cannot run on this host")
            self._runner = GraphRunner(self.executable, self.signature)
        return self._runner

    def entry(self) -> artifact.Entry:
        meta = {"kind": "graph", "signature": self.signature,
                "kernels": [[node, spec.key()] for node, spec in self.kernels],
                "fusions": [[node, list(ops)] for node, ops in self.fusions]}
        twin = self if self.runs_here or self._host_twin is None else self._host_twin()
        tv = artifact.with_expected(meta, twin) if twin.runs_here else None
        return artifact.Entry(self.name, meta, self.executable, None, tv)

    def export(self, path):
        """One artifact file: the model's library, its signature and a test vector."""
        return artifact.write(path, self.target, [self.entry()], self.source)

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
