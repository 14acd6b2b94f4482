"""Calibrated ranges around TFLite custom ops: the TFLite calibrator ran the model with the marker
builtins in the custom ops' place (``SIN``...), so every range after a custom op was recorded on
the marker's values, not the op's. This module runs the calibrated float model split at the
markers, with each op computed by its reference (:mod:`edgeport.formats.tflite.custom_flatbuffer`),
and writes the min/max it sees back, before ``mlir_quantize`` turns them into scales.

Runs in the converter's child process.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from edgeport.formats.tflite.custom_flatbuffer import run_with_kernels, split_at_custom_ops
from edgeport.formats.tflite.custom_kernels import site_kernel
from edgeport.formats.tflite.ranges import _stat_tensors, pack_model, unpack_model


def _invoker(interpreter: Any, sample: Any, originals: int):
    """``invoke(extra feeds) -> {output name: array}`` for one calibration sample (a list of
    arrays by position or a dict by name) on the split model's interpreter."""
    details = interpreter.get_input_details()
    signature = next(iter(interpreter._get_full_signature_list().values()), {"inputs": {}, "outputs": {}})
    by_name = signature.get("inputs", {})

    def invoke(extra: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = (
            sample.items()
            if isinstance(sample, dict)
            else zip([d["name"] for d in details[:originals]], sample, strict=True)
        )
        for name, value in items:
            index = by_name.get(name, next((d["index"] for d in details if d["name"] == name), None))
            interpreter.set_tensor(index, np.asarray(value))
        for name, value in extra.items():
            interpreter.set_tensor(by_name[name], value.astype(np.float32))
        interpreter.invoke()
        outputs = signature.get("outputs", {})
        return {name: interpreter.get_tensor(index) for name, index in outputs.items()}

    return invoke


def _downstream(model: Any, builtins: set[str]) -> set[int]:
    """Indices of the tensors computed from a marker op's output (its output included): only
    their recorded ranges are wrong; the others were calibrated on the real values."""
    from ai_edge_litert import schema_py_generated as schema

    codes = {getattr(schema.BuiltinOperator, name) for name in builtins}
    found: set[int] = set()
    for op in model.subgraphs[0].operators:  # execution order is topological
        code = model.operatorCodes[op.opcodeIndex]
        if max(int(code.builtinCode), int(code.deprecatedBuiltinCode)) in codes or found & set(op.inputs):
            found.update(int(i) for i in op.outputs)
    return found


def recalibrate(calibrated: bytes, sites: list[dict[str, Any]], samples: Iterable[Any]) -> tuple[bytes, int]:
    """Return ``(calibrated with the recorded min/max of every tensor after a custom op recomputed
    over samples with the ops computed by their references, ranges changed)``. ``sites``: ``CustomSite.to_dict()``s of
    the markers still in ``calibrated``."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    split, cut = split_at_custom_ops(calibrated, {s["builtin"] for s in sites})
    kernels = {s["builtin"]: site_kernel(s) for s in sites}
    interpreter = Interpreter(
        model_content=split,
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    originals = len(interpreter.get_input_details()) - len(cut)
    model = unpack_model(calibrated)
    indices = [i for i in _stat_tensors(model) if i in _downstream(model, {s["builtin"] for s in sites})]
    low = {i: np.inf for i in indices}
    high = {i: -np.inf for i in indices}
    for sample in samples:
        run_with_kernels(_invoker(interpreter, sample, originals), cut, kernels, batch=1)
        for index in indices:
            try:
                values = np.asarray(interpreter.get_tensor(index), dtype=np.float32)
            except ValueError:  # a tensor the interpreter did not keep
                continue
            low[index] = min(low[index], float(values.min()))
            high[index] = max(high[index], float(values.max()))
    changed = 0
    tensors = model.subgraphs[0].tensors
    for index in indices:
        if not np.isfinite(low[index]):
            continue
        q = tensors[index].quantization
        same = np.isclose([q.min[0], q.max[0]], [low[index], high[index]], rtol=1e-4, atol=1e-6)
        changed += int(not same.all())
        q.min, q.max = [low[index]], [high[index]]
    return pack_model(model), changed
