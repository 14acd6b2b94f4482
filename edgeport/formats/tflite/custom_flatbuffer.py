"""Custom operators in the TFLite flatbuffer: the marker builtins onnx2tf converted become
``CUSTOM`` ops (:func:`emit_custom_ops`), and a model with custom ops is *split* at them so that
LiteRT can run everything else (:func:`split_at_custom_ops`, :func:`run_with_kernels`).

Splitting removes each custom op and makes its output tensor a model input and its input tensor
a model output (signature entries included). One invocation then computes every custom op's
input; the op is computed in Python by its registered reference, fed back as that input, and the
model invoked again: ``k + 1`` invocations settle a chain of ``k`` custom ops. This is how the
converter calibrates the ranges after a custom op and how edgeport emulates a file whose custom
kernels only the app has. Imports LiteRT's flatbuffer schema only (the conversion child uses it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeport.formats.tflite.ranges import pack_model, unpack_model

CUSTOM_INPUT = "edgeport_custom_out_{}"  # a split site's output, fed as a model input
CUSTOM_OUTPUT = "edgeport_custom_in_{}"  # a split site's input, read as a model output


def _builtin(code: Any) -> int:
    """The builtin operator of an OperatorCodeT (the schema moved it to a wider field in TF 2.4)."""
    return max(int(code.builtinCode), int(code.deprecatedBuiltinCode))


def emit_custom_ops(model_bytes: bytes, sites: list[dict[str, Any]]) -> bytes:
    """Rewrite each site's marker builtin (``site["builtin"]``) into a ``CUSTOM`` op named
    ``site["custom_code"]`` whose options are the node attributes as a flexbuffer map; return the
    new model bytes. Raises ValueError when the file does not hold exactly one marker op per node."""
    from ai_edge_litert import schema_py_generated as schema
    from flatbuffers import flexbuffers

    model = unpack_model(model_bytes)
    builtins = {name: value for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    for site in sites:
        marker = builtins[site["builtin"]]
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
        code.customCode = site["custom_code"].encode()
        code.version = 1
        model.operatorCodes.append(code)
        index = len(model.operatorCodes) - 1
        options = list(flexbuffers.Dumps(site["attributes"])) if site["attributes"] else None
        found = 0
        for subgraph in model.subgraphs:
            for op in subgraph.operators:
                if op.opcodeIndex < index and _builtin(model.operatorCodes[op.opcodeIndex]) == marker:
                    op.opcodeIndex = index
                    op.builtinOptionsType, op.builtinOptions = 0, None
                    op.customOptions = options
                    found += 1
        if found != len(site["nodes"]):
            raise ValueError(
                f"custom op {site['custom_code']}: {found} {site['builtin']} marker op(s) in the .tflite "
                f"for {len(site['nodes'])} node(s)"
            )
    return pack_model(model)


@dataclass
class SplitSite:
    """One custom op cut out of a split model: its kernel's name and its tensors there."""

    code: str  # custom code (or marker builtin) of the op
    input_name: str  # the split model's output holding the op's input
    output_name: str  # the split model's input the op's result is fed to
    shape: list[int]  # the tensor's shape in the .tflite (its layout)
    options: bytes | None


def split_at_custom_ops(model_bytes: bytes, codes: set[str]) -> tuple[bytes, list[SplitSite]]:
    """Return ``(the model with every op whose custom code or builtin name is in codes cut out,
    the sites cut)``; tensors keep their indices. The site's tensors are named
    ``edgeport_custom_in_<i>`` / ``edgeport_custom_out_<i>`` in the first signature."""
    from ai_edge_litert import schema_py_generated as schema

    model = unpack_model(model_bytes)
    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    subgraph = model.subgraphs[0]
    sites: list[SplitSite] = []
    kept = []
    for op in subgraph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        label = code.customCode.decode() if code.customCode else names.get(_builtin(code), "")
        if label not in codes:
            kept.append(op)
            continue
        i = len(sites)
        src, dst = int(op.inputs[0]), int(op.outputs[0])
        options = bytes(op.customOptions) if op.customOptions is not None else None
        sites.append(
            SplitSite(
                label, CUSTOM_OUTPUT.format(i), CUSTOM_INPUT.format(i), list(subgraph.tensors[dst].shape), options
            )
        )
        subgraph.inputs = [*subgraph.inputs, dst]
        subgraph.outputs = [*subgraph.outputs, src]
        for signature in model.signatureDefs or []:
            signature.inputs.append(_tensor_map(schema, CUSTOM_INPUT.format(i), dst))
            signature.outputs.append(_tensor_map(schema, CUSTOM_OUTPUT.format(i), src))
    subgraph.operators = kept
    return pack_model(model), sites


def _tensor_map(schema: Any, name: str, index: int) -> Any:
    entry = schema.TensorMapT()
    entry.name, entry.tensorIndex = name.encode(), index
    return entry


Kernel = Callable[[np.ndarray, bytes | None], np.ndarray]


def run_with_kernels(
    invoke: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    sites: list[SplitSite],
    kernels: dict[str, Kernel],
    batch: int,
) -> dict[str, np.ndarray]:
    """Run a split model through its custom ops: ``invoke(extra feeds by name) -> outputs by name``
    runs it once with the sites' results fed (zeros at first); each site's input is then passed to
    ``kernels[site.code](array, options)`` and fed back, ``len(sites) + 1`` times in all. Returns
    the last invocation's outputs (the sites' inputs included)."""
    feeds = {s.output_name: np.zeros([batch, *s.shape[1:]], np.float32) for s in sites}
    outputs: dict[str, np.ndarray] = {}
    for _ in range(len(sites) + 1):
        outputs = invoke(feeds)
        feeds = {s.output_name: kernels[s.code](outputs[s.input_name], s.options) for s in sites}
    return outputs
