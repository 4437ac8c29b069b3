"""Whole ONNX models in the benchmark: the model suite (tests/fixtures/models/manifest.json)
through convt, onnxruntime, OpenVINO and PyTorch side by side, and where each one's time goes.

Per model: median ms of each contestant, timed interleaved in one run (``bench.interleaved_ms``)
so that a shared machine's drifts hit all of them; best-rival/convt and ort/convt (> 1: convt
faster); convt's max relative error against onnxruntime over all outputs; GFLOP/s of convt's
kernels and their share of the FMA peak. The per-op-kind split comes from each runtime's own
profiler, from separate instrumented runs (instrumentation slows a run, so it never shares one
with the timing): convt's VM instrumentation (``GraphRunner.profile``) grouped by the rule of each
convt kernel and by the leading op of every other PrimFunc, onnxruntime's profiler grouped by its
node events' ``op_name`` (after its graph optimizations: FusedConv, ReorderInput, ...).

PyTorch cannot read an ONNX file by itself: it runs only where onnx2torch is installed.
"""
from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import statistics
import sys
import tempfile
import time

import numpy as np

MODELS = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "models")
RIVALS = ("ort", "openvino", "torch")
PROFILE_RUNS = 5

# Relax op names with an underscore, so that "fused_max_pool2d1_add" is "max_pool2d", not "max"
_COMPOUND_OPS = ("adaptive_avg_pool", "avg_pool", "max_pool", "leaky_relu", "layer_norm",
                 "group_norm", "batch_norm", "instance_norm", "rms_norm", "replicate_pad",
                 "strided_slice", "broadcast_to", "expand_dims", "image_resize", "shape_func",
                 "tir_")


def manifest_models(only=()):
    """(label, path, feeds) per manifest entry whose file is here; the label is the file's stem
    (torchscript and dynamo exports of one model share the name and its ``<name>.npz``)."""
    with open(os.path.join(MODELS, "manifest.json")) as f:
        entries = json.load(f)
    for e in entries:
        label, path = e["file"][:-5], os.path.join(MODELS, e["file"])
        if only and label not in only and e["name"] not in only:
            continue
        if not os.path.exists(path):
            print(f"{label}: skipped ({e['file']} is not in tests/fixtures/models)")
            continue
        data = np.load(os.path.join(MODELS, e["name"] + ".npz"))
        yield label, path, {k: data["in_" + k] for k in e["inputs"]}


def op_kind(name, rules):
    """Kind of one PrimFunc of a profile: ``convt <rule>`` for convt's kernels, the VM's own
    bookkeeping as one kind, else the leading op of TVM's fused name without its numeric suffix
    (fused_mean1_subtract1_divide1 -> mean; max_pool2d3 -> max_pool2d)."""
    if name.startswith("convt_"):
        return "convt " + rules.get(name, "?")
    if name.startswith("vm.builtin."):
        return "vm builtins"
    s = name.removeprefix("fused_")
    head = next((c for c in _COMPOUND_OPS if s.startswith(c)), "")
    word = head + s[len(head):].split("_")[0]
    return re.sub(r"\d+$", "", word) or name


def convt_split(mod, feeds):
    """{kind: ms} of convt, medians over PROFILE_RUNS instrumented runs (the first warms up)."""
    runner = mod._run()
    runner.profile(**feeds)
    runs = []
    for _ in range(PROFILE_RUNS):
        kinds = {}
        for name, s in runner.profile(**feeds):
            k = op_kind(name, mod.rules)
            kinds[k] = kinds.get(k, 0.0) + s * 1e3
        runs.append(kinds)
    return {k: statistics.median(r.get(k, 0.0) for r in runs) for k in runs[0]}


