"""CONVT_SLOW=1 tier: every rule that applies, forced on every layer of both benchmark suites at
its real size, both layouts, on guarded buffers against the float64 oracle. Real sizes reach
tile, chunk and task counts that the small fuzzed shapes do not (thousands of width tiles,
hundreds of channels)."""
import json
import os

import pytest
from conftest import assert_close, run_spec

from convt import schedules
from convt.compiler.targets import resolve
from convt.tools.bench import DEFAULT_SUITE, _spec

HERE = os.path.dirname(__file__)
SUITES = [os.path.join(HERE, "..", DEFAULT_SUITE),
          os.path.join(HERE, "..", "tools", "suites", "realmodels.json")]
SHAPES = []
for _path in SUITES:
    if os.path.exists(_path):
        with open(_path) as _f:
            SHAPES += json.load(_f)["shapes"]
MAX_GFLOP = 3.0   # the float64 oracle of a bigger layer takes minutes


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("shape", SHAPES, ids=[s["name"] for s in SHAPES])
def test_every_rule_on_real_layers(shape, layout, rng):
    spec = _spec(shape, layout)
    if 2 * spec.macs() / 1e9 > MAX_GFLOP:
        pytest.skip(f"{2 * spec.macs() / 1e9:.1f} GFLOP: the float64 oracle takes too long")
    info = schedules.describe(resolve("x86"))
    for rule in schedules.applicable(spec, info):
        y, ref, kernel = run_spec(spec, rng, knobs={"rule": rule.name})
        assert_close(y, ref)
