"""The Dataset: samples read lazily, preprocessed batch by batch, batched only by equal shapes;
and the joining of a model's outputs over many runs into sample-first arrays."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator

import numpy as np

from edgeport.core.errors import InputError
from edgeport.core.model import TensorSpec, batch_axes, batch_dim_name
from edgeport.data.conform import conform, conform_side
from edgeport.data.preprocess import Preprocess

# (start, stop) -> {input name: raw rows start:stop}
Loader = Callable[[int, int], dict[str, np.ndarray]]


def _sample_first(output: np.ndarray, axis: int | None) -> np.ndarray:
    """Return one run's output with its batch axis first (a new axis when it has none)."""
    if axis is None or output.ndim == 0 or axis >= output.ndim:
        return output[None]
    return np.moveaxis(output, axis, 0)


def concatenate_samples(parts: list[np.ndarray]) -> tuple[np.ndarray, bool]:
    """Concatenate sample-first arrays along axis 0; arrays of different per-sample shapes
    (token states of sentences of their own lengths) are zero-padded to the largest first.

    Returns the array and whether padding was needed. Both sides of a comparison are padded
    alike, so the zeros change neither cosine nor error figures.
    """
    shapes = {p.shape[1:] for p in parts}
    if len(shapes) == 1:
        return np.concatenate(parts), False
    ranks = {len(shape) for shape in shapes}
    if len(ranks) != 1:
        raise InputError(f"the model returns outputs of different ranks for different samples: {sorted(shapes)}")
    target = tuple(max(dims) for dims in zip(*shapes, strict=True))
    padded = [np.pad(p, [(0, 0), *((0, t - d) for t, d in zip(target, p.shape[1:], strict=True))]) for p in parts]
    return np.concatenate(padded), True


class Dataset:
    """Samples for one purpose (calibration, evaluation), read lazily, preprocessed per batch.

    ``keys``: one hashable per sample (its shape, and the values of unbatched inputs); only
    samples with equal keys share a batch. None: every range of samples can be batched.
    """

    def __init__(
        self,
        specs: list[TensorSpec],
        count: int,
        loader: Loader,
        labels: np.ndarray | None,
        description: str,
        synthetic: bool,
        preprocess: Preprocess,
        keys: list[Hashable] | None = None,
    ) -> None:
        self.specs = specs
        self.count = count
        self._loader = loader  # (start, stop) -> {name: raw rows}
        self.labels = labels
        self.description = description
        self.synthetic = synthetic
        self.preprocess = preprocess
        self.notes: set[str] = set()
        self.batch_dim = batch_dim_name(specs)
        self.axes = batch_axes(specs, self.batch_dim)
        self.keys = keys if keys is not None and len(set(keys)) > 1 else None
        # Where each model output holds the batch (set by :meth:`set_outputs`); None: axis 0.
        self.output_axes: list[int | None] | None = None

    def __len__(self) -> int:
        return self.count

    @property
    def ragged(self) -> bool:
        """True when samples differ in shape (or in an unbatched input) and cannot all share a batch."""
        return self.keys is not None

    @property
    def batchable(self) -> bool:
        """True when every input has a batch axis, so that samples can be stacked into batches."""
        return all(axis is not None for axis in self.axes.values())

    def set_outputs(self, outputs: list[TensorSpec]) -> None:
        """Record where each model output holds the batch, so that outputs of many runs are
        joined along it (a state output [2, batch, 128] is joined on axis 1, not 0)."""
        axes: list[int | None] = []
        for spec in outputs:
            if self.batch_dim is not None and self.batch_dim in spec.shape:
                axes.append(spec.shape.index(self.batch_dim))
            else:  # no named batch: axis 0 (rank-0 outputs get a new sample axis when joined)
                axes.append(0)
        self.output_axes = axes

    def join_outputs(self, runs: list[list[np.ndarray]]) -> list[np.ndarray]:
        """Join the outputs of successive runs into one sample-first array per output.

        Returns arrays whose axis 0 is the sample, whatever axis the model put its batch on.
        """
        joined = []
        for i in range(len(runs[0])):
            axis = self.output_axes[i] if self.output_axes and i < len(self.output_axes) else 0
            array, padded = concatenate_samples([_sample_first(run[i], axis) for run in runs])
            if padded:
                self.notes.add("outputs of different lengths zero-padded to compare them")
            joined.append(array)
        return joined

    def spans(self, batch_size: int, stop: int | None = None) -> list[tuple[int, int]]:
        """Return ``(start, stop)`` ranges of at most ``batch_size`` consecutive samples that can
        share a batch (equal keys), covering samples ``0:stop`` in order."""
        end = self.count if stop is None else stop
        spans = []
        start = 0
        while start < end:
            last = min(start + batch_size, end)
            if self.keys is not None:
                cut = start + 1
                while cut < last and self.keys[cut] == self.keys[start]:
                    cut += 1
                last = cut
            spans.append((start, last))
            start = last
        return spans

    def batch(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Return the preprocessed samples ``start:stop`` as model inputs by name."""
        raw = self._loader(start, stop)
        feeds = {}
        for spec in self.specs:
            axis = self.axes[spec.name]
            if axis == 0:
                feeds[spec.name] = conform(raw[spec.name], spec, self.preprocess, self.notes, self.description)
            else:
                feeds[spec.name] = conform_side(raw[spec.name], spec, axis, self.description)
        return feeds

    def batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Yield preprocessed batches of at most ``batch_size`` samples of one shape, in order."""
        for start, stop in self.spans(batch_size):
            yield self.batch(start, stop)

    def describe(self) -> dict:
        """Return JSON-ready facts about the data for the report."""
        facts = {
            "source": self.description,
            "samples": self.count,
            "synthetic": self.synthetic,
            "labels": self.labels is not None,
            "preprocess": self.preprocess.describe(),
            "applied": sorted(self.notes),
        }
        if self.keys is not None:
            facts["shapes"] = len(set(self.keys))  # distinct sample shapes (ragged data)
        return facts
