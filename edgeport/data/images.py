"""Image folders as data: images decoded when their batch is needed, labels from class folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeport.core.errors import InputError
from edgeport.core.model import TensorSpec
from edgeport.data.conform import model_layout
from edgeport.data.dataset import Dataset, Loader
from edgeport.data.preprocess import Preprocess

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _image_files(folder: Path) -> tuple[list[Path], list[int] | None, list[str]]:
    """The images under ``folder``, sorted, with a class index per image and the class names when
    every image sits in a subfolder of ``folder`` (one per class); else None and []."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder} contains no images ({', '.join(IMAGE_SUFFIXES)})")
    parents = {p.parent for p in files}
    if folder not in parents and all(p.parent.parent == folder for p in files):
        classes = sorted(p.name for p in parents)
        index = {name: i for i, name in enumerate(classes)}
        return files, [index[p.parent.name] for p in files], classes
    return files, None, []


def _image_loader(files: list[Path], spec: TensorSpec, preprocess: Preprocess) -> Loader:
    """A loader decoding ``files[start:stop]`` to uint8 rows at the size of input ``spec``."""
    from PIL import Image

    layout = model_layout(spec, preprocess) or "NCHW"
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


def image_dataset(source: str, specs: list[TensorSpec], max_samples: int | None, preprocess: Preprocess) -> Dataset:
    """Open the image folder ``source`` for a single-input model: at most ``max_samples`` images,
    labelled by class folder when there are some. Returns a :class:`Dataset`."""
    if len(specs) != 1:
        raise InputError("an image folder can only feed a single-input model")
    files, labels, classes = _image_files(Path(source))
    files = files[:max_samples] if max_samples else files
    label_array = np.asarray(labels[: len(files)], np.int64) if labels is not None else None
    desc = f"{source} ({len(files)} images" + (f", {len(classes)} classes from folder names)" if classes else ")")
    return Dataset(specs, len(files), _image_loader(files, specs[0], preprocess), label_array, desc, False, preprocess)
