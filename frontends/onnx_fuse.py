"""Fold what follows a ConvTranspose into its kernel, on the ONNX graph before import.

A chain of single-consumer nodes after a ConvTranspose is absorbed while it stays foldable:

* per-channel (or scalar) constant ``Add``/``Sub``, ``Mul``/``Div`` and inference
  ``BatchNormalization`` become a per-channel affine map ``a*y + c``, folded into the weights
  (``W*a``) and the bias (``a*b + c``), computed in float64;
* then an ``Add`` of a computed tensor of the output's exact shape (a residual), the kernel's
  5th input, added before
* at most one elementwise activation (Relu, LeakyRelu, Sigmoid, Tanh, Clip, HardSigmoid,
  Elu, Softplus, Mish, HardSwish, exact Gelu, PRelu with a per-channel or scalar slope, and
  SiLU and Mish as exported, ``x * sigmoid(x)`` / ``x * tanh(softplus(x))`` over two nodes
  reading ``x``) becomes the kernel's epilogue.

Scaling needs a constant weight; a bias supplied at run time stops the affine part. The fused
node keeps op type ConvTranspose and carries ``convt_activation``, ``convt_activation_args`` and
``convt_node`` (the original node's name for error messages); a PRelu slope is its 4th input.
The fused node takes the place of the chain's last node (a residual may be computed after the
convolution).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .onnx_node import attr_text

AFFINE_OPS = ("Add", "Sub", "Mul", "Div", "BatchNormalization")
F32_MAX = float(np.finfo(np.float32).max)


def constants(graph):
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in consts:
            consts[node.output[0]] = consts[node.input[0]]
        elif node.op_type == "Constant" and len(node.attribute) == 1:
            a = node.attribute[0]
            if a.name == "value":
                consts[node.output[0]] = numpy_helper.to_array(a.t)
            elif a.name in ("value_float", "value_floats"):
                consts[node.output[0]] = np.asarray(
                    a.f if a.name == "value_float" else list(a.floats), np.float32)
    return consts


def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _per_channel(v, channels, rank, axis=1):
    """A constant that broadcasts along the channel axis (``axis``: 1 for (N, C, *spatial),
    -1 channels last) of a rank-``rank`` tensor only, as a (C,) float64 vector; None when it
    broadcasts any other way."""
    if v is None or v.ndim > rank or v.dtype.kind != "f":
        return None
    axis = axis % rank
    shape = (1,) * (rank - v.ndim) + v.shape
    if any(d != 1 for i, d in enumerate(shape) if i != axis) or shape[axis] not in (1, channels):
        return None
    return np.broadcast_to(v.reshape(-1).astype(np.float64), (channels,))


class _Chain:
    """Affine map ``a*y + c`` and the activation collected so far."""

    def __init__(self, channels):
        self.a = np.ones(channels)
        self.c = np.zeros(channels)
        self.activation, self.args, self.slope = None, (), None
        self.nodes = []
        self.axis = 1   # of the channels: -1 for a channels_last kernel (MatMul, Gemm)
        self.residual = None   # name of a same-shape tensor added before the activation

    @property
    def scaled(self):
        return bool(np.any(self.a != 1))


def _affine_step(node, cur, consts, chain, rank, channels, can_scale, can_shift):
    """Fold one affine node into ``chain``; False when it cannot be folded."""
    ins = list(node.input)
    if node.op_type == "BatchNormalization":
        uses_stats = len(node.output) > 1 and any(node.output[1:])  # training outputs
        if uses_stats or ins[0] != cur or not can_scale or chain.axis != 1:
            return False
        vals = [consts.get(n) for n in ins[1:5]]
        if any(v is None for v in vals):
            return False
        if int(_attrs(node).get("training_mode", 0)):
            return False
        gamma, beta, mean, var = (np.asarray(v, np.float64).reshape(-1) for v in vals)
        if any(v.size != channels for v in (gamma, beta, mean, var)):
            return False
        scale = gamma / np.sqrt(var + float(_attrs(node).get("epsilon", 1e-5)))
        chain.a, chain.c = chain.a * scale, chain.c * scale + beta - mean * scale
        return True
    if len(ins) != 2 or ins.count(cur) != 1:
        return False
    other = ins[1] if ins[0] == cur else ins[0]
    v = _per_channel(consts.get(other), channels, rank, chain.axis)
    if v is None:
        return False
    if node.op_type in ("Add", "Sub"):
        if not can_shift:
            return False
        if node.op_type == "Add":
            chain.c = chain.c + v
        elif ins[0] == cur:          # y - v
            chain.c = chain.c - v
        else:                        # v - y: negates the map
            if not can_scale:
                return False
            chain.a, chain.c = -chain.a, v - chain.c
        return True
    if not can_scale or (node.op_type == "Div" and ins[0] != cur) or (
            node.op_type == "Div" and np.any(v == 0)):
        return False
    f = v if node.op_type == "Mul" else 1.0 / v
    chain.a, chain.c = chain.a * f, chain.c * f
    return True


def _residual_step(node, cur, consts, types, chain):
    """``Add`` of a computed tensor of exactly the conv output's shape (a residual)."""
    if node.op_type != "Add" or len(node.input) != 2 or list(node.input).count(cur) != 1:
        return False
    other = node.input[1] if node.input[0] == cur else node.input[0]
    mine, theirs = types.get(cur), types.get(other)
    if other in consts or mine is None or theirs is None or mine != theirs:
        return False
    if any(d is None for d in mine[1][1:]):   # only the batch may be open (and the same)
        return False
    chain.residual = other
    return True


