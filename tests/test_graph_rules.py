"""convt's CPU rules for the PrimFuncs of a model that are not convt kernels
(``schedules.cpu_graph.RULES``), each forced on its own: wherever a rule applies, the scheduled
PrimFunc computes what the unscheduled one does.

Small Relax functions (``relax.BlockBuilder``) of the ops whole models hold around convt's
kernels (elementwise chains with broadcasting, concat, resize, pooling, reductions, softmax,
layer and group norm, matmul of two inputs, transpose, pad, a convolution convt leaves to
TVM), with random shapes (extents off every vector width, now and then a symbolic batch), go
through convt's own Relax pipeline
(``tvm_api.graph_pipeline``: LegalizeOps, FuseOps, FuseTIR ...). Every PrimFunc it hands to
the scheduling step is built as it is and under each rule that applies, and run on the same
random inputs (a symbolic batch at 1 and at a drawn size; outputs of the scheduled run start
as NaN, so an element a schedule never writes shows). The fallback must schedule every one.

``CONVT_FUZZ=long`` runs the long profile.
"""
import numpy as np
import pytest
import tvm
import tvm.sym
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import PROFILE
from tvm import relax, tirx

from convt import schedules
from convt.compiler import tvm_api as T
from convt.compiler.targets import resolve
from convt.schedules import cpu_graph

EXAMPLES = {"ci": 6, "long": 150}[PROFILE]   # per op kind (12 kinds)
REL = 1e-4
TARGET = resolve("x86")
INFO = schedules.describe(TARGET)
FALLBACK = cpu_graph.RULES[-1]

# extents off every vector width (16, 8, 4 lanes) and on them; big enough, now and then,
# for the rules' parallel loops (PARALLEL_MIN elements)
DIMS = st.sampled_from([1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 17, 24, 31, 32, 33])
SMALL = st.sampled_from([1, 2, 3, 4, 5, 7, 8, 9])


def graph_settings():
    """Like ``strategies.fuzz_settings``: the same examples on every CI run."""
    return settings(max_examples=EXAMPLES, deadline=None, derandomize=PROFILE == "ci",
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                    print_blob=True)


# ---- Relax functions ----------------------------------------------------------------------------

def _function(inputs, body):
    """A Relax module ``main(inputs) = body(bb, *vars)``; inputs: [(name, shape)]."""
    bb = relax.BlockBuilder()
    params = [relax.Var(name, relax.TensorType(shape, "float32")) for name, shape in inputs]
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(body(bb, *params))
        bb.emit_func_output(out)
    return bb.get()


def _batch(draw):
    """The leading extent: a symbolic ``n`` now and then, else a small int."""
    return tirx.Var("n", "int64") if draw(st.booleans(), label="symbolic batch") else \
        draw(st.integers(1, 3), label="batch")


def _shape(draw, rank, dims=DIMS):
    return [draw(dims) for _ in range(rank)]


def _const(value):
    return relax.const(np.float32(value), "float32")


UNARY = {
    "relu": relax.op.nn.relu, "tanh": relax.op.tanh, "sigmoid": relax.op.sigmoid,
    "negative": relax.op.negative, "abs": relax.op.abs,
    "sqrt1p": lambda a: relax.op.sqrt(relax.op.add(relax.op.abs(a), _const(1.0))),
    "exp_tanh": lambda a: relax.op.exp(relax.op.tanh(a)),
    "scale": lambda a: relax.op.multiply(a, _const(0.37)),
}
BINARY = {
    "add": relax.op.add, "subtract": relax.op.subtract, "multiply": relax.op.multiply,
    "maximum": relax.op.maximum, "minimum": relax.op.minimum,
    "divide": lambda a, b: relax.op.divide(a, relax.op.add(relax.op.abs(b), _const(1.0))),
}


def _broadcast_shape(draw, shape):
    """A shape that broadcasts to ``shape``: fewer leading axes, some axes 1."""
    keep = draw(st.integers(0, len(shape)), label="broadcast rank")
    tail = shape[len(shape) - keep:]
    return [d if isinstance(d, tirx.Var) or draw(st.booleans()) else 1 for d in tail] or [1]


