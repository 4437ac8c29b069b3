"""The on-disk compile cache: atomic entries, concurrent writers, corrupted entries rebuilt."""
import os
import subprocess
import sys

import numpy as np
from conftest import assert_close
from reference import scatter_conv_transpose

from convt.compiler import cache
from convt.compiler.spec import ConvTransposeSpec

SPEC = ConvTransposeSpec((5, 4), 3, 6, (3, 3), (2, 2), (1, 1), (1, 1), (0, 0), (1, 1),
                         layout="channels_last", kernel_layout="spatial_oi", bias=False)

_COMPILE = ("import numpy as np, sys\n"
            "from convt.compiler import cache\n"
            "from convt.compiler.spec import ConvTransposeSpec\n"
            "spec = ConvTransposeSpec.from_dict({spec!r})\n"
            "x = np.ones(spec.input_shape(1), np.float32)\n"
            "w = np.ones(spec.kernel_shape, np.float32)\n"
            "print(float(cache.get_runner(spec)(x, w).sum()))\n")


def _entries(folder):
    return sorted(f for f in os.listdir(folder) if f.endswith(".convt"))


def test_two_processes_compiling_the_same_op_both_succeed(tmp_path):
    env = dict(os.environ, CONVT_CACHE_DIR=str(tmp_path))
    code = _COMPILE.format(spec=SPEC.to_dict())
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path.parent)
             for _ in range(2)]   # not the checkout: its convt/ would shadow the package
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert outs[0][0] == outs[1][0]
    assert len(_entries(tmp_path)) == 1                 # one entry, no temp files left over
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


def test_corrupted_entry_is_rebuilt(tmp_path, monkeypatch, rng):
    monkeypatch.setenv("CONVT_CACHE_DIR", str(tmp_path))
    x = rng.standard_normal(SPEC.input_shape(2)).astype(np.float32)
    w = rng.standard_normal(SPEC.kernel_shape).astype(np.float32)
    monkeypatch.setattr(cache, "_memory", {})
    cache.get_runner(SPEC)
    entry = tmp_path / _entries(tmp_path)[0]
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF
    entry.write_bytes(bytes(data))
    monkeypatch.setattr(cache, "_memory", {})         # as a new process would
    y = cache.get_runner(SPEC)(x, w)
    assert_close(y, scatter_conv_transpose(x, w, SPEC.strides, SPEC.dilation, SPEC.pads_begin,
                                           SPEC.pads_end, SPEC.output_padding,
                                           channels_last=True, kernel_layout="spatial_oi"))
    from convt import runtime
    runtime.load(entry)                                # the entry was rewritten whole
