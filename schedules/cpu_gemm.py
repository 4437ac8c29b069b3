"""LLVM CPU schedule of the scatter form (``compute.gemm_spec``): small inputs under big kernels.

The phase form multiplies the zero padding too: an output reads every tap of its phase, and
when the input is shorter than the kernel most of them fall outside it (DCGAN's first layer,
1x1 -> 4x4: 15 of 16). The scatter form computes ``P = x . W`` over the real input pixels only,
with the register tile of ``cpu_tile`` (the batch folded into the pixels, so a batch of 1x1
inputs still makes a tall matrix), then a parallel pass sums the few (j, t) entries of ``P``
that reach each output.
"""
from __future__ import annotations

import math

from convt.compiler import compute as C
from convt.compiler import tvm_api as T

from .cpu_tile import (finish_tile, form_of, propose_tile, schedule_pad, serial_dim, tile_conv,
                       tile_dims)
from .rule import Rule
from .space import Space
from .steps import parallel, vectorize_tail

MAX_TERMS = 64    # P entries one output may sum (each a load and a select in the epilogue)
_GOOD_TERMS = 16  # ... and the most the default choice lets it sum
_TRANSPOSE_MIN_VECS = 8   # GEMM channel vectors that pay for a channels-first input's transpose
_MIN_ROWS = 16   # GEMM rows of one image when the batch is symbolic (cannot fold into them)
_MAX_P_BYTES = 256 << 20   # P is a workspace of every call: no gigabytes for a big batch
_CACHED_P_BYTES = 2 << 20   # a P that stays in cache (the long-reduction case of ``passes_over``)
# in_channels x (waste - 1): wasted multiplies per P entry that pay for writing and gathering
# it, at 8 lanes (AVX2); a 16-lane FMA costs half as much against the same memory traffic
_MIN_SAVED = 48
_SMALL_IMAGE = 64   # input pixels of an image whose phase rows are too short to tile well
_ROW_BLOCK = 16   # channels-first outputs along the last axis gathered for every channel


def waste(spec) -> float:
    """Multiplies of the phase form per useful multiply (1.0: none wasted)."""
    plans = C.axis_plans(spec)
    done = math.prod(p.out_len * p.taps for p in plans)
    return done / math.prod(i * k for i, k in zip(spec.in_spatial, spec.kernel))


def _p_ratio(spec) -> float:
    """Size of ``P`` per output element."""
    return (math.prod(spec.in_spatial) * math.prod(spec.kernel)) / math.prod(spec.out_spatial)


def _p_bytes(spec) -> int:
    return 4 * math.prod(spec.kernel) * spec.out_channels * (spec.batch or 1) * \
        math.prod(spec.in_spatial)


