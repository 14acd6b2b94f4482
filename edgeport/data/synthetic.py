"""Synthetic data: random inputs for when no data is given (plausible values for integer scalars)."""

from __future__ import annotations

import re

import numpy as np

from edgeport.core.errors import InputError
from edgeport.core.model import TensorSpec, batch_axes, batch_dim_name
from edgeport.data.dataset import Dataset
from edgeport.data.preprocess import Preprocess

# Rank-0 integer inputs named like a sample rate get the rate speech models run at, not noise.
SAMPLE_RATE_NAMES = re.compile(r"(^|[_.])(sr|sample_?rate|sampling_?rate)$", re.IGNORECASE)
DEFAULT_SAMPLE_RATE = 16000


def _side_value(spec: TensorSpec, shape: list[int], rng: np.random.Generator) -> tuple[np.ndarray, str | None]:
    """The value of an unbatched input in synthetic data, and a note when it is not random.

    Integer scalars are sizes, rates or flags, never noise: a rank-0 ``sr``/``sample_rate``
    gets 16000 (the rate speech models such as Silero VAD run at), other integer scalars 1.
    """
    if not spec.dtype.startswith("float") and spec.dtype != "bool" and not shape:
        if SAMPLE_RATE_NAMES.search(spec.name):
            value, why = DEFAULT_SAMPLE_RATE, "a sample rate, by its name"
        else:
            value, why = 1, "an integer scalar: a size or flag, not noise"
        note = f"input {spec.name!r} (rank-0 {spec.dtype}) fed {value} ({why}); give its real value in the .npz"
        return np.asarray(value, spec.dtype), note
    return _random_rows(spec, shape, rng), None


def _random_rows(spec: TensorSpec, shape: list[int], rng: np.random.Generator) -> np.ndarray:
    """Random values of ``shape`` for ``spec`` (standard normal floats, small non-negative ints)."""
    if spec.dtype.startswith("float"):
        return rng.standard_normal(shape).astype(spec.dtype)
    if spec.dtype == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    if spec.name.endswith("attention_mask"):  # token models: every token attended
        return np.ones(shape, spec.dtype)
    if spec.name == "token_type_ids":  # one segment (the only id type some models have)
        return np.zeros(shape, spec.dtype)
    return rng.integers(0, 100, shape).astype(spec.dtype)


def synthetic_dataset(
    specs: list[TensorSpec], count: int, seed: int, batch: int, dim_sizes: dict[str, int] | None = None
) -> Dataset:
    """Random inputs (standard normal floats, small non-negative ints) for when no data is given.

    Inputs without a batch axis (a rank-0 sample rate) get one value for every sample, not
    noise (see :func:`_side_value`). ``dim_sizes`` sizes symbolic dims other than the batch
    (a Hugging Face ``sequence``: a typical sentence's length). Returns a :class:`Dataset` of
    ``count`` samples.
    """
    rng = np.random.default_rng(seed)
    batch_dim = batch_dim_name(specs)
    axes = batch_axes(specs, batch_dim)
    sizes = dim_sizes or {}
    sized = [
        TensorSpec(s.name, [sizes.get(d, d) if isinstance(d, str) else d for d in s.shape], s.dtype) for s in specs
    ]
    try:
        shapes = {s.name: s.concrete_shape(batch, batch_dim) for s in sized}
    except ValueError as exc:  # a symbolic dim other than the batch: its size is unknown
        raise InputError(
            f"cannot make inputs for the model: {exc}",
            hint="give its size with --input_shape name:1,3,224,224, or pass --eval_data with real samples",
        ) from exc
    arrays = {}
    notes = set()
    for spec in specs:
        axis = axes[spec.name]
        if axis is None:
            value, note = _side_value(spec, shapes[spec.name], rng)
            arrays[spec.name] = np.broadcast_to(value, (count, *value.shape))
            if note:
                notes.add(note)
        else:
            sample = [d for i, d in enumerate(shapes[spec.name]) if i != axis]
            arrays[spec.name] = _random_rows(spec, [count, *sample], rng)
    dataset = Dataset(
        specs,
        count,
        lambda a, b: {k: v[a:b] for k, v in arrays.items()},
        None,
        f"synthetic (random, seed {seed})",
        True,
        Preprocess(scale=1.0),
    )
    dataset.notes |= notes
    for name, size in sizes.items():
        if any(name in s.shape for s in specs):
            dataset.notes.add(f"symbolic dim {name!r} set to {size} for random inputs; real data sets its own sizes")
    return dataset
