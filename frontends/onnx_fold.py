"""Shape subgraphs folded to constants before TVM's importer sees them.

Exporters compute pads, Resize scales, Reshape shapes, Expand and Slice bounds from the input's
shape at run time (Shape -> Gather -> Sub -> Concat ...); TVM's importer refuses most of them
("Dynamic pads are not supported yet"). With the input shapes fixed these are constants, and
onnxruntime's offline optimizer (level BASIC: constant folding and redundant-node removal into
standard ONNX ops only) folds them. onnxruntime is the runtime users compare against, so loading
the model there is also the acceptance test: a model it refuses is refused here too.

An open batch is kept open: reads of the known dims of a shape are constants first (onnxruntime
folds a Shape only when every dim is known), then onnxruntime folds, in rounds while shape
inference sees further through what was folded, so what stays computed at run time holds the
batch and TVM's importer takes it as a symbolic shape. Where the importer cannot (a Pad whose
pads hold the batch, a tensor whose shape it cannot work out), the model is folded twice, with
two probe batches; if the two results are the same graph, the batch is still open; where they
differ, a folded constant holds the batch and the batch is fixed (one warning says so).
"""
from __future__ import annotations

import warnings

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .onnx_node import OnnxError

# convt folds a ConvTranspose's epilogue itself (in float64, reported as fusions); onnxruntime's
# float32 versions of those rewrites are switched off
KEPT_EPILOGUES = ["ConvBNFusion", "ConvAddFusion", "ConvMulFusion"]
PROBE_BATCHES = (2, 3)   # not 1: an exporter or optimizer may treat a batch of 1 specially
MAX_ROUNDS = 4           # of known dims -> constants -> onnxruntime's folding
STATIC_BATCH = 1         # the batch a batch-dependent model is compiled for


class OnnxWarning(UserWarning):
    """Something about an ONNX model convt accepted but the user should know."""


def _session(model: onnx.ModelProto, optimized_path=None):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    if optimized_path:
        options.optimized_model_filepath = optimized_path
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"],
                                disabled_optimizers=KEPT_EPILOGUES)


def onnxruntime_refusal(model: onnx.ModelProto):
    """onnxruntime's reason for refusing ``model`` (its first line), or None if it loads it."""
    try:
        _session(model)
    except Exception as err:  # noqa: BLE001  (onnxruntime raises its own exception types)
        return _first_line(err)
    return None


