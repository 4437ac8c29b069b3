"""How the runtime hands arrays to kernels: misaligned inputs (numpy aligns to 16 bytes, TVM's
kernels assume 64 unless told otherwise) and outputs reused once the caller lets them go."""
import numpy as np
import pytest
from conftest import assert_close
from onnx import helper
from onnx_util import FLOAT, make_model, ort_run
from reference import scatter_conv_transpose

import convt
from convt.compiler.spec import ConvTransposeSpec


def _misaligned(a, offset_elems):
    """A C-contiguous copy of ``a`` whose data starts ``offset_elems`` past a 64-byte line."""
    buf = np.empty(a.size + 64, a.dtype)
    start = (-buf.ctypes.data % 64) // a.itemsize + offset_elems
    out = buf[start:start + a.size].reshape(a.shape)
    out[...] = a
    assert out.ctypes.data % 64 == offset_elems * a.itemsize
    return out


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_kernel_reads_misaligned_inputs_in_place(rng, layout):
    spec = ConvTransposeSpec((6, 7), 16, 8, (3, 3), (2, 2), (1, 1), pads_begin=(1, 1),
                             pads_end=(1, 1), output_padding=(1, 1), batch=2, layout=layout,
                             kernel_layout="io_spatial", bias=True)
    mod = convt.compile(spec, target="x86")
    sig = mod.entry().meta["signature"]
    assert {i["name"]: i.get("align") for i in sig["inputs"]} == {"x": 4, "kernel": 4, "bias": 4}
    x = rng.standard_normal(spec.input_shape()).astype(np.float32)
    w = rng.standard_normal(spec.kernel_shape).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    x_cf = x if layout == "channels_first" else np.moveaxis(x, -1, 1)
    ref = scatter_conv_transpose(x_cf.astype(np.float64), w.astype(np.float64), (2, 2), (1, 1),
                                 (1, 1), (1, 1), (1, 1)) + b.reshape(1, -1, 1, 1)
    if layout == "channels_last":
        ref = np.moveaxis(ref, 1, -1)
    for off in (1, 3, 8):
        got = mod(_misaligned(x, off), _misaligned(w, off + 1), _misaligned(b, off))
        assert_close(got, ref)


def test_graph_input_shared_with_other_ops_keeps_tvm_alignment(rng):
    """Only inputs that nothing but convt kernels read may be passed misaligned."""
    w = rng.standard_normal((4, 3, 2, 2)).astype(np.float32)
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2]),
             helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("ConvTranspose", ["z", "w"], ["t"], strides=[2, 2])]
    model = make_model(nodes, [("x", [1, 4, 5, 5], FLOAT), ("z", [1, 4, 5, 5], FLOAT)],
                       [("y", [1, 3, 10, 10], FLOAT), ("r", [1, 4, 5, 5], FLOAT),
                        ("t", [1, 3, 10, 10], FLOAT)], {"w": w})
    mod = convt.compile(model, target="x86")
    assert {i["name"]: i.get("align") for i in mod.signature["inputs"]} == {"x": None, "z": 4}
    feeds = {k: rng.standard_normal((1, 4, 5, 5)).astype(np.float32) for k in ("x", "z")}
    expected = ort_run(model, feeds)
    for off in (1, 2):
        got = mod(**{k: _misaligned(v, off) for k, v in feeds.items()})
        for g, e in zip(got, expected):
            assert_close(g, e)


def test_held_outputs_are_never_overwritten(rng):
    layer = convt.layers.Conv2DTranspose(8, 3, strides=2, padding="same")
    mod = convt.compile(layer, input_shape=(2, 5, 5, 4))
    x1, x2 = (rng.standard_normal((2, 5, 5, 4)).astype(np.float32) for _ in range(2))
    y1 = mod(x1)
    kept = y1.copy()
    view = mod(x2)[0]   # a view keeps its whole output alive
    y3 = mod(x1)
    assert not np.shares_memory(y1, y3) and not np.shares_memory(view, y3)
    assert_close(y1, kept)
    assert_close(y3, kept)
    assert_close(view, layer(x2)[0])


def test_dropped_output_is_reused(rng):
    mod = convt.compile(convt.layers.Conv2DTranspose(8, 3, strides=2), input_shape=(1, 6, 6, 4))
    x = rng.standard_normal((1, 6, 6, 4)).astype(np.float32)
    first = mod(x)
    address, expected = first.ctypes.data, first.copy()
    del first
    again = mod(x)
    assert again.ctypes.data == address   # no fresh pages: the first call's memory again
    assert_close(again, expected)
