"""The Core ML runner (macOS only), and importing coremltools quietly.

- ``CoreMLRunner`` (kind ``coreml``) loads an ``.mlpackage`` with coremltools on the compute
  units the profile names and predicts sample by sample when the package has a fixed batch.
  Core ML predictions exist only on macOS; elsewhere opening it raises a one-line error that
  says how to run it on a Mac. Inputs the package takes as images (``image_inputs``) are fed as
  8-bit PIL images made from the model inputs with the image's scale and bias.
- The emulation used off macOS lives with the format (``formats/coreml/emulate.py``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.runtime.host import host_description

NOT_ON_THIS_HOST = (
    "Core ML models run only on macOS (coremltools: 'Model prediction is only supported on macOS'); "
    "this host is {system}: use `edgeport verify BUNDLE --runner ssh://user@mac` to run the package on a Mac"
)


def import_coremltools():
    """Import coremltools quietly and return the module.

    coremltools imports TensorFlow when it is installed, only to enable its TF frontend (needed
    only for TensorFlow sources, which have imported TF by then). Hiding TF during that import
    saves about a second and TF's log lines; TF stays importable afterwards, and
    :func:`enable_tf_frontend` turns the frontend on later if a TF source needs it. Its
    "version not tested" warnings go to the debug log.
    """
    if "coremltools" in sys.modules:
        return sys.modules["coremltools"]
    hide_tf = "tensorflow" not in sys.modules
    if hide_tf:
        sys.modules["tensorflow"] = None  # type: ignore[assignment]  # makes `import tensorflow` fail
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            import coremltools

            logging.getLogger("coremltools").setLevel(logging.ERROR)
            import coremltools.optimize.coreml  # noqa: F401
    except ImportError as exc:
        raise CoreMLMissing("coremltools is not installed") from exc
    finally:
        if hide_tf:
            sys.modules.pop("tensorflow", None)
    return coremltools


def refusal_here() -> str | None:
    """Return why Core ML models cannot run on this host's OS (one line), or None on macOS.

    Asks nothing of coremltools, so the device harness can refuse before importing it."""
    if platform.system() == "Darwin":
        return None
    return NOT_ON_THIS_HOST.format(system=platform.system())


def can_predict() -> bool:
    """True when this host can run Core ML models (macOS with coremltools' native library)."""
    if refusal_here():
        return False
    try:
        import_coremltools()
        import coremltools.libcoremlpython  # noqa: F401
    except ImportError:
        return False
    return True


def coreml_version() -> str:
    """The installed coremltools version (for the report)."""
    from importlib import metadata

    try:
        return metadata.version("coremltools")
    except metadata.PackageNotFoundError:
        return "not installed"


class CoreMLMissing(ImportError):
    """coremltools is not installed."""


class CoreMLUnavailable(RuntimeError):
    """Core ML cannot run on this host."""


class CoreMLRunner:
    """A compiled Core ML model run through coremltools on macOS.

    ``compute_units`` is a ``coremltools.ComputeUnit`` name (``CPU_AND_GPU``, ``CPU_AND_NE``,
    ``ALL``, ``CPU_ONLY``); Core ML decides per op where it really runs within them.
    """

    kind = "coreml"

    def __init__(
        self,
        path: str | Path,
        threads: int = 1,
        compute_units: str = "ALL",
        input_names: list[str] | None = None,
        output_names: list[str] | None = None,
        image_inputs: dict[str, dict[str, Any]] | None = None,
        **_: Any,
    ) -> None:
        if not can_predict():
            raise CoreMLUnavailable(NOT_ON_THIS_HOST.format(system=platform.system()))
        ct = import_coremltools()
        self.threads = threads  # Core ML schedules its own threads; kept for the report
        self.compute_units = compute_units
        start = time.perf_counter()
        self.model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, compute_units))
        self.load_seconds = time.perf_counter() - start
        spec = self.model.get_spec()
        self.images = image_inputs or {}
        self._inputs = {}
        for feature in spec.description.input:
            if feature.type.WhichOneof("Type") == "imageType":
                self._inputs[feature.name] = ([1], "float32")  # one image per prediction
                continue
            array = feature.type.multiArrayType
            kind = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array.dataType)
            dtype = {"FLOAT16": "float16", "INT32": "int32", "DOUBLE": "float64"}.get(kind, "float32")
            self._inputs[feature.name] = (list(array.shape), dtype)
        self.input_names = input_names or list(self._inputs)
        self.output_names = output_names or [o.name for o in spec.description.output]

    def _fixed_batch(self) -> int | None:
        shapes = [shape for shape, _ in self._inputs.values() if shape]
        return int(shapes[0][0]) if shapes else None

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Predict on ``feeds`` (by input name); a batch larger than the package's fixed batch runs
        in chunks. Returns the outputs in ``output_names`` order."""
        inputs = {n: np.ascontiguousarray(feeds[n], dtype=self._inputs[n][1]) for n in self.input_names}
        total = len(next(iter(inputs.values())))
        step = self._fixed_batch() or total
        parts: list[list[np.ndarray]] = []
        for start in range(0, total, step):
            chunk: dict[str, Any] = {k: v[start : start + step] for k, v in inputs.items()}
            for name, image in self.images.items():
                chunk[name] = to_pixels(chunk[name][0], image)
            result = self.model.predict(chunk)
            parts.append([np.asarray(result[name], dtype=np.float32) for name in self.output_names])
        return [np.concatenate([p[i] for p in parts]) for i in range(len(self.output_names))]

    def describe(self) -> dict[str, Any]:
        """Runtime, coremltools version, compute units and host (for the report)."""
        return {
            "runtime": "coreml",
            "version": coreml_version(),
            "compute_units": self.compute_units,
            "threads": self.threads,
            "host": host_description(),
        }


def to_pixels(tensor: np.ndarray, image: dict[str, Any]):
    """One model input (CHW or HWC floats) as the 8-bit PIL image whose Core ML preprocessing
    (``scale * pixel + bias``) gives it back; ``image`` holds the ImageInput facts."""
    from PIL import Image

    channels_first = image["channel_first"]
    bias = np.asarray(image["bias"], np.float32).reshape((-1, 1, 1) if channels_first else (1, 1, -1))
    pixels = np.clip(np.rint((tensor - bias) / image["scale"]), 0, 255).astype(np.uint8)
    if channels_first:
        pixels = pixels.transpose(1, 2, 0)
    if image["color_layout"] == "GRAYSCALE":
        return Image.fromarray(pixels[..., 0], mode="L")
    return Image.fromarray(pixels, mode="RGB")
