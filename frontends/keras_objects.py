"""Keras initializers, regularizers and constraints: identifiers -> Keras' serialized dicts, and
numpy sampling for initializers. Regularizers and constraints act only in training; convt keeps
them so that ``get_config()`` round-trips."""
from __future__ import annotations

import math

import numpy as np

_FAN = {"seed": None, "input_axes": None, "output_axes": None}

INITIALIZERS = {  # snake name -> (class_name, default config)
    "glorot_uniform": ("GlorotUniform", _FAN), "glorot_normal": ("GlorotNormal", _FAN),
    "he_uniform": ("HeUniform", _FAN), "he_normal": ("HeNormal", _FAN),
    "lecun_uniform": ("LecunUniform", _FAN), "lecun_normal": ("LecunNormal", _FAN),
    "zeros": ("Zeros", {}), "ones": ("Ones", {}),
    "random_normal": ("RandomNormal", {"seed": None, "mean": 0.0, "stddev": 0.05}),
    "random_uniform": ("RandomUniform", {"seed": None, "minval": -0.05, "maxval": 0.05}),
    "truncated_normal": ("TruncatedNormal", {"seed": None, "mean": 0.0, "stddev": 0.05}),
    "orthogonal": ("Orthogonal", {"seed": None, "gain": 1.0}),
    "variance_scaling": ("VarianceScaling", {"seed": None, "scale": 1.0, "mode": "fan_in",
                                             "distribution": "truncated_normal", **_FAN}),
    "identity": ("Identity", {}),
    "constant": ("Constant", {"value": 0.0}),
}
REGULARIZERS = {
    "l1": ("L1", {"l1": 0.009999999776482582}), "l2": ("L2", {"l2": 0.01}),
    "l1_l2": ("L1L2", {"l1": 0.0, "l2": 0.0}),
    "orthogonal_regularizer": ("OrthogonalRegularizer",
                               {"factor": 0.009999999776482582, "mode": "rows"}),
}
CONSTRAINTS = {
    "max_norm": ("MaxNorm", {"max_value": 2, "axis": 0}), "non_neg": ("NonNeg", {}),
    "unit_norm": ("UnitNorm", {"axis": 0}),
    "min_max_norm": ("MinMaxNorm", {"min_value": 0.0, "max_value": 1.0, "rate": 1.0, "axis": 0}),
}
_ALIASES = {"GlorotUniform": "glorot_uniform", "uniform": "random_uniform",
            "normal": "random_normal", "zero": "zeros", "one": "ones"}


def _table_by_class(table):
    return {cls: (name, cfg) for name, (cls, cfg) in table.items()}


def _serialize(kind, table, identifier, allow_none):
    """Keras' ``{"module", "class_name", "config", "registered_name"}`` form of an identifier."""
    module = f"keras.{kind}"
    if identifier is None:
        if allow_none:
            return None
        raise ValueError(f"Could not interpret {kind[:-1]} identifier: None")
    if isinstance(identifier, str):
        key = _ALIASES.get(identifier, identifier)
        by_class = _table_by_class(table)
        if key in table:
            cls, cfg = table[key]
        elif key in by_class:
            cls, cfg = key, by_class[key][1]
        else:
            raise ValueError(f"Could not interpret {kind[:-1]} identifier: {identifier}")
        return {"module": module, "class_name": cls, "config": dict(cfg),
                "registered_name": None}
    if isinstance(identifier, dict) and "class_name" in identifier:
        cls = identifier["class_name"]
        by_class = _table_by_class(table)
        if cls not in by_class:
            raise ValueError(f"Could not interpret {kind[:-1]} identifier: {identifier}")
        cfg = dict(by_class[cls][1])
        cfg.update(identifier.get("config") or {})
        return {"module": module, "class_name": cls, "config": cfg, "registered_name": None}
    raise ValueError(f"Could not interpret {kind[:-1]} identifier: {identifier!r}")


def serialize_initializer(identifier):
    return _serialize("initializers", INITIALIZERS, identifier, allow_none=False)


def serialize_regularizer(identifier):
    return _serialize("regularizers", REGULARIZERS, identifier, allow_none=True)


def serialize_constraint(identifier):
    return _serialize("constraints", CONSTRAINTS, identifier, allow_none=True)


def _fans(shape):
    if len(shape) < 2:
        n = shape[0] if shape else 1
        return n, n
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def sample(config, shape, rng=None):
    """Draw a float32 array of ``shape`` from a serialized Keras initializer (same
    distribution as Keras, not the same numbers)."""
    rng = rng or np.random.default_rng(config["config"].get("seed"))
    cls, cfg = config["class_name"], config["config"]
    fan_in, fan_out = _fans(shape)
    if cls == "Zeros":
        return np.zeros(shape, np.float32)
    if cls == "Ones":
        return np.ones(shape, np.float32)
    if cls == "Constant":
        return np.full(shape, cfg.get("value", 0.0), np.float32)
    if cls == "RandomNormal":
        return rng.normal(cfg["mean"], cfg["stddev"], shape).astype(np.float32)
    if cls == "RandomUniform":
        return rng.uniform(cfg["minval"], cfg["maxval"], shape).astype(np.float32)
    if cls == "TruncatedNormal":
        return _truncated(rng, shape, cfg["stddev"]) + np.float32(cfg["mean"])
    if cls in ("Orthogonal", "Identity"):
        flat = (math.prod(shape[:-1]), shape[-1])
        if cls == "Identity":
            return np.eye(*flat, dtype=np.float32).reshape(shape)
        a = rng.normal(size=(max(flat), min(flat)))
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))
        q = q if flat[0] >= flat[1] else q.T
        return (cfg.get("gain", 1.0) * q).reshape(shape).astype(np.float32)
    scale, mode, dist = {
        "GlorotUniform": (1.0, "fan_avg", "uniform"), "GlorotNormal": (1.0, "fan_avg", "truncated_normal"),
        "HeUniform": (2.0, "fan_in", "uniform"), "HeNormal": (2.0, "fan_in", "truncated_normal"),
        "LecunUniform": (1.0, "fan_in", "uniform"), "LecunNormal": (1.0, "fan_in", "truncated_normal"),
        "VarianceScaling": (cfg.get("scale", 1.0), cfg.get("mode", "fan_in"),
                            cfg.get("distribution", "truncated_normal")),
    }[cls]
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    var = scale / max(1.0, n)
    if dist == "uniform":
        lim = math.sqrt(3.0 * var)
        return rng.uniform(-lim, lim, shape).astype(np.float32)
    if dist == "untruncated_normal":
        return rng.normal(0, math.sqrt(var), shape).astype(np.float32)
    return _truncated(rng, shape, math.sqrt(var) / 0.87962566103423978)


def _truncated(rng, shape, stddev):
    out = rng.normal(0, 1, shape)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.normal(0, 1, int(bad.sum()))
        bad = np.abs(out) > 2
    return (out * stddev).astype(np.float32)
