"""The ModelBundle: the canonical ONNX form of a model plus what every stage needs to know."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

Dim = int | str  # an int, or the name of a symbolic dimension (e.g. "batch")


@dataclass
class TensorSpec:
    """One model input or output: name, shape (ints and symbolic names) and numpy dtype name."""

    name: str
    shape: list[Dim]
    dtype: str = "float32"
    # Memory layout of an image-like input when the source states it ("NHWC" for TensorFlow);
    # None when unknown (the data loader then guesses from the shape).
    layout: str | None = None

    @property
    def has_dynamic_batch(self) -> bool:
        """True when the first dimension is symbolic (any batch size can be fed)."""
        return bool(self.shape) and not isinstance(self.shape[0], int)

    def concrete_shape(self, batch: int = 1) -> list[int]:
        """Return the shape with the batch dimension set to ``batch`` (if symbolic).

        Raises ValueError when another dimension is symbolic: its size is unknown.
        """
        dims = []
        for i, dim in enumerate(self.shape):
            if isinstance(dim, int):
                dims.append(dim)
            elif i == 0:
                dims.append(batch)
            else:
                raise ValueError(f"input {self.name!r} has a symbolic dimension {dim!r} at axis {i}")
        return dims

    def as_dict(self) -> dict[str, Any]:
        """Return JSON-ready data."""
        data: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.layout:
            data["layout"] = self.layout
        return data


@dataclass
class SourceModel:
    """Where the model came from, and (for framework sources) the live model to run it with."""

    framework: str  # "pytorch", "tensorflow" or "onnx" (Hugging Face folders run in PyTorch)
    # e.g. "exported_program", "torchscript", "state_dict", "factory", "pickle", "onnx",
    # "saved_model", "keras", "h5", "huggingface"
    form: str
    path: str
    sha256: str | None
    inputs: list[TensorSpec]
    # Runs the source framework on numpy inputs (by input name) and returns the outputs in
    # order; None for ONNX sources, whose reference is the ONNX model itself.
    run: Callable[[dict[str, np.ndarray]], list[np.ndarray]] | None = None
    live_model: Any = None
    notes: list[str] = field(default_factory=list)
    # Frontends with their own ONNX exporter (TensorFlow: tf2onnx, Hugging Face: optimum) set
    # this: (reference feeds, recipe) -> (ModelProto, exporter description, notes). PyTorch
    # sources leave it None and normalize() exports them with torch.onnx.
    to_onnx: Callable[[dict[str, np.ndarray], Any], tuple[onnx.ModelProto, str, list[str]]] | None = None
    # Turns sentences into model inputs (a Hugging Face folder's tokenizer), so that text files
    # can be calibration/eval data; None for sources that take no text.
    tokenize: Callable[[list[str]], dict[str, np.ndarray]] | None = None
    # "embedding" when the frontend knows the outputs are feature vectors (a Hugging Face
    # feature-extraction export): ``--metric auto`` then compares them by cosine, since the
    # argmax of an embedding is no class. None: judged from the output's shape.
    output_kind: str | None = None


@dataclass
class ModelBundle:
    """The ONNX ``ModelProto`` every analysis works on, its I/O specs, its source and notes."""

    onnx_model: onnx.ModelProto
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    source: SourceModel
    exporter: str
    notes: list[str] = field(default_factory=list)
    parity: dict[str, Any] = field(default_factory=dict)
    # Choices normalization made that the report's decisions section shows (an opset upgrade).
    decisions: list[dict[str, str]] = field(default_factory=list)