def _first_line(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def with_input_dims(model: onnx.ModelProto, dims: dict) -> onnx.ModelProto:
    """A copy of ``model`` whose inputs have ``dims`` ({name: [int or str or None]}); inferred
    shapes of intermediate tensors (``value_info``) are dropped: they may name other dims."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.value_info[:]
    for vi in out.graph.input:
        if vi.name not in dims:
            continue
        shape = vi.type.tensor_type.shape
        shape.ClearField("dim")
        for d in dims[vi.name]:
            dim = shape.dim.add()
            if isinstance(d, int):
                dim.dim_value = d
            elif d:
                dim.dim_param = str(d)
    return out


def _optimized(model: onnx.ModelProto) -> onnx.ModelProto:
    import os
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "folded.onnx")
        try:
            _session(model, path)
        except Exception as err:  # noqa: BLE001
            raise OnnxError(f"onnxruntime refuses the model: {_first_line(err)}") from None
        folded = onnx.load(path)
    del folded.graph.value_info[:]   # shapes inferred for the probe
    declared = {o.name: o.type for o in model.graph.output}
    for o in folded.graph.output:    # the probe's shapes were written there too
        if o.name in declared:
            o.type.CopyFrom(declared[o.name])
    # the optimizer leaves only standard ops at level BASIC; drop the domains it registers
    used = {n.domain for n in folded.graph.node}
    keep = [o for o in folded.opset_import if o.domain in ("", "ai.onnx") or o.domain in used]
    del folded.opset_import[:]
    folded.opset_import.extend(keep)
    return folded


def _graph_body(model: onnx.ModelProto) -> bytes:
    """The graph without its input/output types: what the probe batch must not change."""
    g = onnx.GraphProto()
    g.CopyFrom(model.graph)
    for vi in list(g.input) + list(g.output):
        vi.ClearField("type")
    return g.SerializeToString(deterministic=True)


def _what_differs(a: onnx.ModelProto, b: onnx.ModelProto) -> str:
    inits_b = {t.name: t.SerializeToString(deterministic=True) for t in b.graph.initializer}
    for t in a.graph.initializer:
        if inits_b.get(t.name) != t.SerializeToString(deterministic=True):
            return f"the folded constant {t.name!r}"
    nodes_b = {n.name: n.SerializeToString(deterministic=True) for n in b.graph.node}
    for n in a.graph.node:
        if nodes_b.get(n.name) != n.SerializeToString(deterministic=True):
            return f"node {n.name or n.op_type!r} after folding"
    return "the folded graph"


def open_batch_inputs(inputs: list) -> list:
    """Names of the inputs whose batch (dim 0) is open and every other dim known."""
    return [name for name, shape, _ in inputs
            if shape and not isinstance(shape[0], int)
            and all(isinstance(d, int) for d in shape[1:])]


def fold_shapes(model: onnx.ModelProto, inputs: list) -> onnx.ModelProto:
    """``model`` folded for ``inputs`` = [(name, shape, dtype)] as the compile will see them
    (ints where fixed; a str or None where open). Reads of known dims are constants first, so
    with an open batch only what really holds the batch stays computed at run time."""
    dims = {name: list(shape) for name, shape, _ in inputs}
    folded = _optimized(_known_dims_as_constants(with_input_dims(model, dims)))
    for _ in range(MAX_ROUNDS - 1):   # shape inference sees through what was just folded
        again = _optimized(_known_dims_as_constants(with_input_dims(folded, dims)))
        if len(again.graph.node) >= len(folded.graph.node):
            break
        folded = again
    return folded


def fold_probing_batch(model: onnx.ModelProto, inputs: list):
    """(folded model, inputs) when the batch cannot stay computed at run time: folded for two
    probe batches; if both give the same graph the batch stays open, otherwise it is fixed at
    ``STATIC_BATCH`` (in the returned inputs) and a warning says which constant holds it."""
    dims = {name: list(shape) for name, shape, _ in inputs}
    open_batch = open_batch_inputs(inputs)

    def probe(batch):
        return _optimized(with_input_dims(
            model, {**dims, **{n: [batch] + dims[n][1:] for n in open_batch}}))

    first, second = (probe(b) for b in PROBE_BATCHES)
    if _graph_body(first) == _graph_body(second):
        for vi in first.graph.input:    # the symbolic batch written back
            if vi.name in open_batch:
                dim = vi.type.tensor_type.shape.dim[0]
                dim.Clear()
                dim.dim_param = str(dims[vi.name][0] or "batch")
        return first, inputs
    what = _what_differs(first, second)
    warnings.warn(OnnxWarning(
        f"{what} depends on the batch size of input {open_batch[0]!r}: the model is compiled "
        f"for batch {STATIC_BATCH} (give input_shapes to choose another)"), stacklevel=4)
    fixed = {n: [STATIC_BATCH] + dims[n][1:] for n in open_batch}
    folded = _optimized(with_input_dims(model, {**dims, **fixed}))
    return folded, [(n, fixed.get(n, s), d) for n, s, d in inputs]


def _names_read(nodes) -> set:
    """Every tensor name ``nodes`` read, in their subgraphs (If, Loop, Scan) too."""
    read = set()
    for n in nodes:
        read.update(n.input)
        for a in n.attribute:
            for g in [a.g] if a.HasField("g") else list(a.graphs):
                read |= _names_read(g.node)
    return read


def _known_dims_as_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """``Gather`` and ``Slice`` of a ``Shape`` that read only dims shape inference knows become
    initializers. onnxruntime folds a Shape only when every dim is known: with an open batch,
    ``Shape(t)[2]`` would stay computed, and so would every pad and size made from it."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001  (then onnxruntime folds what it can on its own)
        return model
    dims = {}
    for vi in list(inferred.graph.input) + list(inferred.graph.value_info):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            dims[vi.name] = [d.dim_value if d.HasField("dim_value") else None
                             for d in t.shape.dim]
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and [a.name for a in node.attribute] == ["value"]:
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    shape_of = {}     # Shape output -> the dims it holds (None where open)
    for node in model.graph.node:
        if node.op_type == "Shape" and node.input[0] in dims:
            a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
            held = dims[node.input[0]]
            shape_of[node.output[0]] = held[a.get("start", 0):a.get("end", len(held))]
    known = {}
    for node in model.graph.node:
        if not node.input or node.input[0] not in shape_of:
            continue
        held = np.asarray(shape_of[node.input[0]], dtype=object)
        args = list(node.input[1:])
        if not all(a in consts for a in args if a):
            continue
        if node.op_type == "Gather" and len(args) == 1:
            picked = held[consts[args[0]].astype(np.int64)]
        elif node.op_type == "Slice" and len(args) >= 2:
            step = int(consts[args[3]][0]) if len(args) > 3 and args[3] else 1
            picked = held[int(consts[args[0]][0]):int(consts[args[1]][0]):step]
        else:
            continue
        if all(v is not None for v in np.ravel(picked)):
            known[node.output[0]] = np.asarray(picked, np.int64)
    if not known:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    kept = [n for n in out.graph.node if not (len(n.output) == 1 and n.output[0] in known)]
    read = _names_read(kept) | {o.name for o in out.graph.output}
    kept = [n for n in kept if n.op_type != "Shape" or n.output[0] in read]   # now unread
    del out.graph.node[:]
    out.graph.node.extend(kept)
    out.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in known.items())
    return out
