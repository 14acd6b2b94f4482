"""Opening ``--calibration_data``/``--eval_data``: which kind of data a source is, and its Dataset."""

from __future__ import annotations

from pathlib import Path

from edgeport.core.errors import InputError
from edgeport.core.model import TensorSpec
from edgeport.data.arrays import array_dataset
from edgeport.data.dataset import Dataset
from edgeport.data.images import image_dataset
from edgeport.data.preprocess import Preprocess
from edgeport.data.synthetic import synthetic_dataset
from edgeport.data.text import TEXT_SUFFIXES, TextEncoder, text_dataset


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
        return image_dataset(source, specs, max_samples, preprocess)
    if path.suffix.lower() in TEXT_SUFFIXES:
        return text_dataset(path, specs, max_samples, text_encoder)
    if path.suffix not in (".npz", ".npy"):
        raise InputError(f"{source}: data must be a .npz/.npy file, a folder of images or a .txt file of sentences")
    return array_dataset(source, path, specs, max_samples, preprocess)
