"""Arrays (.npz/.npy) as data: which arrays are the inputs and the labels, inputs given once,
ragged samples, and the batches that samples of equal shape may share."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path

import numpy as np

from edgeport.core.errors import InputError
from edgeport.core.model import TensorSpec, batch_axes
from edgeport.data.dataset import Dataset, Loader
from edgeport.data.npz import group_ragged, read_arrays
from edgeport.data.preprocess import Preprocess

# Samples by input name: one array, sample-first, or one array per sample (ragged data).
Inputs = dict[str, np.ndarray | list[np.ndarray]]

LABEL_KEYS = ("y", "labels", "label")
INPUT_KEYS = ("x", "inputs", "input", "images", "data")


def _pick_inputs(arrays: Inputs, specs: list[TensorSpec], path: Path) -> tuple[Inputs, np.ndarray | None]:
    """Return the arrays feeding each input (by input name, or any one array for a single-input
    model) and the labels (``y``, ``labels`` or ``label``), or None without labels."""
    labels = next((arrays[k] for k in LABEL_KEYS if k in arrays), None)
    label_key = next((k for k in LABEL_KEYS if k in arrays), None)
    if len(specs) == 1:
        spec = specs[0]
        for key in (spec.name, *INPUT_KEYS):
            if key in arrays:
                return {spec.name: arrays[key]}, labels
        rest = [k for k in arrays if k != label_key]
        if len(rest) == 1:
            return {spec.name: arrays[rest[0]]}, labels
        raise InputError(
            f"{path}: cannot tell which array is the input among {', '.join(arrays)}",
            hint=f"name it 'x' or {spec.name!r}",
        )
    missing = [s.name for s in specs if s.name not in arrays]
    if missing:
        raise InputError(
            f"{path} lacks arrays for inputs {', '.join(missing)}",
            hint="a multi-input model needs one array per input, named like the input",
        )
    return {s.name: arrays[s.name] for s in specs}, labels


def _constants(inputs: Inputs, specs: list[TensorSpec], axes: dict[str, int | None]) -> dict[str, np.ndarray]:
    """The inputs without a batch axis given once (a 0-d sample rate): the same value for every sample."""
    by_name = {s.name: s for s in specs}
    return {
        name: value
        for name, value in inputs.items()
        if axes[name] is None and not isinstance(value, list) and value.ndim == len(by_name[name].shape)
    }


def _sample_count(source: str, inputs: Inputs, constants: dict[str, np.ndarray]) -> int:
    """The number of samples, which every input not given once must hold; InputError otherwise or when 0."""
    for name, value in inputs.items():
        kinds = {a.dtype.kind for a in (value if isinstance(value, list) else [value])}
        if kinds - set("biuf"):
            dtype = next(a.dtype for a in (value if isinstance(value, list) else [value]) if a.dtype.kind not in "biuf")
            raise InputError(f"{source}: the array for input {name!r} holds {dtype} values, not numbers")
        if name not in constants and not isinstance(value, list) and value.ndim == 0:
            raise InputError(
                f"{source}: the array for input {name!r} is a single value (0-d)",
                hint="arrays are sample-first: one row per sample",
            )
    counts = {len(v) for k, v in inputs.items() if k not in constants} or {1}
    if len(counts) != 1:
        raise InputError(f"{source}: the input arrays have different sample counts {sorted(counts)}")
    count = counts.pop()
    if count == 0:
        raise InputError(f"{source} holds no samples")
    return count


def _check_finite(source: str, inputs: Inputs) -> None:
    """Raise InputError naming the first sample holding NaN or infinite values, if any."""
    for name, value in inputs.items():  # the rows are in memory already: check them all now
        samples = value if isinstance(value, list) else [value]
        for index, array in enumerate(samples):
            if array.dtype.kind in "fc" and not np.isfinite(array).all():
                row = (
                    index
                    if isinstance(value, list)
                    else int(np.argwhere(~np.isfinite(array.reshape(len(array), -1)))[0][0])
                )
                raise InputError(f"{source}: sample {row} of input {name!r} contains NaN or infinite values")


def _sample_labels(source: str, labels: np.ndarray | list | None, count: int) -> np.ndarray | None:
    """Return one int64 label per sample (the first value of each label row), or None without labels."""
    if labels is None:
        return None
    if isinstance(labels, list) or labels.ndim == 0 or labels.dtype.kind not in "biuf":
        got = "per-sample arrays" if isinstance(labels, list) else f"{labels.dtype} of shape {list(labels.shape)}"
        raise InputError(f"{source}: labels must be one array of numbers, one per sample; got {got}")
    if len(labels) < count:
        raise InputError(f"{source}: {len(labels)} labels for {count} samples")
    rows = np.asarray(labels[:count]).reshape(count, -1)
    if rows.shape[1] == 0:
        raise InputError(f"{source}: the label rows are empty (labels of shape {list(labels.shape)})")
    if rows.dtype.kind == "f" and not np.isfinite(rows[:, 0]).all():
        raise InputError(f"{source}: labels contain NaN or infinite values")
    return rows[:, 0].astype(np.int64)


def _batch_keys(inputs: Inputs, ragged: list[str], sides: list[str], count: int) -> list[Hashable] | None:
    """One key per sample: the shapes of its ``ragged`` inputs and the values of its unbatched ``sides``.

    Samples share a batch only with equal shapes and equal unbatched values. None when every
    range of samples can be batched.
    """
    if not (ragged or sides):
        return None
    return [
        tuple(inputs[n][i].shape for n in ragged) + tuple(np.asarray(inputs[n][i]).tobytes() for n in sides)
        for i in range(count)
    ]


def _array_loader(source: str, inputs: Inputs, constants: dict[str, np.ndarray]) -> Loader:
    """A loader returning the raw rows ``a:b`` of every input (inputs given once repeated, ragged samples stacked)."""

    def load(a: int, b: int) -> dict[str, np.ndarray]:
        rows = {}
        for name, value in inputs.items():
            if name in constants:
                rows[name] = np.broadcast_to(value, (b - a, *value.shape))
            elif isinstance(value, list):
                parts = value[a:b]
                if len({p.shape for p in parts}) > 1:
                    raise InputError(
                        f"{source}: samples {a} to {b - 1} of {name!r} differ in shape; they cannot share a batch"
                    )
                rows[name] = np.stack(parts)
            else:
                rows[name] = value[a:b]
        return rows

    return load


def array_dataset(
    source: str, path: Path, specs: list[TensorSpec], max_samples: int | None, preprocess: Preprocess
) -> Dataset:
    """Open the .npz/.npy file ``path`` (named ``source`` in messages): at most ``max_samples``
    samples, checked for NaN and for fitting the model. Returns a :class:`Dataset`."""
    arrays = group_ragged(read_arrays(path, max_samples), path)
    inputs, labels = _pick_inputs(arrays, specs, path)
    axes = batch_axes(specs)
    constants = _constants(inputs, specs, axes)
    count = _sample_count(source, inputs, constants)
    _check_finite(source, inputs)
    labels = _sample_labels(source, labels, count)
    ragged = [name for name, value in inputs.items() if isinstance(value, list)]
    sides = [name for name in inputs if axes[name] is None and name not in constants]
    dataset = Dataset(
        specs,
        count,
        _array_loader(source, inputs, constants),
        labels,
        f"{source} ({count} samples{', labelled' if labels is not None else ''}"
        + (", ragged: one array per sample" if ragged else "")
        + ")",
        False,
        preprocess,
        _batch_keys(inputs, ragged, sides, count),
    )
    start, stop = dataset.spans(2)[0]
    dataset.batch(start, stop)  # fail now, with the file named, if samples do not fit the model
    return dataset
