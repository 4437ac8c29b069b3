"""Schedule rules one by one, on every x86 target description convt builds for.

The contract of a rule, forced by name on each spec where it does not decline: exact values
(float64 oracle), no write outside any buffer (canary zones, ``convt.guard``), vector FMAs of
the target's width where it vectorizes. Its space: the heuristic's proposal is a point of it,
random points build exact kernels, and no two points build the same kernel. Forcing a rule
where it declines is a ValueError that names it. None of this depends on the host's CPU: a
target whose features this host lacks is built and inspected, not run.
"""
import random

import pytest
from conftest import assert_close, run_spec, runs_here

from convt import schedules
from convt.compiler import tvm_api as T
from convt.compiler.build import build, schedule
from convt.compiler.spec import ConvTransposeSpec
from convt.compiler.targets import resolve
from convt.frontends.keras_op import op_spec

TARGETS = {
    "haswell": {"kind": "llvm", "mcpu": "haswell", "num-cores": 2},          # AVX2, 8 lanes
    "skylake-avx512": {"kind": "llvm", "mcpu": "skylake-avx512", "num-cores": 2},
    "znver4": {"kind": "llvm", "mcpu": "znver4", "num-cores": 2},
    "znver5": {"kind": "llvm", "mcpu": "znver5", "num-cores": 2},
}
RULE_NAMES = [r.name for r in schedules.x86.RULES]


def _spec(in_sp, cin, cout, k, s, layout="channels_last", groups=1, pads=None, op=None, **kw):
    r = len(in_sp)
    pb, pe = pads if pads else ((0,) * r, (0,) * r)
    k = k if isinstance(k, tuple) else (k,) * r
    return ConvTransposeSpec(in_sp, cin, cout, k, (s,) * r if isinstance(s, int) else s,
                             (1,) * r, pb, pe, op or (0,) * r, groups=groups, layout=layout,
                             **{"bias": True, "activation": "relu", "kernel_layout": "io_spatial",
                                **kw})


# Specs chosen so that every rule applies to several of them: output channels that fill
# vectors and that do not, phases that fuse, each rank, both layouts, grouped layers, a
# small input under a big kernel, an output with an empty axis, and the shapes that broke
# before (a (1, 13) input under a (5, 4) kernel; 3D with a kernel longer than the input).
CONTRACT_SPECS = {
    "2d_nhwc": _spec((5, 7), 16, 32, 4, 2, pads=((1, 1), (1, 1))),
    "2d_nchw": _spec((5, 7), 16, 32, 4, 2, "channels_first", pads=((1, 1), (1, 1))),
    "1d_nchw": _spec((19,), 16, 16, 4, 2, "channels_first", pads=((1,), (1,))),
    "3d_nchw": _spec((3, 4, 5), 8, 16, 2, 2, "channels_first"),
    "few_out": _spec((5, 20), 8, 3, 4, 2, pads=((1, 1), (1, 1)), batch=2),
    "fcn_like": _spec((4, 9), 5, 21, 16, 8, "channels_first"),
    "small_in": _spec((1, 1), 24, 32, 4, 1, batch=5),
    "grouped": _spec((6, 5), 16, 16, 3, 2, "channels_first", groups=4, op=(1, 1)),
    "odd_2d": _spec((1, 13), 1, 3, (5, 4), 2, kernel_layout="spatial_oi"),
    "odd_3d": _spec((13, 1, 13), 1, 4, (5, 5, 4), (3, 2, 2), kernel_layout="spatial_oi",
                    bias=False, activation="linear"),
    "empty": _spec((2,), 3, 4, 2, 3, pads=((3,), (2,))),
    # Keras' Conv3DTranspose(4, (3, 4, 1), (3, 2, 3), "same", output_padding=0) on 2x1x2
    "empty_3d": op_spec((1, 2, 1, 2, 3), (3, 4, 1, 4, 3), strides=(3, 2, 3), padding="same",
                        output_padding=0, data_format="channels_last", bias=True),
}


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("rule", RULE_NAMES)
def test_rule_contract_on_every_target(rule, target, rng):
    tgt = TARGETS[target]
    info = schedules.describe(resolve(tgt))
    applied = 0
    for name, spec in CONTRACT_SPECS.items():
        if schedules.rule_named(rule, info).decline(spec, info):
            continue
        applied += 1
        knobs = {"rule": rule}
        if runs_here(tgt):
            y, ref, kernel = run_spec(spec, rng, batch=2, knobs=knobs, target=tgt)
            assert kernel.rule == rule
            assert y.shape == ref.shape, name
            assert_close(y, ref)
        else:
            kernel = build(spec, tgt, knobs)
        values = {k.name: k.value for k in kernel.knobs}
        lanes = values.get("lanes", 1)
        if lanes >= 4:   # FMAs on registers of the vector's width
            asm = kernel.lib.inspect_source("asm")
            reg = {16: "%zmm", 8: "%ymm", 4: "%xmm"}[lanes]
            assert "vfmadd" in asm and reg in asm, (name, values)
            if info.f32_lanes == 8:
                assert "%zmm" not in asm, name
    assert applied >= 2, f"{rule} applies to {applied} contract spec(s) only"


