"""The CanonicalModel: the canonical ONNX form of a model plus what every stage needs to know."""

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

    def concrete_shape(self, batch: int = 1, batch_dim: str | None = None) -> list[int]:
        """Return the shape with the batch dimension set to ``batch`` (if symbolic).

        The batch dimension is axis 0, or, when ``batch_dim`` names it (see :func:`batch_dim_name`),
        every axis of that name wherever it sits (a recurrent state [2, batch, 128]).
        Raises ValueError when another dimension is symbolic: its size is unknown.
        """
        dims = []
        for i, dim in enumerate(self.shape):
            if isinstance(dim, int):
                dims.append(dim)
            elif (dim == batch_dim) if batch_dim is not None else i == 0:
                dims.append(batch)
            else:
                raise ValueError(f"input {self.name!r} has a symbolic dimension {dim!r} at axis {i}")
        return dims

    def sample_shape(self, batch_axis: int | None) -> list[Dim]:
        """Return the shape of one sample: the shape without ``batch_axis`` (all of it when None)."""
        return [d for i, d in enumerate(self.shape) if i != batch_axis]

    def as_dict(self) -> dict[str, Any]:
        """Return JSON-ready data."""
        data: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.layout:
            data["layout"] = self.layout
        return data


def batch_dim_name(specs: list[TensorSpec]) -> str | None:
    """Return the name of the symbolic batch dimension of ``specs``, or None when there is none.

    A symbolic dim whose name contains "batch" wins (exporters name it so, and it may sit at any
    axis: Silero VAD's state is [2, batch, 128]); else the symbolic axis 0 of the first input
    that has one.
    """
    for spec in specs:
        for dim in spec.shape:
            if isinstance(dim, str) and "batch" in dim.lower():
                return dim
    return next((s.shape[0] for s in specs if s.shape and isinstance(s.shape[0], str)), None)


def batch_axes(specs: list[TensorSpec], batch_dim: str | None = None) -> dict[str, int | None]:
    """Return, per tensor name, the axis that holds the batch, or None for an unbatched tensor.

    ``batch_dim`` defaults to :func:`batch_dim_name` of ``specs``. With a symbolic batch, a
    tensor without that dim (a rank-0 sample rate, a static side input) is unbatched: every
    sample of a batch must share its value. Without one (all shapes static) axis 0 is the batch
    of every tensor of rank >= 1.
    """
    name = batch_dim if batch_dim is not None else batch_dim_name(specs)
    axes: dict[str, int | None] = {}
    for spec in specs:
        if name is not None:
            axes[spec.name] = spec.shape.index(name) if name in spec.shape else None
        else:
            axes[spec.name] = 0 if spec.shape else None
    return axes


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
    # this: (reference feeds, source options) -> (ModelProto, exporter description, notes); the
    # options are edgeport.options.groups.SourceOptions (typed Any: core sits below options).
    # PyTorch sources leave it None and normalize() exports them with torch.onnx.
    to_onnx: Callable[[dict[str, np.ndarray], Any], tuple[onnx.ModelProto, str, list[str]]] | None = None
    # Turns sentences into model inputs (a Hugging Face folder's tokenizer), so that text files
    # can be calibration/eval data; None for sources that take no text.
    tokenize: Callable[[list[str]], dict[str, np.ndarray]] | None = None
    # "embedding" when the frontend knows the outputs are feature vectors (a Hugging Face
    # feature-extraction export): ``--metric auto`` then compares them by cosine, since the
    # argmax of an embedding is no class. None: judged from the output's shape.
    output_kind: str | None = None
    # Choices the frontend made for the user (Hugging Face: dynamic or fixed sequence length),
    # as report decisions {"asked", "done", "why"}.
    decisions: list[dict[str, str]] = field(default_factory=list)
    # Sizes for symbolic dims other than the batch when inputs must be made up (no data given):
    # Hugging Face {"sequence": 32}, a typical sentence's token count.
    dim_sizes: dict[str, int] = field(default_factory=dict)


@dataclass
class CanonicalModel:
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
