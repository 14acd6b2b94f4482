"""Calibration and evaluation data: .npz/.npy arrays, image folders, text files (one sentence a
line, tokenized by the model's tokenizer), or synthetic inputs.

Data is read lazily and preprocessed batch by batch: only the first ``max_samples`` rows of
an array file are ever read (``.npz`` members are parsed header-first, ``.npy`` files are
memory-mapped), and image files are decoded when their batch is needed. Nothing here
unpickles: object arrays are refused.

Shapes as they come (see README, "Data"): every array is sample-first (one row per sample) and
the row is fed where the model's batch axis sits (axis 1 of a state [2, batch, 128]); an input
without a batch axis (a rank-0 sample rate) gets one value per batch, from a 0-d array for all
samples or a row per sample. Samples of different shapes (``.npz`` keys ``name/0``,
``name/1``..., one array per sample; sentences tokenized at their own length) are grouped
into batches of equal shape, in order (:meth:`Dataset.spans`).
"""

from __future__ import annotations

import math
import re
import zipfile
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeport.core.errors import InputError
from edgeport.core.limits import check_zip_archive
from edgeport.core.model_bundle import TensorSpec, batch_axes, batch_dim_name

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
TEXT_SUFFIXES = (".txt",)
LABEL_KEYS = ("y", "labels", "label")
# sentences -> model inputs by name (a Hugging Face tokenizer, see SourceModel.tokenize)
TextEncoder = Callable[[list[str]], dict[str, np.ndarray]]
INPUT_KEYS = ("x", "inputs", "input", "images", "data")
# ``name/<i>`` members of an .npz: sample i of input ``name`` (ragged data, one array per sample)
RAGGED_KEY = re.compile(r"^(?P<name>.+)/(?P<index>\d+)$")
# Rank-0 integer inputs named like a sample rate get the rate speech models run at, not noise.
SAMPLE_RATE_NAMES = re.compile(r"(^|[_.])(sr|sample_?rate|sampling_?rate)$", re.IGNORECASE)
DEFAULT_SAMPLE_RATE = 16000


@dataclass
class Preprocess:
    """How raw samples become model inputs (``--preprocess`` spec)."""

    scale: float | None = None  # multiply first; default 1/255 for uint8 data fed to a float input
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    resize: tuple[int, int] | None = None  # (height, width), image folders only
    layout: str | None = None  # layout of the model input: NCHW or NHWC (default: from its shape)

    def describe(self) -> str:
        """Return the spec in ``--preprocess`` syntax."""
        parts = []
        if self.scale is not None:
            parts.append(f"scale={self.scale:g}")
        if self.mean:
            parts.append("mean=" + ",".join(f"{m:g}" for m in self.mean))
        if self.std:
            parts.append("std=" + ",".join(f"{s:g}" for s in self.std))
        if self.resize:
            parts.append(f"resize={self.resize[0]},{self.resize[1]}")
        if self.layout:
            parts.append(f"layout={self.layout}")
        return ";".join(parts) or "(none)"


def parse_preprocess(spec: str | None) -> Preprocess:
    """Parse ``scale=1/255;mean=0.485,0.456,0.406;std=...;resize=224,224;layout=NCHW``."""
    result = Preprocess()
    if not spec:
        return result
    for part in (p.strip() for p in spec.split(";") if p.strip()):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        try:
            if not sep:
                raise ValueError
            if key == "scale":
                num, _, den = value.partition("/")
                result.scale = float(num) / (float(den) if den else 1.0)
            elif key in ("mean", "std"):
                setattr(result, key, [float(v) for v in re.split(r"[,\s]+", value.strip()) if v])
            elif key == "resize":
                h, w = (int(v) for v in re.split(r"[,x]", value.strip()))
                result.resize = (h, w)
            elif key == "layout":
                if value.strip().upper() not in ("NCHW", "NHWC"):
                    raise ValueError
                result.layout = value.strip().upper()
            else:
                raise InputError(f"--preprocess: unknown key {key!r}", hint="keys: scale, mean, std, resize, layout")
        except (ValueError, ZeroDivisionError) as exc:
            raise InputError(
                f"--preprocess: bad value in {part!r}",
                hint="e.g. scale=1/255;mean=0.5;std=0.5;resize=224,224;layout=NCHW",
            ) from exc
    if result.std and any(s == 0 for s in result.std):
        raise InputError("--preprocess: std must not be 0")
    return result