def ort_session(path, threads, profile_dir=None):
    """onnxruntime as the brief has it: default graph optimizations, ``threads`` intra-op
    threads, one inter-op thread, sequential execution."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if profile_dir:
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(profile_dir, "ort")
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def ort_split(path, feeds, threads):
    """{op_name: ms} of onnxruntime's node events, medians over the last PROFILE_RUNS of
    PROFILE_RUNS + 1 profiled runs (each run's window is its ``model_run`` event)."""
    with tempfile.TemporaryDirectory(prefix="convt-ortprof-") as tmp:
        sess = ort_session(path, threads, tmp)
        for _ in range(PROFILE_RUNS + 1):
            sess.run(None, feeds)
        with open(sess.end_profiling()) as f:
            events = json.load(f)
    windows = [(e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run"]
    runs = []
    for lo, hi in windows[-PROFILE_RUNS:]:
        kinds = {}
        for e in events:
            if e.get("cat") == "Node" and lo <= e["ts"] <= hi and "op_name" in e.get("args", {}):
                k = e["args"]["op_name"]
                kinds[k] = kinds.get(k, 0.0) + e["dur"] / 1e3
        runs.append(kinds)
    names = {k for r in runs for k in r}
    return {k: statistics.median(r.get(k, 0.0) for r in runs) for k in names}


def openvino_fn(path, feeds, threads):
    """OpenVINO's CPU plugin on the ONNX file, f32, latency hint; all outputs in ONNX order."""
    try:
        import openvino as ov
    except ImportError:
        return None
    compiled = ov.Core().compile_model(path, "CPU", {
        "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32"})
    req = compiled.create_infer_request()
    n_out = len(compiled.outputs)

    def run():
        req.infer(feeds)
        return [req.get_output_tensor(i).data for i in range(n_out)]
    return run


def torch_fn(path, feeds, threads):
    """PyTorch through onnx2torch where both are installed (untested here: neither is)."""
    try:
        import onnx2torch
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    module = onnx2torch.convert(path).eval()
    args = [torch.from_numpy(v) for v in feeds.values()]

    def run():
        with torch.no_grad():
            out = module(*args)
        return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else [out])]
    return run


def _outputs(value):
    return list(value) if isinstance(value, (tuple, list)) else [value]


def _rel_err(got, ref):
    return max(float(np.abs(np.asarray(g, np.float64) - r).max() / (np.abs(r).max() + 1e-12))
               for g, r in zip(_outputs(got), ref))


def kernel_gflop(mod, feeds):
    """Useful GFLOP of convt's kernels in one run (the bench divides it by their time in the
    instrumented runs, which a kernel's one callback pair barely changes): 2 * spec.macs() each,
    divided by the product of ``conv_strides`` for forward convolutions (a strided conv's spec
    counts MACs over its stride-1 output)."""
    batch = int(next(iter(feeds.values())).shape[0])
    return sum(2 * spec.macs(batch) / int(np.prod(spec.conv_strides))
               for _, spec in mod.kernels) / 1e9


@contextlib.contextmanager
def _native_warnings_summed(label):
    """TVM's C++ warnings (one per gather op: "Fast mode segfaults when there are out-of-bounds
    indices") go to fd 2 by the dozen per model and bury the table: keep each distinct one
    once, with its count. Errors still arrive as exceptions."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+") as f:
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            counts = collections.Counter(re.sub(r"^\[[\d:]+\] ", "", ln.rstrip())
                                         for ln in f if ln.strip())
    for line, n in counts.items():
        print(f"  ({label}: {n} x {line[:150]})", file=sys.stderr)


def bench_model(label, path, feeds, threads, repeat, peak):
    import convt

    from .bench import interleaved_ms
    t0 = time.perf_counter()
    with _native_warnings_summed(label):
        mod = convt.compile(path)
    compile_s = time.perf_counter() - t0
    sess = ort_session(path, threads)
    ref = [np.asarray(r, np.float64) for r in sess.run(None, feeds)]
    fns = {"convt": lambda: mod(**feeds), "ort": lambda: sess.run(None, feeds)}
    absent = {}
    for name, make in (("openvino", openvino_fn), ("torch", torch_fn)):
        try:
            fn = make(path, feeds, threads)
        except Exception as e:  # a rival that cannot take this model is left out, with why
            fn, absent[name] = None, f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
        if fn is not None:
            fns[name] = fn
        else:
            absent.setdefault(name, "not installed")
    errs = {k: _rel_err(fns[k](), ref) for k in fns if k != "ort"}
    ms = interleaved_ms(fns, repeat)
    split = convt_split(mod, feeds)
    kernels_ms = sum(v for k, v in split.items() if k.startswith("convt "))
    gflop = kernel_gflop(mod, feeds)
    gflops = gflop / kernels_ms * 1e3 if kernels_ms else None
    rivals = [k for k in RIVALS if k in ms]
    best = min(rivals, key=ms.get)
    return dict(model=label, ms=ms, convt_ms=ms["convt"], ort_ms=ms["ort"], best_rival=best,
                ratio=ms[best] / ms["convt"], ort_ratio=ms["ort"] / ms["convt"],
                rel_err=errs["convt"], rival_rel_err={k: v for k, v in errs.items()
                                                      if k != "convt"},
                absent=absent, compile_s=compile_s, kernel_gflop=gflop,
                convt_kernels_ms=kernels_ms, kernel_gflops=gflops,
                pct_peak=100 * gflops / peak if gflops and peak else None,
                split={"convt": split, "ort": ort_split(path, feeds, threads)},
                fusions=mod.fusions)


def _top(split, n=5):
    items = sorted(split.items(), key=lambda kv: -kv[1])
    rest = sum(v for _, v in items[n:])
    shown = [f"{k} {v:.2f}" for k, v in items[:n]]
    return ", ".join(shown + ([f"rest {rest:.2f}"] if rest else []))


def _geo(values):
    values = [v for v in values if v]
    return float(np.exp(np.mean(np.log(values)))) if values else None


def run_models(threads, repeat, peak, only=()):
    """Bench every manifest model here; prints the tables, returns the JSON's "models" part."""
    print(f"\n{'model':38} {'convt ms':>9} " + " ".join(f"{k + ' ms':>11}" for k in RIVALS)
          + f" {'best/cvt':>8} {'ort/cvt':>7} {'kern GF/s':>9} {'%peak':>6} {'rel err':>8} "
            f"{'comp s':>6}")
    rows = []
    for label, path, feeds in manifest_models(set(only)):
        try:
            row = bench_model(label, path, feeds, threads, repeat, peak)
        except Exception as e:  # one model that fails (a convt or onnxruntime error) is reported
            print(f"{label:38} failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
            rows.append(dict(model=label, error=f"{type(e).__name__}: {e}"))
            continue
        rows.append(row)
        ms = row["ms"]
        cols = " ".join(f"{ms[k]:11.3f}" if k in ms else f"{'-':>11}" for k in RIVALS)
        gf = f"{row['kernel_gflops']:9.1f} {row['pct_peak']:6.1f}" if row["kernel_gflops"] \
            else f"{'-':>9} {'-':>6}"
        print(f"{label:38} {row['convt_ms']:9.3f} {cols} {row['ratio']:8.2f} "
              f"{row['ort_ratio']:7.2f} {gf} {row['rel_err']:8.1e} {row['compile_s']:6.1f}",
              flush=True)
    ok = [r for r in rows if "error" not in r]
    for k in RIVALS[1:]:
        missing = {r["model"]: r["absent"][k] for r in ok if k in r["absent"]}
        if missing:
            where = "" if len(missing) == len(ok) else " for " + ", ".join(missing)
            note = "; PyTorch cannot run an ONNX file without onnx2torch" if k == "torch" else ""
            print(f"{k}: absent{where} ({'; '.join(sorted(set(missing.values())))}{note})")
    summary = {}
    if ok:
        summary = {"geomean_ratio": _geo(r["ratio"] for r in ok),
                   "geomean_ort_ratio": _geo(r["ort_ratio"] for r in ok),
                   "min_ratio": min(r["ratio"] for r in ok),
                   "max_rel_err": max(r["rel_err"] for r in ok),
                   "geomean_ms": {k: _geo(r["ms"].get(k) for r in ok)
                                  for k in ("convt",) + RIVALS if all(k in r["ms"] for r in ok)}}
        print(f"geo-mean over {len(ok)} models: best-rival/convt {summary['geomean_ratio']:.3f}, "
              f"ort/convt {summary['geomean_ort_ratio']:.3f}, lowest best-rival/convt "
              f"{summary['min_ratio']:.2f} (>1: convt faster); max rel err vs onnxruntime "
              f"{summary['max_rel_err']:.1e}")
        print("\nper-op-kind split, ms per instrumented run (convt: VM instrumentation, whose "
              "callbacks inflate every call and most the many small 'vm builtins', the VM's own "
              "allocation and shape calls; ort: its profiler's node events)")
        for r in ok:
            print(f"{r['model']:38} convt: {_top(r['split']['convt'])}\n{'':38} ort:   "
                  f"{_top(r['split']['ort'])}")
        totals = {}
        for side in ("convt", "ort"):
            acc = {}
            for r in ok:
                for k, v in r["split"][side].items():
                    acc[k] = acc.get(k, 0.0) + v
            totals[side] = dict(sorted(acc.items(), key=lambda kv: -kv[1]))
            print(f"{'all models, ' + side:38} {_top(totals[side], 8)}")
        summary["split_totals"] = totals
    return {"rows": rows, **summary}


def chart(models, path, peak):
    """Two panels: rival/convt ratio per model; each runtime's per-op-kind share of its time."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in models["rows"] if "error" not in r]
    if not rows:
        return
    names = [r["model"] for r in rows]
    pos = np.arange(len(rows))
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(13, 10))
    rivals = [k for k in RIVALS if any(k in r["ms"] for r in rows)]
    width = 0.8 / len(rivals)
    for i, k in enumerate(rivals):
        ax.bar(pos + (i - (len(rivals) - 1) / 2) * width,
               [r["ms"][k] / r["convt_ms"] if k in r["ms"] else 0 for r in rows], width,
               label=f"{k} ms / convt ms")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(pos, names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("rival ms / convt ms (>1: convt faster)")
    ax.set_title(f"whole models: geo-mean ort/convt {models['geomean_ort_ratio']:.2f}, "
                 f"best-rival/convt {models['geomean_ratio']:.2f}; FMA peak {peak:.0f} GFLOP/s")
    ax.legend(fontsize=8)
    # stacked shares: the kinds that take the most time over all models, the rest as "other"
    top = {side: list(models["split_totals"][side])[:7] for side in ("convt", "ort")}
    cmap = plt.get_cmap("tab20")
    colors, seen = {}, set()
    for side, dx in (("convt", -0.2), ("ort", 0.2)):
        bottom = np.zeros(len(rows))
        for k in top[side] + ["other"]:
            vals = np.array([(r["split"][side].get(k, 0.0) if k != "other" else
                              sum(v for kk, v in r["split"][side].items() if kk not in top[side]))
                             / max(sum(r["split"][side].values()), 1e-9) * 100 for r in rows])
            label = f"{side}: {k}"
            colors.setdefault(label, cmap(len(colors) % 20))
            bx.bar(pos + dx, vals, 0.38, bottom=bottom, color=colors[label],
                   label=label if label not in seen else None, edgecolor="white", lw=0.3)
            seen.add(label)
            bottom += vals
    bx.set_xticks(pos, names, rotation=60, ha="right", fontsize=7)
    bx.set_ylabel("% of the runtime's profiled time (left: convt, right: ort)")
    bx.legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
