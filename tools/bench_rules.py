"""Every applicable rule of each suite layer, side by side: is the default choice the fastest?

Per layer and layout, each rule that does not decline is built at its own heuristic's point
(forced by name) and all of them are timed in interleaved rounds in one process; the table
shows each rule's ms, the rule the default choice picks, and best-ms / picked-ms (1.0: the
pick is the fastest). Run it for this host and for an AVX2 target to check the lane-dependent
thresholds on both widths:

    python -m convt.tools.bench_rules --target x86 --json host.json
    python -m convt.tools.bench_rules --target '{"kind": "llvm", "mcpu": "haswell"}'
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from .bench import DEFAULT_SUITE, _geo, _spec, interleaved_ms

LAYOUTS = {"nchw": "channels_first", "nhwc": "channels_last"}


def bench_layer_rules(shape, layout, target, repeat, rng):
    from convt import schedules
    from convt.compiler.build import build
    from convt.compiler.module import CompiledModule
    from convt.compiler.targets import resolve

    spec = _spec(shape, layout)
    info = schedules.describe(resolve(target))
    w = rng.standard_normal(spec.kernel_shape).astype(np.float32)
    x = rng.standard_normal(spec.input_shape()).astype(np.float32)
    mods = {r.name: CompiledModule(build(spec, target, {"rule": r.name}), {"kernel": w})
            for r in schedules.applicable(spec, info)}
    ms = interleaved_ms({name: (lambda m=m: m(x)) for name, m in mods.items()}, repeat)
    picked = schedules.pick(spec, info).name
    best = min(ms, key=ms.get)
    return dict(name=shape["name"], layout=layout, ms=ms, picked=picked, best=best,
                ratio=ms[best] / ms[picked])


def run(args):
    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))
    import convt
    convt.set_num_threads(args.threads)
    target = json.loads(args.target) if args.target.lstrip().startswith("{") else args.target
    shapes = []
    for path in args.suite:
        with open(path) as f:
            shapes += json.load(f)["shapes"]
    if args.only:
        keep = set(args.only.split(","))
        shapes = [s for s in shapes if s["name"] in keep]
    layouts = list(LAYOUTS) if args.layout == "both" else [args.layout]
    rows, rng = [], np.random.default_rng(0)
    print(f"target {target}; best-ms / picked-ms per layer (1.00: the default pick is fastest)")
    for shape in shapes:
        for lay in layouts:
            row = bench_layer_rules(shape, LAYOUTS[lay], target, args.repeat, rng)
            rows.append(row)
            cells = "  ".join(f"{k.split('.')[-1]} {v:.3f}" for k, v in sorted(row["ms"].items()))
            print(f"{row['name']:24} {lay}  picked {row['picked'].split('.')[-1]:15} "
                  f"{row['ratio']:5.2f}   {cells}", flush=True)
    ratios = [r["ratio"] for r in rows]
    print(f"geo-mean best/picked {_geo(ratios):.3f}; picked within 10% of the best on "
          f"{sum(r >= 0.9 for r in ratios)} of {len(ratios)}; lowest {min(ratios):.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"target": target, "threads": args.threads, "rows": rows}, f, indent=1)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", action="append", default=None,
                   help=f"suite JSON, repeatable (default: {DEFAULT_SUITE} and "
                        f"tools/suites/realmodels.json)")
    p.add_argument("--target", default="x86", help="x86 (this host) or an x86 target as JSON")
    p.add_argument("--layout", choices=("both", *LAYOUTS), default="both")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--only", default="")
    p.add_argument("--json", default="")
    args = p.parse_args(argv)
    args.suite = args.suite or [DEFAULT_SUITE, os.path.join("tools", "suites", "realmodels.json")]
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