def test_every_contract_spec_has_a_default_rule_that_applies():
    for target in TARGETS.values():
        info = schedules.describe(resolve(target))
        for spec in CONTRACT_SPECS.values():
            rule = schedules.pick(spec, info)
            assert rule.decline(spec, info) is None and rule.passes_over(spec, info) is None


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_random_points_of_a_space_build_distinct_kernels(rule):
    """Pairs of different points of a rule's space never schedule to the same PrimFunc: the
    space lists only knob values the rule honours (a tuner never times one kernel twice)."""
    info = schedules.describe(resolve(TARGETS["znver5"]))
    r = schedules.rule_named(rule, info)
    pick = random.Random(rule)
    pairs = 0
    for spec in CONTRACT_SPECS.values():
        if r.decline(spec, info):
            continue
        space = r.space(spec, info)
        if space.size(limit=2) < 2:
            continue
        for _ in range(4):
            a, b = space.sample(pick), space.sample(pick)
            if a == b:
                continue
            fa = schedule(spec, TARGETS["znver5"], {"rule": rule, **a}).main
            fb = schedule(spec, TARGETS["znver5"], {"rule": rule, **b}).main
            assert not T.structural_equal(fa, fb), (spec, a, b)
            pairs += 1
    if rule not in ("empty",):
        assert pairs >= 3, f"{rule}: only {pairs} pairs drawn"


@pytest.mark.parametrize("target", ["haswell", "znver5"])
def test_heuristic_proposals_are_points_of_their_spaces(target):
    info = schedules.describe(resolve(TARGETS[target]))
    for spec in CONTRACT_SPECS.values():
        for r in schedules.applicable(spec, info):
            space = r.space(spec, info)
            proposed = {k: v for k, v in r.proposal(spec, info).items() if k in space.names}
            full = space.resolve(proposed)
            assert full == {**full, **proposed}, (r.name, spec, proposed, full)
            assert space.contains(full)


def test_forcing_a_rule_that_declines_names_the_rule_and_why():
    info = schedules.describe(resolve(TARGETS["znver5"]))
    with pytest.raises(ValueError, match=r"x86\.scatter_gemm declines.*groups 4"):
        schedules.pick(CONTRACT_SPECS["grouped"], info, {"rule": "x86.scatter_gemm"})
    with pytest.raises(ValueError, match=r"x86\.register_tile declines.*empty"):
        schedule(CONTRACT_SPECS["empty"], TARGETS["znver5"], {"rule": "x86.register_tile"})
    with pytest.raises(ValueError, match=r"empty declines.*not empty"):
        schedule(CONTRACT_SPECS["2d_nhwc"], TARGETS["znver5"], {"rule": "empty"})
    with pytest.raises(ValueError, match=r"'x86\.nope' is not a rule for x86.*x86\.width_vector"):
        schedule(CONTRACT_SPECS["2d_nhwc"], TARGETS["znver5"], {"rule": "x86.nope"})
    with pytest.raises(ValueError, match="rule='arm.register_tile' is not a rule for x86"):
        schedule(CONTRACT_SPECS["2d_nhwc"], TARGETS["znver5"], {"rule": "arm.register_tile"})


def test_knob_values_outside_the_space_are_refused_by_name():
    spec = CONTRACT_SPECS["2d_nhwc"]
    tgt = TARGETS["znver5"]
    with pytest.raises(ValueError, match=r"knob tile_w=99 of rule x86\.register_tile is "
                                         r"outside its choices \[1, 2"):
        schedule(spec, tgt, {"rule": "x86.register_tile", "tile_w": 99})
    with pytest.raises(ValueError, match=r"unknown schedule knobs \['tile_v'\] for rule "
                                         r"x86\.register_tile"):
        schedule(spec, tgt, {"tile_v": 2, "rule": "x86.register_tile"})
    with pytest.raises(ValueError, match="knob chunk='3' .* must be an integer"):
        schedule(spec, tgt, {"rule": "x86.register_tile", "chunk": "3"})
    # a later knob moves the proposal of an earlier one it depends on
    done = schedule(spec, tgt, {"rule": "x86.register_tile", "tile_w": 5})
    assert done.values["tile_w"] == 5 and done.values["tile_h"] * 5 * done.values["co_vecs"] <= 32


def test_knobs_are_serialisable_data_with_their_choices():
    import json
    for spec in (CONTRACT_SPECS["2d_nchw"], CONTRACT_SPECS["few_out"]):
        done = schedule(spec, TARGETS["haswell"])
        data = json.loads(json.dumps([k.to_dict() for k in done.knobs]))
        assert data and all(d["value"] in d["choices"] for d in data)
        first = next(d for d in data if len(d["choices"]) > 1)
        other = next(c for c in first["choices"] if c != first["value"])
        again = schedule(spec, TARGETS["haswell"], {"rule": done.rule, first["name"]: other})
        assert again.values[first["name"]] == other
