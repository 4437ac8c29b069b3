"""The measured paths of each x86 rule, forced by name, against the float64 oracle on guarded
buffers: the output-channel register tile (parallel over rows or over channel blocks,
channels_first's per-chunk write, reduction blocks, per-task padding, the fused form), the
width-vector rule (with and without a ragged last tile), the scatter form (GEMM then gather)
on every grid geometry, and the default choice where each form pays. The knob values were
set for 8-lane vectors: the paths run on an AVX2 target (which every x86 host here runs);
``test_rules`` checks every rule on the AVX-512 descriptions."""
import pytest
from conftest import assert_close, run_spec, runs_here
from test_grid import GEOMETRY

from convt import schedules
from convt.compiler.spec import ConvTransposeSpec
from convt.compiler.targets import resolve


def _spec(in_spatial, cin, cout, k, s, layout, groups=1, pads=None, op=None, bias=True):
    r = len(in_spatial)
    pb, pe = pads if pads else ((0,) * r, (0,) * r)
    return ConvTransposeSpec(in_spatial, cin, cout, (k,) * r, (s,) * r, (1,) * r, pb, pe,
                             op or (0,) * r, groups=groups, bias=bias, layout=layout,
                             kernel_layout="io_spatial", activation="relu")


LAYOUTS = ["channels_last", "channels_first"]
AVX2 = {"kind": "llvm", "mcpu": "haswell", "num-cores": 2}
GEMM, TILE, WIDTH = "x86.scatter_gemm", "x86.register_tile", "x86.width_vector"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", [
    # (in_spatial, cin, cout, k, s, groups, pads, output_padding, knobs)
    ((5, 6), 8, 16, 4, 2, 1, ((1, 1), (1, 1)), None, {"par_co": 0}),
    ((5, 6), 8, 16, 4, 2, 1, ((1, 1), (1, 1)), None, {"par_co": 1}),
    ((4, 5), 16, 24, 3, 2, 1, ((1, 1), (0, 0)), (1, 1), {"co_vecs": 3, "tile_w": 2}),
    ((7, 3), 16, 16, 4, 2, 16, ((1, 1), (1, 1)), None, {}),      # depthwise
    ((9,), 8, 16, 16, 8, 1, ((4,), (4,)), None, {"chunk": 2}),    # long 1D kernel
    ((3, 4, 2), 8, 8, 2, 2, 1, None, None, {"unroll_k": 2}),     # 3D
    # rows x width register tile, ragged along both; reduction blocks (GEMM kc) both ways
    ((5, 7), 8, 16, 4, 2, 1, ((1, 1), (1, 1)), None, {"tile_h": 2, "tile_w": 3, "par_co": 0}),
    ((5, 6), 32, 16, 4, 2, 1, ((1, 1), (1, 1)), None, {"k_blocks": 4, "par_co": 0}),
    ((5, 6), 32, 16, 4, 2, 1, ((1, 1), (1, 1)), None,
     {"k_blocks": 2, "par_co": 1, "tile_h": 2, "tile_w": 2}),
    ((3, 4, 2), 16, 8, 2, 2, 1, None, None, {"k_blocks": 2, "tile_h": 3}),
    ((11,), 8, 16, 4, 2, 1, ((1,), (1,)), None, {"tile_w": 5, "chunk": 2}),  # 1D padded tile
    ((11,), 16, 16, 4, 2, 1, ((1,), (1,)), None, {"tile_w": 3, "k_blocks": 2, "par_co": 1}),
    # fused form (phases join the channels): FCN-like by default (21 channels, ragged width),
    # k2 s2 as one GEMM, 3D, 1D, depthwise, channel blocks with reduction blocks
    ((4, 9), 5, 21, 16, 8, 1, None, None, {}),
    ((4, 9), 5, 21, 16, 8, 1, None, None, {"tile_h": 2, "tile_w": 3}),
    ((6, 5), 8, 16, 2, 2, 1, None, None, {"fused": 1, "par_co": 1, "k_blocks": 2}),
    ((3, 4, 2), 16, 8, 2, 2, 1, None, None, {"fused": 1, "k_blocks": 2}),
    ((9,), 8, 16, 16, 8, 1, None, None, {"fused": 1, "chunk": 2}),
    ((7, 3), 16, 16, 2, 2, 16, None, None, {"fused": 1}),
    ((5, 6), 8, 16, 4, 2, 1, ((2, 2), (2, 2)), None, {"fused": 1, "par_co": 0}),
    # channels-first rows written in lanes x lanes squares (2D, 1D, depthwise)
    ((5, 4), 8, 16, 4, 2, 1, ((1, 1), (1, 1)), None, {"par_co": 0}),
    ((16,), 16, 16, 4, 2, 1, ((1,), (1,)), None, {"par_co": 0, "tile_w": 4, "chunk": 2}),
    ((5, 4), 16, 16, 3, 2, 16, ((1, 1), (0, 0)), (1, 1), {"par_co": 0}),
    # each parallel task pads the input rows it reads (2D with a ragged tile, 1D, 3D, fused)
    ((5, 7), 8, 16, 4, 2, 1, ((1, 1), (1, 1)), None,
     {"pad_at": 1, "par_co": 0, "tile_h": 2, "tile_w": 3, "chunk": 2}),
    ((11,), 16, 16, 4, 2, 1, ((1,), (1,)), None, {"pad_at": 1, "par_co": 0, "chunk": 2}),
    ((3, 4, 2), 16, 8, 2, 2, 1, None, None, {"pad_at": 1, "par_co": 0, "k_blocks": 2}),
    ((6, 5), 8, 16, 2, 2, 1, None, None, {"pad_at": 1, "par_co": 0, "fused": 1}),
], ids=lambda c: f"{c[0]}x{c[1]}-{c[2]}k{c[3]}s{c[4]}g{c[5]}-{c[8]}")
def test_channel_tile_paths(case, layout, rng):
    in_sp, cin, cout, k, s, g, pads, op, knobs = case
    spec = _spec(in_sp, cin, cout, k, s, layout, g, pads, op)
    y, ref, kernel = run_spec(spec, rng, knobs={"rule": TILE, **knobs}, target=AVX2)
    assert {k.name: k.value for k in kernel.knobs}.items() >= knobs.items()
    assert_close(y, ref)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", [
    # (in_spatial, cin, cout, k, s, pads, output_padding): FSRCNN- and pix2pix-like
    ((6, 16), 7, 1, 9, 2, ((4, 4), (4, 4)), (1, 1)),
    ((5, 12), 8, 3, 4, 2, ((1, 1), (1, 1)), None),
    ((40,), 6, 2, 5, 3, ((2,), (1,)), (1,)),        # 1D
], ids=lambda c: f"{c[0]}-{c[2]}k{c[3]}s{c[4]}")
def test_width_vector_paths(case, layout, rng):
    in_sp, cin, cout, k, s, pads, op = case
    spec = _spec(in_sp, cin, cout, k, s, layout, 1, pads, op)
    y, ref, kernel = run_spec(spec, rng, knobs={"rule": WIDTH}, target=AVX2)
    assert_close(y, ref)


