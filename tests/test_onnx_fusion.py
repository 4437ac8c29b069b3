"""Epilogue fusion on the ONNX graph and whole models with several inputs and outputs."""
import numpy as np
import pytest
from onnx import helper, numpy_helper

import convt
from conftest import assert_close
from onnx_util import FLOAT, make_model, ort_run


def _chain_model(rng, ops, bias=True, weights_as_inputs=False, opset=17, c_out=6):
    """x -> ConvTranspose -> ops...; each op is (op_type, {const inputs}, attrs)."""
    c_in = 4
    inits = {"w": rng.standard_normal((c_in, c_out, 3, 3)).astype(np.float32)}
    ct_in = ["x", "w"]
    if bias:
        inits["b"] = rng.standard_normal(c_out).astype(np.float32)
        ct_in.append("b")
    nodes = [helper.make_node("ConvTranspose", ct_in, ["t0"], name="deconv", strides=[2, 2],
                              pads=[1, 0, 0, 1])]
    for i, (op, consts, attrs) in enumerate(ops):
        names = []
        for j, value in enumerate(consts):
            if isinstance(value, str):  # an existing tensor name (or "" for absent)
                names.append(value)
                continue
            names.append(f"c{i}_{j}")
            inits[names[-1]] = np.asarray(value, np.float32)
        ins = [f"t{i}"] + names
        if op in ("Sub", "Div") and attrs.pop("swap", False):
            ins = ins[::-1]
        nodes.append(helper.make_node(op, ins, [f"t{i + 1}"], name=f"n{i}", **attrs))
    graph_in = [("x", ["N", c_in, 5, 4], FLOAT)]
    if weights_as_inputs:
        graph_in.append(("w", list(inits["w"].shape), FLOAT))
        feeds_w = {"w": inits.pop("w")}
    else:
        feeds_w = {}
    model = make_model(nodes, graph_in, [(f"t{len(ops)}", [None] * 4, FLOAT)], inits, opset)
    feeds = {"x": rng.standard_normal((2, c_in, 5, 4)).astype(np.float32), **feeds_w}
    return model, feeds


def _bn(rng, c=6):
    return ("BatchNormalization", [rng.uniform(0.5, 2, c), rng.standard_normal(c),
                                   rng.standard_normal(c), rng.uniform(0.5, 2, c)],
            {"epsilon": 1e-3})


def _vec(rng, c=6):
    return rng.standard_normal((c, 1, 1))


CHAINS = {
    "bn_relu": lambda r: [_bn(r), ("Relu", [], {})],
    "add_mul_leaky": lambda r: [("Add", [_vec(r)], {}), ("Mul", [np.float32(0.5)], {}),
                                ("LeakyRelu", [], {"alpha": 0.3})],
    "sub_div_clip": lambda r: [("Sub", [_vec(r)], {}), ("Div", [r.uniform(1, 2, (1, 6, 1, 1))], {}),
                               ("Clip", [np.float32(-0.5), np.float32(0.7)], {})],
    "rsub_sigmoid": lambda r: [("Sub", [_vec(r)], {"swap": True}), ("Sigmoid", [], {})],
    "clip_max_only": lambda r: [("Clip", ["", np.float32(1.0)], {})],
    "hard_sigmoid": lambda r: [("HardSigmoid", [], {"alpha": 0.3, "beta": 0.4})],
    "prelu_channel": lambda r: [("PRelu", [r.uniform(0, 0.5, (6, 1, 1))], {})],
    "prelu_scalar": lambda r: [("PRelu", [np.full((1,), 0.25)], {})],
    "bn_tanh": lambda r: [_bn(r), ("Tanh", [], {})],
    "elu": lambda r: [("Elu", [], {"alpha": 0.7})],
    "softplus": lambda r: [("Softplus", [], {})],
}


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_chain_is_fused_and_exact(name, rng):
    ops = CHAINS[name](rng)
    model, feeds = _chain_model(rng, ops)
    mod = convt.compile(model)
    assert mod.fusions == [("deconv", [op for op, _, _ in ops])]
    assert_close(mod(**feeds), ort_run(model, feeds)[0])


def test_dcgan_without_bias(rng):
    model, feeds = _chain_model(rng, [_bn(rng), ("Relu", [], {})], bias=False)
    mod = convt.compile(model)
    assert mod.fusions == [("deconv", ["BatchNormalization", "Relu"])]
    assert mod.kernels[0][1].activation == "relu" and mod.kernels[0][1].bias
    assert_close(mod(**feeds), ort_run(model, feeds)[0])


