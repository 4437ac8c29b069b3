"""TE compute of a ConvTranspose spec, in stride-phase (polyphase) form.

Output index ``o`` on an axis reads the scatter result at ``f = o + pad_begin``. Only kernel taps
``t`` with ``t*d == f (mod s)`` reach ``f``; they form the progression ``t = t0(rho) + m*S'`` with
``rho = f mod s``, ``g = gcd(d, s)``, ``S' = s/g``, and read input ``j = f//s + e(rho) - m*d/g``.
So each output is a dense sum over ``m < ceil(k/S')`` sub-kernel taps: no multiply by an inserted
zero. Phases with fewer taps read zero-padded sub-kernel entries (at most ``S'-1`` of them a
phase: 0 when ``k`` divides by the stride).

Stages (block names, and each block's loop roles in ``Definition.roles``, are the contract with
``convt.schedules``: a schedule asks for a loop by role, never by position):

* ``pad``  ``Xp[n, j+pad_lo..., ci]``  input, zero-padded, channels innermost (both layouts)
* ``pack`` ``Wp[rho..., m..., ci_in_group, co]``  sub-kernels from the user's kernel layout, in
  a function of its own (``pack_prim_func``) run once for constant weights
* ``conv`` ``Y[n, q_0, r_0, ..., q_R, r_R, co]``  output ``o = q*s + r`` per axis, split into its
  phase ``r`` so that schedules can tile one phase (one sub-kernel) densely; the reduction runs
  over ``ci_in_group`` and ``m...``. Extents round up to whole phases: when ``s`` does not divide
  an output length the last ``q`` computes a few outputs the epilogue drops.
* ``epilogue``  ``out = activation(Y + bias)`` written in the spec's layout and dtype

Fused form (``fused=True``, when every axis has one ``AxisPlan.offset``): all phases of an
output pixel read the same inputs, so the phases join the channels: ``Y[n, q..., c]`` with
``c = (r..., co)`` flattened, and ``Wp[m..., ci_in_group, c]``. It is a stride-1 correlation
with ``prod(s) * C_out`` output channels: one input load feeds every phase (k2 s2 U-Net layers
become one GEMM) and few output channels still fill vectors (FCN's 21 x 64 phases).
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Tuple

from . import tvm_api as T
from .activations import FUSED
from .spec import ConvTransposeSpec

BLOCK_PAD, BLOCK_PACK, BLOCK_CONV, BLOCK_EPILOGUE = "pad", "pack", "conv", "epilogue"
ACC_DTYPE = "float32"


def _each(prefix, rank):
    return tuple(f"{prefix}{a}" for a in range(rank))


@dataclasses.dataclass(frozen=True)
class AxisPlan:
    """Phase arithmetic of one spatial axis (plain ints; ``expr`` methods build TE)."""

    in_len: int
    out_len: int
    k: int
    s: int
    d: int
    pad_begin: int
    cs: int = 1   # conv_strides: output o reads the stride-1 result at o*cs (s == 1 only)

    @property
    def g(self):
        return math.gcd(self.d, self.s)

    @property
    def sub_stride(self):  # S': tap step inside one phase
        return self.s // self.g

    @property
    def sub_dilation(self):  # input step between consecutive taps of one phase
        return self.d // self.g

    @property
    def taps(self):  # M: sub-kernel length
        return -(-self.k // self.sub_stride)

    def t0(self, rho):
        """First tap of phase ``rho`` or None when no tap reaches it."""
        if rho % self.g:
            return None
        S = self.sub_stride
        return ((rho // self.g) * pow(self.sub_dilation, -1, S)) % S if S > 1 else 0

    def e(self, rho):
        t0 = self.t0(rho)
        return 0 if t0 is None else (rho - t0 * self.d) // self.s

    @property
    def offset(self):
        """``E`` such that output ``o = q*s + r`` reads input ``q + E - m*d'`` in every phase
        ``r`` that has taps, or None when phases start at different inputs. With one ``E`` on
        every axis the phases can share each input load (``fused`` form below)."""
        found = {(r + self.pad_begin) // self.s + self.e((r + self.pad_begin) % self.s)
                 for r in range(self.s) if self.t0((r + self.pad_begin) % self.s) is not None}
        return found.pop() if len(found) == 1 else None

    def tap(self, rho, m):
        t0 = self.t0(rho)
        if t0 is None:
            return None
        t = t0 + m * self.sub_stride
        return t if t < self.k else None

    def _input_range(self):
        lo, hi = None, None
        first, last = self.pad_begin, self.pad_begin + (self.out_len - 1) * self.cs
        for rho in range(self.s):
            fmin = first + (rho - first) % self.s
            if fmin > last:
                continue
            fmax = last - (last - rho) % self.s
            base = self.e(rho)
            jmin = (fmin - rho) // self.s + base - (self.taps - 1) * self.sub_dilation
            jmax = (fmax - rho) // self.s + base
            lo = jmin if lo is None else min(lo, jmin)
            hi = jmax if hi is None else max(hi, jmax)
        return lo, hi

    @property
    def pad_lo(self):
        return max(0, -self._input_range()[0])

    @property
    def pad_hi(self):
        return max(0, self._input_range()[1] - (self.in_len - 1))

    # ---- TE expressions ----
    def _table(self, rho_expr, values):
        """values[rho] as an expression of rho (a select chain; constant-folds when uniform)."""
        if len(set(values)) == 1:
            return T.const(values[0], "int32")
        out = T.const(values[-1], "int32")
        for r in range(len(values) - 2, -1, -1):
            out = T.select(rho_expr == r, T.const(values[r], "int32"), out)
        return out

    def input_index(self, o, m):
        f = o * self.cs + self.pad_begin
        if self.s == 1:
            return f - m * self.d + self.pad_lo
        rho = T.floormod(f, self.s)
        e = self._table(rho, [self.e(r) for r in range(self.s)])
        return T.floordiv(f, self.s) + e - m * self.sub_dilation + self.pad_lo

    def phase(self, o):
        return T.floormod(o + self.pad_begin, self.s) if self.s > 1 else 0

    def tap_expr(self, rho, m):
        """(t, valid) for sub-kernel entry (rho, m) as TE expressions."""
        t0s = [self.t0(r) for r in range(self.s)]
        t0 = self._table(rho, [v if v is not None else 0 for v in t0s])
        t = t0 + m * self.sub_stride
        valid = t < self.k
        if any(v is None for v in t0s):
            valid = T.all_of(valid, self._table(rho, [int(v is not None) for v in t0s]) == 1)
        return t, valid


def phase_extents(spec: ConvTransposeSpec, q_align=None) -> Tuple[int, ...]:
    """Q per axis: whole phases covering the output, each rounded up to a multiple of
    ``q_align[axis]`` (a schedule's tiles and chunks: every split of the conv stage is exact, so
    no loop needs a bounds predicate that a later ``compute_at`` could drop)."""
    q_align = q_align or (1,) * spec.rank
    return tuple(_round_up(-(-o // s), a)
                 for o, s, a in zip(spec.out_spatial, spec.strides, q_align))


def _round_up(n, multiple):
    return -(-n // multiple) * multiple


def axis_plans(spec: ConvTransposeSpec, q_align=None) -> Tuple[AxisPlan, ...]:
    """Per-axis plans over the conv stage's (phase-rounded) output extent."""
    return tuple(AxisPlan(i, q * s, k, s, d, pb, c) for i, q, k, s, d, pb, c in zip(
        spec.in_spatial, phase_extents(spec, q_align), spec.kernel, spec.strides, spec.dilation,
        spec.pads_begin, spec.conv_strides))


