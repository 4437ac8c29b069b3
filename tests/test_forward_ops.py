"""Forward ops on convt's kernels (``frontends.onnx_forward``), with random valid attributes:
ONNX ``Conv`` 1D/2D/3D (strides 1-3, dilations 1-2, groups and depthwise, explicit pads,
asymmetric ones and ones past the dilated kernel, ``auto_pad``, bias or not, batch 1-3, open
or fixed), alone and followed by BatchNormalization and an activation or by a residual Add;
``MatMul`` of an A of rank 1-4 by a constant B, with a bias Add; ``Gemm`` with alpha, beta,
transA/transB and every form of C.

Two oracles: onnxruntime, and float64 numpy written from the operators' definitions here
(the convolution as ``y[o] = sum_t x[o*s + t*d - p] w[t]``, nothing shared with
``onnx_forward``'s flipped-kernel arithmetic), both to ``1e-4 x max|expected|``. The nodes
that should run on convt kernels must (``mod.kernels``), a Conv whose pad passes its dilated
kernel must not, and every PrimFunc of the model must have a rule (``mod.rules``).

``CONVT_FUZZ=long`` runs the long profile.
"""
import itertools

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper
from onnx_util import FLOAT, make_model, ort_run
from strategies import PROFILE

import convt

EXAMPLES = {   # per test; ci: 82 models, ~0.3 s each (~30 s in all)
    "ci": {"conv": 30, "conv_bn": 12, "residual": 10, "matmul": 15, "gemm": 15},
    "long": {"conv": 300, "conv_bn": 100, "residual": 80, "matmul": 120, "gemm": 120},
}[PROFILE]
REL = 1e-4
MAX_SPATIAL = {1: 16, 2: 9, 3: 5}
CHANNELS = st.sampled_from([1, 2, 3, 4, 5, 8])


def forward_settings(test):
    """Like ``strategies.fuzz_settings``: the same examples on every CI run."""
    return settings(max_examples=EXAMPLES[test], deadline=None, derandomize=PROFILE == "ci",
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                    print_blob=True)


def close(got, expected, what):
    """``|got - expected| <= 1e-4 x max|expected|`` (as tests/test_models.py)."""
    expected = np.asarray(expected, np.float64)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    scale = float(np.max(np.abs(expected), initial=0)) or 1.0
    err = float(np.max(np.abs(got.astype(np.float64) - expected), initial=0))
    assert err <= REL * scale, f"{what}: max |error| {err:.3g} > {REL} x {scale:.3g}"


def check_module(mod, model, feeds, expected, on_kernels, off_kernels=(), ort=True):
    """Both oracles (onnxruntime unless ``ort`` is False: it refuses the node), the nodes on
    (and off) convt kernels, a rule for every PrimFunc."""
    got = mod(**feeds)
    if ort:
        close(got, ort_run(model, feeds)[0], "against onnxruntime")
    close(got, expected, "against the float64 definition")
    names = [name for name, _ in mod.kernels]

    def on(node):   # onnxruntime's optimizer (onnx_fold) renames what it fuses: "mm/MatMulAdd.."
        return any(n == node or n.startswith(node + "/") for n in names)
    for node in on_kernels:
        assert on(node), f"{node} is not on a convt kernel: {names}"
    for node in off_kernels:
        assert not on(node), f"{node} is on a convt kernel, its pads past the kernel: {names}"
    unscheduled = sorted(name for name, rule in mod.rules.items() if not rule)
    assert mod.rules and not unscheduled, f"PrimFuncs without a convt.rule: {unscheduled}"


# ---- the float64 definitions ------------------------------------------------------------------

