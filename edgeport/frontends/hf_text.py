"""Text inputs of a Hugging Face folder: its tokenizer turns sentences (a .txt calibration/eval
file) into model inputs (``SourceModel.tokenize``, used by :func:`edgeport.data.load_dataset`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeport.core.errors import InputError, describe_exception
from edgeport.core.model import TensorSpec

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer.model", "spiece.model", "vocab.json")


def make_tokenize(tokenizer: Any, specs: list[TensorSpec], length: int | None, limit: int | None = None):
    """Return ``tokenize(sentences) -> {input name: array}`` padded/truncated to ``length`` tokens.

    ``length`` None (a dynamic sequence axis): each call pads only to its longest sentence, so a
    sentence alone keeps its own length; sentences longer than ``limit`` (the model's positions)
    are truncated.
    """

    def tokenize(sentences: list[str]) -> dict[str, np.ndarray]:
        if length is None:
            encoded = tokenizer(
                list(sentences), padding="longest", truncation=limit is not None, max_length=limit, return_tensors="np"
            )
        else:
            encoded = tokenizer(
                list(sentences), padding="max_length", truncation=True, max_length=length, return_tensors="np"
            )
        width = encoded["input_ids"].shape[1]
        feeds = {}
        for spec in specs:
            if spec.name in encoded:
                feeds[spec.name] = np.asarray(encoded[spec.name]).astype(spec.dtype)
            elif spec.name == "token_type_ids":  # some tokenizers do not return it; BERT-style zeros
                feeds[spec.name] = np.zeros((len(sentences), width), spec.dtype)
            else:
                raise InputError(f"the folder's tokenizer does not produce the model input {spec.name!r}")
        return feeds

    return tokenize


def load_tokenize(
    folder: Path, config: dict[str, Any], specs: list[TensorSpec], length: int | None, notes: list[str]
) -> Any:
    """Return the folder's ``tokenize`` (see :func:`make_tokenize`), or None when the folder has no
    tokenizer or it does not load: a broken tokenizer only costs text data, not the conversion,
    so the reason goes to ``notes`` instead of raising."""
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        notes.append("the folder has no tokenizer files: text calibration/eval data cannot be used")
        return None
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
        limit = config.get("max_position_embeddings") or config.get("n_positions")
        return make_tokenize(tokenizer, specs, length, int(limit) if limit else None)
    except Exception as exc:  # a broken tokenizer only costs text data, not the conversion
        notes.append(f"the folder's tokenizer did not load ({describe_exception(exc)}): no text data")
        return None
