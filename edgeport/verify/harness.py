"""Self-contained verification harness, copied to a device and run there by its own python.

It needs only numpy and the artifact's runtime (``onnxruntime``, ``ai_edge_litert`` or, for a
Core ML ``.mlpackage`` on a Mac, ``coremltools``), never edgeport. Usage:
``python harness.py job.json``, where the job file (in the same folder as the models and
``inputs.npz``) says::

    {"artifact": {"kind": "onnxruntime"|"litert"|"coreml", "file": "model.onnx", "kwargs": {...}},
     "reference": {... the fp32 model timed side by side ...} or null,
     "inputs": "inputs.npz", "input_names": [...], "output_names": [...],
     "threads": 1, "runs": 100, "warmup": 10, "latency_batch": 1}

It prints one JSON document on stdout: ``{"ok": true, "device": {...}, "latency": {...},
"outputs_npz_b64": "..."}`` (the artifact's outputs on every input, and the reference's when
there is one, as a base64 ``.npz``), or ``{"ok": false, "error": ..., "missing": [packages]}``
with exit code 3 when a package is missing, 4 when the runtime fails. Feeding follows
edgeport's runners: ONNX Runtime with spinning off and a fixed thread count; LiteRT with
channel-first feeds transposed, int8/uint8 tensors (de)quantized, and a static batch of 1
run sample by sample.
"""

from __future__ import annotations

import base64
import io
import json
import os
import platform
import sys
import time
from typing import Any

EXIT_MISSING = 3
EXIT_FAILED = 4
PIP_NAMES = {
    "numpy": "numpy",
    "onnxruntime": "onnxruntime",
    "ai_edge_litert": "ai-edge-litert",
    "coremltools": "coremltools",
}
RUNTIME_MODULES = {"onnxruntime": "onnxruntime", "litert": "ai_edge_litert", "coreml": "coremltools"}
ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(bool)": "bool",
    "tensor(double)": "float64",
}


def _emit(document: dict[str, Any], code: int) -> None:
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()
    sys.exit(code)


def _missing(modules: list[str]) -> list[str]:
    missing = []
    for module in modules:
        try:
            __import__(module)
        except ImportError:
            missing.append(PIP_NAMES.get(module, module))
    return missing


