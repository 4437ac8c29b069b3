"""LLVM CPU schedule of the scatter form (``compute.gemm_spec``): small inputs under big kernels.

The phase form multiplies the zero padding too: an output reads every tap of its phase, and
when the input is shorter than the kernel most of them fall outside it (DCGAN's first layer,
1x1 -> 4x4: 15 of 16). The scatter form computes ``P = x . W`` over the real input pixels only,
with the register-tile GEMM of ``cpu`` (the batch folded into the pixels, so a batch of 1x1
inputs still makes a tall matrix), then a parallel pass sums the few (j, t) entries of ``P``
that reach each output.
"""
from __future__ import annotations

import dataclasses
import math

from convt.compiler import compute as C
from convt.compiler import tvm_api as T

from .cpu import cpu_compute_args, cpu_knobs, schedule_cpu, schedule_pad

_MAX_TERMS = 16   # P entries one output sums (each a load and a select in the epilogue)
_TRANSPOSE_MIN_VECS = 8   # GEMM channel vectors that pay for a channels-first input's transpose
_MIN_ROWS = 16   # GEMM rows of one image when the batch is symbolic (cannot fold into them)
_MAX_P_BYTES = 256 << 20   # P is a workspace of every call: no gigabytes for a big batch
_CACHED_P_BYTES = 2 << 20   # a P that stays in cache (the long-reduction case of ``applies``)
_MIN_SAVED = 48   # in_channels x (waste - 1): wasted multiplies per output that pay for P


def waste(spec) -> float:
    """Multiplies of the phase form per useful multiply (1.0: none wasted)."""
    plans = C.axis_plans(spec)
    done = math.prod(p.out_len * p.taps for p in plans)
    return done / math.prod(i * k for i, k in zip(spec.in_spatial, spec.kernel))


def _p_ratio(spec) -> float:
    """Size of ``P`` per output element."""
    return (math.prod(spec.in_spatial) * math.prod(spec.kernel)) / math.prod(spec.out_spatial)


def applies(spec, info) -> bool:
    """Groups 1, a tile's worth of GEMM rows when the batch is symbolic, few terms per output,
    the GEMM's ``prod(k) * C_out`` channels
    in whole vectors, ``P`` within ``_MAX_P_BYTES``, and one of (measured against the phase
    or width form):

    * the phase form's wasted multiplies outweigh writing and gathering ``P``: NHWC, Keras'
      k3 s2 autoencoder layer, 64 channels in, 1.78x waste: 3.5 -> 1.8 ms; ERFNet, 128 in:
      13.6 -> 9.7 ms; a 3D k3 s2 decoder, 32 in, 2.37x waste: 16.6 against 17.4 ms, left alone;
    * the phase form's channels (joined with the phases where they join) fill one vector at
      most and ``P`` stays within twice the output: Conv-TasNet's decoder, 512 -> 1 channel,
      k16 s8: 10.5 -> 3.0 ms, the one-vector tile waits on its loads;
    * a long reduction, overlapping taps and a ``P`` that stays in cache: the one big GEMM
      tiles better than four small phases of a few pixels (DCGAN's 4x4 -> 8x8, 512 in, batch
      8: 4.56 -> 4.08 ms NCHW; SimpleBaselines' 8x6, 2048 in: 6.55 -> 6.21; with a 4 MB ``P``,
      HiFi-GAN up0 7.8 against 8.5, left alone; k = s has nothing to gain, Mask R-CNN 0.76
      against 0.93);
    * the width rule's few output channels, channels-last, ``P`` within 4x the output:
      pix2pix's outermost layer, 3 channels out, k4 s2: 2.9 -> 1.5 ms. Channels-first stays in
      the width rule: 2.9 against 3.9 ms, its input transpose and row gather cost more.
    """
    lanes = info.f32_lanes
    wide = math.prod(spec.kernel) * spec.out_channels
    rows = (spec.batch or 1) * math.prod(spec.in_spatial)
    per_image = spec.batch is None and rows < _MIN_ROWS
    if (spec.groups != 1 or wide % lanes or wide < 2 * lanes or per_image
            or C.col2im_terms(spec) > _MAX_TERMS or 4 * wide * rows > _MAX_P_BYTES):
        return False
    if spec.in_channels * (waste(spec) - 1) >= _MIN_SAVED:
        return True
    if spec.in_channels < 32:
        return False
    if (spec.in_channels >= 256 and C.col2im_terms(spec) > 1
            and 4 * wide * rows <= _CACHED_P_BYTES):
        return True
    channels = C.fused_channels(spec) if C.can_fuse(spec) else spec.out_channels
    if channels <= lanes and _p_ratio(spec) <= 2:
        return True
    return (spec.layout == "channels_last" and spec.out_channels % lanes != 0
            and _p_ratio(spec) <= 4)


def gemm_knobs(spec, info):
    return cpu_knobs(C.gemm_spec(spec), info)


def gemm_compute_args(spec, values):
    args = cpu_compute_args(C.gemm_spec(spec), values)
    args["form"] = dataclasses.replace(args["form"], gemm=True)
    return args


_ROW_BLOCK = 16   # channels-first outputs along the last axis gathered for every channel


def schedule_gemm(sch, spec, values):
    """The input: read in place when channels-last, one pixel per image, or when the GEMM has
    few channels (a transpose would cost as much as the GEMM: Conv-TasNet's decoder, 16
    channels, 8.4 against 3.2 ms in place); else channels-first pixels are transposed first
    (``cpu.schedule_pad``: ERFNet, 576 channels, 12.1 against 13.6 ms). The gather: for
    channels-first, a block of one output row for every channel, so that the ``P`` rows it
    reads stay in cache while the channels go by."""
    serial = values.get("threads", 0) == 1
    pad = T.get_block(sch, C.BLOCK_PAD)
    few = C.gemm_spec(spec).out_channels < _TRANSPOSE_MIN_VECS * values["lanes"]
    if spec.layout == "channels_last" or math.prod(spec.in_spatial) == 1 or few:
        sch.compute_inline(pad)
    else:
        schedule_pad(sch, spec, serial)
    schedule_cpu(sch, C.gemm_spec(spec), values, scatter=True)
    epi = T.get_block(sch, C.BLOCK_EPILOGUE)
    loops = sch.get_loops(epi)
    lanes = values["lanes"]
    if spec.layout == "channels_last":   # [n, o..., co]
        if spec.out_channels % lanes == 0 and lanes > 1:
            sch.vectorize(sch.split(loops[-1], [None, lanes])[1])
        outer = loops[:2]
    else:                                # [n, co, o...] -> [n, o..., w blocks, co, w]
        n, co, *os = loops
        w_o, w_i = sch.split(os[-1], [None, _ROW_BLOCK])
        sch.reorder(n, *os[:-1], w_o, co, w_i)
        outer = [n, (os[:-1] or [w_o])[0]]
    if not serial:
        sch.parallel(sch.fuse(*outer))
    return sch
