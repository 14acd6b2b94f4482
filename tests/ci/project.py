"""A minimal edgeport.yaml project for the config tests: load_config checks that the model and
data files exist but never reads them."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_project(folder: Path, text: str) -> Path:
    """Write ``text`` as ``folder/edgeport.yaml`` beside a placeholder model.onnx and unused.npz;
    return the config's path."""
    (folder / "model.onnx").write_bytes(b"not read by load_config")
    np.savez(folder / "unused.npz", x=np.zeros(1))
    config = folder / "edgeport.yaml"
    config.write_text(text)
    return config


# The models part every config test shares: one ONNX model named m.
ONE_MODEL = """
version: 1
models:
  - name: m
    path: model.onnx
"""


def refusal(folder: Path, text: str) -> str:
    """Load ``text`` as an edgeport.yaml that must be refused; return the one-line error, which
    points at a line of the file."""
    import pytest

    from edgeport.ci.config import load_config
    from edgeport.core.errors import InputError

    with pytest.raises(InputError) as caught:
        load_config(write_project(folder, text))
    message = str(caught.value)
    assert "edgeport.yaml:" in message, message
    return message