def _read_npy_rows(stream, max_rows: int | None, label: str, available: int) -> np.ndarray:
    """Read at most ``max_rows`` rows of a .npy stream without reading the rest.

    ``available`` is the size of the stream in bytes: a header declaring more data than that is
    refused before a buffer of the declared size is allocated.
    """
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    if dtype.hasobject:
        raise InputError(f"{label} holds Python objects; edgeport reads numeric arrays only (no pickle)")
    if fortran and len(shape) > 1:
        raise InputError(f"{label} is stored in Fortran order; save it with np.ascontiguousarray")
    rows = shape[0] if shape else 1
    if max_rows is not None:
        rows = min(rows, max_rows)
    row_items = math.prod(shape[1:])  # Python ints: a crafted header must not overflow int64
    count = rows * row_items
    if count * dtype.itemsize > available:
        raise InputError(f"{label} is truncated: its header declares shape {list(shape)}, more than the file holds")
    buffer = stream.read(count * dtype.itemsize)
    if len(buffer) != count * dtype.itemsize:
        raise InputError(f"{label} is truncated")
    return np.frombuffer(buffer, dtype=dtype).reshape((rows, *shape[1:]) if shape else ())


def _read_arrays(path: Path, max_rows: int | None) -> dict[str, np.ndarray]:
    if path.suffix == ".npy":
        try:
            with open(path, "rb") as f:
                return {"x": _read_npy_rows(f, max_rows, str(path), path.stat().st_size)}
        except ValueError as exc:
            raise InputError(f"{path} is not a valid .npy file: {exc}") from exc
    check_zip_archive(path, None)  # members are read partially: only bombs are refused here
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{path} is not a valid .npz file: {exc}") from exc
    arrays = {}
    with archive:
        for info in archive.infolist():
            member = info.filename
            if not member.endswith(".npy"):
                continue
            ragged = RAGGED_KEY.match(member[:-4])
            if ragged and max_rows is not None and int(ragged["index"]) >= max_rows:
                continue  # a sample past --*_samples: never read
            try:
                with archive.open(info) as f:
                    # a ragged member is one whole sample: its first axis is no sample axis
                    rows = None if ragged else max_rows
                    arrays[member[:-4]] = _read_npy_rows(f, rows, f"{path}:{member}", info.file_size)
            except (ValueError, zipfile.BadZipFile, EOFError) as exc:
                raise InputError(f"{path}: member {member} is not a valid array: {exc}") from exc
    if not arrays:
        raise InputError(f"{path} contains no arrays")
    return arrays


def _group_ragged(arrays: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray | list[np.ndarray]]:
    """Gather ``name/0``, ``name/1``... members into one list of samples per name (in index order).

    Raises InputError when the indices of a name are not 0..n-1 or a name is also a plain array.
    """
    grouped: dict[str, np.ndarray | list[np.ndarray]] = {}
    ragged: dict[str, dict[int, np.ndarray]] = {}
    for key, array in arrays.items():
        match = RAGGED_KEY.match(key)
        if match:
            ragged.setdefault(match["name"], {})[int(match["index"])] = array
        else:
            grouped[key] = array
    for name, samples in ragged.items():
        if name in grouped:
            raise InputError(f"{path} holds both an array {name!r} and per-sample arrays '{name}/0'...; keep one")
        if sorted(samples) != list(range(len(samples))):
            missing = sorted(set(range(max(samples) + 1)) - set(samples))
            raise InputError(
                f"{path}: per-sample arrays of {name!r} skip index {missing[0]}",
                hint=f"name them {name}/0, {name}/1, ...",
            )
        grouped[name] = [samples[i] for i in range(len(samples))]
    return grouped


def _pick_inputs(
    arrays: dict[str, np.ndarray | list[np.ndarray]], specs: list[TensorSpec], path: Path
) -> tuple[dict[str, np.ndarray | list[np.ndarray]], np.ndarray | None]:
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


def _model_layout(spec: TensorSpec, preprocess: Preprocess) -> str | None:
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


