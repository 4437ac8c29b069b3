"""Keras 3 argument rules and Keras padding -> explicit spec pads (the one place for "same")."""
from __future__ import annotations

import json
import os

PADDINGS = ("valid", "same")
DATA_FORMATS = ("channels_last", "channels_first")


def image_data_format() -> str:
    """Keras' default data format: ``image_data_format`` in $KERAS_HOME/keras.json or
    ~/.keras/keras.json, channels_last when absent."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            value = json.load(f).get("image_data_format", "channels_last")
    except (OSError, ValueError):
        return "channels_last"
    return value if value in DATA_FORMATS else "channels_last"


def standardize_data_format(value) -> str:
    if value is None:
        return image_data_format()
    value = str(value).lower()
    if value not in DATA_FORMATS:
        raise ValueError(f"The `data_format` argument must be one of {set(DATA_FORMATS)}. "
                         f"Received: data_format={value}")
    return value


def standardize_padding(value) -> str:
    if not isinstance(value, str) or value.lower() not in PADDINGS:
        raise ValueError(f"The `padding` argument must be one of {set(PADDINGS)}. "
                         f"Received: padding={value}")
    return value.lower()


def standardize_tuple(value, n, name, allow_zero=False):
    """int or iterable of n ints -> tuple; positive (or >= 0 with allow_zero), as Keras."""
    msg = f"The `{name}` argument must be a tuple of {n} integers. Received {name}={value}"
    if isinstance(value, bool):
        raise ValueError(msg)
    if isinstance(value, int):
        values = (value,) * n
    else:
        try:
            values = tuple(value)
        except TypeError:
            raise ValueError(msg) from None
        if len(values) != n:
            raise ValueError(msg)
        try:
            values = tuple(int(v) for v in values)
        except (TypeError, ValueError):
            raise ValueError(msg) from None
    bad = [v for v in values if (v < 0 if allow_zero else v <= 0)]
    if bad:
        rule = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"The `{name}` argument must be a tuple of {n} integers {rule}. "
                         f"Received {name}={value}")
    return values


def keras_pads(in_len, k, s, d, padding, output_padding):
    """(pads_begin, pads_end, extra_end, out_len) of one axis for Keras' padding rule.

    K = (k-1)*d + 1; out = (i-1)*s + max(K, s) (valid, None), (i-1)*s + K + op (valid),
    i*s (same, None), (i-1)*s + K%2 + op (same). "same" crops max((K-s)//2, 0) or
    max((K - K%2 - op)//2, 0) at the start: the odd unit is cut on the right.
    """
    K = (k - 1) * d + 1
    op = output_padding
    if padding == "valid":
        out = (in_len - 1) * s + (max(K, s) if op is None else K + op)
        begin = 0
    elif op is None:
        out, begin = in_len * s, max((K - s) // 2, 0)
    else:
        out, begin = (in_len - 1) * s + K % 2 + op, max((K - K % 2 - op) // 2, 0)
    full = (in_len - 1) * s + K
    end = full - begin - out
    return begin, max(end, 0), max(-end, 0), out
