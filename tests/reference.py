"""The float64 oracles live in the package (``convt check`` uses them too): see
``convt.tools.reference``. They share nothing with convt's compiler."""
from convt.tools.reference import (activation_reference, keras_pads, keras_reference,  # noqa: F401
                                   onnx_node_reference, scatter_conv_transpose, spec_reference)
