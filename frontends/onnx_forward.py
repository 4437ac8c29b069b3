"""Forward ops on convt's ConvTranspose kernels: ``Conv`` and ``MatMul``/``Gemm`` with constant
weights become ConvTranspose nodes on the ONNX graph, before epilogue folding (``onnx_fuse``),
so bias, BatchNormalization, activations and residual adds fold into them as they do after a
ConvTranspose, in float64 on the constants.

* A stride-1 ``Conv`` (any dilation, groups, pads) is a stride-1 ConvTranspose with the kernel
  flipped along every spatial axis and its channel axes swapped per group, and pads
  ``d*(k-1) - p`` on each side: both read input ``o + t*d - p`` for output ``o`` and tap ``t``.
  A pad past the dilated kernel (``p > d*(k-1)``, negative there) stays with TVM.
* A strided ``Conv`` becomes the same ConvTranspose over a ``convt_conv_strides`` attribute:
  the kernel reads input ``o*s + t*d - p`` (``ConvTransposeSpec.conv_strides``).
* ``MatMul(A, B)`` and ``Gemm`` with a constant 2-D ``B`` are a 1x1 ConvTranspose in
  ``channels_last`` layout (``convt_layout``) over ``A`` seen as ``(batch, rows, K)``: Reshape
  nodes around it where ``A`` has another rank. Gemm's ``C``, ``alpha``, ``beta`` and
  ``transB`` fold into the weight and bias; a following constant ``Add`` of an ``(N,)`` vector
  becomes the bias.

Where a weight is computed at run time, or a shape needed is unknown, the node stays as it is
(TVM's lowering, under convt's generic schedules).
"""
from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper

from .onnx_node import attr_text