def conv_definition(x, w, b, strides, dilations, pads_begin, pads_end, group):
    """ONNX Conv: ``y[n, g*Cg + co, o] = sum_{ci, t} x[n, g*Ci + ci, o*s + t*d - p] w[g*Cg + co,
    ci, t] (+ b)``, inputs outside the image read 0."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    n, cin, *sp = x.shape
    cout, cin_g, *k = w.shape
    cout_g = cout // group
    out = [(i + pb + pe - d * (kk - 1) - 1) // s + 1
           for i, kk, s, d, pb, pe in zip(sp, k, strides, dilations, pads_begin, pads_end)]
    y = np.zeros((n, cout, *out))
    for t in itertools.product(*(range(kk) for kk in k)):
        idx = [np.arange(o) * s + tt * d - p
               for o, s, tt, d, p in zip(out, strides, t, dilations, pads_begin)]
        inside = [(ix >= 0) & (ix < i) for ix, i in zip(idx, sp)]
        grid = np.ix_(*[np.clip(ix, 0, i - 1) for ix, i in zip(idx, sp)])
        valid = np.ones(out, bool)
        for axis, m in enumerate(inside):   # (np.ix_ would read booleans as indices)
            valid = valid & m.reshape([-1 if a == axis else 1 for a in range(len(out))])
        xt = x[(slice(None), slice(None)) + grid] * valid   # (n, cin, *out)
        for g in range(group):
            y[:, g * cout_g:(g + 1) * cout_g] += np.einsum(
                "nc...,oc->no...", xt[:, g * cin_g:(g + 1) * cin_g],
                w[(slice(g * cout_g, (g + 1) * cout_g), slice(None)) + t])
    if b is not None:
        y += np.asarray(b, np.float64).reshape((-1,) + (1,) * len(sp))
    return y


def same_pads(sp, k, strides, dilations, upper):
    """ONNX's auto_pad SAME_*: output ceil(i / s), the total pad split, the odd one at the end
    (UPPER) or the beginning (LOWER)."""
    begin, end = [], []
    for i, kk, s, d in zip(sp, k, strides, dilations):
        total = max(0, (-(-i // s) - 1) * s + (kk - 1) * d + 1 - i)
        small, big = total // 2, total - total // 2
        begin.append(small if upper else big)
        end.append(big if upper else small)
    return begin, end


ACTIVATIONS = {
    None: lambda y: y,
    "Relu": lambda y: np.maximum(y, 0),
    "LeakyRelu": lambda y: np.where(y >= 0, y, 0.15 * y),
    "Sigmoid": lambda y: 1 / (1 + np.exp(-y)),
    "Tanh": np.tanh,
    "Clip": lambda y: np.clip(y, -0.5, 0.8),
}


def _activation_nodes(op, src, dst, inits):
    if op is None:
        return []
    if op == "LeakyRelu":
        return [helper.make_node(op, [src], [dst], name="act", alpha=0.15)]
    if op == "Clip":
        inits["clip_lo"], inits["clip_hi"] = np.float32(-0.5), np.float32(0.8)
        return [helper.make_node(op, [src, "clip_lo", "clip_hi"], [dst], name="act")]
    return [helper.make_node(op, [src], [dst], name="act")]


# ---- Conv ----------------------------------------------------------------------------------------

@st.composite
def conv_cases(draw, rank=None):
    """A Conv node onnxruntime runs: (attrs, x shape, w shape, bias, resolved pads, whether
    any pad passes the dilated kernel)."""
    rank = rank or draw(st.integers(1, 3), label="rank")
    k = [draw(st.integers(1, 3)) for _ in range(rank)]
    s = [draw(st.integers(1, 3)) for _ in range(rank)]
    d = [draw(st.integers(1, 2)) for _ in range(rank)]
    kind = draw(st.sampled_from(["plain", "plain", "grouped", "depthwise"]), label="groups")
    if kind == "plain":
        group, cin, cout = 1, draw(CHANNELS), draw(CHANNELS)
    elif kind == "grouped":
        group = draw(st.integers(2, 3))
        cin, cout = group * draw(st.integers(1, 3)), group * draw(st.integers(1, 3))
    else:
        group = cin = draw(st.integers(2, 6))
        cout = cin * draw(st.integers(1, 2))
    how = draw(st.sampled_from(["pads", "pads", "pads", "none", "SAME_UPPER", "SAME_LOWER",
                                "VALID"]), label="padding")
    attrs = {"strides": s, "dilations": d}
    if draw(st.booleans()):
        attrs["kernel_shape"] = k
    if group > 1:
        attrs["group"] = group
    pads = None
    if how == "pads":   # 0, within the dilated kernel, or past it (TVM keeps that node)
        reach = [dd * (kk - 1) for kk, dd in zip(k, d)]
        pads = []
        for r in reach + reach:
            where = draw(st.sampled_from(["zero", "in", "in", "past"]), label="pad")
            pads.append(0 if where == "zero" else draw(
                st.integers(0, r) if where == "in" else st.integers(r + 1, r + 2)))
        attrs["pads"] = pads
    elif how != "none":
        attrs["auto_pad"] = how
    pb, pe = (pads[:rank], pads[rank:]) if pads else ([0] * rank, [0] * rank)
    low = [max(1, dd * (kk - 1) + 1 - b - e) for kk, dd, b, e in zip(k, d, pb, pe)]
    sp = [draw(st.integers(lo, max(lo, MAX_SPATIAL[rank]))) for lo in low]
    if how.startswith("SAME"):
        pb, pe = same_pads(sp, k, s, d, how == "SAME_UPPER")
    past = any(p > dd * (kk - 1) for p, kk, dd in zip(pb + pe, k + k, d + d))
    x_shape = [draw(st.integers(1, 3), label="batch"), cin, *sp]
    return attrs, x_shape, [cout, cin // group, *k], draw(st.booleans()), (pb, pe), past


def conv_model(rng, case, epilogue=(), open_batch=False, through=False):
    """x [-> Neg] -> Conv "conv" [-> BatchNormalization -> activation | -> Add r]; (model,
    feeds, float64 expectation). ``through``: the Conv reads a computed tensor, not the graph
    input (a residual too: r -> Neg)."""
    attrs, x_shape, w_shape, bias, (pb, pe), _ = case
    inits = {"w": rng.standard_normal(w_shape).astype(np.float32)}
    names = ["x", "w"]
    if bias:
        inits["b"] = rng.standard_normal(w_shape[0]).astype(np.float32)
        names.append("b")
    feeds = {"x": rng.standard_normal(x_shape).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x0" if through else "x"] + names[1:], ["y0"],
                              name="conv", **attrs)]
    if through:
        nodes.insert(0, helper.make_node("Neg", ["x"], ["x0"], name="neg"))
    expected = conv_definition(-feeds["x"] if through else feeds["x"], inits["w"], inits.get("b"), attrs["strides"],
                               attrs["dilations"], pb, pe, attrs.get("group", 1))
    rank = len(x_shape) - 2
    inputs = [("x", ["N" if open_batch else x_shape[0], *x_shape[1:]], FLOAT)]
    cur = "y0"
    if epilogue and epilogue[0] == "bn":
        c = w_shape[0]
        scale, shift = rng.uniform(0.5, 2, c), rng.standard_normal(c)
        mean, var = rng.standard_normal(c), rng.uniform(0.5, 2, c)
        for name, v in (("bn_s", scale), ("bn_b", shift), ("bn_m", mean), ("bn_v", var)):
            inits[name] = v.astype(np.float32)
        nodes.append(helper.make_node("BatchNormalization", ["y0", "bn_s", "bn_b", "bn_m", "bn_v"],
                                      ["y1"], name="bn", epsilon=1e-3))
        per = (-1,) + (1,) * rank
        f = lambda v: np.asarray(inits[v], np.float64).reshape(per)   # noqa: E731
        expected = (expected - f("bn_m")) / np.sqrt(f("bn_v") + 1e-3) * f("bn_s") + f("bn_b")
        act = epilogue[1]
        nodes += _activation_nodes(act, "y1", "y2", inits)
        expected = ACTIVATIONS[act](expected)
        cur = "y2" if act else "y1"
    elif epilogue and epilogue[0] == "residual":
        feeds["r"] = rng.standard_normal(expected.shape).astype(np.float32)
        inputs.append(("r", ["N" if open_batch else expected.shape[0], *expected.shape[1:]],
                       FLOAT))
        r = "r"
        if through:
            nodes.append(helper.make_node("Neg", ["r"], ["r0"], name="neg_r"))
            r = "r0"
        nodes.append(helper.make_node("Add", [r, "y0"] if epilogue[1] else ["y0", r], ["y1"],
                                      name="residual"))
        expected = expected + (-feeds["r"] if through else feeds["r"])
        cur = "y1"
    model = make_model(nodes, inputs, [(cur, [None] * len(x_shape), FLOAT)], inits)
    return model, feeds, expected


def _conv_checks(case):
    """What ``check_module`` is to check of a Conv case: onnxruntime refuses a dilation
    under SAME_* (``Dilation not supported for AutoPadType::SAME_UPPER``)."""
    attrs, past = case[0], case[-1]
    ort = not (attrs.get("auto_pad", "").startswith("SAME") and max(attrs["dilations"]) > 1)
    on, off = ([], ["conv"]) if past else (["conv"], [])
    return dict(on_kernels=on, off_kernels=off, ort=ort)


@forward_settings("conv")
@given(case=conv_cases(), open_batch=st.booleans(), through=st.booleans(),
       seed=st.integers(0, 2 ** 32 - 1))
def test_conv_with_random_attributes(case, open_batch, through, seed):
    model, feeds, expected = conv_model(np.random.default_rng(seed), case, open_batch=open_batch,
                                        through=through)
    mod = convt.compile(model)
    check_module(mod, model, feeds, expected, **_conv_checks(case))


@forward_settings("conv_bn")
@given(case=conv_cases(), act=st.sampled_from(sorted(ACTIVATIONS, key=str)),
       open_batch=st.booleans(), through=st.booleans(), seed=st.integers(0, 2 ** 32 - 1))
def test_conv_batchnorm_activation(case, act, open_batch, through, seed):
    model, feeds, expected = conv_model(np.random.default_rng(seed), case, ("bn", act),
                                        open_batch, through)
    mod = convt.compile(model)
    check_module(mod, model, feeds, expected, **_conv_checks(case))
    if not case[-1]:   # on a kernel: the epilogue folds into it
        assert ("conv", ["BatchNormalization"] + ([act] if act else [])) in mod.fusions, \
            mod.fusions


@forward_settings("residual")
@given(case=conv_cases(), swap=st.booleans(), open_batch=st.booleans(), through=st.booleans(),
       seed=st.integers(0, 2 ** 32 - 1))
def test_conv_residual_add(case, swap, open_batch, through, seed):
    model, feeds, expected = conv_model(np.random.default_rng(seed), case, ("residual", swap),
                                        open_batch, through)
    mod = convt.compile(model)
    check_module(mod, model, feeds, expected, **_conv_checks(case))
    if through and not case[-1]:   # a computed residual folds into the kernel (onnx_fuse)
        assert ("conv", ["Add"]) in mod.fusions, mod.fusions


# ---- MatMul and Gemm -----------------------------------------------------------------------------

DIMS = st.sampled_from([1, 2, 3, 5, 7, 8, 13, 16, 17])


@forward_settings("matmul")
@given(rank=st.integers(1, 4), dims=st.lists(DIMS, min_size=5, max_size=5),
       open_batch=st.booleans(), bias=st.sampled_from([None, "vector", "row", "full"]),
       relu=st.booleans(), through=st.booleans(), seed=st.integers(0, 2 ** 32 - 1))
def test_matmul_constant_b(rank, dims, open_batch, bias, relu, through, seed):
    rng = np.random.default_rng(seed)
    k, n = dims[-2:]
    a_shape = [*dims[:rank - 1], k]
    open_batch = open_batch and rank >= 2
    inits = {"B": rng.standard_normal((k, n)).astype(np.float32)}
    feeds = {"A": rng.standard_normal(a_shape).astype(np.float32)}
    a = -feeds["A"] if through else feeds["A"]   # through: MatMul reads a computed tensor
    expected = np.matmul(a.astype(np.float64), inits["B"].astype(np.float64))
    nodes = [helper.make_node("MatMul", ["A0" if through else "A", "B"], ["y0"], name="mm")]
    if through:
        nodes.insert(0, helper.make_node("Neg", ["A"], ["A0"], name="neg"))
    cur = "y0"
    if bias:   # an (N,) or (1, N) vector becomes the kernel's bias; a full tensor stays an Add
        shape = {"vector": [n], "row": [1, n] if rank >= 2 else [n],
                 "full": list(expected.shape)[-2:] if rank >= 2 else [n]}[bias]
        inits["C"] = rng.standard_normal(shape).astype(np.float32)
        nodes.append(helper.make_node("Add", ["y0", "C"], ["y1"], name="bias"))
        expected = expected + inits["C"]
        cur = "y1"
    if relu:
        nodes.append(helper.make_node("Relu", [cur], ["y2"], name="relu"))
        expected = np.maximum(expected, 0)
        cur = "y2"
    a_dims = ["N" if open_batch else a_shape[0], *a_shape[1:]] if rank >= 2 else a_shape
    model = make_model(nodes, [("A", a_dims, FLOAT)], [(cur, [None] * expected.ndim, FLOAT)],
                       inits)
    mod = convt.compile(model)
    # (batch, rows, K) on the kernel: rows must be known, and one Reshape restores the rest
    on = rank in (1, 3) or not open_batch
    check_module(mod, model, feeds, expected, ["mm"] if on else [])


@forward_settings("gemm")
@given(m=DIMS, k=DIMS, n=DIMS, trans_a=st.sampled_from([0, 0, 0, 1]), trans_b=st.booleans(),
       c=st.sampled_from([None, "scalar", "one", "vector", "row", "column", "full", "input"]),
       alpha=st.sampled_from([1.0, 0.5, -1.25]), beta=st.sampled_from([1.0, 2.0, -0.75]),
       open_rows=st.booleans(), through=st.booleans(), seed=st.integers(0, 2 ** 32 - 1))
def test_gemm(m, k, n, trans_a, trans_b, c, alpha, beta, open_rows, through, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    inits, feeds = {"B": b}, {"A": a}
    names = ["A0" if through else "A", "B"]
    nodes = [helper.make_node("Neg", ["A"], ["A0"], name="neg")] if through else []
    a = -a if through else a
    expected = alpha * (a.T if trans_a else a).astype(np.float64) @ \
        (b.T if trans_b else b).astype(np.float64)
    open_rows = open_rows and not trans_a and c not in ("column", "full", "input")
    inputs = [("A", ["M", a.shape[1]] if open_rows else list(a.shape), FLOAT)]
    if c is not None:
        shape = {"scalar": [], "one": [1], "vector": [n], "row": [1, n], "column": [m, 1],
                 "full": [m, n], "input": [m, n]}[c]
        value = rng.standard_normal(shape).astype(np.float32)
        if c == "input":   # C computed at run time: the node stays with TVM
            feeds["C"] = value
            inputs.append(("C", shape, FLOAT))
        else:
            inits["C"] = value
        names.append("C")
        expected = expected + beta * value.astype(np.float64)
    nodes.append(helper.make_node("Gemm", names, ["y"], name="gemm", alpha=alpha, beta=beta,
                                  transA=trans_a, transB=int(trans_b)))
    model = make_model(nodes, inputs, [("y", [None, None], FLOAT)], inits)
    mod = convt.compile(model)
    c_per_column = c in (None, "scalar", "one", "vector", "row") or (
        c in ("column", "full") and m == 1)
    on = not trans_a and not open_rows and c_per_column
    check_module(mod, model, feeds, expected, ["gemm"] if on else [])