def _chain(draw, bb, a, others):
    """1-4 elementwise steps on ``a``, binary ones with one of ``others``."""
    for _ in range(draw(st.integers(1, 4), label="chain length")):
        if others and draw(st.booleans()):
            op = draw(st.sampled_from(sorted(BINARY)), label="binary")
            b = draw(st.sampled_from(others))
            a = bb.emit(BINARY[op](*((b, a) if draw(st.booleans()) else (a, b))))
        else:
            a = bb.emit(UNARY[draw(st.sampled_from(sorted(UNARY)), label="unary")](a))
    return a


def case_elementwise(draw):
    rank = draw(st.integers(1, 4))
    shape = [_batch(draw)] + _shape(draw, rank - 1)
    inputs = [("x", shape)] + [(f"y{i}", _broadcast_shape(draw, shape))
                               for i in range(draw(st.integers(1, 2)))]
    return _function(inputs, lambda bb, x, *ys: _chain(draw, bb, x, list(ys)))


def case_concat(draw):
    rank = draw(st.integers(1, 4))
    axis = draw(st.integers(0, rank - 1))
    base = [_batch(draw)] + _shape(draw, rank - 1)
    if axis == 0:
        base[0] = draw(SMALL)
    shapes = []
    for _ in range(draw(st.integers(2, 3))):
        s = list(base)
        s[axis] = draw(SMALL)
        shapes.append(s)
    out = list(base)
    out[axis] = sum(s[axis] for s in shapes)
    bias = _broadcast_shape(draw, out)
    inputs = [(f"x{i}", s) for i, s in enumerate(shapes)] + [("b", bias)]

    def body(bb, *xs):
        y = bb.emit(relax.op.concat(list(xs[:-1]), axis=axis))
        return _chain(draw, bb, y, [xs[-1]]) if draw(st.booleans()) else y
    return _function(inputs, body)


def case_resize(draw):
    c, h, w = draw(SMALL), draw(SMALL), draw(SMALL)
    method = draw(st.sampled_from(["nearest_neighbor", "linear", "cubic"]))
    mode = draw(st.sampled_from(["half_pixel", "align_corners", "asymmetric"]))
    low = 2 if mode == "align_corners" else 1   # TOPI divides by (size - 1) there
    size = (draw(st.integers(low, 2 * h + 1)), draw(st.integers(low, 2 * w + 1)))
    rounding = draw(st.sampled_from(["round", "floor", "ceil", "round_prefer_floor"])) \
        if method == "nearest_neighbor" else ""
    return _function([("x", [_batch(draw), c, h, w])], lambda bb, x: bb.emit(
        relax.op.image.resize2d(x, size, method=method, coordinate_transformation_mode=mode,
                                rounding_method=rounding)))


