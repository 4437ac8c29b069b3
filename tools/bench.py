"""Benchmark convt against onnxruntime, OpenVINO and PyTorch side by side, in one run.

Per layer of the suite: median ms of convt through ``convt.compile(onnx_model)`` (NCHW, what an
ONNX user gets), of convt on the same layer in channels_last (NHWC, what a Keras user gets), and
of each installed rival; useful GFLOP/s (2 * N * C_in * prod(in) * C_out/groups * prod(kernel));
% of the FMA peak measured in the same run (``tools/ceiling.py``: an FMA loop of our own on the
same threads, printed beside numpy's sgemm 2048^3 run without the OPENBLAS_CORETYPE override that
pins OpenBLAS to slower kernels here, so the percentage is of what the cores can do); the ratio
best-rival-ms / convt-ms (> 1: convt faster); convt's compile time. Depthwise and grouped layers
also report GB/s (input + weights + output bytes once) against a measured copy bandwidth.
``--part models`` runs the whole-model suite instead (``tools/bench_models.py``).

Contestants are timed in interleaved rounds (the order rotates each round) so that drifts of a
shared machine hit all of them. Every runtime's idle workers spin for a while after a run and
slow whatever runs next (measured on DCGAN: onnxruntime 4.3 ms alone, 16.5 ms interleaved with
no pause, 17.6 ms with 50 ms pauses), so each block of calls is followed by a ``PAUSE_S`` sleep.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

DEFAULT_SUITE = os.path.join("..", "shared", "bench", "suite.json")  # from the checkout root
RIVALS = ("ort", "openvino", "torch")
PAUSE_S = 0.25   # > OpenMP's default 200 ms block time (PyTorch's pool spins that long)


def add_arguments(p):
    p.add_argument("--suite", default=os.environ.get("CONVT_BENCH_SUITE", DEFAULT_SUITE),
                   help="suite JSON (default: ../shared/bench/suite.json)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=15, help="timed rounds per contestant")
    p.add_argument("--only", default="", help="comma-separated shape names (layers) or model "
                   "names / file stems (models)")
    p.add_argument("--json", default="", help="write results to this JSON file")
    p.add_argument("--png", default="", help="write a chart of the ratios to this PNG file "
                   "(with --part all the models' chart goes to <stem>_models.png)")
    p.add_argument("--part", choices=("all", "layers", "models"), default="all",
                   help="layers: the suite's ConvTranspose layers; models: the whole ONNX "
                        "models of tests/fixtures/models/manifest.json")


def _median_ms(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def interleaved_ms(fns: dict, repeat: int, budget_s: float = 2.0) -> dict:
    """{name: median ms}; each round runs every contestant a few times, in a rotated order."""
    for fn in fns.values():
        fn()
    probe = {k: _median_ms(fn, 1) for k, fn in fns.items()}
    inner = {k: max(1, min(20, int(budget_s / repeat / max(ms, 1e-3) * 1e3 / len(fns))))
             for k, ms in probe.items()}
    times = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeat):
        for k in names[r % len(names):] + names[:r % len(names)]:
            fn = fns[k]
            for _ in range(inner[k]):
                t = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t)
            time.sleep(PAUSE_S)  # let this runtime's spinning workers go idle
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def _spec(shape, layout="channels_first"):
    from convt.compiler.spec import ConvTransposeSpec
    r = len(shape["kernel"])
    return ConvTransposeSpec(
        tuple(shape["in"]), shape["Cin"], shape["Cout"], tuple(shape["kernel"]),
        tuple(shape["stride"]), tuple(shape["dilation"]), tuple(shape["pads"][:r]),
        tuple(shape["pads"][r:]), tuple(shape["output_padding"]), groups=shape["groups"],
        batch=shape["N"], layout=layout, kernel_layout="io_spatial")


def copy_gbps(repeat=5):
    """Memory copy bandwidth: read + write bytes of a 64 MiB numpy copy."""
    a = np.ones(16 << 20, np.float32)
    b = np.empty_like(a)
    ms = _median_ms(lambda: np.copyto(b, a), repeat)
    return 2 * a.nbytes / ms / 1e6


def _bytes_moved(spec):
    n = spec.batch or 1
    out = int(np.prod(spec.output_shape(n)))
    return 4 * (int(np.prod(spec.input_shape(n))) + int(np.prod(spec.kernel_shape)) + out)


def _rel_err(got, ref):
    return float(np.abs(got - ref).max() / (np.abs(ref).max() + 1e-12))


def bench_layer(shape, threads, repeat, rng):
    import convt
    from convt.compiler.build import build
    from convt.compiler.module import CompiledModule
    from .rivals import layer_model, rivals

    spec = _spec(shape)
    x = rng.standard_normal(spec.input_shape()).astype(np.float32)
    w = rng.standard_normal(spec.kernel_shape).astype(np.float32)
    t0 = time.perf_counter()
    nchw = convt.compile(layer_model(spec, w).SerializeToString(), target="x86")
    compile_s = time.perf_counter() - t0
    nhwc_spec = _spec(shape, "channels_last")
    nhwc = CompiledModule(build(nhwc_spec, "x86"), {"kernel": w})
    x_cl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    fns = {"convt": lambda: nchw(x), "convt_nhwc": lambda: nhwc(x_cl)}
    fns.update(rivals(spec, w, x, threads))
    ref = fns["ort"]() if "ort" in fns else None
    err = max(_rel_err(fns["convt"](), ref), _rel_err(np.moveaxis(fns["convt_nhwc"](), -1, 1), ref)) \
        if ref is not None else None
    ms = interleaved_ms(fns, repeat)
    gflop = 2 * spec.macs() / 1e9
    present = [k for k in RIVALS if k in ms]
    best = min(present, key=ms.get) if present else None
    return dict(name=shape["name"], gflop=gflop, groups=spec.groups, ms=ms,
                convt_ms=ms["convt"], nhwc_ms=ms["convt_nhwc"], best_rival=best,
                ratio=ms[best] / ms["convt"] if best else None,
                ratio_nhwc=ms[best] / ms["convt_nhwc"] if best else None,
                gflops=gflop / ms["convt"] * 1e3, compile_s=compile_s,
                gbps=_bytes_moved(spec) / ms["convt"] / 1e6, rel_err=err,
                rule=nhwc.kernel.rule)


def _geo(values):
    values = [v for v in values if v]
    return float(np.exp(np.mean(np.log(values)))) if values else float("nan")


def _print_row(row, peak, copy_bw):
    ms = row["ms"]
    cols = " ".join(f"{ms[k]:9.3f}" if k in ms else f"{'-':>9}" for k in RIVALS)
    extra = (f"  {row['gbps']:.1f} GB/s = {100 * row['gbps'] / copy_bw:.0f}% of copy"
             if row["groups"] > 1 else "")
    print(f"{row['name']:24} {row['gflop']:7.3f} {row['convt_ms']:9.3f} {row['nhwc_ms']:9.3f} "
          f"{row['gflops']:6.1f} {row['pct_peak']:6.1f} {cols} "
          f"{row['ratio']:6.2f} {row['ratio_nhwc']:6.2f} {row['compile_s']:7.1f}{extra}",
          flush=True)


def chart(rows, path, peak):
    """Bar chart: best-rival/convt ratio per layer (NCHW and NHWC), 1.0 and 1.15 marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [r["name"] for r in rows]
    pos = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(11, 5))
    ax.bar(pos - 0.2, [r["ratio"] for r in rows], 0.4, label="convt NCHW (ONNX)")
    ax.bar(pos + 0.2, [r["ratio_nhwc"] for r in rows], 0.4, label="convt NHWC")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axhline(1.15, color="g", lw=0.8, ls="--", label="1.15")
    ax.set_yscale("log")
    ax.set_xticks(pos, names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("best rival ms / convt ms (>1: convt faster)")
    ax.set_title(f"convt vs best of onnxruntime/OpenVINO/PyTorch; FMA peak "
                 f"{peak:.0f} GFLOP/s")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run(args):
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))
    import convt

    from . import ceiling
    shapes = []
    if args.part != "models":
        with open(args.suite) as f:
            shapes = json.load(f)["shapes"]
    only = [n for n in args.only.split(",") if n]
    if only:
        shapes = [s for s in shapes if s["name"] in only]
    convt.set_num_threads(args.threads)
    ceil = ceiling.measure(args.threads)
    peak, copy_bw = ceil["peak_gflops"], copy_gbps()
    print(f"{ceiling.describe(ceil)}; copy bandwidth {copy_bw:.1f} GB/s")
    rows, rng = [], np.random.default_rng(0)
    if shapes:
        print(f"{'shape':24} {'GFLOP':>7} {'convt ms':>9} {'nhwc ms':>9} {'GF/s':>6} {'%peak':>6} "
              + " ".join(f"{k + ' ms':>9}" for k in RIVALS) + f" {'ratio':>6} {'r nhwc':>6} "
              f"{'comp s':>7}")
    for shape in shapes:
        row = bench_layer(shape, args.threads, args.repeat, rng)
        row["pct_peak"] = 100 * row["gflops"] / peak
        row["pct_peak_nhwc"] = 100 * row["gflop"] / row["nhwc_ms"] * 1e3 / peak
        rows.append(row)
        _print_row(row, peak, copy_bw)
    summary = {}
    if rows:
        summary = {"geomean_ratio": _geo(r["ratio"] for r in rows),
                   "geomean_ratio_nhwc": _geo(r["ratio_nhwc"] for r in rows),
                   "min_ratio": min(r["ratio"] for r in rows),
                   "min_ratio_nhwc": min(r["ratio_nhwc"] for r in rows)}
        print("geo-mean best-rival/convt: NCHW {geomean_ratio:.3f}, NHWC {geomean_ratio_nhwc:.3f}; "
              "lowest: NCHW {min_ratio:.2f}, NHWC {min_ratio_nhwc:.2f} (>1: convt faster)"
              .format(**summary))
        if args.png:
            _chart_or_say(chart, rows, args.png, peak)
    models = {}
    if args.part != "layers":
        from . import bench_models
        models = bench_models.run_models(args.threads, args.repeat, peak, only)
        if args.png:
            png = args.png if args.part == "models" else os.path.splitext(args.png)[0] + \
                "_models.png"
            _chart_or_say(bench_models.chart, models, png, peak)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"peak_gflops": peak, "ceiling": ceil, "copy_gbps": copy_bw,
                       "threads": args.threads, **summary, "rows": rows, "models": models},
                      f, indent=1, default=str)
        print(f"wrote {args.json}")
    return 0


def _chart_or_say(draw, data, path, peak):
    """Draw with matplotlib, or say why not: a missing plotting library costs the picture only,
    never the measurements (the JSON is written either way)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(f"no chart: matplotlib is not installed (pip install matplotlib); {path} not written")
        return
    draw(data, path, peak)
    print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
