"""Guarded calls: every buffer the caller passes a kernel sits between two canary zones.

A kernel that writes past one of its buffers corrupts whatever lies there, silently or with a
heap abort much later; valgrind cannot run AVX-512 code (LLVM then emits AVX2 and the bug
hides). Here each input, the packed weights and the output live inside a larger allocation
whose margins hold a NaN bit pattern; after each call the margins and the inputs are compared
with what they were. The output starts as the same pattern, so an output element the kernel
never wrote shows up too. Runtime only (``tvm.runtime`` and ``tvm_ffi``), like the loader.

    from convt.guard import guarded_call
    y, faults = guarded_call(kernel_lib, entry, {"x": x, "kernel": w})
"""
from __future__ import annotations

import numpy as np

CANARY = np.uint32(0x7FC0DEAD)   # a quiet NaN no float computation produces
MARGIN = 4096                    # bytes of canary before and after each buffer
ALIGN = 64                       # what TVM's kernels assume of buffers not declared otherwise


class _Zone:
    """``shape``/``dtype`` storage inside canary margins, its data ``offset`` bytes past a
    64-byte boundary (inputs declared element-aligned are tried misaligned too)."""

    def __init__(self, name, shape, dtype, offset=0):
        self.name = name
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        raw = np.empty(2 * MARGIN + nbytes + 2 * ALIGN, np.uint8)
        start = (-raw.ctypes.data) % ALIGN + MARGIN + offset
        self.raw = raw
        self.lo, self.hi = start, start + nbytes
        self._fill(0, len(raw))
        self.array = raw[self.lo:self.hi].view(dtype).reshape(shape)
        self.margins = (raw[:self.lo].copy(), raw[self.hi:].copy())

    def _fill(self, begin, end):
        pattern = np.full(-(-(end - begin) // 4), CANARY, np.uint32).view(np.uint8)
        self.raw[begin:end] = pattern[:end - begin]

    def faults(self):
        """Where the margins changed: ``[(name, side, first byte, last byte)]``."""
        out = []
        for side, now, was in (("before", self.raw[:self.lo], self.margins[0]),
                               ("after", self.raw[self.hi:], self.margins[1])):
            bad = np.flatnonzero(now != was)
            if bad.size:
                first, last = int(bad[0]), int(bad[-1])
                if side == "before":
                    first, last = first - self.lo, last - self.lo
                out.append((self.name, side, first, last))
        return out


def _tensor(array):
    if array.size == 0:   # numpy's strides of an empty array are not TVM's compact ones
        import tvm
        return tvm.runtime.empty(array.shape, str(array.dtype), tvm.cpu(0))
    import tvm_ffi
    return tvm_ffi.from_dlpack(array, require_alignment=array.dtype.itemsize,
                               require_contiguous=True)


def guarded_call(lib, entry, inputs: dict, misalign=True):
    """Run an artifact kernel entry's ``pack`` then ``main`` on guarded copies of ``inputs``.

    lib: the kernel's runtime module; entry: its manifest entry (``signature``, ``args``,
    ``packed_shape``); inputs: every input by name (``x``, ``kernel``, [``bias``], [``alpha``]).
    Returns ``(output copy, faults)``; faults lists each buffer margin that changed and each
    input the kernel modified, empty when the call stayed in bounds.
    """
    sig = {i["name"]: i for i in entry["signature"]["inputs"]}
    zones, faults = {}, []
    for name, value in inputs.items():
        value = np.ascontiguousarray(value, dtype=sig[name]["dtype"])
        elementwise = sig[name].get("align", ALIGN) < ALIGN
        offset = value.dtype.itemsize if misalign and elementwise else 0
        zone = _Zone(name, value.shape, value.dtype, offset)
        zone.array[...] = value
        zones[name] = zone
    batch = zones["x"].array.shape[0]
    out_sig = entry["signature"]["outputs"][0]
    out_shape = tuple(batch if d is None else int(d) for d in out_sig["shape"])
    out = _Zone("output", out_shape, out_sig["dtype"])
    packed = _Zone("packed", tuple(entry["packed_shape"]), "float32")
    originals = {k: z.array.copy() for k, z in zones.items()}

    lib["pack"](_tensor(zones["kernel"].array), _tensor(packed.array))
    call = [packed.array if a == "kernel" else zones[a].array for a in entry["args"]]
    lib["main"](*[_tensor(a) for a in call], _tensor(out.array))

    for zone in (*zones.values(), packed, out):
        faults += [f"{n}: bytes {a}..{b} {side} the buffer were written"
                   for n, side, a, b in zone.faults()]
    for name, was in originals.items():
        if not np.array_equal(zones[name].array.view(np.uint8), was.view(np.uint8)):
            faults.append(f"{name}: the kernel modified this input")
    return out.array.copy(), faults