def can_fuse(spec: ConvTransposeSpec) -> bool:
    """Whether the fused form applies: one input offset per axis for all phases."""
    return all(p.offset is not None for p in axis_plans(spec))


def fused_channels(spec: ConvTransposeSpec) -> int:
    return math.prod(spec.strides) * spec.out_channels


FORMS = ("phase", "fused", "gemm", "none")


@dataclasses.dataclass(frozen=True)
class WeightForm:
    """How the packed weights (and so the conv stage) are laid out.

    kind: ``phase`` (one sub-kernel per phase), ``fused`` (phases join the channels), ``gemm``
    (the scatter form's GEMM, ``gemm_spec``: channels ``(t..., co)``), ``none`` (an empty
    output: nothing to pack). co_block: output channels per packed panel (0: all). A schedule
    that walks the channels in blocks reads each block's panel as one contiguous run; with all
    channels inside, a power-of-two channel stride puts the panel's rows in a few L1 sets
    (Cout 256: 4 of 64) and they evict each other.
    """

    kind: str = "phase"
    co_block: int = 0

    def __post_init__(self):
        if self.kind not in FORMS:
            raise ValueError(f"weight form {self.kind!r} must be one of {FORMS}")

    def channels(self, spec) -> int:
        """Channels of the conv stage."""
        if self.kind == "gemm":
            return gemm_spec(spec).out_channels
        return fused_channels(spec) if self.kind == "fused" else spec.out_channels

    def block(self, spec) -> int:
        return self.co_block or self.channels(spec)


