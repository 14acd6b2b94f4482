"""LiteRT runner: runs a ``.tflite`` file with ``ai_edge_litert`` and the Runner interface.

Feeds and outputs are in the ONNX model's names, order and layout: the runner transposes
channel-first feeds to the TFLite inputs' layout (``transposes``), quantizes float feeds
for int8/uint8 inputs with the tensor's scale and zero point, dequantizes int8/uint8
outputs, and transposes outputs back (``output_transposes``). A batch larger than a static
batch-1 input is run sample by sample; a dynamic batch dim is resized.

Runners know nothing of conversion: the export passes what it knows through
``TFLiteExport.runner_kwargs()``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.runtime.host import host_description


def _quantize(values: np.ndarray, dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray:
    info = np.iinfo(dtype)
    q = np.round(values.astype(np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


class LiteRTRunner:
    """A LiteRT interpreter (default delegates, i.e. XNNPACK on CPU) with a fixed thread count.

    When XNNPACK fails on the file (at load or at a resize) the interpreter is reloaded
    without delegates and ``delegate_fallback`` says why; a file LiteRT cannot load or run at
    all raises ConversionError with a one-line message and a hint.

    ``transposes``: ``{input name: perm}`` taking an ONNX-layout feed to the TFLite input;
    ``output_transposes``: ``{output name: perm}`` taking a TFLite output to the ONNX layout;
    ``input_names``/``output_names``: the ONNX names in ONNX order. TFLite tensors are matched
    to them by the model's signature names (onnx2tf keeps the ONNX names there), else by order.
    """

    kind = "litert"

    def __init__(
        self,
        path: str | Path | bytes,
        threads: int = 1,
        transposes: dict[str, list[int]] | None = None,
        output_transposes: dict[str, list[int]] | None = None,
        input_names: list[str] | None = None,
        output_names: list[str] | None = None,
    ) -> None:
        self.threads = threads
        self.transposes = {k: list(v) for k, v in (transposes or {}).items()}
        self.output_transposes = {k: list(v) for k, v in (output_transposes or {}).items()}
        self._names = (input_names, output_names)
        # A tuple, not bytes | bytearray: the device harness runs this file on pythons before 3.10.
        in_memory = isinstance(path, (bytes, bytearray))
        self._source = {"model_content": bytes(path)} if in_memory else {"model_path": str(path)}
        self.path = None if in_memory else Path(path)
        self.label = self.path.name if self.path is not None else "the .tflite model"
        # Why XNNPACK was dropped (its delegate failed on this file), None while it runs.
        self.delegate_fallback: str | None = None
        start = time.perf_counter()
        try:
            self._load(delegates=True)
        except (RuntimeError, ValueError) as exc:
            self._without_xnnpack(exc, "load")
        self.load_seconds = time.perf_counter() - start

    def _load(self, delegates: bool) -> None:
        """Create and allocate the interpreter (with LiteRT's default delegates, i.e. XNNPACK,
        or without any) and pair its tensors with the ONNX names."""
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        options: dict[str, Any] = {}
        if not delegates:
            options["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        self.interpreter = Interpreter(**self._source, num_threads=self.threads, **options)
        try:
            self.interpreter.allocate_tensors()
            self._allocated = True
        except RuntimeError:
            # Without XNNPACK (which defers it) a file with dynamic dims is prepared at its
            # placeholder size 1, where a conv after a pool fails: allocate at the first feed's size.
            dynamic = any(-1 in list(d.get("shape_signature", [])) for d in self.interpreter.get_input_details())
            if delegates or not dynamic:
                raise
            self._allocated = False
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        signatures = self.interpreter._get_full_signature_list()  # {key: {"inputs": {name: index}, ...}}
        signature = next(iter(signatures.values()), {"inputs": {}, "outputs": {}})
        self._inputs = self._pair(self._names[0], signature.get("inputs", {}), inputs, "input")
        self._outputs = self._pair(self._names[1], signature.get("outputs", {}), outputs, "output")
        self.input_names = list(self._inputs)
        self.output_names = list(self._outputs)
        ops = self.interpreter._get_ops_details()
        self.delegated = any(op["op_name"] == "DELEGATE" for op in ops)

    def _without_xnnpack(self, exc: Exception, when: str) -> None:
        """Reload without delegates after ``exc`` (XNNPACK refused to prepare or reshape the
        model, seen as ``XNNPack delegate failed to reshape runtime``); raise ConversionError
        (one line, a hint) when the model fails without XNNPACK too, or ran without it already."""
        from edgeport.core.errors import ConversionError, describe_exception

        reason = describe_exception(exc, with_type=False)[:300]
        hint = (
            "the file may declare dynamic dims its ops cannot take at this size: fix the input size "
            "(--input_shape) or feed data of the size it was converted for; or try another --quantization"
        )
        if "unresolved custom op" in reason:
            hint = (
                "the .tflite holds a TFLite custom op whose kernel the app registers (the bundle's manifest names "
                "it); LiteRT's Python API cannot register custom kernels, so it runs only in the app"
            )
        if self.delegate_fallback is None and getattr(self, "delegated", True):
            try:
                self._load(delegates=False)
            except (RuntimeError, ValueError) as again:
                raise ConversionError(
                    f"LiteRT cannot {when} {self.label}, with or without XNNPACK: "
                    f"{describe_exception(again, with_type=False)[:300]}",
                    hint=hint,
                ) from again
            self.delegate_fallback = reason
            return
        raise ConversionError(f"LiteRT cannot {when} {self.label}: {reason}", hint=hint) from exc

    @staticmethod
    def _pair(
        names: list[str] | None, by_signature: dict[str, int], details: list[dict], kind: str
    ) -> dict[str, dict[str, Any]]:
        by_index = {d["index"]: d for d in details}
        if names is None:
            if by_signature and len(by_signature) == len(details):
                # signature order is the TFLite tensor order of the inputs/outputs
                order = sorted(by_signature, key=lambda n: [d["index"] for d in details].index(by_signature[n]))
                return {n: by_index[by_signature[n]] for n in order}
            return {d["name"]: d for d in details}
        if set(names) <= set(by_signature):
            return {n: by_index[by_signature[n]] for n in names}
        if len(names) != len(details):
            raise ValueError(f"the .tflite has {len(details)} {kind}s, expected {len(names)} ({', '.join(names)})")
        return {name: details[i] for i, name in enumerate(names)}  # zip(strict=) needs python 3.10

    def _feed(self, name: str, value: np.ndarray) -> np.ndarray:
        detail = self._inputs[name]
        array = np.asarray(value)
        if name in self.transposes and array.ndim == len(self.transposes[name]):
            array = array.transpose(self.transposes[name])
        dtype = np.dtype(detail["dtype"])
        scale, zero_point = detail["quantization"]
        if dtype.kind in "iu" and scale > 0 and array.dtype.kind == "f":
            return _quantize(array, dtype, scale, zero_point)
        return np.ascontiguousarray(array, dtype=dtype)

    def _fetch(self, name: str) -> np.ndarray:
        detail = self._outputs[name]
        array = self.interpreter.get_tensor(detail["index"])
        scale, zero_point = detail["quantization"]
        if array.dtype.kind in "iu" and scale > 0:
            array = (array.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
        if name in self.output_transposes and array.ndim == len(self.output_transposes[name]):
            array = array.transpose(self.output_transposes[name])
        return np.ascontiguousarray(array)

    def _invoke(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self._invoke_once(feeds)
        except (RuntimeError, ValueError) as exc:
            # A resize XNNPACK cannot take fails here (the delegate prepared the first shape only).
            self._without_xnnpack(exc, "run")
            try:
                return self._invoke_once(feeds)
            except (RuntimeError, ValueError) as again:
                self._without_xnnpack(again, "run")  # raises: XNNPACK is off already
                raise

    def _invoke_once(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        resized = False
        for name, array in feeds.items():
            detail = self._inputs[name]
            if list(array.shape) != list(detail["shape"]):
                self.interpreter.resize_tensor_input(detail["index"], list(array.shape), strict=True)
                resized = True
        if resized or not self._allocated:
            self.interpreter.allocate_tensors()
            self._allocated = True
            self._inputs = {n: self._refresh(d) for n, d in self._inputs.items()}
        for name, array in feeds.items():
            self.interpreter.set_tensor(self._inputs[name]["index"], array)
        self.interpreter.invoke()
        return [self._fetch(name) for name in self.output_names]

    def _refresh(self, detail: dict[str, Any]) -> dict[str, Any]:
        return next(d for d in self.interpreter.get_input_details() if d["index"] == detail["index"])

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run once on ``feeds`` (ONNX input names and layout); return the outputs in ONNX order/layout.

        A batch is resized into a dynamic batch dim; with a static batch of 1 the samples
        are run one by one and the outputs concatenated.
        """
        prepared = {name: self._feed(name, feeds[name]) for name in self.input_names}
        static_one = all(
            int(d.get("shape_signature", d["shape"])[0]) == 1 for d in self._inputs.values() if len(d["shape"])
        )
        batch = {a.shape[0] for a in prepared.values() if a.ndim}
        if static_one and len(batch) == 1 and (n := batch.pop()) > 1:
            parts = [self._invoke({k: v[i : i + 1] for k, v in prepared.items()}) for i in range(n)]
            return [np.concatenate([p[j] for p in parts]) for j in range(len(self.output_names))]
        return self._invoke(prepared)

    def describe(self) -> dict[str, Any]:
        """Return the runtime, its version, delegate (XNNPACK), threads and host (for the report)."""
        import ai_edge_litert

        return {
            "runtime": "litert",
            "version": getattr(ai_edge_litert, "__version__", "unknown"),
            "delegates": ["XNNPACK"] if self.delegated else [],
            "xnnpack": self.delegated,
            "xnnpack_failed": self.delegate_fallback,
            "threads": self.threads,
            "inputs": {
                n: {"dtype": np.dtype(d["dtype"]).name, "shape": [int(s) for s in d["shape"]]}
                for n, d in self._inputs.items()
            },
            "host": host_description(),
        }
