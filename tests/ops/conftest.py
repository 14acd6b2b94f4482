"""The custom-op example (examples/custom_ops): GatedMLP trained once per session (about 20 s:
distilled from FashionCNN on the 256 bundled calibration images) and its three model files."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="session")
def custom_op_models(tmp_path_factory) -> dict[str, Path | float]:
    """The .pt2 (both ops as torch custom ops), gated_mlp_gelu_node.onnx (mylib::FusedGatedGelu,
    decomposable) and gated_mlp_rmsnorm_node.onnx (mylib::RmsNormNoWeight, Python kernel), plus
    the torch model's top-1 (%) on the 1,000 bundled test images under ``"torch_top1"``."""
    from examples.custom_ops.model import accuracy, train_gated_mlp, write_models

    model = train_gated_mlp()
    paths: dict[str, Path | float] = dict(write_models(model, tmp_path_factory.mktemp("custom_ops")))
    paths["torch_top1"] = accuracy(model)
    return paths