def packed_shape(spec: ConvTransposeSpec, form: WeightForm = WeightForm()) -> Tuple[int, ...]:
    """``(C/B, rho..., m..., C_in/groups, B)``: one dense sub-kernel per phase, in panels of
    ``B = form.block`` output channels; fused: ``(C'/B, m..., C_in/groups, B)`` over the
    ``C' = prod(s) * C_out`` channels ``(r..., co)``, ``r`` the phase of ``o = q*s + r``."""
    if form.kind == "none":
        return (0,)
    if form.kind == "gemm":
        return packed_shape(gemm_spec(spec), WeightForm(co_block=form.block(spec)))
    plans = axis_plans(spec)
    taps = tuple(p.taps for p in plans)
    B = form.block(spec)
    phases = () if form.kind == "fused" else tuple(p.s for p in plans)
    return (form.channels(spec) // B,) + phases + taps + (spec.in_channels // spec.groups, B)


def pack_roles(spec: ConvTransposeSpec, form: WeightForm) -> Tuple[str, ...]:
    """Loop roles of the ``pack`` block: panel, phases, taps, input channel, channel in panel."""
    if form.kind == "none":
        return ("c",)
    rank = 1 if form.kind == "gemm" else spec.rank
    phases = () if form.kind == "fused" else _each("rho", rank)
    return ("blk",) + phases + _each("m", rank) + ("ci", "c")


def unflatten(c, sizes):
    """Row-major digits of flat index ``c`` over ``sizes`` (TE expressions)."""
    out = []
    for size in reversed(sizes):
        out.append(T.floormod(c, size))
        c = T.floordiv(c, size)
    return out[::-1]


def pack_te(spec: ConvTransposeSpec, form: WeightForm = WeightForm()):
    """``(kernel, packed)``: the user's kernel rearranged into per-phase sub-kernels. A separate
    function so that constant weights are packed once (at load or at compile time), not per call."""
    R = spec.rank
    cin_g = spec.in_channels // spec.groups
    cout_g = spec.out_channels // spec.groups
    w = T.placeholder(spec.kernel_shape, spec.dtype, name="kernel")
    if form.kind == "none":   # nothing to pack: an empty buffer, no code on any device
        return w, T.compute((0,), lambda i: T.const(0, ACC_DTYPE), name=BLOCK_PACK)
    B = form.block(spec)
    plans = axis_plans(spec)

    def gemm_fn(blk, *idx):   # (1 (rho), 1 (m), rci, c) with c = (t..., co)
        *ts, co = unflatten(blk * B + idx[-1], list(spec.kernel) + [spec.out_channels])
        rci = idx[-2]
        src = w[(*ts, co, rci)] if spec.kernel_layout == "spatial_oi" else w[(rci, co, *ts)]
        return src.astype(ACC_DTYPE)

    if form.kind == "gemm":
        return w, T.compute(packed_shape(spec, form), gemm_fn, name=BLOCK_PACK)

    def pack_fn(blk, *idx):
        c = blk * B + idx[-1]
        if form.kind == "fused":   # (m..., rci, c) with c = (r..., co)
            ms, rci = idx[:R], idx[R]
            *rs, co = unflatten(c, [p.s for p in plans] + [spec.out_channels])
            rhos = [T.floormod(r + p.pad_begin, p.s) for r, p in zip(rs, plans)]
        else:
            rhos, ms, rci, co = idx[:R], idx[R:2 * R], idx[2 * R], c
        taps = [p.tap_expr(r, m) for p, r, m in zip(plans, rhos, ms)]
        ts = [t for t, _ in taps]
        valid = T.all_of(*[v for _, v in taps]) if R > 1 else taps[0][1]
        if spec.kernel_layout == "spatial_oi":
            src = w[(*ts, co, rci)]
        else:
            src = w[(T.floordiv(co, cout_g) * cin_g + rci, T.floormod(co, cout_g), *ts)]
        return T.if_then_else(valid, src.astype(ACC_DTYPE), T.const(0, ACC_DTYPE))

    return w, T.compute(packed_shape(spec, form), pack_fn, name=BLOCK_PACK)


@dataclasses.dataclass(frozen=True)
class Definition:
    """One compute variant of a spec, ready to schedule.

    ``inputs``: x, packed, then the spec's other parameters; ``out``: the epilogue.
    ``roles``: block name -> the role of each loop of the unscheduled block, outermost first:
    ``n`` batch; ``q<a>``/``r<a>`` phase row and phase of axis a (``o = q*s + r``); ``o<a>``
    output position; ``j<a>`` padded input position; ``co`` channel of the stage (fused: the
    joint ``(r..., co)``); ``ci`` input channel (within the group); ``m<a>`` sub-kernel tap.
    ``stage_spec``: the spec the pad and conv stages compute (the scatter form: ``gemm_spec``).
    """

    spec: ConvTransposeSpec
    form: WeightForm
    q_align: Tuple[int, ...]
    inputs: tuple
    out: object
    roles: dict
    stage_spec: ConvTransposeSpec

    def prim_func(self, unaligned_inputs=False):
        """The unscheduled PrimFunc ``main(x, packed, [bias], [alpha], out)``; with
        ``unaligned_inputs`` the caller's arrays (all but ``packed``) need element alignment."""
        callers = [t for t in self.inputs if t.name != "packed"] if unaligned_inputs else []
        return T.create_prim_func(list(self.inputs) + [self.out], unaligned=callers
                                  ).with_attr("global_symbol", "main")

    def pack_prim_func(self, unaligned_inputs=False):
        """The unscheduled PrimFunc ``pack(kernel, packed)``."""
        kernel, packed = pack_te(self.spec, self.form)
        return T.create_prim_func([kernel, packed], unaligned=[kernel] if unaligned_inputs
                                  else []).with_attr("global_symbol", "pack")

    @property
    def packed_shape(self):
        return packed_shape(self.spec, self.form)

    @property
    def pack_roles(self):
        return pack_roles(self.spec, self.form)


def _epilogue_roles(spec):
    os = _each("o", spec.rank)
    return ("n",) + os + ("co",) if spec.layout == "channels_last" else ("n", "co") + os


def _stage_roles(stage_spec, form):
    R = stage_spec.rank
    if form.kind == "fused":
        conv = ("n",) + _each("q", R) + ("co", "ci") + _each("m", R)
    else:
        conv = ("n",) + sum(((f"q{a}", f"r{a}") for a in range(R)), ()) + ("co", "ci") + \
            _each("m", R)
    return {BLOCK_PAD: ("n",) + _each("j", R) + ("ci",), BLOCK_CONV: conv}


def define(spec: ConvTransposeSpec, form: WeightForm = WeightForm(), q_align=None) -> Definition:
    """The compute of ``spec`` in weight form ``form``, the conv stage's phase extents rounded
    up to ``q_align`` per axis (``phase_extents``; the epilogue drops the extra outputs).

    x:      (N, *in_spatial, C_in) channels_last or (N, C_in, *in_spatial) channels_first
    packed: packed_shape(spec, form), float32: ``pack_te`` of the kernel
    bias:   (C_out,)
    alpha:  (C_out,) PRelu slope, when spec.activation == "prelu"
    out:    spec.output_shape(); N is a symbolic var when spec.batch is None
    """
    if form.kind == "none":
        return _empty_definition(spec)
    if form.kind == "gemm":
        return _gemm_definition(spec, form, q_align)
    q_align = tuple(q_align or (1,) * spec.rank)
    n = T.var("n") if spec.batch is None else spec.batch
    x = T.placeholder(spec.input_shape(n), spec.dtype, name="x")
    cl = spec.layout == "channels_last"
    plans = axis_plans(spec, q_align)
    xp = _pad_stage(spec, plans, x, n, lambda b, js, ci: (b, *js, ci) if cl else (b, ci, *js))
    wp, y = _conv_stage(spec, plans, xp, form, n, q_align)
    R = spec.rank
    params, finish = _epilogue_params(spec, n)

    def epi_fn(*idx):
        b, os, co = (idx[0], idx[1:R + 1], idx[R + 1]) if cl else (idx[0], idx[2:], idx[1])
        if form.kind == "fused":   # c = (r..., co) flattened, row-major
            c = co
            for a, (o, p) in enumerate(zip(os, plans)):
                c = c + T.floormod(o, p.s) * math.prod(spec.strides[a + 1:]) * spec.out_channels
            v = y[(b, *[T.floordiv(o, p.s) for o, p in zip(os, plans)], c)]
        else:
            qr = sum(((T.floordiv(o, p.s), T.floormod(o, p.s)) for o, p in zip(os, plans)), ())
            v = y[(b, *qr, co)]
        return finish(v, co, idx)

    out = T.compute(spec.output_shape(n), epi_fn, name=BLOCK_EPILOGUE)
    roles = {**_stage_roles(spec, form), BLOCK_EPILOGUE: _epilogue_roles(spec)}
    return Definition(spec, form, q_align, tuple([x, wp] + params), out, roles, spec)


def _empty_definition(spec):
    """An output with a zero-length axis (Keras returns one for some "same" layers): nothing to
    read, nothing to write; the signature stays the spec's."""
    n = T.var("n") if spec.batch is None else spec.batch
    x = T.placeholder(spec.input_shape(n), spec.dtype, name="x")
    wp = T.placeholder((0,), ACC_DTYPE, name="packed")
    params, _ = _epilogue_params(spec, n)
    out = T.compute(spec.output_shape(n), lambda *i: T.const(0, spec.dtype), name=BLOCK_EPILOGUE)
    return Definition(spec, WeightForm("none"), (1,) * spec.rank, tuple([x, wp] + params), out,
                      {BLOCK_EPILOGUE: _epilogue_roles(spec)}, spec)


def _pad_stage(spec, plans, x, n, source):
    """``Xp[n, j..., ci]``: ``x`` at ``source(b, j..., ci)`` (an index of x), zero outside."""
    R = spec.rank
    padded = (n,) + tuple(p.in_len + p.pad_lo + p.pad_hi for p in plans) + (spec.in_channels,)

    def pad_fn(b, *rest):
        js, ci = rest[:R], rest[R]
        src = [j - p.pad_lo for j, p in zip(js, plans)]
        inside = T.all_of(*[T.all_of(j >= 0, j < p.in_len) for j, p in zip(src, plans)])
        return T.if_then_else(inside, x[source(b, src, ci)].astype(ACC_DTYPE),
                              T.const(0, ACC_DTYPE))

    return T.compute(padded, pad_fn, name=BLOCK_PAD)


def _conv_stage(spec, plans, xp, form, n, q_align):
    """(packed placeholder, ``Y``): the phase-form or fused-form sums (module docstring)."""
    R = spec.rank
    cin_g = spec.in_channels // spec.groups
    cout_g = spec.out_channels // spec.groups
    wp = T.placeholder(packed_shape(spec, form), ACC_DTYPE, name="packed")
    B = form.block(spec)
    rci = T.reduce_axis((0, cin_g), name="rci")
    rms = [T.reduce_axis((0, p.taps), name=f"m{a}") for a, p in enumerate(plans)]

    def conv_fn(b, *rest):
        co = rest[2 * R]
        os = [q * p.s + r for q, r, p in zip(rest[0:2 * R:2], rest[1:2 * R:2], plans)]
        ci = rci if spec.groups == 1 else T.floordiv(co, cout_g) * cin_g + rci
        js = [p.input_index(o, m) for p, o, m in zip(plans, os, rms)]
        rhos = [p.phase(o) for p, o in zip(plans, os)]
        w = wp[(T.floordiv(co, B), *rhos, *rms, rci, T.floormod(co, B))]
        return T.te_sum(xp[(b, *js, ci)] * w, axis=[rci, *rms])

    def fused_fn(b, *rest):
        qs, c = rest[:R], rest[R]
        co = T.floormod(c, spec.out_channels)
        ci = rci if spec.groups == 1 else T.floordiv(co, cout_g) * cin_g + rci
        js = [q * p.cs + p.offset - m * p.sub_dilation + p.pad_lo
              for q, m, p in zip(qs, rms, plans)]
        w = wp[(T.floordiv(c, B), *rms, rci, T.floormod(c, B))]
        return T.te_sum(xp[(b, *js, ci)] * w, axis=[rci, *rms])

    qext = phase_extents(spec, q_align)
    if form.kind == "fused":
        return wp, T.compute((n,) + qext + (fused_channels(spec),), fused_fn, name=BLOCK_CONV)
    split = sum(((q, p.s) for q, p in zip(qext, plans)), ())
    return wp, T.compute((n,) + split + (spec.out_channels,), conv_fn, name=BLOCK_CONV)


def _epilogue_params(spec, n):
    """(bias/alpha/residual placeholders, ``finish(v, co, idx)``: bias, residual (at output
    index ``idx``), activation, output dtype); ``n``: the batch."""
    params, bias, alpha, residual = [], None, None, None
    if spec.bias:
        bias = T.placeholder((spec.out_channels,), spec.dtype, name="bias")
        params.append(bias)
    if spec.activation == "prelu":
        alpha = T.placeholder((spec.out_channels,), spec.dtype, name="alpha")
        params.append(alpha)
    if spec.residual:
        residual = T.placeholder(spec.output_shape(n), spec.dtype, name="residual")
        params.append(residual)

    def finish(v, co, idx):
        if bias is not None:
            v = v + bias[co].astype(ACC_DTYPE)
        if residual is not None:
            v = v + residual[tuple(idx)].astype(ACC_DTYPE)
        if spec.activation == "prelu":
            v = T.select(v >= T.const(0, ACC_DTYPE), v, v * alpha[co].astype(ACC_DTYPE))
        else:
            v = FUSED[spec.activation](T, v, *spec.activation_args)
        return v.astype(spec.dtype)

    return params, finish


def gemm_spec(spec: ConvTransposeSpec) -> ConvTransposeSpec:
    """The scatter form's GEMM as a spec of its own: the input pixels (one 1D axis; a static
    batch folds in, ``N * prod(in)`` long, so that a batch of 1x1 inputs still makes a tall
    matrix) times the ``prod(k) * C_out`` channels ``(t..., co)`` of the kernel: a 1x1 layer
    the phase-form stages compute unchanged. Groups 1 only."""
    folded = spec.batch is not None
    return ConvTransposeSpec(
        ((spec.batch if folded else 1) * math.prod(spec.in_spatial),), spec.in_channels,
        math.prod(spec.kernel) * spec.out_channels, (1,), (1,), (1,), (0,), (0,), (0,),
        batch=1 if folded else None, dtype=spec.dtype)


def _live_terms(p: AxisPlan, out_len):
    """The input pixels ``j`` (when there are fewer of them than taps per phase) or the phase
    taps ``m`` (else) of one axis that some output ``0 <= o < out_len`` reads (plain ints)."""
    def reads(o, i):
        f = o + p.pad_begin
        if p.in_len <= p.taps:
            num = f - i * p.s
            return 0 <= num <= (p.k - 1) * p.d and num % p.d == 0
        rho = f % p.s
        j = f // p.s + p.e(rho) - i * p.sub_dilation
        return p.tap(rho, i) is not None and 0 <= j < p.in_len

    count = p.in_len if p.in_len <= p.taps else p.taps
    return [i for i in range(count) if any(reads(o, i) for o in range(out_len))]


def _axis_terms(p: AxisPlan, o, out_len):
    """[(j, t, valid)] of the input pixels ``j`` and taps ``t`` that reach output ``o`` on one
    axis: over the ``in_len`` inputs when there are fewer of them than taps per phase, else over
    the ``taps`` of o's phase. ``j`` and ``t`` are clamped in range, so a load never strays.
    Only the live terms (``_live_terms``): under a condition that never holds, TVM's simplifier
    rewrites a clamped index into one outside the buffer."""
    f = o + p.pad_begin
    out = []
    if p.in_len <= p.taps:
        for j in _live_terms(p, out_len):
            num = f - j * p.s
            t = T.floordiv(num, p.d)
            valid = T.all_of(num >= 0, T.floormod(num, p.d) == 0, t < p.k)
            out.append((T.const(j, "int32"), T.tmax(T.tmin(t, p.k - 1), 0), valid))
        return out
    rho = T.floormod(f, p.s)
    for m in _live_terms(p, out_len):
        t, tap_ok = p.tap_expr(rho, m)
        j = p.input_index(o, m) - p.pad_lo
        valid = T.all_of(tap_ok, j >= 0, j < p.in_len)
        out.append((T.tmax(T.tmin(j, p.in_len - 1), 0), T.tmin(t, p.k - 1), valid))
    return out


def gather_reads_input(spec: ConvTransposeSpec) -> bool:
    """Whether some output of the scatter form reads ``P`` on every axis (else every output
    lies in padding past the full result, and the form has nothing to compute)."""
    return all(_live_terms(p, n) for p, n in zip(axis_plans(spec), spec.out_spatial))


def col2im_terms(spec: ConvTransposeSpec) -> int:
    """Terms the scatter form's epilogue sums per output."""
    return math.prod(min(p.in_len, p.taps) for p in axis_plans(spec))


def _gemm_definition(spec, form, q_align):
    """Scatter form: ``P[l, (t..., co)] = sum_ci x[l, ci] * W[t..., co, ci]`` over the input
    pixels ``l = (n, j...)`` (``(j...)`` per image when the batch is symbolic), then each
    output sums the ``P`` entries of the (j, t) pairs that reach it. No multiply of an inserted
    or padded zero: the form for small inputs under big kernels (DCGAN's 1x1 -> 4x4 first
    layer: 16x fewer multiplies than the phase form). ``q_align``: of the GEMM's pixel axis."""
    g = gemm_spec(spec)
    q_align = tuple(q_align or (1,))
    R = spec.rank
    cl = spec.layout == "channels_last"
    folded = spec.batch is not None
    n = spec.batch if folded else T.var("n")
    x = T.placeholder(spec.input_shape(n), spec.dtype, name="x")
    gplans = axis_plans(g, q_align)
    pixels = [spec.batch, *spec.in_spatial] if folded else list(spec.in_spatial)

    def source(b, js, ci):
        sp = unflatten(js[0], pixels)
        if folded:
            b, *sp = sp
        return (b, *sp, ci) if cl else (b, ci, *sp)

    gn = 1 if folded else n
    xp = _pad_stage(g, gplans, x, gn, source)
    wp, y = _conv_stage(g, gplans, xp, WeightForm(co_block=form.block(spec)), gn, q_align)
    params, finish = _epilogue_params(spec, n)
    plans = axis_plans(spec)

    def epi_fn(*idx):
        b, os, co = (idx[0], idx[1:R + 1], idx[R + 1]) if cl else (idx[0], idx[2:], idx[1])
        v = T.const(0, ACC_DTYPE)
        terms = [_axis_terms(p, o, n_out) for p, o, n_out in zip(plans, os, spec.out_spatial)]
        for combo in itertools.product(*terms):
            l, c = (b if folded else T.const(0, "int32")), T.const(0, "int32")
            for (j, t, _), p in zip(combo, plans):
                l, c = l * p.in_len + j, c * p.k + t
            term = y[(0 if folded else b, l, 0, c * spec.out_channels + co)]
            v = v + T.if_then_else(T.all_of(*[ok for _, _, ok in combo]), term,
                                   T.const(0, ACC_DTYPE))
        return finish(v, co, idx)

    out = T.compute(spec.output_shape(n), epi_fn, name=BLOCK_EPILOGUE)
    roles = {**_stage_roles(g, WeightForm()), BLOCK_EPILOGUE: _epilogue_roles(spec)}
    return Definition(spec, form, q_align, tuple([x, wp] + params), out, roles, g)
