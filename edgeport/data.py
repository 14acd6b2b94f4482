"""Calibration and evaluation data: .npz/.npy arrays, image folders, text files (one sentence a
line, tokenized by the model's tokenizer), or synthetic inputs.

Data is read lazily and preprocessed batch by batch: only the first ``max_samples`` rows of
an array file are ever read (``.npz`` members are parsed header-first, ``.npy`` files are
memory-mapped), and image files are decoded when their batch is needed. Nothing here
unpickles: object arrays are refused.
"""

from __future__ import annotations

import math
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeport.errors import InputError
from edgeport.limits import check_zip_archive
from edgeport.model_bundle import TensorSpec

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
TEXT_SUFFIXES = (".txt",)
LABEL_KEYS = ("y", "labels", "label")
# sentences -> model inputs by name (a Hugging Face tokenizer, see SourceModel.tokenize)
TextEncoder = Callable[[list[str]], dict[str, np.ndarray]]
INPUT_KEYS = ("x", "inputs", "input", "images", "data")


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
            try:
                with archive.open(info) as f:
                    arrays[member[:-4]] = _read_npy_rows(f, max_rows, f"{path}:{member}", info.file_size)
            except (ValueError, zipfile.BadZipFile, EOFError) as exc:
                raise InputError(f"{path}: member {member} is not a valid array: {exc}") from exc
    if not arrays:
        raise InputError(f"{path} contains no arrays")
    return arrays


def _pick_inputs(
    arrays: dict[str, np.ndarray], specs: list[TensorSpec], path: Path
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
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


class Dataset:
    """Samples for one purpose (calibration, evaluation), read lazily, preprocessed per batch."""

    def __init__(
        self,
        specs: list[TensorSpec],
        count: int,
        loader,
        labels: np.ndarray | None,
        description: str,
        synthetic: bool,
        preprocess: Preprocess,
    ) -> None:
        self.specs = specs
        self.count = count
        self._loader = loader  # (start, stop) -> {name: raw rows}
        self.labels = labels
        self.description = description
        self.synthetic = synthetic
        self.preprocess = preprocess
        self.notes: set[str] = set()

    def __len__(self) -> int:
        return self.count

    def batch(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Return the preprocessed samples ``start:stop`` as model inputs by name."""
        raw = self._loader(start, stop)
        return {s.name: _conform(raw[s.name], s, self.preprocess, self.notes, self.description) for s in self.specs}

    def batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Yield preprocessed batches of ``batch_size`` (the last may be smaller)."""
        for start in range(0, self.count, batch_size):
            yield self.batch(start, min(start + batch_size, self.count))

    def describe(self) -> dict:
        """Return JSON-ready facts about the data for the report."""
        return {
            "source": self.description,
            "samples": self.count,
            "synthetic": self.synthetic,
            "labels": self.labels is not None,
            "preprocess": self.preprocess.describe(),
            "applied": sorted(self.notes),
        }


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


def synthetic_dataset(specs: list[TensorSpec], count: int, seed: int, batch: int) -> Dataset:
    """Random inputs (standard normal floats, small non-negative ints) for when no data is given."""
    rng = np.random.default_rng(seed)
    try:
        shapes = {s.name: s.concrete_shape(batch) for s in specs}
    except ValueError as exc:  # a symbolic dim other than the batch: its size is unknown
        raise InputError(
            f"cannot make inputs for the model: {exc}", hint="give its size with --input_shape name:1,3,224,224"
        ) from exc
    arrays = {}
    for spec in specs:
        shape = [count, *shapes[spec.name][1:]]
        if spec.dtype.startswith("float"):
            arrays[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.dtype == "bool":
            arrays[spec.name] = rng.integers(0, 2, shape).astype(bool)
        elif spec.name.endswith("attention_mask"):  # token models: every token attended
            arrays[spec.name] = np.ones(shape, spec.dtype)
        elif spec.name == "token_type_ids":  # one segment (the only id type some models have)
            arrays[spec.name] = np.zeros(shape, spec.dtype)
        else:
            arrays[spec.name] = rng.integers(0, 100, shape).astype(spec.dtype)
    return Dataset(
        specs,
        count,
        lambda a, b: {k: v[a:b] for k, v in arrays.items()},
        None,
        f"synthetic (random, seed {seed})",
        True,
        Preprocess(scale=1.0),
    )


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


def _text_dataset(
    path: Path, specs: list[TensorSpec], max_samples: int | None, text_encoder: TextEncoder | None
) -> Dataset:
    """A text file as model inputs: the sentences, tokenized batch by batch by ``text_encoder``."""
    if text_encoder is None:
        raise InputError(
            f"{path} is a text file, but this model takes no text",
            hint="text data (one sentence a line) feeds Hugging Face folders with a tokenizer; use .npz for others",
        )
    sentences = read_sentences(path, max_samples)
    dataset = Dataset(
        specs,
        len(sentences),
        lambda a, b: text_encoder(sentences[a:b]),
        None,
        f"{path} ({len(sentences)} sentences, tokenized)",
        False,
        Preprocess(scale=1.0),
    )
    dataset.batch(0, min(len(sentences), 2))  # fail now, with the file named, if the tokens do not fit
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
) -> Dataset:
    """Open ``--calibration_data``/``--eval_data``: a .npz/.npy file, an image folder, a .txt
    file of sentences (tokenized by ``text_encoder``, the model's tokenizer), or None
    (synthetic inputs). Reads at most ``max_samples`` samples. Returns a :class:`Dataset`."""
    if source is None:
        return synthetic_dataset(
            specs, synthetic_count if max_samples is None else min(max_samples, synthetic_count), seed, batch
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
    arrays = _read_arrays(path, max_samples)
    inputs, labels = _pick_inputs(arrays, specs, path)
    counts = {len(a) for a in inputs.values()}
    if len(counts) != 1:
        raise InputError(f"{source}: the input arrays have different sample counts {sorted(counts)}")
    count = counts.pop()
    if count == 0:
        raise InputError(f"{source} holds no samples")
    for name, array in inputs.items():  # the rows are in memory already: check them all now
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            row = int(np.argwhere(~np.isfinite(array.reshape(len(array), -1)))[0][0])
            raise InputError(f"{source}: sample {row} of input {name!r} contains NaN or infinite values")
    if labels is not None:
        if len(labels) < count:
            raise InputError(f"{source}: {len(labels)} labels for {count} samples")
        labels = np.asarray(labels[:count]).astype(np.int64).reshape(count, -1)[:, 0]
    dataset = Dataset(
        specs,
        count,
        lambda a, b: {k: v[a:b] for k, v in inputs.items()},
        labels,
        f"{source} ({count} samples{', labelled' if labels is not None else ''})",
        False,
        preprocess,
    )
    dataset.batch(0, min(count, 2))  # fail now, with the file named, if samples do not fit the model
    return dataset
