"""Conforming raw sample rows to a model input: dtype, rank, layout, scale and normalization."""

from __future__ import annotations

import numpy as np

from edgeport.core.errors import InputError
from edgeport.core.model import TensorSpec
from edgeport.data.preprocess import Preprocess


def model_layout(spec: TensorSpec, preprocess: Preprocess) -> str | None:
    """The model input's layout: from --preprocess, else guessed from where a 1/3/4-sized
    channel axis sits (ties go to the layout whose other two dims are equal: square images)."""
    if preprocess.layout:
        return preprocess.layout
    if spec.layout:  # stated by the source (TensorFlow: NHWC)
        return spec.layout
    if len(spec.shape) != 4:
        return None
    _, d1, d2, d3 = spec.shape
    first_is_channel = isinstance(d1, int) and d1 in (1, 3, 4)
    last_is_channel = isinstance(d3, int) and d3 in (1, 3, 4)
    if first_is_channel and not last_is_channel:
        return "NCHW"
    if last_is_channel and not first_is_channel:
        return "NHWC"
    if last_is_channel and d1 == d2 and d2 != d3:
        return "NHWC"
    return "NCHW"


def conform(raw: np.ndarray, spec: TensorSpec, preprocess: Preprocess, notes: set[str], label: str) -> np.ndarray:
    """Turn raw rows into the model input's dtype, rank, layout and normalization."""
    target_float = spec.dtype.startswith("float")
    array = raw
    if target_float:
        array = array.astype(np.float32)
        scale = preprocess.scale
        if scale is None and raw.dtype == np.uint8:
            scale = 1.0 / 255.0
            notes.add("uint8 data scaled by 1/255 to [0, 1]")
        if scale is not None and scale != 1.0:
            array = array * np.float32(scale)
    else:
        if raw.dtype.kind == "f":
            raise InputError(f"{label}: float data given for the {spec.dtype} input {spec.name!r}")
        array = array.astype(spec.dtype)
    layout = model_layout(spec, preprocess)
    rank = len(spec.shape)
    if rank == 4 and array.ndim == 3:
        array = array[:, None] if layout == "NCHW" else array[..., None]
        notes.add(f"added a channel axis ({layout})")
    if rank == 4 and array.ndim == 4 and layout == "NCHW" and isinstance(spec.shape[1], int):
        if array.shape[1] != spec.shape[1] and array.shape[3] == spec.shape[1]:
            array = array.transpose(0, 3, 1, 2)
            notes.add("NHWC data transposed to the model's NCHW")
    if array.ndim != rank or any(
        isinstance(d, int) and d != a for i, (d, a) in enumerate(zip(spec.shape, array.shape, strict=False)) if i > 0
    ):
        raise InputError(
            f"{label}: samples of shape {list(raw.shape[1:])} do not fit input {spec.name!r} of shape {spec.shape}"
        )
    if target_float and (preprocess.mean or preprocess.std):
        array = _normalize(array, layout, preprocess, spec)
    if target_float and not np.all(np.isfinite(array)):
        raise InputError(f"{label} contains NaN or infinite values")
    return np.ascontiguousarray(array)


def _normalize(array: np.ndarray, layout: str | None, preprocess: Preprocess, spec: TensorSpec) -> np.ndarray:
    """Subtract ``mean`` and divide by ``std`` per channel (one value for all, or one per channel)."""
    if array.ndim < 2:
        raise InputError(f"--preprocess mean/std need a channel axis; input {spec.name!r} is {spec.shape}")
    channel_axis = 1 if layout == "NCHW" else array.ndim - 1
    channels = array.shape[channel_axis]
    view = [1] * array.ndim
    view[channel_axis] = -1
    for key in ("mean", "std"):
        values = getattr(preprocess, key)
        if values and len(values) not in (1, channels):
            raise InputError(
                f"--preprocess {key} gives {len(values)} values; input {spec.name!r} has {channels} channels",
                hint="give one value, or one per channel",
            )
    if preprocess.mean:
        array = array - np.asarray(preprocess.mean, np.float32).reshape(view)
    if preprocess.std:
        array = array / np.asarray(preprocess.std, np.float32).reshape(view)
    return array


def conform_side(raw: np.ndarray, spec: TensorSpec, axis: int | None, label: str) -> np.ndarray:
    """Turn sample-first rows of an input whose batch axis is not axis 0 into the model's feed.

    ``axis`` is where the model's batch sits (the rows' first axis moves there), or None for an
    unbatched input (a rank-0 sample rate): the batch then shares one value, the first row's.
    Raises InputError on a dtype, shape or value that does not fit, naming ``label``.
    """
    if spec.dtype.startswith("float"):
        array = raw.astype(spec.dtype)
    else:
        if raw.dtype.kind == "f":
            raise InputError(f"{label}: float data given for the {spec.dtype} input {spec.name!r}")
        array = raw.astype(spec.dtype)
    sample = spec.sample_shape(axis)
    if array.ndim != len(sample) + 1 or any(
        isinstance(d, int) and d != a for d, a in zip(sample, array.shape[1:], strict=False)
    ):
        where = "no batch axis" if axis is None else f"its batch at axis {axis}"
        raise InputError(
            f"{label}: samples of shape {list(raw.shape[1:])} do not fit input {spec.name!r} of shape {spec.shape} "
            f"({where}: one sample is {sample})",
            hint="arrays are sample-first: one row per sample, the model's batch axis left out",
        )
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise InputError(f"{label} contains NaN or infinite values")
    if axis is None:
        if len(array) > 1 and not np.array_equal(array, np.broadcast_to(array[:1], array.shape)):
            raise InputError(f"{label}: samples in one batch differ in {spec.name!r}, an input without a batch axis")
        return np.array(array[0])  # a copy; np.ascontiguousarray would make a 0-d value 1-d
    return np.ascontiguousarray(np.moveaxis(array, 0, axis))