def _conform(raw: np.ndarray, spec: TensorSpec, preprocess: Preprocess, notes: set[str], label: str) -> np.ndarray:
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
    layout = _model_layout(spec, preprocess)
    rank = len(spec.shape)
    if rank == 4 and array.ndim == 3:
        array = array[:, None] if layout == "NCHW" else array[..., None]
        notes.add(f"added a channel axis ({layout})")
    if rank == 4 and array.ndim == 4 and layout == "NCHW" and isinstance(spec.shape[1], int):
        if array.shape[1] != spec.shape[1] and array.shape[3] == spec.shape[1]:
            array = array.transpose(0, 3, 1, 2)
            notes.add("NHWC data transposed to the model's NCHW")
    if target_float and (preprocess.mean or preprocess.std):
        channel_axis = 1 if layout == "NCHW" else array.ndim - 1
        view = [1] * array.ndim
        view[channel_axis] = -1
        if preprocess.mean:
            array = array - np.asarray(preprocess.mean, np.float32).reshape(view)
        if preprocess.std:
            array = array / np.asarray(preprocess.std, np.float32).reshape(view)
    if array.ndim != rank or any(
        isinstance(d, int) and d != a for i, (d, a) in enumerate(zip(spec.shape, array.shape, strict=False)) if i > 0
    ):
        raise InputError(
            f"{label}: samples of shape {list(raw.shape[1:])} do not fit input {spec.name!r} of shape {spec.shape}"
        )
    if target_float and not np.all(np.isfinite(array)):
        raise InputError(f"{label} contains NaN or infinite values")
    return np.ascontiguousarray(array)


def _conform_side(raw: np.ndarray, spec: TensorSpec, axis: int | None, label: str) -> np.ndarray:
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
        loader,
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
                feeds[spec.name] = _conform(raw[spec.name], spec, self.preprocess, self.notes, self.description)
            else:
                feeds[spec.name] = _conform_side(raw[spec.name], spec, axis, self.description)
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


def _image_files(folder: Path) -> tuple[list[Path], list[int] | None, list[str]]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder} contains no images ({', '.join(IMAGE_SUFFIXES)})")
    parents = {p.parent for p in files}
    if folder not in parents and all(p.parent.parent == folder for p in files):
        classes = sorted(p.name for p in parents)
        index = {name: i for i, name in enumerate(classes)}
        return files, [index[p.parent.name] for p in files], classes
    return files, None, []


def _image_loader(files: list[Path], spec: TensorSpec, preprocess: Preprocess):
    from PIL import Image

    layout = _model_layout(spec, preprocess) or "NCHW"
    if len(spec.shape) != 4:
        raise InputError(f"an image folder needs a 4-D image input; {spec.name!r} is {spec.shape}")
    channels = spec.shape[1] if layout == "NCHW" else spec.shape[3]
    height, width = (spec.shape[2], spec.shape[3]) if layout == "NCHW" else (spec.shape[1], spec.shape[2])
    if preprocess.resize:
        height, width = preprocess.resize
    if not all(isinstance(v, int) for v in (channels, height, width)):
        raise InputError(f"input {spec.name!r} has symbolic image dims {spec.shape}; pass --preprocess resize=H,W")

    def load(start: int, stop: int) -> dict[str, np.ndarray]:
        images = []
        for path in files[start:stop]:
            try:
                with Image.open(path) as image:
                    image = image.convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR)
                    images.append(np.asarray(image, dtype=np.uint8))
            except OSError as exc:
                raise InputError(f"cannot read image {path}: {exc}") from exc
        return {spec.name: np.stack(images)}

    return load


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


def read_sentences(path: Path, max_samples: int | None) -> list[str]:
    """Return the non-empty lines of a UTF-8 text file (one sentence a line), at most ``max_samples``."""
    sentences = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    sentences.append(line)
                    if max_samples is not None and len(sentences) >= max_samples:
                        break
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    if not sentences:
        raise InputError(f"{path} holds no sentences (one sentence a line)")
    return sentences


def _has_free_dims(specs: list[TensorSpec]) -> bool:
    """True when some input has a symbolic dim besides the batch (a dynamic sequence length)."""
    batch_dim = batch_dim_name(specs)
    return any(isinstance(d, str) and d != batch_dim for s in specs for d in s.shape)


