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