def _self_gated(graph, consumers, cur):
    """(activation, [node indices], output) where the two readers of ``cur`` compute
    ``cur * sigmoid(cur)`` (SiLU, PyTorch's export of it), ``cur * tanh(softplus(cur))``
    (Mish) or ``cur * hard_sigmoid(cur)`` (HardSwish); None otherwise. onnxruntime's
    optimizer (``onnx_fold``) expands the Mish and HardSwish nodes of newer opsets so."""
    idx = consumers.get(cur, [])
    if len(idx) != 2:
        return None
    by_op = {graph.node[i].op_type: i for i in idx}
    mul_i = by_op.get("Mul")
    gate_i = by_op.get("Sigmoid", by_op.get("Softplus", by_op.get("HardSigmoid")))
    if mul_i is None or gate_i is None or graph.node[gate_i].input[0] != cur:
        return None
    name = {"Sigmoid": "silu", "Softplus": "mish", "HardSigmoid": "hard_silu"}[
        graph.node[gate_i].op_type]
    if name == "hard_silu":   # HardSwish as onnxruntime expands it: alpha 1/6, beta 1/2
        at = _attrs(graph.node[gate_i])
        if not (np.isclose(at.get("alpha", 0.2), 1 / 6) and np.isclose(at.get("beta", 0.5), 0.5)):
            return None
    chain_i = [gate_i]
    if graph.node[gate_i].op_type == "Softplus":   # then Tanh
        nxt = consumers.get(graph.node[gate_i].output[0], [])
        if len(nxt) != 1 or graph.node[nxt[0]].op_type != "Tanh":
            return None
        chain_i.append(nxt[0])
    gate_out = graph.node[chain_i[-1]].output[0]
    mul = graph.node[mul_i]
    if sorted(mul.input) != sorted([cur, gate_out]) or consumers.get(gate_out) != [mul_i]:
        return None
    return name, chain_i + [mul_i], mul.output[0]


def _activation_step(node, cur, consts, chain, rank, channels, opset):
    if not node.input or node.input[0] != cur:
        return False
    op, at = node.op_type, _attrs(node)
    if op in ("Relu", "Sigmoid", "Tanh", "Softplus", "Mish"):
        chain.activation = op.lower()
    elif op == "HardSwish":
        chain.activation = "hard_silu"
    elif op == "Gelu" and attr_text(at.get("approximate", "none")) == "none":
        chain.activation = "gelu"
    elif op == "LeakyRelu":
        chain.activation, chain.args = "leaky_relu", (float(at.get("alpha", 0.01)),)
    elif op == "Elu":
        chain.activation, chain.args = "elu", (float(at.get("alpha", 1.0)),)
    elif op == "HardSigmoid":
        chain.activation = "hard_sigmoid"
        chain.args = (float(at.get("alpha", 0.2)), float(at.get("beta", 0.5)))
    elif op == "Clip":
        if opset < 11:
            lo, hi = at.get("min", -F32_MAX), at.get("max", F32_MAX)
        else:
            bounds = [consts.get(n) if n else np.float32(d) for n, d in
                      zip(list(node.input[1:3]) + [""] * 2, (-F32_MAX, F32_MAX))]
            if any(b is None or np.size(b) != 1 for b in bounds):
                return False
            lo, hi = (float(np.asarray(b).reshape(-1)[0]) for b in bounds)
        chain.activation, chain.args = "clip", (float(lo), float(hi))
    elif op == "PRelu":
        slope = _per_channel(consts.get(node.input[1]), channels, rank, chain.axis)
        if slope is None:
            return False
        chain.activation, chain.slope = "prelu", slope
    else:
        return False
    return True


def _fold_weights(w, a, group):
    """Scale output channel ``co`` of an ONNX (C_in, C_out/group, *k) weight by ``a[co]``."""
    cin, cout_g = w.shape[0], w.shape[1]
    a = a.reshape(group, 1, cout_g, *([1] * (w.ndim - 2)))
    wg = w.astype(np.float64).reshape(group, cin // group, cout_g, *w.shape[2:]) * a
    return wg.reshape(w.shape).astype(w.dtype)


def tensor_dims(tensor_type) -> list:
    """Dims of an ONNX tensor type: ints where known, the ``dim_param`` name (or None) where open."""
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in tensor_type.shape.dim]


