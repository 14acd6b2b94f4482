"""Parity of each custom op against its registered ``reference``, on the activations that reach
it in the model: the kept node as ONNX Runtime runs it (Python kernel or library), or the
decomposition as ONNX Runtime runs it, compared with ``reference`` on the same inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import inliner

from edgeport.core.errors import describe_exception
from edgeport.ops.entries import Decompose, OpEntry
from edgeport.runtime.ort import OrtRunner


def node_activations(
    model: onnx.ModelProto, nodes: list[onnx.NodeProto], feeds: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Run ``model`` with the inputs and outputs of ``nodes`` added as graph outputs; return every
    tensor of those nodes by name (initializers included), as ONNX Runtime computed them."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    initializers = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    present = {o.name for o in probe.graph.output}
    wanted = [t for n in nodes for t in [*n.input, *n.output] if t and t not in initializers]
    for name in dict.fromkeys(wanted):
        if name not in present and name not in {i.name for i in probe.graph.input}:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    runner = OrtRunner(probe.SerializeToString())
    values = dict(zip(runner.output_names, runner.run(feeds), strict=True))
    values.update({k: v for k, v in feeds.items()})
    values.update(initializers)
    return values


def decomposition_outputs(entry: OpEntry, inputs: list[np.ndarray], opset: int) -> list[np.ndarray]:
    """Run the entry's onnxscript decomposition alone in ONNX Runtime on ``inputs``; return its outputs."""
    assert isinstance(entry.onnx, Decompose) and entry.onnx.fn is not None
    function = entry.onnx.fn.to_function_proto()
    names_in = [f"in{i}" for i in range(len(inputs))]
    names_out = [f"out{i}" for i in range(len(function.output))]
    node = onnx.helper.make_node(function.name, names_in, names_out, domain=function.domain)
    graph = onnx.helper.make_graph(
        [node],
        "decomposition",
        [
            onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
            for n, a in zip(names_in, inputs, strict=True)
        ],
        [onnx.ValueInfoProto(name=n) for n in names_out],
    )
    imports = {o.domain: o.version for o in function.opset_import} | {function.domain: 1}
    imports[""] = max(imports.get("", opset), opset)
    model = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in imports.items()], functions=[function]
    )
    runner = OrtRunner(inliner.inline_local_functions(model).SerializeToString())
    return runner.run(dict(zip(names_in, inputs, strict=True)))


def parity(entry: OpEntry, inputs: list[np.ndarray], outputs: list[np.ndarray], measured_on: str) -> dict[str, Any]:
    """Compare ``outputs`` (what the runtime computed) with ``entry.reference(*inputs)``; return
    the max and mean absolute difference, the reference's scale and where it was measured."""
    if entry.reference is None:
        return {"measured_on": measured_on, "error": "no reference registered: parity cannot be checked"}
    try:
        expected = entry.reference(*inputs)
    except Exception as exc:  # the user's code
        return {"measured_on": measured_on, "error": f"reference failed: {describe_exception(exc)}"}
    expected = list(expected) if isinstance(expected, tuple | list) else [expected]
    diffs = [
        np.abs(np.asarray(e, np.float64) - np.asarray(o, np.float64)) for e, o in zip(expected, outputs, strict=False)
    ]
    return {
        "measured_on": measured_on,
        "samples": int(inputs[0].shape[0]) if inputs and inputs[0].ndim else 1,
        "max_abs_diff": float(max(d.max() for d in diffs)),
        "mean_abs_diff": float(np.mean([d.mean() for d in diffs])),
        "reference_max_abs": float(max(np.abs(np.asarray(e)).max() for e in expected)),
    }
