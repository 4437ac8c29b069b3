"""Whole ONNX models in the benchmark: convt (fused and not) against onnxruntime, and where the
time goes (convt's ConvTranspose kernels vs the ops TVM compiles with its default, unscheduled
CPU lowering)."""
from __future__ import annotations

import glob
import os
import statistics
import time

import numpy as np

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "onnx")


def dcgan_layer_model(rng, n=8, cin=512, cout=256, side=4):
    """DCGAN generator block: ConvTranspose(4, 2, 1, no bias) + BatchNormalization + Relu."""
    from onnx import TensorProto, helper, numpy_helper
    w = rng.standard_normal((cin, cout, 4, 4)).astype(np.float32) * 0.05
    bn = [rng.uniform(0.5, 2, cout), rng.standard_normal(cout), rng.standard_normal(cout),
          rng.uniform(0.5, 2, cout)]
    inits = [numpy_helper.from_array(w, "w")] + [
        numpy_helper.from_array(v.astype(np.float32), k)
        for k, v in zip(("gamma", "beta", "mean", "var"), bn)]
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["t"], name="deconv", strides=[2, 2],
                              pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["t", "gamma", "beta", "mean", "var"], ["u"]),
             helper.make_node("Relu", ["u"], ["y"])]
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(nodes, "dcgan_block",
                              [vi("x", TensorProto.FLOAT, [n, cin, side, side])],
                              [vi("y", TensorProto.FLOAT, [n, cout, 2 * side, 2 * side])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    x = rng.standard_normal((n, cin, side, side)).astype(np.float32)
    return model, {"x": x}


def _fixture_models():
    for path in sorted(glob.glob(os.path.join(FIXTURES, "*.onnx"))):
        data = np.load(path[:-5] + ".npz")
        yield (os.path.basename(path)[:-5], path,
               {k[3:]: data[k] for k in data.files if k.startswith("in_")})


def _interleaved_ms(a, b, repeat):
    """Medians of ``a`` and ``b`` timed turn about, so that drifts in machine load hit both."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeat):
        for fn, acc in ((a, ta), (b, tb)):
            t = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t)
    return statistics.median(ta) * 1e3, statistics.median(tb) * 1e3


def run_models(threads, repeat, median_ms):
    import onnx
    import onnxruntime as ort

    import convt

    def session(model):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        return ort.InferenceSession(model.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])

    rng = np.random.default_rng(0)
    cases = [("dcgan_g2_b8+bn+relu", *dcgan_layer_model(rng))]
    cases += [(name, onnx.load(path), feeds) for name, path, feeds in _fixture_models()]
    print(f"\n{'model':26} {'convt ms':>9} {'unfused':>8} {'ort ms':>8} {'ort/convt':>9} "
          f"{'in convt':>9} {'in rest':>8} {'unfused rest':>12}  fused after each ConvTranspose")
    rows = []
    for name, model, feeds in cases:
        fused = convt.compile(model)
        plain = convt.compile(model, fuse=False)
        sess = session(model)
        ref = sess.run(None, feeds)[0]
        got = fused(**feeds)
        got = got[0] if isinstance(got, tuple) else got
        err = float(np.abs(got - ref).max() / (np.abs(ref).max() + 1e-12))
        # onnxruntime last: its idle worker threads keep spinning for a while after a run
        in_convt, in_rest = fused.time_split(**feeds)
        _, plain_rest = plain.time_split(**feeds)
        t_fused, t_plain = _interleaved_ms(lambda: fused(**feeds), lambda: plain(**feeds), repeat)
        t_ort = median_ms(lambda: sess.run(None, feeds), repeat)
        time.sleep(0.2)
        fusions = "; ".join("+".join(ops) or "-" for _, ops in fused.fusions)
        rows.append(dict(model=name, convt_ms=t_fused, unfused_ms=t_plain, ort_ms=t_ort,
                         ratio=t_ort / t_fused, convt_kernels_ms=in_convt, other_ops_ms=in_rest,
                         unfused_other_ops_ms=plain_rest,
                         fusions=fused.fusions, rel_err=err))
        print(f"{name:26} {t_fused:9.3f} {t_plain:8.3f} {t_ort:8.3f} {t_ort / t_fused:9.2f} "
              f"{in_convt:9.3f} {in_rest:8.3f} {plain_rest:12.3f}  {fusions}", flush=True)
    print("in convt / in rest: one instrumented run; 'rest' is TVM's code for the other ops, "
          "which TVM 0.27 compiles without CPU schedules (slow); 'unfused rest' is the same "
          "with fusion off, so it includes the BatchNormalization/activation passes fusion removes.")
    return rows
