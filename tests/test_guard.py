"""The guard itself: a kernel that writes past its output, or into an input, is caught."""
import numpy as np
import tvm
from tvm.script import tirx as T

from convt.guard import guarded_call

ENTRY = {"signature": {"inputs": [{"name": "x", "shape": [8], "dtype": "float32", "align": 4},
                                  {"name": "kernel", "shape": [1], "dtype": "float32"}],
                       "outputs": [{"name": "y", "shape": [8], "dtype": "float32"}]},
         "args": ["x", "kernel"], "packed_shape": [1]}


def _lib(shift, write_input=False):
    @T.prim_func
    def main(x: T.Buffer((8,), "float32"), packed: T.Buffer((1,), "float32"),
             out: T.Buffer((8,), "float32")):
        T.func_attr({"global_symbol": "main"})
        for i in range(8):
            out[i + shift] = x[i] + packed[0]
        if write_input:
            x[0] = T.float32(0)

    @T.prim_func
    def pack(kernel: T.Buffer((1,), "float32"), packed: T.Buffer((1,), "float32")):
        T.func_attr({"global_symbol": "pack"})
        packed[0] = kernel[0]

    return tvm.tirx.build(tvm.IRModule({"main": main, "pack": pack}), target="llvm")


def _call(lib):
    return guarded_call(lib, ENTRY, {"x": np.arange(1, 9, dtype=np.float32),
                                     "kernel": np.ones(1, np.float32)})


def test_in_bounds_kernel_passes():
    y, faults = _call(_lib(0))
    assert faults == [] and np.array_equal(y, np.arange(2, 10, dtype=np.float32))


def test_write_past_the_output_is_caught():
    y, faults = _call(_lib(1))
    assert faults == ["output: bytes 0..3 after the buffer were written"]
    assert np.isnan(y[0])   # never written: the canary pattern shows through


def test_write_before_the_output_is_caught():
    _, faults = _call(_lib(-1))
    assert faults == ["output: bytes -4..-1 before the buffer were written"]


def test_modified_input_is_caught():
    _, faults = _call(_lib(0, write_input=True))
    assert faults == ["x: the kernel modified this input"]