@pytest.mark.parametrize("layout,kernel_layout", [("channels_last", "spatial_oi"),
                                                  ("channels_first", "io_spatial")])
@pytest.mark.parametrize("cin,cout,knobs", [(96, 8, {}), (96, 24, {}), (96, 16, {"par_co": 1}),
                                            (96, 16, {"tile_w": 3, "k_blocks": 2})])
@pytest.mark.parametrize("geom", [g for g in GEOMETRY if max(g[1]) < 16],
                         ids=lambda g: f"k{g[1]}s{g[2]}d{g[3]}")
def test_scatter_gemm_paths(geom, cin, cout, knobs, layout, kernel_layout, rng):
    """Every geometry of the grid (odd, asymmetric pads, output padding, kernel < stride,
    dilation, 3D) in the scatter form, static batch 3: both input reads (in place, transposed)
    and both gathers (channels-last vectors, channels-first row blocks)."""
    in_sp, k, s, d, pb, pe, op = geom
    spec = ConvTransposeSpec(in_sp, cin, cout, k, s, d, pb, pe, op, batch=3, layout=layout,
                             kernel_layout=kernel_layout, bias=True, activation="relu")
    y, ref, kernel = run_spec(spec, rng, batch=3, knobs={"rule": GEMM, **knobs}, target=AVX2)
    assert_close(y, ref)


AVX512 = {"kind": "llvm", "mcpu": "skylake-avx512", "num-cores": 2}