def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def conv_weight_as_transpose(w, group):
    """Conv weight (C_out, C_in/g, *k) -> ConvTranspose weight (C_in, C_out/g, *k), flipped."""
    cout, cin_g, *k = w.shape
    wg = w.reshape(group, cout // group, cin_g, *k).swapaxes(1, 2)
    wg = wg[(slice(None),) * 3 + (slice(None, None, -1),) * len(k)]
    return np.ascontiguousarray(wg.reshape(group * cin_g, cout // group, *k))


def _conv_pads(at, in_spatial, kernel, strides, dilation):
    """(begin, end) forward pads of a Conv node, ``auto_pad`` resolved; None where unknown."""
    rank = len(kernel)
    auto_pad = attr_text(at.get("auto_pad", "NOTSET"))
    if auto_pad == "VALID":
        return (0,) * rank, (0,) * rank
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if in_spatial is None:
            return None
        begin, end = [], []
        for i, k, s, d in zip(in_spatial, kernel, strides, dilation):
            total = max(0, (-(-i // s) - 1) * s + (k - 1) * d + 1 - i)
            small = total // 2
            begin.append(small if auto_pad == "SAME_UPPER" else total - small)
            end.append(total - begin[-1])
        return tuple(begin), tuple(end)
    pads = [int(p) for p in at.get("pads", [0] * (2 * rank))]
    if len(pads) != 2 * rank or min(pads) < 0:
        return None
    return tuple(pads[:rank]), tuple(pads[rank:])


class _Graph:
    def __init__(self, model, consts, types):
        self.graph = model.graph
        self.consts, self.types = consts, types
        self.new_inits, self.counter = [], 0

    def init(self, base, array):
        name = f"{base}_convt_{self.counter}"
        self.counter += 1
        self.new_inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        self.consts[name] = array
        return name


def _conv_node(node, g: _Graph):
    """The ConvTranspose node replacing Conv ``node``, or None where it stays a Conv."""
    if len(node.input) < 2 or node.input[1] not in g.consts:
        return None
    w = g.consts[node.input[1]]
    rank = w.ndim - 2
    if rank not in (1, 2, 3) or w.dtype != np.float32:
        return None
    at = _attrs(node)
    kernel = tuple(w.shape[2:])
    strides = tuple(int(v) for v in at.get("strides", [1] * rank))
    dilation = tuple(int(v) for v in at.get("dilations", [1] * rank))
    group = int(at.get("group", 1))
    x_shape = g.types.get(node.input[0], (None, ()))[1]
    in_spatial = tuple(x_shape[2:]) if len(x_shape) == rank + 2 and all(
        isinstance(v, int) for v in x_shape[2:]) else None
    if len(strides) != rank or len(dilation) != rank or group <= 0 or w.shape[0] % group:
        return None
    pads = _conv_pads(at, in_spatial, kernel, strides, dilation)
    if pads is None:
        return None
    t_begin = [d * (k - 1) - p for d, k, p in zip(dilation, kernel, pads[0])]
    t_end = [d * (k - 1) - p for d, k, p in zip(dilation, kernel, pads[1])]
    if min(t_begin + t_end) < 0:
        return None
    name = node.name or node.output[0]
    inputs = [node.input[0], g.init(name, conv_weight_as_transpose(w, group))]
    if len(node.input) > 2 and node.input[2]:
        inputs.append(node.input[2])
    extra = {"convt_node": name, "convt_from": "Conv"}
    if any(s != 1 for s in strides):
        extra["convt_conv_strides"] = list(strides)
    return helper.make_node("ConvTranspose", inputs, list(node.output[:1]), name=node.name,
                            kernel_shape=list(kernel), dilations=list(dilation),
                            group=group, pads=t_begin + t_end, **extra)


def _matmul_nodes(node, g: _Graph, consumers):
    """[nodes] replacing MatMul/Gemm ``node`` (and a bias Add it absorbs), or None; second
    item: the index of an absorbed Add node in the graph, or None."""
    if len(node.input) < 2 or node.input[1] not in g.consts:
        return None
    b = np.asarray(g.consts[node.input[1]])
    if b.ndim != 2 or b.dtype != np.float32:
        return None
    a_type, a_shape = g.types.get(node.input[0], (None, ()))
    if a_type != np.float32 or len(a_shape) < 1 or not isinstance(a_shape[-1], int):
        return None
    bias = None
    if node.op_type == "Gemm":
        at = _attrs(node)
        if int(at.get("transA", 0)) or len(a_shape) != 2:
            return None
        b = b.T if int(at.get("transB", 0)) else b
        b = b.astype(np.float64) * float(at.get("alpha", 1.0))
        if len(node.input) > 2 and node.input[2]:
            c = g.consts.get(node.input[2])
            if c is None or c.size not in (1, b.shape[1]) or (c.ndim == 2 and c.shape[0] != 1):
                return None
            bias = np.broadcast_to(np.asarray(c, np.float64).reshape(-1), (b.shape[1],)) * float(
                at.get("beta", 1.0))
    k, n_out = b.shape
    if a_shape[-1] != k:
        return None
    rows = a_shape[-2] if len(a_shape) >= 2 else 1
    if not isinstance(rows, int):
        return None
    out = node.output[0]
    absorbed = None
    users = consumers.get(out, [])
    if len(users) == 1 and g.graph.node[users[0]].op_type == "Add":
        add = g.graph.node[users[0]]
        other = add.input[1] if add.input[0] == out else add.input[0]
        c = g.consts.get(other)
        if c is not None and c.size == n_out and c.reshape(-1).shape == (n_out,) and (
                c.ndim == 1 or all(d == 1 for d in c.shape[:-1])) and c.ndim <= len(a_shape):
            bias = (0 if bias is None else bias) + np.asarray(c, np.float64).reshape(-1)
            absorbed, out = users[0], add.output[0]
    name = node.name or node.output[0]
    w = g.init(name, b.astype(np.float32)[:, :, None])
    inputs = [node.input[0], w]
    if bias is not None:
        inputs.append(g.init(name, bias.astype(np.float32)))
    attrs = dict(kernel_shape=[1], convt_node=name, convt_layout="channels_last",
                 convt_from=node.op_type)
    if len(a_shape) == 3:
        return [helper.make_node("ConvTranspose", inputs, [out], name=node.name, **attrs)], absorbed
    if any(not isinstance(d, int) for d in a_shape[:-2]) and len(a_shape) > 3:
        return None   # several open leading dims cannot be restored by one Reshape
    lead = g.init(name, np.asarray([-1, rows, k], np.int64))
    back = g.init(name, np.asarray([*(0 if not isinstance(d, int) else d
                                      for d in a_shape[:-2]),
                                    *([rows] if len(a_shape) >= 2 else []), n_out], np.int64))
    x3, y3 = f"{name}_convt_x3", f"{name}_convt_y3"
    return [helper.make_node("Reshape", [node.input[0], lead], [x3], name=f"{name}_convt_in"),
            helper.make_node("ConvTranspose", [x3, *inputs[1:]], [y3], name=node.name, **attrs),
            helper.make_node("Reshape", [y3, back], [out], name=f"{name}_convt_out")], absorbed


def forward_ops(model, consts, types):
    """A copy of ``model`` with its Conv, MatMul and Gemm nodes on convt kernels where they can
    be (see the module docstring); returns (model, [(node name, op type)] converted)."""
    import onnx
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = _Graph(model, dict(consts), types)
    consumers = {}
    for i, node in enumerate(model.graph.node):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    new_nodes, drop, done = [], set(), []
    for i, node in enumerate(model.graph.node):
        if i in drop:
            continue
        replaced = None
        if node.op_type == "Conv":
            conv = _conv_node(node, g)
            replaced = None if conv is None else ([conv], None)
        elif node.op_type in ("MatMul", "Gemm"):
            replaced = _matmul_nodes(node, g, consumers)
        if replaced is None:
            new_nodes.append(node)
            continue
        nodes, absorbed = replaced
        if absorbed is not None:
            drop.add(absorbed)
        new_nodes.extend(nodes)
        done.append((node.name or node.output[0], node.op_type))
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    model.graph.initializer.extend(g.new_inits)
    return model, done