def _text_dataset(
    path: Path, specs: list[TensorSpec], max_samples: int | None, text_encoder: TextEncoder | None
) -> Dataset:
    """A text file as model inputs: the sentences, tokenized batch by batch by ``text_encoder``.

    When the model's sequence axis is dynamic each sentence keeps its own length (the encoder
    pads a batch only to its longest sentence): samples are keyed by token count, so that
    batches hold sentences of one length and nothing is fed padding.
    """
    if text_encoder is None:
        raise InputError(
            f"{path} is a text file, but this model takes no text",
            hint="text data (one sentence a line) feeds Hugging Face folders with a tokenizer; use .npz for others",
        )
    sentences = read_sentences(path, max_samples)
    keys: list[Hashable] | None = None
    if _has_free_dims(specs):
        keys = [tuple(a.shape for a in text_encoder([sentence]).values()) for sentence in sentences]
    dataset = Dataset(
        specs,
        len(sentences),
        lambda a, b: text_encoder(sentences[a:b]),
        None,
        f"{path} ({len(sentences)} sentences, tokenized" + (", each at its own length)" if keys is not None else ")"),
        False,
        Preprocess(scale=1.0),
        keys,
    )
    start, stop = dataset.spans(2)[0]
    dataset.batch(start, stop)  # fail now, with the file named, if the tokens do not fit
    return dataset


def load_dataset(
    source: str | None,
    specs: list[TensorSpec],
    max_samples: int | None,
    preprocess: Preprocess,
    seed: int = 0,
    synthetic_count: int = 64,
    batch: int = 1,
    text_encoder: TextEncoder | None = None,
    dim_sizes: dict[str, int] | None = None,
) -> Dataset:
    """Open ``--calibration_data``/``--eval_data``: a .npz/.npy file, an image folder, a .txt
    file of sentences (tokenized by ``text_encoder``, the model's tokenizer), or None
    (synthetic inputs). Reads at most ``max_samples`` samples. Returns a :class:`Dataset`."""
    if source is None:
        return synthetic_dataset(
            specs,
            synthetic_count if max_samples is None else min(max_samples, synthetic_count),
            seed,
            batch,
            dim_sizes,
        )
    path = Path(source)
    if not path.exists():
        raise InputError(f"data not found: {source}")
    if path.is_dir():
        if len(specs) != 1:
            raise InputError("an image folder can only feed a single-input model")
        files, labels, classes = _image_files(path)
        files = files[:max_samples] if max_samples else files
        label_array = np.asarray(labels[: len(files)], np.int64) if labels is not None else None
        desc = f"{source} ({len(files)} images" + (f", {len(classes)} classes from folder names)" if classes else ")")
        return Dataset(
            specs, len(files), _image_loader(files, specs[0], preprocess), label_array, desc, False, preprocess
        )
    if path.suffix.lower() in TEXT_SUFFIXES:
        return _text_dataset(path, specs, max_samples, text_encoder)
    if path.suffix not in (".npz", ".npy"):
        raise InputError(f"{source}: data must be a .npz/.npy file, a folder of images or a .txt file of sentences")
    arrays = _group_ragged(_read_arrays(path, max_samples), path)
    inputs, labels = _pick_inputs(arrays, specs, path)
    axes = batch_axes(specs)
    by_name = {s.name: s for s in specs}
    # An input without a batch axis given once (a 0-d sample rate): the same value for every sample.
    constants = {
        name: value
        for name, value in inputs.items()
        if axes[name] is None and not isinstance(value, list) and value.ndim == len(by_name[name].shape)
    }
    counts = {len(v) for k, v in inputs.items() if k not in constants} or {1}
    if len(counts) != 1:
        raise InputError(f"{source}: the input arrays have different sample counts {sorted(counts)}")
    count = counts.pop()
    if count == 0:
        raise InputError(f"{source} holds no samples")
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
    if labels is not None:
        if len(labels) < count:
            raise InputError(f"{source}: {len(labels)} labels for {count} samples")
        labels = np.asarray(labels[:count]).astype(np.int64).reshape(count, -1)[:, 0]
    ragged = [name for name, value in inputs.items() if isinstance(value, list)]
    sides = [name for name in inputs if axes[name] is None and name not in constants]
    keys: list[Hashable] | None = None
    if ragged or sides:  # samples share a batch only with equal shapes and equal unbatched values
        keys = [
            tuple(inputs[n][i].shape for n in ragged) + tuple(np.asarray(inputs[n][i]).tobytes() for n in sides)
            for i in range(count)
        ]

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

    dataset = Dataset(
        specs,
        count,
        load,
        labels,
        f"{source} ({count} samples{', labelled' if labels is not None else ''}"
        + (", ragged: one array per sample" if ragged else "")
        + ")",
        False,
        preprocess,
        keys,
    )
    start, stop = dataset.spans(2)[0]
    dataset.batch(start, stop)  # fail now, with the file named, if samples do not fit the model
    return dataset
