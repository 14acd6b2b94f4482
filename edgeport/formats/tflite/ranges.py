"""Percentile activation ranges for TFLite full-integer quantization.

The TFLite calibrator records each tensor's min and max, so one outlier sample stretches a
range and costs every other value resolution. ONNX Runtime offers percentile calibration; the
TFLite converter does not. This module gives TFLite the same: it runs the calibrated float
model on the calibration samples, takes the given percentile of each calibrated tensor's
values (both tails), and writes the narrowed ranges back into the flatbuffer's min/max fields,
which ``mlir_quantize`` then turns into scales. EfficientNet-Lite0 int8, top-1 agreement with
fp32 on held-out photos at 99.99: 0.759 -> 0.806 (with bias correction: 0.889 -> 0.917).

Runs in the converter's child process (it imports LiteRT and TensorFlow's flatbuffer schema).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

VALUES_PER_SAMPLE = 8192  # values kept per tensor per sample: bounds memory on large maps


def _stat_tensors(model: Any) -> list[int]:
    """Indices of the first subgraph's tensors that carry one calibrated min/max pair."""
    tensors = model.subgraphs[0].tensors
    found = []
    for index, tensor in enumerate(tensors):
        q = tensor.quantization
        if q is not None and q.min is not None and q.max is not None and len(q.min) == 1 and len(q.max) == 1:
            found.append(index)
    return found


def unpack_model(model_bytes: bytes) -> Any:
    """Return the TFLite flatbuffer ``model_bytes`` as an editable ``schema.ModelT``."""
    from ai_edge_litert import schema_py_generated as schema

    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model_bytes, 0))


def pack_model(model: Any) -> bytes:
    """Return the bytes of the TFLite flatbuffer ``model`` (a ``schema.ModelT``)."""
    import flatbuffers

    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def sample_feeder(interpreter: Any) -> Callable[[Any], None]:
    """Return a function that sets one representative sample (a list of inputs by position,
    or a dict by name) as the interpreter's inputs."""
    details = interpreter.get_input_details()
    signatures = interpreter._get_full_signature_list()
    by_name = next(iter(signatures.values()), {}).get("inputs", {}) if signatures else {}

    def feed(sample: Any) -> None:
        if isinstance(sample, dict):
            for name, value in sample.items():
                index = by_name.get(name)
                if index is None:  # no signature: fall back to the tensor's own name
                    index = next(d["index"] for d in details if d["name"].split(":")[0] == name)
                interpreter.set_tensor(index, value)
        else:
            for detail, value in zip(details, sample, strict=True):
                interpreter.set_tensor(detail["index"], value)

    return feed


def clip_ranges(calibrated: bytes, samples: Iterable[Any], percentile: float) -> tuple[bytes, int, int]:
    """Narrow the calibrated ranges of ``calibrated`` to the ``percentile`` of the values the
    float model produces on ``samples`` (a range never widens and always contains 0).

    Returns ``(new model bytes, ranges narrowed, ranges seen)``.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    model = unpack_model(calibrated)
    indices = _stat_tensors(model)
    interpreter = Interpreter(
        model_content=calibrated,
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    feed = sample_feeder(interpreter)
    rng = np.random.default_rng(0)
    values: dict[int, list[np.ndarray]] = {i: [] for i in indices}
    for sample in samples:
        feed(sample)
        interpreter.invoke()
        for index in indices:
            try:
                flat = np.asarray(interpreter.get_tensor(index), dtype=np.float32).ravel()
            except ValueError:  # a tensor the interpreter did not keep
                continue
            if flat.size > VALUES_PER_SAMPLE:
                flat = rng.choice(flat, VALUES_PER_SAMPLE, replace=False)
            values[index].append(flat)

    narrowed = 0
    tensors = model.subgraphs[0].tensors
    for index in indices:
        if not values[index]:
            continue
        data = np.concatenate(values[index])
        q = tensors[index].quantization
        low = max(float(q.min[0]), min(float(np.percentile(data, 100.0 - percentile)), 0.0))
        high = min(float(q.max[0]), max(float(np.percentile(data, percentile)), 0.0))
        if low > q.min[0] or high < q.max[0]:
            narrowed += 1
        q.min, q.max = [low], [high]
    return pack_model(model), narrowed, len(indices)
