"""The calibration data of a calibrated (int8, int16) TFLite export: samples written as .npy
files for the conversion child's representative dataset, the cache key of the calibrated model
they give, and the plan's quantizer options that go with them in the child's request."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.core.errors import InputError
from edgeport.core.plan import PrecisionPlan
from edgeport.data.dataset import Dataset

MAX_CALIBRATION_SAMPLES = 500


def calibration_files(
    calibration: Dataset, input_names: list[str], folder: Path, max_samples: int
) -> tuple[dict[str, str], int]:
    """Write up to ``max_samples`` calibration samples per input (ONNX layout) as .npy files.

    Float inputs are stored as float32; integer and bool inputs (token ids, masks) keep
    their dtype: the child feeds each input in the dtype of the converted model's input
    (onnx2tf keeps int64 ids as int64), unlike onnx2tf's own calibration, which casts every
    input to float32. Returns ``({input: file}, sample count)``.
    """
    count = min(len(calibration), max_samples)
    batches: dict[str, list[np.ndarray]] = {name: [] for name in input_names}
    for start in range(0, count, 64):
        batch = calibration.batch(start, min(start + 64, count))
        for name in input_names:
            if name not in batch:
                raise InputError(f"calibration data has no input {name!r} (it has {', '.join(batch)})")
            batches[name].append(np.asarray(batch[name]))
    files = {}
    for i, name in enumerate(input_names):
        path = folder / f"calibration_{i}.npy"
        array = np.concatenate(batches[name])
        np.save(path, array.astype(np.float32) if array.dtype.kind == "f" else array)
        files[name] = str(path)
    return files, count


def calibration_cache(work: Path, onnx_copy: Path, calibration_files: dict[str, str], batch: int | None) -> Path:
    """The name of the calibrated (not yet quantized) TFLite model of this ONNX file and data:
    ``<work>/calibrated-tflite/<key>.tflite``, an entry of :func:`load_calibrated` and
    :func:`store_calibrated` (the run's own work folder: the candidates of one search share it)."""
    digest = hashlib.sha256(f"{batch}".encode())
    for path in [onnx_copy, *(Path(calibration_files[k]) for k in sorted(calibration_files))]:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return work / "calibrated-tflite" / f"{digest.hexdigest()[:32]}.tflite"


def _calibrated_store(cache: Path) -> tuple[Any, str]:
    from edgeport.core.cache_store import CacheStore

    # No size limit: the folder is the run's own and goes with it.
    return CacheStore(cache.parent.parent, cache.parent.name, limit=None), cache.stem


def load_calibrated(cache: Path, notes: list[str]) -> tuple[bytes, list[dict[str, Any]]] | None:
    """The calibrated model and its TF input specs stored under the name ``cache``, or None. An
    entry that fails its sha256 check (a conversion child killed mid-write) is removed, with a note."""
    store, key = _calibrated_store(cache)
    with store.open(key, notes) as found:
        if found is None:
            return None
        try:
            return (found[0] / "model.tflite").read_bytes(), json.loads((found[0] / "tf_inputs.json").read_text())
        except (OSError, ValueError):
            pass
    store.discard(key, "unusable content", notes, intact_too=True)
    return None


def store_calibrated(cache: Path, calibrated: bytes, tf_inputs: list[dict[str, Any]]) -> None:
    """Keep the calibrated model and its TF input specs as one entry (written atomically)."""
    store, key = _calibrated_store(cache)

    def fill(folder: Path) -> None:
        folder.mkdir()
        (folder / "tf_inputs.json").write_text(json.dumps(tf_inputs))
        (folder / "model.tflite").write_bytes(calibrated)

    store.put(key, fill)


def add_calibration(
    request: dict[str, Any],
    plan: PrecisionPlan,
    calibration: Dataset,
    work: Path,
    max_samples: int,
    notes: list[str],
) -> None:
    """Write the calibration files next to the request's ONNX copy and add them to ``request``,
    with (int8) the calibrated-model cache and the plan's percentile, bias correction and weight
    rounding options; append what the child should know about them to ``notes``."""
    folder, copy = Path(request["work"]), Path(request["onnx"])
    files, count = calibration_files(calibration, request["input_order"], folder, max_samples)
    request["calibration"] = files
    for name, file in files.items():
        dtype = np.load(file, mmap_mode="r").dtype
        if dtype.kind != "f":  # onnx2tf's own calibration would cast these to float32 and fail
            notes.append(f"calibration fed input {name!r} as {dtype.name} (its own dtype, not cast to float32)")
    if request["mode"] == "int8":
        # Calibration does not depend on the plan: the candidates of a search share it and
        # differ only in the quantizer's denylist (seconds instead of a full onnx2tf run).
        cached = calibration_cache(work, copy, files, request["batch_size"])
        # The TF route calibrates another model than onnx2tf's: its own cache entry.
        request["calibrated_cache"] = str(cached.with_name("tf-" + cached.name) if request["tf_source"] else cached)
        if plan.details.get("calibration") == "percentile":
            request["percentile"] = float(plan.details.get("percentile", 99.99))
        # Measured on the int8 TFLite model itself (formats/tflite/bias.py), which also
        # sees activation rounding, rather than predicted from the weights on the ONNX graph.
        request["bias_correction"] = bool(plan.details.get("bias_correction"))
        request["weight_rounding"] = plan.details.get("weight_rounding")
        if request["weight_rounding"] and not request["bias_correction"]:
            notes.append("weight rounding (GPTQ) runs with bias correction only: not applied")
    if calibration.synthetic:
        notes.append("int8 calibrated on synthetic inputs: ranges may not match real data")