class ScatterGemm(Rule):
    """GEMM over the input pixels, then a gather of the taps (col2im)."""

    def __init__(self, name):
        self.name = name

    def decline(self, spec, info):
        if spec.groups != 1:
            return f"groups {spec.groups}: the scatter form is one GEMM (groups 1)"
        if any(c != 1 for c in spec.conv_strides):
            return f"conv_strides {spec.conv_strides}: it reads the input at stride 1"
        if not spec.is_empty and C.col2im_terms(spec) > MAX_TERMS:
            return (f"each output would sum {C.col2im_terms(spec)} entries of P (at most "
                    f"{MAX_TERMS})")
        if not spec.is_empty and _p_bytes(spec) > _MAX_P_BYTES:
            return f"P would take {_p_bytes(spec) >> 20} MB (at most {_MAX_P_BYTES >> 20} MB)"
        if not spec.is_empty and not C.gather_reads_input(spec):
            return "every output lies in padding past the full result: no input reaches it"
        return super().decline(spec, info)

    def passes_over(self, spec, info):
        """Measured against the phase or width form (``tools/bench_rules.py`` on the two suites,
        AVX-512 and AVX2 side by side), the default takes the scatter form for:

        * wasted multiplies of the phase form that outweigh writing and gathering ``P``:
          ``in_channels * (waste - 1)`` at least ``48 * lanes / 8``, twice that for
          channels-first (its input transpose and row gather cost more). ERFNet (128 in, 1.78x
          waste, 99 saved per entry): NHWC scatter 12.6 vs phase 18.5 ms at 8 lanes, 10.3 vs
          10.7 at 16; NCHW 17.3 vs 19.9 at 8 lanes, 13.2 vs 10.8 at 16 (left to the phase
          form there). WaveGAN b64 (512 in, 1.12x, 61): NHWC 231 vs 256 ms at 8 lanes, 161 vs
          156 at 16; NCHW 278 vs 265 at 8 lanes;
        * small images with waste (at most ``_SMALL_IMAGE`` input pixels, 1.25x): their phase
          rows are too short to tile. Keras' autoencoder, 7x7 b128, 64 in: NCHW 2.0 vs 2.6 ms
          at 16 lanes, 4.0 vs 5.0 at 8; the VAE decoder 0.052 vs 0.071;
        * phase-form channels (joined with the phases where they join) that fill one vector at
          most, with ``P`` within twice the output: Conv-TasNet's decoder, 512 -> 1 channel,
          k16 s8 (16 GEMM channels, one 16-lane vector): NHWC 2.8 vs 30.9 ms (width rule) at 16
          lanes, 2.8 vs 4.6 (phase) at 8;
        * a long reduction, overlapping taps and a ``P`` that stays in cache: the one big GEMM
          tiles better than four small phases of a few pixels (DCGAN's 4x4 -> 8x8, 512 in,
          batch 8: 3.1 vs 3.8 ms at 16 lanes; SimpleBaselines' 8x6, 2048 in: 5.5 vs 6.9; k = s
          has nothing to gain: Mask R-CNN 0.74 vs 0.60);
        * few output channels (the width rule's), ``P`` within 4x the output, channels-last, or
          channels-first with a reduction of 8 vectors at least (the transpose and row gather
          amortised): pix2pix's outermost, 128 in, 3 out: NCHW 1.66 vs 2.15 ms (width) at 16
          lanes, 2.7 vs 3.3 at 8; DCGAN's last layer b64, 64 in: NCHW 4.6 vs 7.5 at 8 lanes,
          9.4 vs 5.4 at 16 (left to the width rule there).
        """
        lanes = info.f32_lanes
        wide = math.prod(spec.kernel) * spec.out_channels
        rows = (spec.batch or 1) * math.prod(spec.in_spatial)
        first = spec.layout == "channels_first"
        if wide % lanes:
            return f"its {wide} GEMM channels leave a {lanes}-lane vector ragged"
        if spec.batch is None and rows < _MIN_ROWS:
            return f"one image has {rows} pixels (GEMM rows), under {_MIN_ROWS}"
        if C.col2im_terms(spec) > _GOOD_TERMS:
            return f"each output sums {C.col2im_terms(spec)} entries of P, over {_GOOD_TERMS}"
        saved = spec.in_channels * (waste(spec) - 1)
        if saved >= _MIN_SAVED * lanes / 8 * (2 if first else 1):
            return None
        if math.prod(spec.in_spatial) <= _SMALL_IMAGE and waste(spec) >= 1.25:
            return None
        if spec.in_channels < 32:
            return "the phase form wastes little and the reduction is short"
        if (spec.in_channels >= 256 and C.col2im_terms(spec) > 1
                and _p_bytes(spec) <= _CACHED_P_BYTES):
            return None
        chans = C.fused_channels(spec) if C.can_fuse(spec) else spec.out_channels
        if chans <= lanes and _p_ratio(spec) <= 2:
            return None
        if (spec.out_channels % lanes != 0 and _p_ratio(spec) <= 4
                and (not first or spec.in_channels >= 8 * lanes)):
            return None
        return "the phase form wastes too little to pay for P"

    def space(self, spec, info):
        return Space(self.name, tile_dims(C.gemm_spec(spec), info, fused_choices=(0,))
                     + [serial_dim()])

    def propose(self, spec, info):
        return propose_tile(C.gemm_spec(spec), info, 0)

    def definition(self, spec, info, values):
        form = form_of(values)
        return C.define(spec, C.WeightForm("gemm", form.co_block),
                        (values["tile_w"] * values["chunk"],))

    def schedule(self, sch, d, info, values):
        """The input: read in place when channels-last, one pixel per image, or when the GEMM
        has few channels (a transpose would cost as much as the GEMM: Conv-TasNet's decoder, 16
        channels, 8.4 against 3.2 ms in place); else channels-first pixels are transposed first
        (ERFNet, 576 channels, 12.1 against 13.6 ms). The gather: for channels-first, a block
        of one output row for every channel, so that the ``P`` rows it reads stay in cache
        while the channels go by."""
        spec = d.spec
        serial = values["serial"]
        lanes = values["lanes"]
        few = d.stage_spec.out_channels < _TRANSPOSE_MIN_VECS * lanes
        if spec.layout == "channels_last" or math.prod(spec.in_spatial) == 1 or few:
            sch.compute_inline(T.get_block(sch, C.BLOCK_PAD))
        else:
            schedule_pad(sch, d, serial)
        tile = tile_conv(sch, d, values)
        parallel(sch, tile.outer, serial)
        finish_tile(sch, tile, values)
        epi = T.get_block(sch, C.BLOCK_EPILOGUE)
        loops = sch.get_loops(epi)
        if spec.layout == "channels_last":   # [n, o..., co]
            if spec.out_channels % lanes == 0:
                vectorize_tail(sch, loops[-1], lanes)
            parallel(sch, loops[:2], serial)
        else:                                # [n, co, o...] -> [n, o..., w blocks, co, w]
            n, co, *os = loops
            w_o, w_i = sch.split(os[-1], [None, _ROW_BLOCK])   # a leaf: ragged is safe
            sch.reorder(n, *os[:-1], w_o, co, w_i)
            parallel(sch, [n, (os[:-1] or [w_o])[0]], serial)
