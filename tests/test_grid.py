"""The compiled kernel against the float64 scatter oracle over a grid of every axis."""
import numpy as np
import pytest
from conftest import assert_close, run_spec
from reference import scatter_conv_transpose

from convt.compiler import activations
from convt.compiler.build import build, kernel_meta
from convt.compiler.spec import ConvTransposeSpec
from convt.runtime import Runner



GEOMETRY = [  # (in_spatial, kernel, strides, dilation, pads_begin, pads_end, output_padding)
    ((5,), (3,), (2,), (1,), (1,), (0,), (1,)),          # odd, asymmetric, output padding
    ((1,), (4,), (3,), (1,), (0,), (0,), (0,)),          # 1-wide input, kernel > stride
    ((6,), (2,), (4,), (1,), (0,), (0,), (3,)),          # kernel < stride
    ((4,), (3,), (2,), (2,), (1,), (2,), (0,)),          # stride with dilation (op allows it)
    ((5, 4), (3, 4), (2, 3), (1, 1), (1, 0), (0, 2), (1, 2)),
    ((3, 7), (5, 2), (1, 2), (2, 1), (2, 0), (1, 1), (0, 1)),
    ((2, 3, 4), (2, 3, 1), (2, 1, 3), (1, 1, 1), (0, 1, 0), (1, 0, 0), (1, 0, 2)),
    ((4, 4), (16, 16), (8, 8), (1, 1), (4, 4), (4, 4), (0, 0)),  # FCN-like large kernel
]


@pytest.mark.parametrize("geom", GEOMETRY, ids=lambda g: f"k{g[1]}s{g[2]}")
@pytest.mark.parametrize("layout,kernel_layout,groups,cin,cout,bias", [
    ("channels_last", "spatial_oi", 1, 3, 16, True),
    ("channels_first", "io_spatial", 1, 5, 8, False),
    ("channels_last", "io_spatial", 2, 4, 6, True),
    ("channels_first", "io_spatial", 4, 4, 4, True),     # depthwise
    ("channels_last", "spatial_oi", 1, 2, 1, False),     # single output channel
])
def test_grid_against_scatter_reference(geom, layout, kernel_layout, groups, cin, cout, bias, rng):
    in_sp, k, s, d, pb, pe, op = geom
    spec = ConvTransposeSpec(in_sp, cin, cout, k, s, d, pb, pe, op, groups=groups, layout=layout,
                             kernel_layout=kernel_layout, bias=bias)
    y, ref, _ = run_spec(spec, rng, batch=3)
    assert_close(y, ref)


@pytest.mark.parametrize("act", sorted(set(activations.FUSED) - set(activations.ONNX_ONLY)))
def test_every_fused_activation(act, rng):
    spec = ConvTransposeSpec((4, 3), 3, 8, (3, 3), (2, 2), (1, 1), (1, 1), (0, 0), (1, 0),
                             bias=True, activation=act, layout="channels_first")
    y, ref, _ = run_spec(spec, rng)
    assert_close(y, ref)


NP_ACT_ARGS = {  # activations with arguments (ONNX attributes) and numpy definitions
    ("leaky_relu", (0.3,)): lambda x: np.where(x >= 0, x, 0.3 * x),
    ("elu", (0.7,)): lambda x: np.where(x > 0, x, 0.7 * np.expm1(x)),
    ("hard_sigmoid", (0.3, 0.4)): lambda x: np.clip(0.3 * x + 0.4, 0, 1),
    ("clip", (-0.5, 0.7)): lambda x: np.clip(x, -0.5, 0.7),
}


@pytest.mark.parametrize("act,args", sorted(NP_ACT_ARGS), ids=lambda v: str(v))
def test_activation_arguments(act, args, rng):
    spec = ConvTransposeSpec((4, 3), 3, 8, (3, 3), (2, 2), (1, 1), (1, 1), (0, 0), (1, 0),
                             bias=True, activation=act, activation_args=args)
    kernel = build(spec, "x86")
    x = rng.standard_normal(spec.input_shape(2)).astype(np.float32)
    w = rng.standard_normal(spec.kernel_shape).astype(np.float32)
    b = rng.standard_normal(spec.out_channels).astype(np.float32)
    ref = scatter_conv_transpose(x, w, spec.strides, spec.dilation, spec.pads_begin,
                                 spec.pads_end, spec.output_padding, channels_last=True,
                                 kernel_layout="spatial_oi") + b
    y = Runner(kernel.lib, kernel_meta(kernel, False))(x, w, b)
    assert_close(y, NP_ACT_ARGS[act, args](ref))


