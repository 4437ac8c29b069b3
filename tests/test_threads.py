"""The CPU thread pool defaults to one thread per physical core (not TVM's halved guess)."""
import os
import subprocess
import sys
import tempfile

import pytest

from convt import threads


def _run(code, **env):
    clean = {k: v for k, v in os.environ.items() if k not in ("TVM_NUM_THREADS", "OMP_NUM_THREADS")}
    clean.update(env)
    # from outside the checkout: its convt/ would shadow the installed package
    return subprocess.run([sys.executable, "-c", code], env=clean, capture_output=True,
                          text=True, check=True, cwd=tempfile.gettempdir()).stdout.strip()


_CALL = """
import os, numpy as np, convt
from convt.compiler.spec import ConvTransposeSpec
spec = ConvTransposeSpec((4, 4), 4, 8, (2, 2), (2, 2), (1, 1), (0, 0), (0, 0), (0, 0), batch=1)
m = convt.compile(spec)
m(np.ones(spec.input_shape(), np.float32), np.ones(spec.kernel_shape, np.float32))
print(os.environ.get("TVM_NUM_THREADS"))
"""

_PINNED = _CALL + """
masks = set()
for t in os.listdir("/proc/self/task"):
    with open(f"/proc/self/task/{t}/status") as f:
        masks |= {line for line in f if line.startswith("Cpus_allowed_list")}
print(os.environ.get("TVM_BIND_THREADS"), len(masks))
"""


def test_default_is_one_thread_per_physical_core():
    assert _run(_CALL) == str(threads.physical_cores())


def test_environment_still_decides():
    assert _run(_CALL, OMP_NUM_THREADS="1") == "None"
    assert _run(_CALL, TVM_NUM_THREADS="1") == "1"


def test_physical_cores_follow_affinity_and_siblings(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert threads.physical_cores() == 1
    real_open = open

    def fake_open(path, *a, **k):   # cpu0 and cpu1 are hyper-threads of one core
        if path.endswith("thread_siblings_list"):
            import io
            return io.StringIO("0-1")
        if path == "/sys/fs/cgroup/cpu.max":
            raise OSError
        return real_open(path, *a, **k)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr("builtins.open", fake_open)
    assert threads.physical_cores() == 1


def test_workers_are_not_pinned_unless_asked():
    if threads.physical_cores() < 2 or not os.path.exists("/proc/self/task"):
        pytest.skip("needs 2 cores and /proc")
    assert _run(_PINNED).splitlines()[-1] == "0 1"           # every thread on every core
    assert _run(_PINNED, TVM_BIND_THREADS="1").splitlines()[-1].startswith("1 ")


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True])
def test_bad_thread_count_is_refused(bad):
    with pytest.raises(ValueError, match="set_num_threads: n must be an int >= 0"):
        threads.set_num_threads(bad)
