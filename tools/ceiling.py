"""The machine's real float32 ceiling, for the bench's "% of peak" columns.

Why not numpy's sgemm alone: its speed says what OpenBLAS does under this environment, not what
the cores can do. Here OPENBLAS_CORETYPE=Haswell is set (old OpenBLAS builds misbehave on newer
cores), which pins OpenBLAS to its AVX2 kernels: the environment notes give sgemm 2048^3 176
GFLOP/s with it and 388 without on a 2-core Zen 5, so "90% of sgemm" can be 40% of the cores. On
the 2-core Zen 4 (family 25, half-rate AVX-512 FMAs) the FMA loop reads 218-234 GFLOP/s.

So the ceiling is measured two ways, in about a second:

* ``fma_peak``: a C loop of our own, compiled at run time with the system compiler
  (``-O2 -march=native``), one pthread per core, each thread chaining fused multiply-adds on
  16 independent vector accumulators (more than FMA latency x FMA ports, so the ports never
  wait). AVX-512 where the compiler targets it, else AVX2+FMA, else GCC vector extensions.
  The best of a few short trials is kept: peaks only get slower under noise, never faster.
* ``sgemm``: numpy's sgemm 2048^3 in a subprocess with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
  removed from its environment only (the bench's own process and the tests keep them), with the
  OpenBLAS core type it then picked. A reachable ceiling for a real GEMM, below the FMA peak.

``python -m convt.tools.ceiling`` prints both.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

FMA_SOURCE = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#if defined(__AVX512F__)
#include <immintrin.h>
typedef __m512 vec;
#define LANES 16
#define FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define SET1(x) _mm512_set1_ps(x)
#elif defined(__FMA__)
#include <immintrin.h>
typedef __m256 vec;
#define LANES 8
#define FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define SET1(x) _mm256_set1_ps(x)
#else
typedef float vec __attribute__((vector_size(16)));
#define LANES 4
#define FMA(a, b, c) ((a) * (b) + (c))
#define SET1(x) ((vec){x, x, x, x})
#endif

static long iters;
static pthread_barrier_t barrier;
static volatile float sink;
static struct timespec t_start[256], t_end[256];

static double sec(struct timespec t) { return t.tv_sec + 1e-9 * t.tv_nsec; }

#define ACC 16   /* accumulators: > FMA latency (4) x FMA ports (2) on current x86 */
/* ACC named accumulators, not an array: an array whose address is taken stays in memory and
   each FMA then waits on a store and a load. */
#define ALL(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
#define DECL(i) vec a##i = SET1((float)i);
#define STEP(i) a##i = FMA(a##i, m, c);
#define SUM(i) s += a##i;

/* Each thread reads the clock itself, right before and after its loop: a thread that the OS
   parks elsewhere can then only widen the window [first start, last end], never narrow it. */
static void *work(void *arg) {
    long id = (long)arg;
    vec m = SET1(0.999999f), c = SET1(1e-7f), s = SET1(0.0f);
    ALL(DECL)
    pthread_barrier_wait(&barrier);
    clock_gettime(CLOCK_MONOTONIC, &t_start[id]);
    for (long n = 0; n < iters; n++) {
        ALL(STEP)   /* ACC independent dependency chains */
    }
    clock_gettime(CLOCK_MONOTONIC, &t_end[id]);
    ALL(SUM)
    sink = ((float *)&s)[0];
    return arg;
}

int main(int argc, char **argv) {
    int threads = atoi(argv[1]);
    iters = atol(argv[2]);
    if (threads < 1 || threads > 256) return 2;
    pthread_t t[256];
    pthread_barrier_init(&barrier, NULL, threads);
    for (long i = 0; i < threads; i++) pthread_create(&t[i], NULL, work, (void *)i);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    double t0 = sec(t_start[0]), t1 = sec(t_end[0]);
    for (int i = 1; i < threads; i++) {
        if (sec(t_start[i]) < t0) t0 = sec(t_start[i]);
        if (sec(t_end[i]) > t1) t1 = sec(t_end[i]);
    }
    printf("%.3f %d\n", 2.0 * LANES * ACC * iters * threads / (t1 - t0) / 1e9, LANES);
    return 0;
}
"""

SGEMM_SCRIPT = r"""
import ctypes, glob, os, statistics, sys, time
import numpy as np
n = 2048
a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
a @ a
times = []
for _ in range(int(sys.argv[1])):
    t = time.perf_counter(); a @ a; times.append(time.perf_counter() - t)
core = "?"
for lib in glob.glob(os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs", "*openblas*")):
    for sym in ("scipy_openblas_get_corename64_", "openblas_get_corename"):
        f = getattr(ctypes.CDLL(lib), sym, None)
        if f is not None:
            f.restype = ctypes.c_char_p
            core = f().decode()
            break
print(2 * n ** 3 / statistics.median(times) / 1e9, core)
"""

BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def _compile_fma(tmp):
    """Path of the compiled FMA loop, or None with the reason (no compiler, flags refused)."""
    cc = next(filter(None, map(shutil.which, (os.environ.get("CC", ""), "cc", "gcc", "clang"))),
              None)
    if not cc:
        return None, "no C compiler"
    src, exe = os.path.join(tmp, "fma.c"), os.path.join(tmp, "fma")
    with open(src, "w") as f:
        f.write(FMA_SOURCE)
    err = ""
    for flags in (["-march=native"], ["-mavx512f", "-mfma"], ["-mavx2", "-mfma"], []):
        try:
            r = subprocess.run([cc, "-O2", *flags, src, "-o", exe, "-pthread"], check=False,
                               capture_output=True, text=True, timeout=30)
            # -mavx512f compiles on any x86 host: run the binary once to see this host can
            runs = r.returncode == 0 and subprocess.run(
                [exe, "1", "1000"], check=False, capture_output=True, timeout=10).returncode == 0
            if runs:
                return exe, " ".join([os.path.basename(cc), "-O2", *flags])
        except subprocess.TimeoutExpired:
            return None, f"{cc} or its binary timed out"
        err = next((ln for ln in r.stderr.splitlines() if "error" in ln), "binary does not run")
    return None, f"{cc} failed: {err}"


def fma_peak(threads, trials=3, seconds=0.2):
    """{"gflops", "lanes", "flags"} of the FMA loop on ``threads`` threads, best of ``trials``
    runs of about ``seconds`` each; {"gflops": None, "why": ...} where it cannot be built."""
    with tempfile.TemporaryDirectory(prefix="convt-ceiling-") as tmp:
        exe, how = _compile_fma(tmp)
        if exe is None:
            return {"gflops": None, "why": how}

        def once(iters):   # (GFLOP/s, lanes); (0, 0) for a trial a loaded machine stalled
            try:
                out = subprocess.run([exe, str(threads), str(iters)], capture_output=True,
                                     text=True, check=True, timeout=20 * seconds + 5).stdout
                return float(out.split()[0]), int(out.split()[1])
            except subprocess.SubprocessError:
                return 0.0, 0
        probe, lanes = once(200_000)   # size the trials to ``seconds`` from a short probe
        if not lanes:
            return {"gflops": None, "why": "the FMA loop did not finish"}
        iters = max(200_000, int(seconds * probe * 1e9 / (2 * lanes * 16 * threads)))
        best = max([probe] + [once(iters)[0] for _ in range(trials)])
    return {"gflops": best, "lanes": lanes, "flags": how, "threads": threads}


def sgemm_clean(threads, repeat=5):
    """{"gflops", "core"}: numpy sgemm 2048^3 in a child process without OPENBLAS_CORETYPE and
    OPENBLAS_L2_SIZE (so OpenBLAS picks its kernels for this CPU), on ``threads`` threads."""
    env = {k: v for k, v in os.environ.items() if k not in BLAS_ENV}
    env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = str(threads)
    try:
        r = subprocess.run([sys.executable, "-c", SGEMM_SCRIPT, str(repeat)], env=env,
                           capture_output=True, text=True, timeout=60, check=True)
        gflops, core = r.stdout.split()
        return {"gflops": float(gflops), "core": core, "threads": threads,
                "unset": [k for k in BLAS_ENV if k in os.environ]}
    except (subprocess.SubprocessError, ValueError) as e:
        return {"gflops": None, "why": str(e)}


def measure(threads):
    """Both ceilings; ``peak`` is what the bench divides by: the FMA peak, else the sgemm."""
    fma, gemm = fma_peak(threads), sgemm_clean(threads)
    peak = fma["gflops"] or gemm["gflops"] or float("nan")   # nan: "% of peak" reads nan
    return {"fma": fma, "sgemm": gemm, "peak_gflops": peak,
            "peak_from": "fma" if fma["gflops"] else "sgemm"}


def describe(c) -> str:
    fma, gemm = c["fma"], c["sgemm"]
    a = (f"FMA peak {fma['gflops']:.1f} GFLOP/s ({fma['lanes']}-lane FMA loop, {fma['flags']}, "
         f"{fma['threads']} threads)" if fma["gflops"]
         else f"FMA peak: not measured ({fma['why']})")
    b = (f"numpy sgemm 2048^3 {gemm['gflops']:.1f} GFLOP/s (OpenBLAS {gemm['core']}, "
         f"{' '.join(gemm['unset']) or 'no OPENBLAS_* override'} unset)" if gemm["gflops"]
         else f"sgemm: not measured ({gemm['why']})")
    share = (f" = {100 * gemm['gflops'] / fma['gflops']:.0f}% of peak"
             if fma["gflops"] and gemm["gflops"] else "")
    return f"ceiling: {a}; {b}{share}"


if __name__ == "__main__":
    import time
    t = time.perf_counter()
    print(describe(measure(int(sys.argv[1]) if len(sys.argv) > 1 else os.cpu_count())))
    print(f"({time.perf_counter() - t:.1f} s)")
