"""Keras sources for the CLI: a layer config or a ``model.to_json()`` document, whose
ConvTranspose layers become named artifact entries, and their weights from ``.npz`` or a Keras 3
``.weights.h5`` file."""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from .keras_layers import _CLASSES, deserialize


class KerasSourceError(ValueError):
    pass


def _class_name(entry) -> str:
    name = entry.get("class_name", "") if isinstance(entry, dict) else ""
    return name.rsplit(">", 1)[-1]   # "keras.layers>Conv2DTranspose" (registered names)


def _declared_input_shape(entry) -> Optional[tuple]:
    """The input shape a Keras 3 document records for a layer, batch axis included."""
    build = entry.get("build_config") or {}
    config = entry.get("config") or {}
    for shape in (build.get("input_shape"), config.get("batch_shape"),
                  config.get("batch_input_shape")):
        if isinstance(shape, (list, tuple)) and shape and not isinstance(shape[0], (list, dict)):
            return tuple(shape)
    return None


def _walk(entry, found: list):
    if _class_name(entry) in _CLASSES:
        found.append(entry)
        return
    config = entry.get("config") if isinstance(entry, dict) else None
    if isinstance(config, dict):
        for sub in config.get("layers") or []:
            _walk(sub, found)


def conv_layers(doc: dict, source: str = "the config") -> List[Tuple[object, Optional[tuple]]]:
    """[(layer, declared input shape or None)] of every ConvTranspose layer in ``doc``: a single
    layer entry or a (Sequential / Functional, possibly nested) model."""
    if not isinstance(doc, dict):
        raise KerasSourceError(f"{source}: expected a JSON object, got {type(doc).__name__}")
    found: list = []
    _walk(doc, found)
    if not found:
        raise KerasSourceError(f"{source}: no ConvTranspose layer ({', '.join(sorted(_CLASSES))}) "
                               f"in this Keras document")
    layers = [(deserialize(dict(e, class_name=_class_name(e))), _declared_input_shape(e))
              for e in found]
    names = [layer.name for layer, _ in layers]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise KerasSourceError(f"{source}: layer names must be unique, {dup} repeat")
    return layers


def read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise KerasSourceError(f"{path}: not valid JSON ({e})") from None


def _h5_weights(path: str) -> Dict[str, List[np.ndarray]]:
    try:
        import h5py
    except ImportError:
        raise KerasSourceError(f"{path}: reading Keras .weights.h5 files needs h5py "
                               f"(pip install 'convt[keras]')") from None
    found: Dict[str, List[np.ndarray]] = {}

    def visit(name, obj):
        # Keras 3 layout: .../layers/<layer name>/vars/<i>
        if isinstance(obj, h5py.Group) and name.endswith("/vars") and "/" in name:
            layer = name[:-len("/vars")].rsplit("/", 1)[-1]
            keys = sorted(obj.keys(), key=lambda k: int(k) if k.isdigit() else k)
            if keys:
                found[layer] = [np.asarray(obj[k]) for k in keys]

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return found


def _npz_weights(path: str, names: List[str]) -> Dict[str, List[np.ndarray]]:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    found = {}
    for name in names:
        for kernel, bias in ((f"{name}/kernel", f"{name}/bias"), (f"{name}/0", f"{name}/1")):
            if kernel in arrays:
                found[name] = [arrays[kernel]] + ([arrays[bias]] if bias in arrays else [])
    if len(names) == 1 and not found:
        for kernel, bias in (("kernel", "bias"), ("arr_0", "arr_1")):
            if kernel in arrays:
                found[names[0]] = [arrays[kernel]] + ([arrays[bias]] if bias in arrays else [])
    return found


def load_weights(path: str, names: List[str]) -> Dict[str, List[np.ndarray]]:
    """{layer name: [kernel, (bias)]} from ``.npz`` (keys ``<layer>/kernel`` and
    ``<layer>/bias``; a one-layer source may say ``kernel``/``bias``) or ``.weights.h5``."""
    if not os.path.isfile(path):
        raise KerasSourceError(f"weights file {path!r} does not exist")
    if path.endswith(".h5"):
        found = _h5_weights(path)
    elif path.endswith(".npz"):
        found = _npz_weights(path, names)
    else:
        raise KerasSourceError(f"weights file {path!r}: expected .npz or .weights.h5")
    missing = [n for n in names if n not in found]
    if missing:
        raise KerasSourceError(f"weights file {path!r} has no weights for layers {missing} "
                               f"(it has {sorted(found) or 'none'})")
    return {n: found[n] for n in names}