def value_types(model):
    """{tensor name: (elem dtype, shape)} from ONNX shape inference (empty where it fails)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001  (fusion is an optimisation: fall back to none)
        return {}
    types = {}
    for vi in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        t = vi.type.tensor_type
        if t.elem_type:
            types[vi.name] = (helper.tensor_dtype_to_np_dtype(t.elem_type),
                              tuple(d if isinstance(d, int) else None for d in tensor_dims(t)))
    return types


def fuse(model: onnx.ModelProto, opset: int, enabled: bool = True, known_types=None):
    """A copy of ``model`` with each ConvTranspose chain folded; returns (model, report) where
    report lists ``(node name, [absorbed op types])`` per ConvTranspose. ``enabled=False`` only
    tags each ConvTranspose with its name (``convt_node``), for error messages.
    ``known_types`` (name -> (dtype, dims)) override ONNX's inference, which reads a strided
    Conv turned ConvTranspose (``convt_conv_strides``) as unstrided."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    types = {**value_types(model), **(known_types or {})}
    graph = model.graph
    consts = constants(graph)
    consumers = {}
    for i, node in enumerate(graph.node):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    outputs = {o.name for o in graph.output}
    drop, report, new_inits, placed = set(), [], [], set()

    for idx, node in enumerate(graph.node):
        if node.op_type != "ConvTranspose" or idx in placed:
            continue
        at = _attrs(node)
        name = attr_text(at["convt_node"]) if "convt_node" in at else (node.name or node.output[0])
        w = consts.get(node.input[1])
        b_name = node.input[2] if len(node.input) > 2 else ""
        b = consts.get(b_name) if b_name else np.zeros(0)
        group = int(at.get("group", 1))
        dtype, shape = types.get(node.output[0], (None, ()))
        rank = len(shape) or (w.ndim if w is not None else None)
        channels = w.shape[1] * group if w is not None and w.ndim >= 3 else (
            shape[1] if len(shape) > 1 else None)
        if dtype is None:
            dtype = w.dtype if w is not None else np.dtype(np.float32)
        chain = _Chain(channels or 0)
        if attr_text(at.get("convt_layout", "channels_first")) == "channels_last":
            chain.axis, rank = -1, 3   # onnx's shape inference misreads these nodes
        cur = node.output[0]
        absorbed = []   # graph indices of chain.nodes
        while enabled and channels and rank and cur not in outputs:
            gated = _self_gated(graph, consumers, cur) if chain.activation is None else None
            if gated is not None and not drop.intersection(gated[1]):
                chain.activation = gated[0]
                chain.nodes += [graph.node[i] for i in gated[1]]
                absorbed += gated[1]
                drop.update(gated[1])
                cur = gated[2]
                break
            if len(consumers.get(cur, [])) != 1 or consumers[cur][0] in drop:
                break   # a branch, or another chain took it (a sum of two convs)
            nxt = graph.node[consumers[cur][0]]
            ok = False
            if chain.activation is None and chain.residual is None and nxt.op_type in AFFINE_OPS:
                ok = _affine_step(nxt, cur, consts, chain, rank, channels,
                                  can_scale=w is not None and b is not None,
                                  can_shift=b is not None)
            if not ok and chain.activation is None and chain.residual is None and chain.axis == 1:
                ok = _residual_step(nxt, cur, consts, types, chain)
            if not ok and chain.activation is None:
                ok = _activation_step(nxt, cur, consts, chain, rank, channels, opset)
            if not ok:
                break
            chain.nodes.append(nxt)
            absorbed.append(consumers[cur][0])
            drop.add(consumers[cur][0])
            cur = nxt.output[0]
        report.append((name, [n.op_type for n in chain.nodes]))

        inputs = list(node.input[:2])
        if chain.scaled:
            inputs[1] = _new_init(new_inits, f"{name}_convt_w", _fold_weights(w, chain.a, group))
        if any(n.op_type in AFFINE_OPS for n in chain.nodes):
            bias = chain.a * (b.astype(np.float64) if b.size else 0.0) + chain.c
            inputs.append(_new_init(new_inits, f"{name}_convt_b", bias.astype(dtype)))
        else:
            inputs.append(b_name)
        if chain.slope is not None:
            inputs.append(_new_init(new_inits, f"{name}_convt_slope",
                                    np.asarray(chain.slope, dtype)))
        if chain.residual is not None:   # input 4: after bias and slope (empty names if absent)
            inputs += [""] * (4 - len(inputs)) + [chain.residual]
        while inputs and not inputs[-1]:
            inputs.pop()
        extra = {"convt_node": name}
        if chain.activation:
            extra["convt_activation"] = chain.activation
            if chain.args:
                extra["convt_activation_args"] = list(chain.args)
        fused = helper.make_node("ConvTranspose", inputs, [cur], name=node.name, **extra)
        fused.attribute.extend(a for a in node.attribute if a.name not in extra)
        # at the chain's last node: what it absorbed (a residual) may be computed after the conv
        at_idx = max(absorbed) if absorbed else idx
        if at_idx != idx:
            drop.discard(at_idx)
            drop.add(idx)
            placed.add(at_idx)
        graph.node[at_idx].CopyFrom(fused)

    kept = [n for i, n in enumerate(graph.node) if i not in drop]
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(new_inits)
    return model, report


def _new_init(inits, name, array):
    inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
    return name
