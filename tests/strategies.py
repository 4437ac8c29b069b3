"""Hypothesis strategies over the whole ConvTranspose space: rank 1-3, both layouts, strides 1-4,
kernels 1-5, dilation 1-3, explicit pads and output padding (empty outputs included), groups,
spatial sizes from 1, 1-3 images, channels from 1 and off every vector width.

Sizes stay small so that one example (one kernel build) takes a fraction of a second; what
the shapes exercise is the arithmetic of tiles, chunks, phases and borders, not volume.
"""
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from convt.compiler.spec import ConvTransposeSpec

# CONVT_FUZZ=long: the profile to run before a stop (5,000 examples over the fuzz tests)
PROFILE = os.environ.get("CONVT_FUZZ", "ci")
EXAMPLES = {  # per test: ci ~300 examples in all, long ~5,000
    "ci": {"rules": 150, "op": 50, "layer": 50, "onnx": 50},
    "long": {"rules": 3000, "op": 700, "layer": 700, "onnx": 600},
}[PROFILE]


def fuzz_settings(test):
    """The profile's example count; derandomized in CI (the same examples on every run),
    fresh ones in the long profile."""
    return settings(max_examples=EXAMPLES[test], deadline=None, derandomize=PROFILE == "ci",
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                    print_blob=True)


CHANNELS = st.sampled_from([1, 2, 3, 4, 5, 7, 8, 9, 12, 16, 17, 24, 32, 33])
MAX_SPATIAL = {1: 24, 2: 11, 3: 6}


@st.composite
def geometry(draw, rank=None, layer_rules=False):
    """(rank, in_spatial, kernel, strides, dilation): Keras' layer rule (no stride > 1 with a
    dilation > 1 on any axis) when ``layer_rules``."""
    rank = rank or draw(st.integers(1, 3))
    sp = tuple(draw(st.lists(st.integers(1, MAX_SPATIAL[rank]), min_size=rank, max_size=rank)))
    k = tuple(draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank)))
    ints = st.lists(st.integers(1, 4), min_size=rank, max_size=rank)
    dils = st.lists(st.integers(1, 3), min_size=rank, max_size=rank)
    s, d = tuple(draw(ints)), tuple(draw(dils))
    if layer_rules and max(s) > 1 and max(d) > 1:
        if draw(st.booleans()):
            s = (1,) * rank
        else:
            d = (1,) * rank
    return rank, sp, k, s, d


@st.composite
def specs(draw, batch=True):
    """A ConvTransposeSpec anywhere in the space, outputs with an empty axis now and then."""
    rank, sp, k, s, d = draw(geometry())
    forward = draw(st.sampled_from([False, False, True]))   # a strided Conv: conv_strides
    cs = tuple(draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank))) if forward \
        else None
    if forward:
        s = (1,) * rank
    groups = draw(st.sampled_from([1, 1, 1, 2, 3, 4]))
    cin = groups * draw(st.sampled_from([1, 2, 3, 4, 5, 8, 16]))
    cout = groups * draw(st.sampled_from([1, 2, 3, 4, 5, 8, 16])) if groups > 1 else draw(CHANNELS)
    full = [(i - 1) * ss + (kk - 1) * dd + 1 for i, ss, kk, dd in zip(sp, s, k, d)]
    op = (0,) * rank if forward else tuple(
        draw(st.lists(st.integers(0, 3), min_size=rank, max_size=rank)))
    pb, pe = [], []
    for f, o in zip(full, op):
        b = draw(st.integers(0, min(f + o, 4)))
        pb.append(b)
        pe.append(draw(st.integers(0, min(f + o - b, 4))))
    act = draw(st.sampled_from(["linear", "linear", "relu", "tanh", "prelu", "leaky_relu"]))
    args = (0.3,) if act == "leaky_relu" and draw(st.booleans()) else ()
    return ConvTransposeSpec(
        sp, cin, cout, k, s, d, tuple(pb), tuple(pe), op, groups=groups,
        batch=draw(st.sampled_from([None, 1, 2, 3])) if batch else None,
        layout=draw(st.sampled_from(["channels_last", "channels_first"])),
        kernel_layout=draw(st.sampled_from(["spatial_oi", "io_spatial"])),
        bias=draw(st.booleans()), activation=act, activation_args=args, conv_strides=cs,
        residual=draw(st.sampled_from([False, False, True])))


