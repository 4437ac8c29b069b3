import os
import sys
import tempfile

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
# Isolate the compile cache and Keras' config file (data_format=None must mean channels_last).
_tmp = tempfile.mkdtemp(prefix="convt-tests-")
os.environ["CONVT_CACHE_DIR"] = os.path.join(_tmp, "cache")
os.environ["KERAS_HOME"] = os.path.join(_tmp, "keras")

RTOL = ATOL = 1e-4  # float32, as the brief states


@pytest.fixture
def rng(request):
    return np.random.default_rng(abs(hash(request.node.nodeid)) % (2 ** 32))


def assert_close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)


def run_spec(spec, rng, batch=2, knobs=None, target="x86"):
    """(output, float64 expectation, BuiltKernel) of ``spec``'s kernel run on guarded buffers
    (``convt.guard``): a write outside any buffer fails here, before values are compared."""
    from convt.tools.check import check_spec
    checked = check_spec(spec, target, knobs, batch, seed=int(rng.integers(2 ** 31)))
    assert not checked.faults, f"{checked.kernel.rule} {checked.kernel.knobs}: {checked.faults}"
    return checked.output, checked.expected, checked.kernel
