"""Benchmark convt against onnxruntime (and PyTorch when installed) side by side, in one run.

Per shape: median ms of each, useful GFLOP/s (2 * N * C_in * prod(in) * C_out/groups *
prod(kernel)), % of a ceiling measured in the same run (numpy sgemm 2048^3 on the same threads),
the ratio best-rival-ms / convt-ms (> 1: convt faster), and convt's compile time.
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


def add_arguments(p):
    p.add_argument("--suite", default=os.environ.get("CONVT_BENCH_SUITE", DEFAULT_SUITE),
                   help="suite JSON (default: ../shared/bench/suite.json)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--only", default="", help="comma-separated shape names")
    p.add_argument("--json", default="", help="write results to this JSON file")
    p.add_argument("--part", choices=("all", "layers", "models"), default="all",
                   help="layers: the suite's ConvTranspose layers; models: whole ONNX models "
                        "(the DCGAN block with and without fusion, the PyTorch fixtures)")


def _median_ms(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def _spec(shape):
    from convt.compiler.spec import ConvTransposeSpec
    r = len(shape["kernel"])
    return ConvTransposeSpec(
        tuple(shape["in"]), shape["Cin"], shape["Cout"], tuple(shape["kernel"]),
        tuple(shape["stride"]), tuple(shape["dilation"]), tuple(shape["pads"][:r]),
        tuple(shape["pads"][r:]), tuple(shape["output_padding"]), groups=shape["groups"],
        batch=shape["N"], layout="channels_first", kernel_layout="io_spatial")


def _ort_session(spec, w, threads):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    node = helper.make_node("ConvTranspose", ["x", "W"], ["y"], strides=list(spec.strides),
                            pads=list(spec.pads_begin + spec.pads_end),
                            output_padding=list(spec.output_padding),
                            dilations=list(spec.dilation), group=spec.groups)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, spec.input_shape())],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _torch_fn(spec, w, x):
    try:
        import torch
    except ImportError:
        return None
    conv = {1: torch.nn.functional.conv_transpose1d, 2: torch.nn.functional.conv_transpose2d,
            3: torch.nn.functional.conv_transpose3d}[spec.rank]
    if any(b != e for b, e in zip(spec.pads_begin, spec.pads_end)):
        return None
    tw, tx = torch.from_numpy(w), torch.from_numpy(x)

    def run():
        with torch.no_grad():
            return conv(tx, tw, stride=spec.strides, padding=spec.pads_begin,
                        output_padding=spec.output_padding, groups=spec.groups,
                        dilation=spec.dilation)
    return run


def ceiling_gflops(threads, repeat=5):
    """numpy sgemm 2048^3 GFLOP/s (the BLAS numpy links, on the process's threads)."""
    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    ms = _median_ms(lambda: a @ a, repeat)
    return 2 * 2048 ** 3 / ms / 1e6


def run(args):
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))
    import convt
    from convt.compiler.build import build
    from convt.compiler.build import manifest
    from convt.runtime import Runner
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    with open(args.suite) as f:
        shapes = json.load(f)["shapes"] if args.part != "models" else []
    if args.only:
        keep = set(args.only.split(","))
        shapes = [s for s in shapes if s["name"] in keep]
    convt.set_num_threads(args.threads)
    peak = ceiling_gflops(args.threads)
    print(f"ceiling: numpy sgemm 2048^3 = {peak:.1f} GFLOP/s ({args.threads} threads)")
    head = (f"{'shape':24} {'GFLOP':>7} {'convt ms':>9} {'GF/s':>6} {'%ceil':>6} "
            f"{'ort ms':>8} {'torch ms':>9} {'ratio':>6} {'compile s':>9}")
    print(head)
    rows, rng = [], np.random.default_rng(0)
    for shape in shapes:
        spec = _spec(shape)
        gflop = 2 * spec.macs() / 1e9
        x = rng.standard_normal(spec.input_shape()).astype(np.float32)
        w = rng.standard_normal(spec.kernel_shape).astype(np.float32)
        kernel = build(spec, "x86")
        runner = Runner(kernel.lib, manifest(kernel, {"kernel": w}), {"kernel": w})
        sess = _ort_session(spec, w, args.threads)
        y_ort = sess.run(None, {"x": x})[0]
        y = runner(x)
        err = float(np.abs(y - y_ort).max() / (np.abs(y_ort).max() + 1e-12))
        t_convt = _median_ms(lambda: runner(x), args.repeat)
        t_ort = _median_ms(lambda: sess.run(None, {"x": x}), args.repeat)
        tfn = _torch_fn(spec, w, x)
        t_torch = _median_ms(tfn, args.repeat) if tfn else None
        best = min(t for t in (t_ort, t_torch) if t)
        row = dict(name=shape["name"], gflop=gflop, convt_ms=t_convt, ort_ms=t_ort,
                   torch_ms=t_torch, gflops=gflop / t_convt * 1e3,
                   pct_ceiling=100 * gflop / t_convt * 1e3 / peak, ratio=best / t_convt,
                   compile_s=kernel.compile_seconds, rule=kernel.rule, rel_err=err)
        rows.append(row)
        torch_s = f"{t_torch:9.2f}" if t_torch else f"{'-':>9}"
        print(f"{row['name']:24} {gflop:7.3f} {t_convt:9.2f} {row['gflops']:6.1f} "
              f"{row['pct_ceiling']:6.1f} {t_ort:8.2f} {torch_s} {row['ratio']:6.2f} "
              f"{kernel.compile_seconds:9.2f}", flush=True)
    geo = float(np.exp(np.mean(np.log([r["ratio"] for r in rows])))) if rows else float("nan")
    if rows:
        print(f"geo-mean ratio best-rival/convt: {geo:.3f} (>1: convt faster)")
    models = []
    if args.part != "layers":
        from .bench_models import run_models
        models = run_models(args.threads, args.repeat, _median_ms)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"ceiling_gflops": peak, "ceiling": "numpy sgemm 2048^3",
                       "threads": args.threads, "geomean_ratio": geo, "rows": rows,
                       "models": models}, f, indent=1)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