@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
def test_prelu_slope_input(layout, rng):
    spec = ConvTransposeSpec((5,), 4, 6, (3,), (2,), (1,), (1,), (0,), (0,), layout=layout,
                             activation="prelu")
    kernel = build(spec, "x86")
    x = rng.standard_normal(spec.input_shape(2)).astype(np.float32)
    w = rng.standard_normal(spec.kernel_shape).astype(np.float32)
    alpha = rng.uniform(0, 0.5, 6).astype(np.float32)
    ref = scatter_conv_transpose(x, w, spec.strides, spec.dilation, spec.pads_begin,
                                 spec.pads_end, spec.output_padding,
                                 channels_last=layout == "channels_last", kernel_layout="spatial_oi")
    a = alpha if layout == "channels_last" else alpha.reshape(-1, 1)
    y = Runner(kernel.lib, kernel_meta(kernel, False))(x, w, alpha=alpha)
    assert_close(y, np.where(ref >= 0, ref, a * ref))


def test_activation_arity_is_checked():
    from convt.compiler.spec import SpecError
    with pytest.raises(SpecError, match="'clip' takes 2 arguments"):
        ConvTransposeSpec((4,), 3, 8, (3,), (2,), (1,), (1,), (0,), (0,), activation="clip")
    with pytest.raises(SpecError, match="'hard_sigmoid' takes 0 or 2 arguments"):
        ConvTransposeSpec((4,), 3, 8, (3,), (2,), (1,), (1,), (0,), (0,),
                          activation="hard_sigmoid", activation_args=(0.2,))


def test_fallback_rule_is_exact(rng):
    spec = ConvTransposeSpec((5, 4), 4, 8, (3, 3), (2, 2), (1, 1), (1, 0), (0, 1), (1, 1),
                             bias=True, activation="relu")
    y, ref, kernel = run_spec(spec, rng, knobs={"rule": "cpu.fallback"})
    assert kernel.rule == "cpu.fallback"
    assert_close(y, ref)


@pytest.mark.parametrize("knobs", [{"tile_w": 1, "co_vecs": 1}, {"tile_w": 5}, {"serial": 1}])
def test_knob_values_do_not_change_results(knobs, rng):
    spec = ConvTransposeSpec((7, 6), 3, 16, (4, 4), (2, 2), (1, 1), (1, 1), (1, 1), (0, 0))
    y, ref, kernel = run_spec(spec, rng, knobs=knobs)
    assert {k.name: k.value for k in kernel.knobs}.items() >= knobs.items()
    assert_close(y, ref)


def test_symbolic_batch_accepts_any_batch(rng):
    spec = ConvTransposeSpec((3, 3), 2, 4, (2, 2), (2, 2), (1, 1), (0, 0), (0, 0), (0, 0))
    kernel = build(spec, "x86")
    runner = Runner(kernel.lib, kernel_meta(kernel, False))
    w = rng.standard_normal(spec.kernel_shape).astype(np.float32)
    for n in (1, 4, 7):
        x = rng.standard_normal(spec.input_shape(n)).astype(np.float32)
        ref = scatter_conv_transpose(x, w, spec.strides, spec.dilation, spec.pads_begin,
                                     spec.pads_end, spec.output_padding, 1, True, "spatial_oi")
        assert_close(runner(x, w), ref)


def test_macs_count_useful_work():
    spec = ConvTransposeSpec((8, 6), 2048, 256, (4, 4), (2, 2), (1, 1), (1, 1), (1, 1), (0, 0),
                             batch=1)
    assert spec.macs() == 2048 * 8 * 6 * 256 * 16  # 0.805 GFLOP, as suite.json's anchors


def test_relax_call_tir_wrapper_any_batch(rng):
    import tvm

    from convt.compiler import tvm_api as T
    from convt.compiler.relax_wrap import relax_module
    from convt.compiler.targets import resolve
    spec = ConvTransposeSpec((5, 4), 3, 8, (3, 3), (2, 2), (1, 1), (1, 0), (0, 1), (1, 0),
                             bias=True, activation="tanh", layout="channels_first",
                             kernel_layout="io_spatial")
    vm = tvm.relax.VirtualMachine(T.build_relax(relax_module(spec), resolve("x86")), tvm.cpu())
    w = rng.standard_normal(spec.kernel_shape).astype(np.float32)
    b = rng.standard_normal(spec.out_channels).astype(np.float32)
    for n in (1, 3):
        x = rng.standard_normal(spec.input_shape(n)).astype(np.float32)
        y = vm["main"](*[tvm.runtime.tensor(a) for a in (x, w, b)]).numpy()
        ref = scatter_conv_transpose(x, w, spec.strides, spec.dilation, spec.pads_begin,
                                     spec.pads_end, spec.output_padding, 1, False, "io_spatial")
        assert_close(y, np.tanh(ref + b.reshape(-1, 1, 1)))