class OrtHarnessRunner:
    """ONNX Runtime session like edgeport's OrtRunner (spinning off, fixed threads)."""

    def __init__(self, path: str, threads: int, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        available = ort.get_available_providers()
        self.providers = [p for p in (providers or ["CPUExecutionProvider"]) if p in available] or [
            "CPUExecutionProvider"
        ]
        self.threads = threads
        self.session = ort.InferenceSession(path, options, providers=self.providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.dtypes = {i.name: ORT_TYPES.get(i.type, "float32") for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        """Run once; return the outputs in the model's order."""
        import numpy as np

        inputs = {n: np.ascontiguousarray(feeds[n], dtype=self.dtypes[n]) for n in self.input_names}
        return self.session.run(self.output_names, inputs)

    def describe(self) -> dict[str, Any]:
        """Runtime name, version, providers and threads."""
        import onnxruntime as ort

        return {
            "runtime": "onnxruntime",
            "version": ort.__version__,
            "providers": self.providers,
            "threads": self.threads,
        }


class LiteRTHarnessRunner:
    """LiteRT interpreter fed like edgeport's LiteRTRunner (ONNX names and layout in and out)."""

    def __init__(
        self,
        path: str,
        threads: int,
        transposes: dict[str, list[int]] | None = None,
        output_transposes: dict[str, list[int]] | None = None,
        input_names: list[str] | None = None,
        output_names: list[str] | None = None,
        **_: Any,
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.threads = threads
        self.transposes = transposes or {}
        self.output_transposes = output_transposes or {}
        self.interpreter = Interpreter(model_path=path, num_threads=threads)
        self.interpreter.allocate_tensors()
        signatures = self.interpreter._get_full_signature_list()
        signature = next(iter(signatures.values()), {"inputs": {}, "outputs": {}})
        self._inputs = self._pair(input_names, signature.get("inputs", {}), self.interpreter.get_input_details())
        self._outputs = self._pair(output_names, signature.get("outputs", {}), self.interpreter.get_output_details())
        self.input_names = list(self._inputs)
        self.output_names = list(self._outputs)
        self.delegated = any(op["op_name"] == "DELEGATE" for op in self.interpreter._get_ops_details())

    @staticmethod
    def _pair(names: list[str] | None, by_signature: dict[str, int], details: list[dict]) -> dict[str, dict]:
        by_index = {d["index"]: d for d in details}
        if names is None:
            if by_signature and len(by_signature) == len(details):
                indices = [d["index"] for d in details]
                order = sorted(by_signature, key=lambda n: indices.index(by_signature[n]))
                return {n: by_index[by_signature[n]] for n in order}
            return {d["name"]: d for d in details}
        if set(names) <= set(by_signature):
            return {n: by_index[by_signature[n]] for n in names}
        return dict(zip(names, details))  # noqa: B905 (runs on the device's python, maybe < 3.10)

    def _feed(self, name: str, value: Any) -> Any:
        import numpy as np

        detail = self._inputs[name]
        array = np.asarray(value)
        perm = self.transposes.get(name)
        if perm and array.ndim == len(perm):
            array = array.transpose(perm)
        dtype = np.dtype(detail["dtype"])
        scale, zero_point = detail["quantization"]
        if dtype.kind in "iu" and scale > 0 and array.dtype.kind == "f":
            info = np.iinfo(dtype)
            q = np.round(array.astype(np.float32) / np.float32(scale)) + zero_point
            return np.clip(q, info.min, info.max).astype(dtype)
        return np.ascontiguousarray(array, dtype=dtype)

    def _fetch(self, name: str) -> Any:
        import numpy as np

        detail = self._outputs[name]
        array = self.interpreter.get_tensor(detail["index"])
        scale, zero_point = detail["quantization"]
        if array.dtype.kind in "iu" and scale > 0:
            array = (array.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
        perm = self.output_transposes.get(name)
        if perm and array.ndim == len(perm):
            array = array.transpose(perm)
        return np.ascontiguousarray(array)

    def _invoke(self, feeds: dict[str, Any]) -> list[Any]:
        resized = False
        for name, array in feeds.items():
            detail = self._inputs[name]
            if list(array.shape) != list(detail["shape"]):
                self.interpreter.resize_tensor_input(detail["index"], list(array.shape), strict=True)
                resized = True
        if resized:
            self.interpreter.allocate_tensors()
            fresh = {d["index"]: d for d in self.interpreter.get_input_details()}
            self._inputs = {n: fresh[d["index"]] for n, d in self._inputs.items()}
        for name, array in feeds.items():
            self.interpreter.set_tensor(self._inputs[name]["index"], array)
        self.interpreter.invoke()
        return [self._fetch(name) for name in self.output_names]

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        """Run once (a batch over a static batch of 1 runs sample by sample); return the outputs."""
        import numpy as np

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
        """Runtime name, version, delegates and threads."""
        import ai_edge_litert

        return {
            "runtime": "litert",
            "version": getattr(ai_edge_litert, "__version__", "unknown"),
            "delegates": ["XNNPACK"] if self.delegated else [],
            "threads": self.threads,
        }


class CoreMLHarnessRunner:
    """A Core ML package (.mlpackage folder) predicted by coremltools on a Mac, on the compute
    units the bundle names; a fixed-batch package runs a larger batch in chunks."""

    def __init__(
        self,
        path: str,
        threads: int,
        compute_units: str = "ALL",
        input_names: list[str] | None = None,
        output_names: list[str] | None = None,
        **_: Any,
    ) -> None:
        if platform.system() != "Darwin":
            raise RuntimeError(f"Core ML models run only on macOS; this device runs {platform.system()}")
        import coremltools as ct

        self.threads = threads
        self.compute_units = compute_units
        self.model = ct.models.MLModel(path, compute_units=getattr(ct.ComputeUnit, compute_units))
        spec = self.model.get_spec()
        names = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType
        self.inputs = {}
        for feature in spec.description.input:
            array = feature.type.multiArrayType
            dtype = {"FLOAT16": "float16", "INT32": "int32"}.get(names.Name(array.dataType), "float32")
            self.inputs[feature.name] = (list(array.shape), dtype)
        self.input_names = input_names or list(self.inputs)
        self.output_names = output_names or [o.name for o in spec.description.output]

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        """Predict (in chunks of the package's fixed batch); return the outputs in order."""
        import numpy as np

        inputs = {n: np.ascontiguousarray(feeds[n], dtype=self.inputs[n][1]) for n in self.input_names}
        total = len(next(iter(inputs.values())))
        shapes = [shape for shape, _ in self.inputs.values() if shape]
        step = int(shapes[0][0]) if shapes else total
        parts = []
        for start in range(0, total, step):
            result = self.model.predict({k: v[start : start + step] for k, v in inputs.items()})
            parts.append([np.asarray(result[name], dtype=np.float32) for name in self.output_names])
        return [np.concatenate([p[i] for p in parts]) for i in range(len(self.output_names))]

    def describe(self) -> dict[str, Any]:
        """Runtime name, coremltools version and the compute units asked for."""
        import coremltools

        return {
            "runtime": "coreml",
            "version": coremltools.__version__,
            "compute_units": self.compute_units,
            "threads": self.threads,
        }


def open_runner(spec: dict[str, Any], threads: int) -> Any:
    """Return a harness runner for ``{"kind", "file", "kwargs"}``."""
    kwargs = dict(spec.get("kwargs") or {})
    if spec["kind"] == "onnxruntime":
        return OrtHarnessRunner(spec["file"], threads, kwargs.get("providers"))
    if spec["kind"] == "litert":
        return LiteRTHarnessRunner(spec["file"], threads, **kwargs)
    if spec["kind"] == "coreml":
        return CoreMLHarnessRunner(spec["file"], threads, **kwargs)
    raise ValueError(f"unknown runner kind {spec['kind']!r}")


def device_description() -> dict[str, Any]:
    """Return this device's OS, CPU/chip, core count, hostname, python and numpy versions."""
    import numpy as np

    cpu = platform.processor() or platform.machine()
    hardware = None
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key == "model name" and value.strip():
                    cpu = value.strip()
                    break
                # ARM boards: "Hardware : BCM2835", "Model : Raspberry Pi 4" (x86's "model" is a number)
                if key in ("hardware", "model") and value.strip() and not value.strip().isdigit():
                    hardware = value.strip()
    except OSError:
        pass
    os_name = f"{platform.system()} {platform.release()}"
    try:
        with open("/etc/os-release") as handle:
            for line in handle:
                if line.startswith("PRETTY_NAME="):
                    os_name = f"{line.split('=', 1)[1].strip().strip(chr(34))} ({os_name})"
    except OSError:
        pass
    if platform.system() == "Darwin":
        os_name = f"macOS {platform.mac_ver()[0]} ({os_name})"
    description = {
        "hostname": platform.node(),
        "os": os_name,
        "machine": platform.machine(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    if hardware:
        description["chip"] = hardware
    return description


def percentiles_ms(samples_ns: list[int]) -> dict[str, float]:
    """Return p50/p90/p99/mean/min in milliseconds (as edgeport's latency module does)."""
    import numpy as np

    values = np.asarray(samples_ns, dtype=np.float64) / 1e6
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p90_ms": float(np.percentile(values, 90)),
        "p99_ms": float(np.percentile(values, 99)),
        "mean_ms": float(values.mean()),
        "min_ms": float(values.min()),
        "runs": int(values.size),
    }


def first_samples(feeds: dict[str, Any], count: int, axes: dict[str, int | None] | None = None) -> dict[str, Any]:
    """Return the first ``count`` samples of ``feeds``, cut along each input's batch axis
    (``axes``: name -> axis, None for an input without one, such as a rank-0 sample rate;
    missing names: axis 0)."""
    import numpy as np

    axes = axes or {}
    sliced = {}
    for name, value in feeds.items():
        axis = axes.get(name, 0)
        if axis is None or np.ndim(value) == 0:
            sliced[name] = value
        else:
            sliced[name] = np.take(value, range(min(count, value.shape[axis])), axis=axis)
    return sliced


def side_by_side(runners: dict[str, Any], feeds: dict[str, Any], runs: int, warmup: int) -> dict[str, Any]:
    """Time the runners interleaved (A B B A ...) after ``warmup`` runs each; return percentiles."""
    for runner in runners.values():
        for _ in range(warmup):
            runner.run(feeds)
    names = list(runners)
    samples: dict[str, list[int]] = {name: [] for name in names}
    for i in range(runs):
        for name in names if i % 2 == 0 else names[::-1]:
            start = time.perf_counter_ns()
            runners[name].run(feeds)
            samples[name].append(time.perf_counter_ns() - start)
    return {name: percentiles_ms(values) for name, values in samples.items()}


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run the job (see the module docstring); return the JSON-ready result."""
    import numpy as np

    threads = int(job.get("threads", 1))
    with np.load(job["inputs"]) as data:
        feeds = {name: data[name] for name in job["input_names"]}
    start = time.perf_counter()
    artifact = open_runner(job["artifact"], threads)
    load = {"artifact": time.perf_counter() - start}
    runners = {}
    reference = None
    if job.get("reference"):
        start = time.perf_counter()
        reference = open_runner(job["reference"], threads)
        load["reference"] = time.perf_counter() - start
        runners["reference"] = reference
    runners["artifact"] = artifact
    arrays = {}
    for name, value in zip(job["output_names"], artifact.run(feeds)):  # noqa: B905
        arrays[f"artifact/{name}"] = value
    if reference is not None:
        for name, value in zip(job["output_names"], reference.run(feeds)):  # noqa: B905
            arrays[f"reference/{name}"] = value
    batch = int(job.get("latency_batch", 1))
    latency_feeds = first_samples(feeds, batch, job.get("batch_axes"))
    latency = side_by_side(runners, latency_feeds, int(job.get("runs", 100)), int(job.get("warmup", 10)))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return {
        "ok": True,
        "device": device_description(),
        "runtime": artifact.describe(),
        "latency": latency,
        "load_time_s": load,
        "outputs_npz_b64": base64.b64encode(buffer.getvalue()).decode("ascii"),
    }


def main(argv: list[str]) -> None:
    """Entry point: read the job file, check the packages, run, print the JSON result."""
    if len(argv) != 2:
        _emit({"ok": False, "error": "usage: harness.py job.json"}, EXIT_FAILED)
    with open(argv[1]) as handle:
        job = json.load(handle)
    kinds = {job["artifact"]["kind"]} | ({job["reference"]["kind"]} if job.get("reference") else set())
    if "coreml" in kinds and platform.system() != "Darwin":  # before importing coremltools (slow, pointless)
        _emit(
            {"ok": False, "error": f"Core ML models run only on macOS; this device runs {platform.system()}"},
            EXIT_FAILED,
        )
    modules = ["numpy"] + [RUNTIME_MODULES[k] for k in sorted(kinds)]
    missing = _missing(modules)
    if missing:
        _emit(
            {"ok": False, "error": f"missing python packages: {', '.join(missing)}", "missing": missing},
            EXIT_MISSING,
        )
    try:
        result = run_job(job)
    except Exception as exc:  # report the runtime's error to the host in one line
        first = (str(exc).strip().splitlines() or [""])[0]
        _emit({"ok": False, "error": f"{type(exc).__name__}: {first}".rstrip(": ")}, EXIT_FAILED)
    _emit(result, 0)


if __name__ == "__main__":
    main(sys.argv)