def test_fuse_false_keeps_the_graph(rng):
    model, feeds = _chain_model(rng, [_bn(rng), ("Relu", [], {})])
    mod = convt.compile(model, fuse=False)
    assert mod.fusions == [] and mod.kernels[0][1].activation == "linear"
    assert_close(mod(**feeds), ort_run(model, feeds)[0])


def test_runtime_weights_fold_only_what_needs_no_constant_weight(rng):
    model, feeds = _chain_model(rng, [("Add", [_vec(rng)], {}), _bn(rng), ("Relu", [], {})],
                                weights_as_inputs=True)
    mod = convt.compile(model)
    assert mod.fusions == [("deconv", ["Add"])]
    assert_close(mod(**feeds), ort_run(model, feeds)[0])


def test_not_per_channel_is_not_fused(rng):
    model, feeds = _chain_model(rng, [("Add", [rng.standard_normal((1, 1, 1, 8))], {}),
                                      ("Relu", [], {})])
    mod = convt.compile(model)
    assert mod.fusions == [("deconv", [])]
    assert_close(mod(**feeds), ort_run(model, feeds)[0])


def test_branching_output_stops_fusion(rng):
    """A tensor read twice (or a graph output) must stay materialised."""
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="deconv", strides=[2, 2]),
             helper.make_node("Relu", ["y"], ["r"]),
             helper.make_node("Sigmoid", ["y"], ["s"])]
    model = make_model(nodes, [("x", [1, 3, 4, 4], FLOAT)],
                       [("y", [1, 2, 9, 9], FLOAT), ("r", [1, 2, 9, 9], FLOAT),
                        ("s", [1, 2, 9, 9], FLOAT)], {"w": w})
    feeds = {"x": rng.standard_normal((1, 3, 4, 4)).astype(np.float32)}
    mod = convt.compile(model)
    assert mod.fusions == [("deconv", [])]
    got = mod(feeds["x"])
    assert isinstance(got, tuple) and len(got) == 3
    for g, e in zip(got, ort_run(model, feeds)):
        assert_close(g, e)


def test_constant_nodes_and_identity_feed_the_fold(rng):
    c = 2
    bn_vals = [rng.uniform(0.5, 2, c), rng.standard_normal(c), rng.standard_normal(c),
               rng.uniform(0.5, 2, c)]
    consts = [helper.make_node("Constant", [], [f"k{i}"],
                               value=numpy_helper.from_array(v.astype(np.float32)))
              for i, v in enumerate(bn_vals)]
    nodes = consts + [
        helper.make_node("Identity", ["w0"], ["w"]),
        helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="deconv", strides=[2]),
        helper.make_node("BatchNormalization", ["y", "k0", "k1", "k2", "k3"], ["z"]),
        helper.make_node("Relu", ["z"], ["out"])]
    w0 = rng.standard_normal((3, c, 4)).astype(np.float32)
    model = make_model(nodes, [("x", [1, 3, 6], FLOAT)], [("out", [1, c, 14], FLOAT)],
                       {"w0": w0})
    feeds = {"x": rng.standard_normal((1, 3, 6)).astype(np.float32)}
    mod = convt.compile(model)
    assert mod.fusions == [("deconv", ["BatchNormalization", "Relu"])]
    assert_close(mod(**feeds), ort_run(model, feeds)[0])


def test_two_inputs_two_outputs(rng):
    """Named inputs, positional and keyword calls, several outputs as a tuple."""
    wa = rng.standard_normal((4, 3, 2, 2)).astype(np.float32)
    wb = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    nodes = [helper.make_node("ConvTranspose", ["a", "wa"], ["ya"], name="up_a", strides=[2, 2]),
             helper.make_node("ConvTranspose", ["b", "wb"], ["yb"], name="up_b", strides=[2, 2],
                              pads=[1, 1, 1, 1]),
             helper.make_node("Concat", ["ya", "yb"], ["cat"], axis=1),
             helper.make_node("Relu", ["ya"], ["ra"])]
    model = make_model(nodes, [("a", ["N", 4, 5, 5], FLOAT), ("b", ["N", 2, 5, 5], FLOAT)],
                       [("cat", ["N", 6, 10, 10], FLOAT), ("ra", ["N", 3, 10, 10], FLOAT)],
                       {"wa": wa, "wb": wb})
    feeds = {"a": rng.standard_normal((3, 4, 5, 5)).astype(np.float32),
             "b": rng.standard_normal((3, 2, 5, 5)).astype(np.float32)}
    mod = convt.compile(model)
    assert mod.input_names == ["a", "b"] and mod.output_names == ["cat", "ra"]
    expected = ort_run(model, feeds)
    for got in (mod(feeds["a"], feeds["b"]), mod(**feeds), mod(feeds["a"], b=feeds["b"])):
        assert len(got) == 2
        for g, e in zip(got, expected):
            assert_close(g, e)
    convt_ms, other_ms = mod.time_split(**feeds)
    assert convt_ms > 0 and other_ms > 0
    with pytest.raises(TypeError, match="missing inputs"):
        mod(feeds["a"])
    with pytest.raises(TypeError, match="unknown input"):
        mod(feeds["a"], c=feeds["b"])


