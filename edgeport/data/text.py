"""Text files as data: one sentence a line, tokenized batch by batch by the model's tokenizer."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from pathlib import Path

import numpy as np

from edgeport.core.errors import InputError
from edgeport.core.model import TensorSpec, batch_dim_name
from edgeport.data.dataset import Dataset
from edgeport.data.preprocess import Preprocess

TEXT_SUFFIXES = (".txt",)
# sentences -> model inputs by name (a Hugging Face tokenizer, see SourceModel.tokenize)
TextEncoder = Callable[[list[str]], dict[str, np.ndarray]]


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


def text_dataset(
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