@st.composite
def keras_op_args(draw):
    """Arguments of ``keras.ops.conv_transpose``: (input shape, kernel shape, kwargs)."""
    rank, sp, k, s, d = draw(geometry())
    fmt = draw(st.sampled_from(["channels_last", "channels_first"]))
    n, cin, cout = draw(st.integers(1, 3)), draw(CHANNELS), draw(CHANNELS)
    op = draw(st.one_of(st.none(), st.integers(0, 3),
                        st.lists(st.integers(0, 3), min_size=rank, max_size=rank)))
    x_shape = (n, *sp, cin) if fmt == "channels_last" else (n, cin, *sp)
    return x_shape, k + (cout, cin), dict(
        strides=list(s), padding=draw(st.sampled_from(["valid", "same"])), output_padding=op,
        data_format=fmt, dilation_rate=list(d))


@st.composite
def keras_layer_args(draw):
    """(class name, constructor kwargs, input shape) of a Conv{1,2,3}DTranspose Keras accepts."""
    rank, sp, k, s, d = draw(geometry(layer_rules=True))
    fmt = draw(st.sampled_from(["channels_last", "channels_first"]))
    n, cin, cout = draw(st.integers(1, 3)), draw(CHANNELS), draw(CHANNELS)
    op = None
    if draw(st.booleans()):
        op = [draw(st.integers(0, ss - 1)) for ss in s]
    x_shape = (n, *sp, cin) if fmt == "channels_last" else (n, cin, *sp)
    kwargs = dict(filters=cout, kernel_size=list(k), strides=list(s),
                  padding=draw(st.sampled_from(["valid", "same"])), output_padding=op,
                  data_format=fmt, dilation_rate=list(d), use_bias=draw(st.booleans()),
                  activation=draw(st.sampled_from([None, "relu", "tanh", "softmax"])))
    return f"Conv{rank}DTranspose", kwargs, x_shape


@st.composite
def onnx_attrs(draw):
    """(x shape, w shape, attributes, bias) of one ONNX ConvTranspose node onnxruntime runs."""
    rank, sp, k, s, d = draw(geometry())
    group = draw(st.sampled_from([1, 1, 2, 3]))
    cin = group * draw(st.sampled_from([1, 2, 3, 4, 8]))
    cout_g = draw(st.sampled_from([1, 2, 3, 5, 8]))
    n = draw(st.integers(1, 3))
    op = [draw(st.integers(0, ss - 1)) for ss in s]
    attrs = {"strides": list(s), "dilations": list(d)}
    if group > 1:
        attrs["group"] = group
    if any(op):
        attrs["output_padding"] = op
    full = [(i - 1) * ss + (kk - 1) * dd + 1 + o for i, ss, kk, dd, o in zip(sp, s, k, d, op)]
    how = draw(st.sampled_from(["pads", "pads", "auto", "output_shape"]))
    if how == "pads":
        pb = [draw(st.integers(0, min(f - 1, 3))) for f in full]
        pe = [draw(st.integers(0, min(f - 1 - b, 3))) for f, b in zip(full, pb)]
        if any(pb + pe):
            attrs["pads"] = pb + pe
    elif how == "auto":
        attrs["auto_pad"] = draw(st.sampled_from(["SAME_UPPER", "SAME_LOWER", "VALID"]))
    else:   # with SAME_* the split of an odd total moves; past ``full`` it appends zeros
        attrs["output_shape"] = [draw(st.integers(max(1, f - 3), f + ss - 1))
                                 for f, ss in zip(full, s)]
        auto = draw(st.sampled_from([None, None, "SAME_UPPER", "SAME_LOWER"]))
        if auto:
            attrs["auto_pad"] = auto
    if draw(st.booleans()):
        attrs["kernel_shape"] = list(k)
    return (n, cin, *sp), (cin, cout_g, *k), attrs, draw(st.booleans())