def _resnet_model(rng, late_residual, two_convs):
    """Conv -> BN -> Add(residual) -> Relu. ``late_residual``: the residual is computed after
    the conv in graph order; ``two_convs``: the residual is another Conv's output (only one of
    the two may absorb the Add)."""
    c = 8
    inits = {"w1": rng.standard_normal((c, c, 3, 3)).astype(np.float32) * 0.2,
             "w2": rng.standard_normal((c, c, 3, 3)).astype(np.float32) * 0.2,
             "g": rng.uniform(0.5, 2, c), "b": rng.standard_normal(c),
             "m": rng.standard_normal(c), "v": rng.uniform(0.5, 2, c)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("BatchNormalization", ["c1", "g", "b", "m", "v"], ["n1"])]
    if two_convs:
        nodes.append(helper.make_node("Conv", ["x", "w2"], ["r"], pads=[1, 1, 1, 1],
                                      name="conv2"))
    else:
        nodes.append(helper.make_node("Sigmoid", ["x"], ["r"]))
    if not late_residual:
        nodes = nodes[-1:] + nodes[:-1]
    nodes += [helper.make_node("Add", ["n1", "r"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    model = make_model(nodes, [("x", ["N", c, 7, 9], FLOAT)], [("y", [None] * 4, FLOAT)],
                       {k: np.asarray(v, np.float32) for k, v in inits.items()}, 17)
    return model, {"x": rng.standard_normal((3, c, 7, 9)).astype(np.float32)}


@pytest.mark.parametrize("late_residual", [False, True])
@pytest.mark.parametrize("two_convs", [False, True])
def test_residual_add_joins_the_conv_epilogue(rng, late_residual, two_convs):
    model, feeds = _resnet_model(rng, late_residual, two_convs)
    mod = convt.compile(model)
    fused, specs = dict(mod.fusions), dict(mod.kernels)
    assert fused["conv1"][0] == "BatchNormalization"
    # exactly one kernel takes the Add (with two convs, the first in graph order) and the Relu
    takers = [n for n in fused if fused[n][-2:] == ["Add", "Relu"]]
    assert len(takers) == 1 and [n for n in specs if specs[n].residual] == takers
    assert sum(ops.count("Add") for ops in fused.values()) == 1
    assert_close(mod(**feeds), ort_run(model, feeds)[0])


@pytest.mark.parametrize("gate", ["silu", "mish", "HardSwish", "Mish", "Gelu"])
def test_activations_over_several_nodes_join_the_epilogue(rng, gate):
    """PyTorch exports SiLU as Sigmoid + Mul and Mish as Softplus + Tanh + Mul, both reading
    the conv output twice; opset 14-20 have HardSwish, Mish and Gelu as single nodes."""
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32) * 0.3
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv")]
    if gate == "silu":
        nodes += [helper.make_node("Sigmoid", ["c"], ["g"]),
                  helper.make_node("Mul", ["g", "c"], ["y"])]
    elif gate == "mish":
        nodes += [helper.make_node("Softplus", ["c"], ["sp"]),
                  helper.make_node("Tanh", ["sp"], ["g"]), helper.make_node("Mul", ["c", "g"], ["y"])]
    else:
        nodes += [helper.make_node(gate, ["c"], ["y"])]
    model = make_model(nodes, [("x", ["N", 4, 6, 5], FLOAT)], [("y", [None] * 4, FLOAT)],
                       {"w": w}, 20)
    feeds = {"x": rng.standard_normal((2, 4, 6, 5)).astype(np.float32) * 2}
    mod = convt.compile(model)
    assert dict(mod.kernels)["conv"].activation == {
        "silu": "silu", "mish": "mish", "HardSwish": "hard_silu", "Mish": "mish",
        "Gelu": "gelu"}[gate]
    # onnxruntime's optimizer (shape folding) expands the Mish and HardSwish nodes
    assert dict(mod.fusions)["conv"][-1] in ("Mul", "Gelu")
    assert_close(mod(**feeds), ort_run(model, feeds)[0])
