"""Whole-model import: acceptance as onnxruntime's, and shape subgraphs folded before TVM's
importer (computed Pad pads, Resize sizes, Reshape shapes, Expand, Slice bounds,
ConstantOfShape), with an open batch kept open where nothing folded depends on it."""
import warnings

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import convt
from conftest import assert_close
from convt.frontends.onnx_fold import OnnxWarning
from convt.frontends.onnx_node import OnnxError
from onnx_util import FLOAT, IR_VERSION, conv_transpose_model, ort_run

N = helper.make_node


def _ints(name, values):
    return numpy_helper.from_array(np.asarray(values, np.int64), name)


def _upcat_model(rng, batch="N", flatten="keep", pad_by_batch=None):
    """A U-Net up step as the TorchScript exporter writes it: deconv t of x, padded to the skip
    input s by pads computed from both shapes (Shape -> Gather -> Sub -> Unsqueeze -> Concat),
    concatenated, then flattened by a Reshape to ``[0, -1]`` (``flatten="keep"``) or to
    ``[Shape(c)[0], -1]`` (``"by_batch"``: the batch stays computed at run time).
    ``pad_by_batch``: c's width is then padded at its end by ``b - b`` (``"zero"``: a value that
    does not depend on the batch, though the graph computes it from it) or ``b - 1``
    (``"grow"``), b the batch."""
    inits = [numpy_helper.from_array(rng.standard_normal((4, 2, 3, 3)).astype(np.float32), "w"),
             _ints("i0", 0), _ints("i2", 2), _ints("i3", 3), _ints("ax0", [0]),
             _ints("z6", [0] * 6), _ints("m1", [-1]), _ints("keep", [0, -1]), _ints("one", 1),
             _ints("z1", [0])]
    nodes = [N("ConvTranspose", ["x", "w"], ["t"], name="deconv", strides=[2, 2]),
             N("Shape", ["s"], ["ss"]), N("Shape", ["t"], ["ts"]),
             N("Gather", ["ss", "i2"], ["sh"]), N("Gather", ["ts", "i2"], ["th"]),
             N("Gather", ["ss", "i3"], ["sw"]), N("Gather", ["ts", "i3"], ["tw"]),
             N("Sub", ["sh", "th"], ["dh"]), N("Sub", ["sw", "tw"], ["dw"]),
             N("Unsqueeze", ["dh", "ax0"], ["uh"]), N("Unsqueeze", ["dw", "ax0"], ["uw"]),
             N("Concat", ["z6", "uh", "uw"], ["pads"], axis=0),
             N("Pad", ["t", "pads"], ["tp"], name="pad"),
             N("Concat", ["tp", "s"], ["c0"], axis=1)]
    if pad_by_batch:
        nodes += [N("Shape", ["x"], ["xs"]), N("Gather", ["xs", "i0"], ["b"]),
                  N("Sub", ["b", "b" if pad_by_batch == "zero" else "one"], ["extra"]),
                  N("Unsqueeze", ["extra", "ax0"], ["ue"]),
                  N("Concat", ["z6", "z1", "ue"], ["pads2"], axis=0),
                  N("Pad", ["c0", "pads2"], ["c"], name="pad_by_batch")]
    else:
        nodes.append(N("Identity", ["c0"], ["c"]))
    if flatten == "by_batch":
        nodes += [N("Shape", ["c"], ["cs"]), N("Gather", ["cs", "i0"], ["nb"]),
                  N("Unsqueeze", ["nb", "ax0"], ["nbu"]),
                  N("Concat", ["nbu", "m1"], ["rs"], axis=0), N("Reshape", ["c", "rs"], ["y"])]
    else:
        nodes.append(N("Reshape", ["c", "keep"], ["y"]))
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(nodes, "upcat", [vi("x", FLOAT, [batch, 4, 5, 5]),
                                               vi("s", FLOAT, [batch, 2, 12, 13])],
                              [vi("y", FLOAT, [batch, None])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = IR_VERSION
    return model


def _feeds(rng, batch):
    return {"x": rng.standard_normal((batch, 4, 5, 5)).astype(np.float32),
            "s": rng.standard_normal((batch, 2, 12, 13)).astype(np.float32)}


def _compile(model, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mod = convt.compile(model, **kwargs)
    return mod, [str(w.message) for w in caught if issubclass(w.category, OnnxWarning)]


def test_output_without_shape_compiles_with_a_warning(rng):
    model, feeds = conv_transpose_model(rng, (2, 4, 5, 5), (4, 2, 3, 3), {"strides": [2, 2]})
    model.graph.output[0].type.tensor_type.ClearField("shape")   # make_tensor_value_info(.., None)
    mod, said = _compile(model)
    assert len(said) == 1 and "onnx.checker" in said[0] and "onnxruntime loads" in said[0]
    assert_close(mod(**feeds), ort_run(model, feeds)[0])
    assert mod.signature["outputs"][0]["shape"] == [None, 2, 11, 11]


def test_a_model_onnxruntime_refuses_is_malformed(rng):
    model, _ = conv_transpose_model(rng, (2, 4, 5, 5), (4, 2, 3, 3), {})
    model.graph.output[0].type.tensor_type.ClearField("shape")
    model.graph.node[0].input[0] = "nowhere"
    with pytest.raises(OnnxError, match=r"malformed ONNX model.*onnxruntime:.*nowhere"):
        convt.compile(model)


def test_computed_pads_fold_with_a_static_batch(rng):
    model = _upcat_model(rng, batch=2, flatten="by_batch", pad_by_batch="grow")
    mod, said = _compile(model)
    assert said == []
    feeds = _feeds(rng, 2)
    assert_close(mod(**feeds), ort_run(model, feeds)[0])
    assert [n for n, _ in mod.kernels] == ["deconv"]


@pytest.mark.parametrize("flatten,pad_by_batch", [("keep", None), ("by_batch", None),
                                                  ("keep", "zero")])
def test_open_batch_stays_open(rng, flatten, pad_by_batch):
    """Known dims fold; a shape that holds the batch stays computed (by_batch); pads computed
    from the batch but not depending on it fold with either probe batch (zero)."""
    model = _upcat_model(rng, batch="N", flatten=flatten, pad_by_batch=pad_by_batch)
    mod, said = _compile(model)
    assert said == []
    assert mod.signature["inputs"][0]["shape"] == ["N", 4, 5, 5]
    for batch in (1, 2, 5):
        feeds = _feeds(rng, batch)
        assert_close(mod(**feeds), ort_run(model, feeds)[0])


@pytest.mark.parametrize("how", ["model", "input_shapes"])
def test_pads_that_hold_the_batch_make_it_static_in_one_warning(rng, how):
    model = _upcat_model(rng, batch="N", pad_by_batch="grow")
    shapes = None if how == "model" else {"x": (None, 4, 5, 5), "s": (None, 2, 12, 13)}
    mod, said = _compile(model, input_shapes=shapes)
    assert len(said) == 1 and "depends on the batch size of input 'x'" in said[0], said
    assert "compiled for batch 1" in said[0] and "\n" not in said[0]
    assert mod.signature["inputs"][0]["shape"] == [1, 4, 5, 5]
    feeds = _feeds(rng, 1)
    assert_close(mod(**feeds), ort_run(model, feeds)[0])


def test_input_shapes_fix_the_batch_of_a_batch_dependent_model(rng):
    model = _upcat_model(rng, batch="N", pad_by_batch="grow")
    mod, said = _compile(model, input_shapes={"x": (3, 4, 5, 5), "s": (3, 2, 12, 13)})
    assert said == []
    feeds = _feeds(rng, 3)
    assert_close(mod(**feeds), ort_run(model, feeds)[0])


def _shape_ops_model(rng):
    """Resize to sizes computed from the input's shape, Expand to a computed shape, Slice with
    computed bounds and ConstantOfShape of a computed shape, around one deconv."""
    inits = [numpy_helper.from_array(rng.standard_normal((3, 2, 4, 4)).astype(np.float32), "w"),
             _ints("s01", [0]), _ints("s02", [2]), _ints("hw", [14, 10]), _ints("two", [2]),
             _ints("ax2", [2]), _ints("i1", [1])]
    nodes = [N("ConvTranspose", ["x", "w"], ["t"], name="deconv", strides=[2, 2], pads=[1, 1, 1, 1]),
             N("Shape", ["t"], ["ts"]), N("Slice", ["ts", "s01", "s02"], ["nc"]),
             N("Concat", ["nc", "hw"], ["sizes"], axis=0),
             N("Resize", ["t", "", "", "sizes"], ["r"], mode="nearest"),
             N("Shape", ["r"], ["rs"]), N("Expand", ["bias", "rs"], ["be"]),
             N("Add", ["r", "be"], ["a"]),
             N("Gather", ["rs", "ax2"], ["h"]), N("Div", ["h", "two"], ["half"]),
             N("Slice", ["a", "half", "h", "ax2"], ["top"]),
             N("Shape", ["top"], ["tops"]),
             N("ConstantOfShape", ["tops"], ["ones"],
               value=numpy_helper.from_array(np.ones(1, np.float32))),
             N("Add", ["top", "ones"], ["y"])]
    inits.append(numpy_helper.from_array(rng.standard_normal((1, 2, 1, 1)).astype(np.float32),
                                         "bias"))
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(nodes, "shape_ops", [vi("x", FLOAT, [2, 3, 6, 4])],
                              [vi("y", FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = IR_VERSION
    return model


def test_resize_expand_slice_constant_of_shape_fold(rng):
    model = _shape_ops_model(rng)
    mod, _ = _compile(model)
    feeds = {"x": rng.standard_normal((2, 3, 6, 4)).astype(np.float32)}
    expected = ort_run(model, feeds)[0]
    assert expected.shape == (2, 2, 7, 10)
    assert_close(mod(**feeds), expected)


def test_onnxruntime_refusal_still_names_convts_rule(rng):
    model, _ = conv_transpose_model(rng, (1, 4, 5, 5), (4, 2, 3, 3), {"group": 3})
    with pytest.raises(OnnxError, match=r"'deconv'.*input channels 4 must divide by group 3"):
        convt.compile(model)


def test_unknown_op_after_folding_is_listed(rng):
    model = _upcat_model(rng, batch=2)
    model.graph.node[-1].op_type = "NotAnOnnxOp"
    with pytest.raises(OnnxError, match="NotAnOnnxOp"):
        convt.compile(model)


def test_float16_model_folds(rng):
    model, feeds = conv_transpose_model(rng, (2, 4, 5, 5), (4, 2, 3, 3), {"strides": [2, 2]},
                                        dtype=np.float16)
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    mod, _ = _compile(model)
    np.testing.assert_allclose(mod(**feeds).astype(np.float32),
                               ort_run(model, feeds)[0].astype(np.float32), rtol=1e-2, atol=1e-2)