@pytest.mark.parametrize("target", [AVX2, AVX512], ids=["8_lanes", "16_lanes"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("in_sp,cin,cout,k,s,pads,batch,rules", [
    # DCGAN's first layer: 1x1 -> 4x4, 15 of 16 taps wasted; with a symbolic batch one GEMM
    # row per image, which the phase form keeps
    ((1, 1), 24, 32, 4, 1, None, 5, {"channels_last": (GEMM, TILE),
                                       "channels_first": (GEMM, TILE)}),
    # Conv-TasNet's decoder: one output channel, k = 2s (16 GEMM channels: one 16-lane vector)
    ((37,), 32, 1, 16, 8, None, 2, {"channels_last": (GEMM, GEMM),
                                     "channels_first": (GEMM, GEMM)}),
    # pix2pix's outermost layer: 3 channels out; channels-first with a short reduction stays
    # in the width rule
    ((6, 20), 32, 3, 4, 2, ((1, 1), (1, 1)), 2, {"channels_last": (GEMM, GEMM),
                                                  "channels_first": (WIDTH, WIDTH)}),
], ids=["dcgan_first", "tasnet_decoder", "pix2pix_outermost"])
def test_scatter_gemm_is_chosen_where_it_pays(in_sp, cin, cout, k, s, pads, batch, rules,
                                              layout, target, rng):
    """(static batch, symbolic batch) rules on both vector widths, and the values of both."""
    if not runs_here(target):
        pytest.skip("this host lacks the target's CPU features")
    spec = _spec(in_sp, cin, cout, k, s, layout, pads=pads)
    for fixed, rule in zip((batch, None), rules[layout]):
        y, ref, kernel = run_spec(spec.replace(batch=fixed), rng, batch=batch, target=target)
        assert kernel.rule == rule
        assert_close(y, ref)


@pytest.mark.parametrize("layout,picks", [("channels_last", (GEMM, GEMM)),
                                          ("channels_first", (GEMM, TILE))])
def test_waste_threshold_scales_with_the_vector_width(layout, picks):
    """ERFNet-like k3 s2, 128 channels in: the scatter form saves 100 multiplies per P entry,
    enough at 8 lanes, and enough at 16 only where the input is read in place (measured on
    ERFNet: NCHW 17.3 vs 19.9 ms at 8 lanes, 13.2 vs 10.8 at 16)."""
    spec = _spec((10, 12), 128, 16, 3, 2, layout, pads=((1, 1), (1, 1)), op=(1, 1))
    for target, rule in zip((AVX2, AVX512), picks):
        assert schedules.pick(spec, schedules.describe(resolve(target))).name == rule


def test_avx2_only_target_is_vectorized_and_exact(rng):
    """A haswell target (AVX2, no AVX-512) keeps 8-lane FMA code."""
    for cout in (16, 3):   # both rules
        spec = _spec((4, 9), 16, cout, 4, 2, "channels_last", pads=((1, 1), (1, 1)))
        y, ref, kernel = run_spec(spec, rng, target={"kind": "llvm", "mcpu": "haswell"})
        asm = kernel.lib.inspect_source("asm")
        assert "vfmadd231ps" in asm and "%ymm" in asm and "%zmm" not in asm
        assert_close(y, ref)


@pytest.mark.parametrize("knobs", [{"tile_h": 2, "chunk": 6, "par_co": 0},
                                   {"tile_h": 3, "chunk": 9, "par_co": 0},
                                   {"tile_h": 4, "par_co": 1}])
def test_chunks_are_whole_tiles(knobs, rng):
    """A 2D task's rows are whole register tiles (a chunk of 3 rows with 2-row tiles once wrote
    the fourth row inside the next task's rows): its choices are multiples of ``tile_h``."""
    spec = _spec((64, 24), 16, 32, 2, 2, "channels_last", bias=False).replace(
        batch=1, activation="linear")
    y, ref, _ = run_spec(spec, rng, batch=1, knobs={"rule": TILE, **knobs})
    assert_close(y, ref)
    with pytest.raises(ValueError, match=r"knob chunk=3 .* choices \[2, 4, 6"):
        run_spec(spec, rng, batch=1, knobs={"rule": TILE, "tile_h": 2, "chunk": 3})
