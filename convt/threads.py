"""Size of TVM's CPU thread pool: one thread per physical core this process may use.

TVM's own default halves ``hardware_concurrency`` on x86 on the guess that every core has two
hyper-threads. On a host without SMT (most cloud vCPUs) that leaves half the cores idle: Mask
R-CNN's up-sampling layer ran 1.7 ms on TVM's default of 1 thread against 0.85 ms on the 2 cores
this process has. ``TVM_NUM_THREADS`` / ``OMP_NUM_THREADS``, when set, still decide.

Workers are not pinned to cores (``TVM_BIND_THREADS=0`` unless set): a pinned worker waits
whenever anything else runs on its core, which a shared host or another runtime's threads in
the same process make common. Measured beside onnxruntime, OpenVINO and PyTorch in one process
(Keras VAE layer): 0.19 / 0.16 ms pinned against 0.13 / 0.09 ms unpinned, two runs each.

Idle workers spin ``SPIN_COUNT`` rounds before they sleep (``TVM_THREAD_POOL_SPIN_COUNT``
unless set; TVM's default spins far longer). Beside another runtime in the process whose own
workers spin after each run (onnxruntime's default), long-spinning TVM workers and theirs
fight over 2 cores at every one of a model's parallel kernels: YOLOv8-seg (slim) took 40.7 ms
called in turn with onnxruntime against 2.2 ms alone, 5.6 ms with 3000 rounds (2.2 alone);
0 rounds (sleep at once) costs a wake-up per kernel (7.0 ms alone).
"""
from __future__ import annotations

import numbers
import os
import threading

SPIN_COUNT = 3000
os.environ.setdefault("TVM_THREAD_POOL_SPIN_COUNT", str(SPIN_COUNT))   # before any pool exists

_lock = threading.Lock()
_configured = False


def physical_cores() -> int:
    """Cores in this process' affinity mask, SMT siblings counted once, capped by a cgroup
    CPU quota (a container limited to 2 CPUs of a 64-core host gets 2)."""
    cpus = (os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity")
            else range(os.cpu_count() or 1))
    cores = set()
    for c in cpus:
        try:
            with open(f"/sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list") as f:
                cores.add(f.read().strip())
        except OSError:
            cores.add(str(c))
    n = len(cores)
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            n = min(n, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def set_num_threads(n: int):
    """Threads of TVM's CPU thread pools in this process (0: one per physical core).

    TVM sizes a thread's pool once, from ``TVM_NUM_THREADS``, when that thread first runs a
    parallel kernel; ``runtime.config_threadpool`` can only use fewer of its workers. So the
    variable is set for pools made later and the calling thread's pool is (re)configured."""
    global _configured
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"set_num_threads: n must be an int >= 0 (0: one thread per physical "
                         f"core), got {n!r}")
    n = int(n)
    import tvm  # noqa: F401  (registers the runtime's global functions)
    import tvm_ffi
    n = n or physical_cores()
    with _lock:
        os.environ["TVM_NUM_THREADS"] = str(n)
        os.environ.setdefault("TVM_BIND_THREADS", "0")   # module docstring
        tvm_ffi.get_global_func("runtime.config_threadpool")(1, n)
        _configured = True


def ensure_default():
    """Before the first CPU call: one thread per physical core, unless the user chose (by
    ``set_num_threads`` or the environment)."""
    if _configured or os.environ.get("TVM_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS"):
        return
    set_num_threads(0)
