"""The child process of the TFLite export: onnx2tf (ONNX -> Keras) then the TFLite converter.

Run as ``python -m edgeport.formats.tflite.onnx2tf_child request.json``. It is a separate
process because onnx2tf and TFLite's calibrator can crash (segfaults) or hang, and onnx2tf
rewrites its input file; the parent gives it a copy and a timeout
(:mod:`edgeport.formats.tflite.onnx2tf_run`).

The request (JSON) names the ONNX copy, the output file, the TFLite mode (``fp32``,
``fp16``, ``dynamic``, ``int8``), the int8 input/output dtype, calibration ``.npy`` files
per input (ONNX layout; transposed here to the layout onnx2tf chose), and the plan layers
to keep in float (their ONNX weights in an ``.npz``, to find their ops). A request with a
``tf_source`` (a TensorFlow/Keras model: :mod:`edgeport.formats.tflite.from_tf`) skips onnx2tf
and gives the TFLite converter that model. The child writes a result JSON (``ok``, ``error``,
``stage``, ``notes``, ``denylisted``) and the .tflite.

The network is switched off before onnx2tf is imported: every socket connection attempt
is refused and logged to ``network_attempts.log`` in the working directory, so a download
onnx2tf tries (its calibration sample images) fails loudly instead of leaving the machine.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

NETWORK_LOG = "network_attempts.log"


def block_network(log_path: Path) -> None:
    """Make every outbound socket connection fail and append its address to ``log_path``."""

    def refuse(address: Any) -> None:
        with open(log_path, "a") as log:
            log.write(f"{address!r}\n")
        raise ConnectionRefusedError(f"edgeport: network access is disabled in the TFLite converter ({address!r})")

    def connect(self: socket.socket, address: Any) -> None:
        if self.family == getattr(socket, "AF_UNIX", None):
            return _original_connect(self, address)
        refuse(address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if self.family == getattr(socket, "AF_UNIX", None):
            return _original_connect_ex(self, address)
        refuse(address)
        return 1

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        refuse(address)
        raise AssertionError  # unreachable

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> list:
        refuse(host)
        raise AssertionError  # unreachable

    _original_connect = socket.socket.connect
    _original_connect_ex = socket.socket.connect_ex
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.create_connection = create_connection  # type: ignore[assignment]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]


def _representative(calibration: dict[str, str], onnx_order: list[str], tf_inputs: list[dict[str, Any]]):
    """Calibration samples (one each) in the converted model's input layout and dtype.

    TFLite inputs are matched to ONNX inputs by name (onnx2tf keeps them), else by order.
    Each array is cast to the Keras input's dtype, so int64 token ids are fed as int64
    (onnx2tf's own calibration casts every input to float32 and fails on such models).
    A single input is fed as a list; several are fed as a dict keyed by input name: the
    TFLite file may order its inputs differently from the Keras model (seen: ``vector``
    before ``image``), and the calibrator maps a dict through the signature by name.
    Returns ``(generator function, sample count)``.
    """
    import numpy as np

    from edgeport.formats.tflite.layers import channel_last_perm

    by_name = all(spec["name"] in calibration for spec in tf_inputs)
    if not by_name and len(onnx_order) != len(tf_inputs):
        raise ValueError(f"cannot match TFLite inputs {[t['name'] for t in tf_inputs]} to ONNX inputs {onnx_order}")
    arrays = []
    for i, spec in enumerate(tf_inputs):
        array = np.load(calibration[spec["name"] if by_name else onnx_order[i]])
        array = array.astype(spec.get("dtype") or (np.float32 if array.dtype.kind == "f" else array.dtype))
        perm = channel_last_perm(list(array.shape), spec["shape"])
        arrays.append(np.ascontiguousarray(array.transpose(perm)) if perm else array)
    count = min(len(a) for a in arrays)
    names = [spec["name"] for spec in tf_inputs]

    def gen():
        for i in range(count):
            if len(arrays) == 1:
                yield [arrays[0][i : i + 1]]
            else:
                yield {name: a[i : i + 1] for name, a in zip(names, arrays, strict=True)}

    return gen, count


class _State(dict):
    """The result dict, rewritten to disk at every stage so a crash still names its stage."""

    def __init__(self, path: Path) -> None:
        super().__init__(ok=False, stage="start", notes=[], error=None)
        self.path = path
        self.save()

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        if key == "stage":
            self.save()

    def save(self) -> None:
        self.path.write_text(json.dumps(self, indent=1))


def _convert(request: dict[str, Any], state: dict[str, Any]) -> bytes:
    from edgeport.formats.tflite.calibration import load_calibrated, store_calibrated

    cache = Path(request["calibrated_cache"]) if request.get("calibrated_cache") else None
    cached = load_calibrated(cache, state["notes"]) if cache is not None else None
    if cached is not None:
        state["notes"].append("re-used the calibrated model of an earlier build (same ONNX and data)")
        state["tf_inputs"] = cached[1]
        return _quantize_int8(request, state, cached[0])
    if request.get("tf_source"):
        # A TensorFlow/Keras source: the TFLite converter runs on it directly (no onnx2tf);
        # everything after the converter is shared with the ONNX route.
        from edgeport.formats.tflite.from_tf import tf_converter_factory

        state["stage"] = "load the TensorFlow source"
        make_converter, state["tf_inputs"] = tf_converter_factory(request["tf_source"], request.get("batch_size"))
    else:
        state["stage"] = "onnx2tf"
        import onnx2tf

        kwargs: dict[str, Any] = {}
        if request.get("batch_size"):
            kwargs["batch_size"] = int(request["batch_size"])
        model = onnx2tf.convert(
            input_onnx_file_path=request["onnx"],
            output_folder_path=str(Path(request["work"]) / "saved_model"),
            disable_model_save=True,
            non_verbose=True,
            verbosity="error",
            **kwargs,
        )
        if model is None:
            raise RuntimeError("onnx2tf returned no model")
        state["tf_inputs"] = [
            {
                "name": t.name.split(":")[0],
                "shape": [d if d is not None else -1 for d in t.shape],
                "dtype": getattr(t.dtype, "name", None) or str(t.dtype),
            }
            for t in model.inputs
        ]

        def make_converter():
            import tensorflow as tf

            return tf.lite.TFLiteConverter.from_keras_model(model)

    state["stage"] = "tflite-converter"
    import tensorflow as tf

    converter = make_converter()
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    mode = request["mode"]
    if mode == "fp32":
        return converter.convert()
    if mode == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
        return converter.convert()
    if mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return converter.convert()
    from edgeport.formats.tflite.modes import CALIBRATED_MODES

    if mode not in CALIBRATED_MODES:
        raise ValueError(f"unknown TFLite mode {mode!r}")

    gen, count = _representative(request["calibration"], request["input_order"], state["tf_inputs"])
    state["notes"].append(f"calibrated on {count} samples")
    if mode == "int16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = gen
        # BUILTINS too: an op without a 16x8 kernel stays float instead of failing the model.
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS,
        ]
        state["stage"] = "calibration and 16x8 quantization"
        return converter.convert()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = gen
    converter.experimental_new_quantizer = True
    converter._experimental_calibrate_only = True  # quantized below, with the plan's denylist
    state["stage"] = "calibration"
    calibrated = converter.convert()
    if cache is not None:
        store_calibrated(cache, calibrated, state["tf_inputs"])  # one entry, written atomically
    return _quantize_int8(request, state, calibrated)


def _quantize_int8(request: dict[str, Any], state: dict[str, Any], calibrated: bytes) -> bytes:
    """Quantize a calibrated model to full integer, keeping the plan's float layers float
    (with percentile ranges and empirical bias correction when the request asks for them)."""
    import tensorflow as tf

    sites = request.get("custom_ops") or []
    if sites:
        from edgeport.formats.tflite.custom_calibration import recalibrate

        state["stage"] = "custom-op ranges"
        gen, _ = _representative(request["calibration"], request["input_order"], state["tf_inputs"])
        calibrated, changed = recalibrate(calibrated, sites, gen())
        state["notes"].append(
            f"ranges after the custom op(s) recalibrated with their references: {changed} changed "
            "(the calibrator ran a stand-in in their place)"
        )
    percentile = request.get("percentile")
    if percentile and sites:
        state["notes"].append("percentile ranges not applied: they would run the stand-in of the custom op(s)")
        percentile = None
    if percentile:
        from edgeport.formats.tflite.ranges import clip_ranges

        state["stage"] = "percentile ranges"
        gen, _ = _representative(request["calibration"], request["input_order"], state["tf_inputs"])
        calibrated, narrowed, seen = clip_ranges(calibrated, gen(), float(percentile))
        state["notes"].append(f"percentile {percentile} activation ranges: {narrowed} of {seen} narrowed")

    denylisted: list[str] = []
    float_layers = request.get("float_layers") or {}
    if float_layers:
        state["stage"] = "layer matching"
        import numpy as np

        from edgeport.formats.tflite.layers import match_layers, tflite_weighted_ops

        with np.load(request["layer_weights"]) as stored:
            weights = {layer: [stored[key] for key in keys] for layer, keys in float_layers.items()}
        matched, _ = match_layers(weights, tflite_weighted_ops(calibrated))
        for layer, ops in matched.items():
            if not ops:
                state["notes"].append(f"layer {layer}: no TFLite op found to keep in float")
            denylisted.extend(op.output_name for op in ops)
    state["denylisted"] = denylisted

    state["stage"] = "quantization"
    from tensorflow.lite.python import convert as tfl_convert

    io = {"float32": tf.float32, "int8": tf.int8, "uint8": tf.uint8}[request.get("io_dtype", "float32")]
    quantized = tfl_convert.mlir_quantize(
        calibrated,
        disable_per_channel=bool(request.get("per_tensor", False)),
        input_data_type=io,
        output_data_type=io,
        denylisted_nodes=denylisted or None,
    )
    if request.get("bias_correction") and sites:
        state["notes"].append("bias correction not applied: it would run the stand-in of the custom op(s)")
    elif request.get("bias_correction"):
        from edgeport.formats.tflite.bias import correct_biases

        state["stage"] = "bias correction"
        gen, _ = _representative(request["calibration"], request["input_order"], state["tf_inputs"])
        # The calibrated model still computes in float: the reference the int8 model should match.
        gptq = request.get("weight_rounding") == "gptq"
        quantized, info = correct_biases(quantized, calibrated, gen(), round_weights=gptq)
        if gptq:
            state["notes"].append(f"GPTQ weight rounding on the int8 TFLite model: {info['rounded']} conv(s)")
        state["notes"].append(
            f"bias correction measured on the int8 TFLite kernels: {info['layers']} layer(s), "
            f"{info['samples']} calibration samples, largest mean shift removed {info['max_shift']:.3g}"
        )
    return quantized


def main(argv: list[str]) -> int:
    """Run one conversion request (``argv[0]`` is its JSON path); return the exit code."""
    request = json.loads(Path(argv[0]).read_text())
    work = Path(request["work"])
    block_network(work / NETWORK_LOG)
    os.chdir(work)  # onnx2tf looks for its calibration sample file in the working directory
    state = _State(Path(request["result"]))
    code = 0
    try:
        if request.get("crash_for_test"):
            import ctypes

            ctypes.string_at(0)  # a real segfault, to test the parent's handling
        sites = request.get("custom_ops") or []
        if sites:
            from edgeport.formats.tflite.custom_kernels import load_sources

            state["stage"] = "load the custom op modules"
            load_sources(request.get("custom_op_sources") or [])
        data = _convert(request, state)
        if sites:
            from edgeport.formats.tflite.custom_flatbuffer import emit_custom_ops

            state["stage"] = "emit TFLite custom ops"
            Path(request["out_marked"]).write_bytes(data)  # LiteRT loads this one to describe the file
            data = emit_custom_ops(data, sites)
        Path(request["out"]).write_bytes(data)
        state["ok"] = True
    except BaseException as exc:  # noqa: BLE001 - everything becomes one line for the parent
        lines = str(exc).strip().splitlines()
        state["error"] = f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500]
        state["traceback"] = traceback.format_exc()[-4000:]
        code = 1
    state.save()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
