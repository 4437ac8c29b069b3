"""Generate tests/fixtures/keras_cases.npz + keras_cases.json from real Keras 3 (JAX backend).

Needs ``pip install keras jax`` (generation time only; the tests read the committed files).
Op cases: random inputs and kernels through keras.ops.conv_transpose. Layer cases: a layer built
from the constructor, its get_config(), weights and output. Invalid cases: the exception type
Keras raises for the constructor and for from_config.
"""
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
import keras  # noqa: E402
import numpy as np  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
rng = np.random.default_rng(2026)
arrays, cases = {}, []


def add_array(key, a):
    arrays[key] = np.asarray(a, np.float32)
    return key


def op_case(rank, cin, cout, sp, k, s, pad, op, df, d, n=2):
    shape = (n,) + sp + (cin,) if df == "channels_last" else (n, cin) + sp
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(k + (cout, cin)).astype(np.float32)
    y = np.asarray(keras.ops.conv_transpose(x, w, strides=s, padding=pad, output_padding=op,
                                            data_format=df, dilation_rate=d))
    i = len(cases)
    cases.append({"kind": "op", "x": add_array(f"op{i}_x", x), "kernel": add_array(f"op{i}_w", w),
                  "y": add_array(f"op{i}_y", y), "strides": s, "padding": pad,
                  "output_padding": op, "data_format": df, "dilation_rate": d})


def layer_case(cls, args, kwargs, in_shape):
    layer = getattr(keras.layers, cls)(*args, **kwargs)
    x = rng.standard_normal(in_shape).astype(np.float32)
    layer.build(in_shape)
    ws = [rng.standard_normal(w.shape).astype(np.float32) * 0.3 for w in layer.get_weights()]
    layer.set_weights(ws)
    y = np.asarray(layer(x))
    i = len(cases)
    cases.append({"kind": "layer", "class_name": cls, "args": args, "kwargs": kwargs,
                  "config": json.loads(json.dumps(layer.get_config())),
                  "x": add_array(f"l{i}_x", x), "y": add_array(f"l{i}_y", y),
                  "weights": [add_array(f"l{i}_w{j}", w) for j, w in enumerate(ws)]})


def invalid_case(cls, kwargs):
    def kind(fn):
        try:
            fn()
        except Exception as e:  # record the type Keras raises
            return type(e).__name__
        return None
    c = getattr(keras.layers, cls)
    cases.append({"kind": "invalid", "class_name": cls, "kwargs": kwargs,
                  "constructor": kind(lambda: c(**kwargs)),
                  "from_config": kind(lambda: c.from_config(dict(kwargs)))})


def main():
    for df in ("channels_last", "channels_first"):
        for pad in ("valid", "same", "SAME"):
            for k, s, op, d in [(3, 2, None, 1), (4, 2, None, 1), (3, 2, 1, 1), (2, 3, None, 1),
                                (5, 1, None, 2), (1, 1, None, 1), (3, 2, 0, 1), (4, 3, 2, 1),
                                (3, 2, None, 2), (5, 3, 1, 2)]:
                op_case(1, 3, 4, (7,), (k,), s, pad.lower() if pad != "SAME" else pad, op, df, d)
                op_case(2, 3, 5, (5, 6), (k, max(1, k - 1)), (s, max(1, s - 1)), pad, op, df,
                        d)
        op_case(3, 2, 3, (3, 4, 2), (3, 2, 2), (2, 1, 2), "same", None, df, 1)
        op_case(3, 2, 3, (3, 3, 3), (2, 3, 2), 2, "valid", (1, 0, 1), df, (1, 1, 1))
        op_case(2, 4, 2, (1, 1), (5, 4), (2, 3), "same", None, df, 1)
    acts = ["relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "sigmoid", "hard_sigmoid",
            "silu", "swish", "hard_silu", "mish", "softplus", "softsign", "tanh", "exponential",
            "linear", None, "softmax", "log_softmax", "celu", "hard_tanh"]
    for i, act in enumerate(acts):
        cls = ["Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"][i % 3]
        r = i % 3 + 1
        df = "channels_first" if i % 2 else "channels_last"
        sp = (6, 5, 4)[:r]
        shape = (2,) + sp + (3,) if df == "channels_last" else (2, 3) + sp
        layer_case(cls, [4, 3], {"strides": 2, "padding": "same" if i % 4 < 2 else "valid",
                                 "activation": act, "data_format": df,
                                 "output_padding": 1 if i % 5 == 0 else None}, shape)
    layer_case("Conv2DTranspose", [6, (3, 2)], {"dilation_rate": (2, 1), "use_bias": False,
                                                "kernel_regularizer": "l2",
                                                "kernel_constraint": "max_norm",
                                                "name": "dil"}, (1, 5, 5, 2))
    layer_case("Conv3DTranspose", [2, 2, (2, 1, 2), "same", "channels_first"], {},
               (1, 3, 2, 3, 2))
    layer_case("Convolution2DTranspose", [3, 4, 2], {"bias_initializer": "ones"}, (1, 4, 4, 2))
    bad = [{"filters": 0, "kernel_size": 3}, {"filters": -2, "kernel_size": 3},
           {"filters": 4, "kernel_size": 0}, {"filters": 4, "kernel_size": 3, "strides": 0},
           {"filters": 4, "kernel_size": 3, "padding": "full"},
           {"filters": 4, "kernel_size": 3, "data_format": "NHWC"},
           {"filters": 4, "kernel_size": 3, "activation": "nope"},
           {"filters": 4, "kernel_size": 3, "strides": 2, "output_padding": 2},
           {"filters": 4, "kernel_size": 3, "strides": 2, "dilation_rate": 2},
           {"filters": 4, "kernel_size": (3, 3, 3, 3)},
           {"filters": 4, "kernel_size": 3, "unknown_arg": 1},
           {"filters": 4, "kernel_size": 3, "kernel_initializer": "nope"},
           {"filters": 4, "kernel_size": 3, "output_padding": -1}]
    for cls in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"):
        for kw in bad:
            invalid_case(cls, kw)
    invalid_case("Conv2DTranspose", {"filters": 4, "kernel_size": 3, "strides": (2, 1),
                                     "dilation_rate": (1, 2)})
    os.makedirs(OUT, exist_ok=True)
    np.savez_compressed(os.path.join(OUT, "keras_cases.npz"), **arrays)
    with open(os.path.join(OUT, "keras_cases.json"), "w") as f:
        json.dump({"keras_version": keras.__version__, "cases": cases}, f, indent=0)
    print(f"{len(cases)} cases, keras {keras.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()