def case_pool(draw):
    rank = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["max", "avg"]))
    k = [draw(st.integers(1, 3)) for _ in range(rank)]
    s = [draw(st.integers(1, 3)) for _ in range(rank)]
    d = [draw(st.integers(1, 2)) if kind == "max" else 1 for _ in range(rank)]
    pads = [draw(st.integers(0, (kk - 1) * dd // 2)) for kk, dd in zip(k, d) for _ in (0, 1)]
    pads = pads[0::2] + pads[1::2]   # begin of every axis, then end
    sp = [draw(st.integers((kk - 1) * dd + 1, (kk - 1) * dd + 12)) for kk, dd in zip(k, d)]
    ceil = draw(st.booleans())
    include_pad = draw(st.booleans())
    op = getattr(relax.op.nn, f"{kind}_pool{rank}d")
    shape = [_batch(draw), draw(SMALL)] + sp
    return _function([("x", shape)], lambda bb, x: bb.emit(op(
        x, pool_size=k, strides=s, padding=pads, dilation=d, ceil_mode=ceil,
        count_include_pad=include_pad)))


def case_reduce(draw):
    rank = draw(st.integers(1, 4))
    shape = [_batch(draw)] + _shape(draw, rank - 1)
    axes = sorted(draw(st.sets(st.integers(0, rank - 1), min_size=1)))
    keep = draw(st.booleans())
    op = draw(st.sampled_from(["mean", "sum", "max", "min", "variance"]))

    def body(bb, x):
        r = bb.emit(getattr(relax.op, op)(x, axis=axes, keepdims=keep))
        if keep and draw(st.booleans()):   # a consumer reading the input too (x * mean)
            return bb.emit(relax.op.multiply(x, r))
        return _chain(draw, bb, r, []) if draw(st.booleans()) else r
    return _function([("x", shape)], body)


def case_softmax(draw):
    rank = draw(st.integers(1, 4))
    shape = [_batch(draw)] + _shape(draw, rank - 1)
    axis = draw(st.integers(-rank, rank - 1))
    log = draw(st.booleans())
    op = relax.op.nn.log_softmax if log else relax.op.nn.softmax
    return _function([("x", shape)], lambda bb, x: bb.emit(op(x, axis=axis)))


def case_layer_norm(draw):
    rank = draw(st.integers(2, 4))
    shape = [_batch(draw)] + _shape(draw, rank - 1)
    n_axes = draw(st.integers(1, rank - 1))
    axes = list(range(rank - n_axes, rank))
    norm = [shape[a] for a in axes]
    return _function([("x", shape), ("gamma", norm), ("beta", norm)], lambda bb, x, g, b: (
        lambda y: _chain(draw, bb, y, []) if draw(st.booleans()) else y)(
            bb.emit(relax.op.nn.layer_norm(x, g, b, axes=axes, epsilon=1e-5))))


def case_group_norm(draw):
    spatial = draw(st.integers(1, 2))
    groups = draw(st.sampled_from([1, 2, 3, 4]))
    c = groups * draw(st.sampled_from([1, 2, 3, 5]))
    shape = [_batch(draw), c] + _shape(draw, spatial, SMALL)
    return _function([("x", shape), ("gamma", [c]), ("beta", [c])], lambda bb, x, g, b: bb.emit(
        relax.op.nn.group_norm(x, g, b, num_groups=groups, channel_axis=1,
                               axes=list(range(2, 2 + spatial)), epsilon=1e-5)))


def case_matmul(draw):
    m, k, n = draw(DIMS), draw(DIMS), draw(DIMS)
    batch_rank = draw(st.integers(0, 2))
    lead = [_batch(draw)] + _shape(draw, batch_rank - 1, SMALL) if batch_rank else []
    a_lead = list(lead)
    b_lead = [d if isinstance(d, tirx.Var) or draw(st.booleans()) else 1 for d in lead]
    b_lead = b_lead[draw(st.integers(0, len(b_lead))):]   # b may have fewer batch axes
    b_shape = b_lead + [k, n] if draw(st.integers(0, 3)) else [k]   # a vector now and then
    inputs = [("a", a_lead + [m, k]), ("b", b_shape)]
    epilogue = draw(st.booleans()) and len(b_shape) > 1
    if epilogue:
        inputs.append(("bias", [n]))

    def body(bb, a, b, *bias):
        y = bb.emit(relax.op.matmul(a, b))
        if bias:
            y = bb.emit(relax.op.nn.relu(relax.op.add(y, bias[0])))
        return y
    return _function(inputs, body)


def case_transpose(draw):
    rank = draw(st.integers(2, 4))
    shape = [_batch(draw)] + _shape(draw, rank - 1)
    perm = draw(st.permutations(list(range(rank))))
    out = [shape[p] for p in perm]
    inputs = [("x", shape), ("b", _broadcast_shape(draw, out))]

    def body(bb, x, b):
        y = bb.emit(relax.op.permute_dims(x, perm))
        return _chain(draw, bb, y, [b]) if draw(st.booleans()) else y
    return _function(inputs, body)


def case_pad(draw):
    rank = draw(st.integers(1, 4))
    shape = [_batch(draw)] + _shape(draw, rank - 1)
    mode = draw(st.sampled_from(["constant", "reflect", "replicate"]))
    widths = []
    for i, dim in enumerate(shape):
        if i == 0 and isinstance(dim, tirx.Var):
            widths += [0, 0]   # pads on the symbolic axis: constant mode only
            continue
        top = 3 if mode != "reflect" else min(3, dim - 1)   # reflect: less than the extent
        widths += [draw(st.integers(0, top)), draw(st.integers(0, top))]
    value = draw(st.sampled_from([0.0, -1.5]))
    return _function([("x", shape)], lambda bb, x: (
        lambda y: _chain(draw, bb, y, []) if draw(st.booleans()) else y)(
            bb.emit(relax.op.nn.pad(x, widths, pad_mode=mode, pad_value=value))))


def case_conv(draw):
    """A convolution convt leaves to TVM (a pad past its kernel), with its bias and ReLU."""
    rank = draw(st.integers(1, 2))
    groups = draw(st.sampled_from([1, 1, 2]))
    cin, cout = groups * draw(st.sampled_from([1, 2, 3, 4])), groups * draw(SMALL)
    k = [draw(st.integers(1, 3)) for _ in range(rank)]
    s = [draw(st.integers(1, 2)) for _ in range(rank)]
    pads = [draw(st.integers(0, kk)) for kk in k + k]
    sp = [draw(st.integers(max(1, kk - b - e), 12)) for kk, b, e in zip(k, pads[:rank],
                                                                       pads[rank:])]
    op = relax.op.nn.conv1d if rank == 1 else relax.op.nn.conv2d
    inputs = [("x", [_batch(draw), cin, *sp]), ("w", [cout, cin // groups, *k]),
              ("b", [1, cout] + [1] * rank)]
    return _function(inputs, lambda bb, x, w, b: bb.emit(relax.op.nn.relu(relax.op.add(
        bb.emit(op(x, w, strides=s, padding=pads, groups=groups)), b))))


CASES = {name[5:]: f for name, f in globals().items() if name.startswith("case_")}


# ---- PrimFuncs, built and run ---------------------------------------------------------------------

def prim_funcs(mod):
    """The PrimFuncs convt's Relax pipeline hands to its scheduling step, unscheduled."""
    caught = []

    def capture(func):
        caught.append(func)
        return func, "test.capture"
    with tvm.transform.PassContext(opt_level=3):
        T.graph_pipeline(capture)(mod)
    return caught


def _buffer_params(func):
    return [p for p in func.params if hasattr(p.ty, "shape")]


def _symbols(func):
    found = {}
    for p in func.params:
        if hasattr(p.ty, "shape"):
            for d in p.ty.shape:
                if isinstance(d, tirx.Var):
                    found[d.name] = d
        else:
            found[p.name] = p
    return found


def _concrete(shape, binds):
    ana = tvm.sym.Analyzer()
    for v, val in binds.items():
        ana.bind(v, val)
    return tuple(int(ana.simplify(d)) for d in shape)


class Built:
    """PrimFuncs built together (one LLVM module) for the x86 target, each callable on numpy
    arrays (one per buffer parameter)."""

    def __init__(self, funcs: dict):
        names = {name: f"f{i}" for i, name in enumerate(funcs)}   # rule names hold dots
        lib = T.build_tir(T.ir_module({names[n]: f for n, f in funcs.items()}), TARGET)
        self.funcs = {n: (f, lib[names[n]]) for n, f in funcs.items()}

    def run(self, name, arrays, binds):
        func, entry = self.funcs[name]
        args, given = [], iter(arrays)
        for p in func.params:
            if hasattr(p.ty, "shape"):
                args.append(tvm.runtime.tensor(np.array(next(given), copy=True, order="C")))
            else:   # a scalar shape parameter (FuseTIR adds them for symbolic extents)
                args.append(binds[p])
        entry(*args)
        return [a.numpy() for a in args if hasattr(a, "numpy")]


def _close(got, expected, what):
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    assert np.array_equal(np.isnan(got), np.isnan(expected)), f"{what}: NaN where not expected"
    finite = ~np.isnan(expected)
    scale = float(np.max(np.abs(expected[finite]), initial=0)) or 1.0
    err = float(np.max(np.abs(got[finite].astype(np.float64) - expected[finite]), initial=0))
    assert err <= REL * scale, f"{what}: max |error| {err:.3g} > {REL} x {scale:.3g}"


def check_rules(func, rng, batches):
    """Every rule of ``cpu_graph.RULES`` that applies to ``func`` keeps its values, at each
    size of its symbolic extents in ``batches``; returns the names of the rules that applied."""
    symbols = _symbols(func)
    sizes = batches if symbols else batches[:1]
    scheduled = {}
    for rule in cpu_graph.RULES:
        if rule is FALLBACK:   # never declines, never fails
            sch = rule.apply(func, INFO)
            assert sch is not None, f"{rule.name} declined\n{func.script()}"
        else:
            try:
                sch = rule.apply(func, INFO)
            except (T.ScheduleError, T.TVMError):   # a decline, as ``schedule_func`` reads it
                sch = None
        if sch is not None:
            scheduled[rule.name] = sch.mod["main"]
    picked = cpu_graph.schedule_func(func, INFO)[1]
    assert picked == next(iter(scheduled)), (picked, list(scheduled))
    built = Built({"unscheduled": func, **scheduled})
    for size in sizes:
        binds = {v: size for v in symbols.values()}
        arrays = [rng.standard_normal(_concrete(p.ty.shape, binds)).astype(str(p.ty.dtype))
                  for p in _buffer_params(func)]
        expected = built.run("unscheduled", arrays, binds)
        outputs = [i for i, (a, e) in enumerate(zip(arrays, expected))
                   if not np.array_equal(a, e, equal_nan=True)]
        assert outputs, "the unscheduled PrimFunc wrote nothing"
        fresh = [np.full_like(a, np.nan) if i in outputs else a for i, a in enumerate(arrays)]
        for name in scheduled:
            got = built.run(name, fresh, binds)
            for i in range(len(arrays)):
                try:
                    _close(got[i], expected[i], f"{name}, parameter {i}, symbols at {size}")
                except AssertionError as err:
                    raise AssertionError(f"{err}\n{func.script()}") from None
    return list(scheduled)


@pytest.mark.parametrize("case", sorted(CASES))
@graph_settings()
@given(data=st.data())
def test_every_graph_rule_that_applies_keeps_the_values(case, data):
    mod = CASES[case](data.draw)
    funcs = prim_funcs(mod)
    assert funcs, "the pipeline left no PrimFunc to schedule"
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1), label="seed"))
    for func in funcs:
        check_rules(func, rng, batches=[1, data.draw(st.integers(2, 5), label="run batch")])


def test_the_rules_cover_what_they_claim(rng):
    """A fixed elementwise chain is cpu.injective's, a softmax cpu.reduction's (neither may
    decline what it is written for), and the fallback schedules both."""
    n = tirx.Var("n", "int64")
    chain = _function([("x", [n, 7, 33]), ("y", [7, 1])], lambda bb, x, y: bb.emit(
        relax.op.nn.relu(relax.op.add(relax.op.multiply(x, y), _const(0.5)))))
    soft = _function([("x", [3, 5, 48])], lambda bb, x: bb.emit(relax.op.nn.softmax(x)))
    for mod, rule in ((chain, "cpu.injective"), (soft, "cpu.reduction")):
        funcs = prim_funcs(mod)
        assert len(funcs) == 1
        assert rule in check_rules(funcs[0], rng, [1, 4])
        assert cpu_graph.schedule_func(funcs[0], INFO)[1] == rule
