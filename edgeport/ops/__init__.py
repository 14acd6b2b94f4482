"""Custom operators: declare an op once (``register_op``) and edgeport carries it into ONNX,
TFLite and Core ML, verifies it against its ``reference`` and keeps it float when quantizing
unless it declares an int8 form. Depends on ``edgeport.core`` only."""

from edgeport.ops.entries import (
    PYOP_DOMAIN,
    CoreMLComposite,
    CustomNode,
    Decompose,
    OpEntry,
    TFLiteCustom,
    TorchDecompose,
)
from edgeport.ops.load import (
    ENTRY_POINT_GROUP,
    custom_ops_fingerprint,
    load_custom_ops,
    load_entry_points,
    split_specs,
)
from edgeport.ops.registry import (
    custom_node_entries,
    find_onnx_op,
    find_torch_op,
    register_op,
    registered_ops,
    unregister_op,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "PYOP_DOMAIN",
    "CoreMLComposite",
    "CustomNode",
    "Decompose",
    "OpEntry",
    "TFLiteCustom",
    "TorchDecompose",
    "custom_node_entries",
    "custom_ops_fingerprint",
    "find_onnx_op",
    "find_torch_op",
    "load_custom_ops",
    "load_entry_points",
    "register_op",
    "registered_ops",
    "split_specs",
    "unregister_op",
]
