"""The bundled example, end to end: a Keras Conv2DTranspose config -> x86 artifact -> load -> run,
checked against the uncompiled layer call and timed."""
from __future__ import annotations

import json
import os
import tempfile
import time

import numpy as np

EXAMPLE = os.path.join(os.path.dirname(__file__), "examples", "upsample2x.json")


def run(args=None):
    import convt
    with open(EXAMPLE) as f:
        entry = json.load(f)
    layer = convt.layers.deserialize(entry)
    input_shape = (None, 64, 64, 16)
    t0 = time.perf_counter()
    mod = convt.compile(layer, input_shape=input_shape, target="x86")
    print(f"compiled {entry['class_name']} {layer.name!r} for x86 in "
          f"{time.perf_counter() - t0:.2f} s (schedule rule {mod.kernel.rule})")
    path = os.path.join(tempfile.mkdtemp(prefix="convt-example-"), "upsample2x.convt")
    mod.export(path)
    print(f"artifact: {path} ({os.path.getsize(path) / 1e3:.0f} kB)")
    x = np.random.default_rng(0).standard_normal((4, 64, 64, 16)).astype(np.float32)
    loaded = convt.load(path)
    y = loaded(x)
    err = float(np.abs(y - layer(x)).max())
    times = []
    for _ in range(10):
        t = time.perf_counter()
        loaded(x)
        times.append(time.perf_counter() - t)
    print(f"input {x.shape} -> output {y.shape}; max |loaded - layer| = {err:.2e}; "
          f"median {np.median(times) * 1e3:.2f} ms")
    return 0 if err < 1e-4 else 1
