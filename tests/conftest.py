"""Shared fixtures: models and data are built once per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeport.api import convert
from tests import models_for_tests

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
MODELS_FILE = Path(models_for_tests.__file__)


def factory(name: str) -> str:
    """Return the ``file.py:factory`` reference of a test model factory."""
    return f"{MODELS_FILE}:{name}"


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory) -> dict[str, Path]:
    """TinyNet saved in every PyTorch/ONNX form edgeport ingests, plus data for it."""
    root = tmp_path_factory.mktemp("tiny")
    model = models_for_tests.make_tiny()
    example = torch.randn(2, 3, 16, 16)
    files = {}
    files["pt2"] = root / "tiny.pt2"
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(model, (example,), dynamic_shapes={"x": {0: batch}}), files["pt2"])
    files["torchscript"] = root / "tiny_ts.pt"
    torch.jit.save(torch.jit.trace(model, example), files["torchscript"])
    files["state_dict"] = root / "tiny_state.pth"
    torch.save(model.state_dict(), files["state_dict"])
    files["pickle"] = root / "tiny_pickled.pt"
    torch.save(model, files["pickle"])
    files["onnx"] = root / "tiny.onnx"
    torch.onnx.export(
        model, (example,), str(files["onnx"]), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "batch"}}
    )
    files["onnx_external"] = root / "external" / "tiny_ext.onnx"
    files["onnx_external"].parent.mkdir()
    import onnx

    onnx.save(
        onnx.load(str(files["onnx"])),
        str(files["onnx_external"]),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="tiny_ext.data",
        size_threshold=0,
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((48, 3, 16, 16)).astype(np.float32)
    files["data"] = root / "tiny_data.npz"
    np.savez(files["data"], x=x)
    return files


@pytest.fixture(scope="session")
def runtime_venv(tmp_path_factory) -> Path:
    """A fresh venv with only numpy, onnxruntime and edgeport (wheel, --no-deps): where bundles are
    served through edgeport.runtime (tests/packaging/fresh.py)."""
    from tests.packaging.fresh import runtime_only_venv

    return runtime_only_venv(tmp_path_factory.mktemp("runtime-venv"))


@pytest.fixture(scope="session")
def example_int8(tmp_path_factory):
    """The bundled Fashion-MNIST model converted to int8 ONNX once, with the real test subset."""
    out = tmp_path_factory.mktemp("example") / "bundle"
    return convert(
        str(EXAMPLES / "fashion_cnn.pt2"),
        output_format="onnx",
        quantization="int8",
        optimize_for="cpu",
        calibration_data=str(EXAMPLES / "fashion_mnist_calib.npz"),
        eval_data=str(EXAMPLES / "fashion_mnist_test_1k.npz"),
        output_dir=str(out),
        latency_runs=50,
    )


@pytest.fixture(scope="session")
def tf_digits(tmp_path_factory) -> dict[str, Path | float]:
    """The Keras digits CNN (tests/models_keras.py), trained once per run and saved in the four
    TF forms, plus its data (shared by the TF ingestion and Core ML tests)."""
    from tests.models_keras import train_digits

    return train_digits(tmp_path_factory.mktemp("tf_digits"))


EXAMPLE_CUSTOM_OPS = ("mylib::fused_gated_gelu", "mylib::rms_norm")


@pytest.fixture(scope="session")
def custom_op_model_files(tmp_path_factory) -> dict[str, Path | float]:
    """The custom-op example (examples/custom_ops): GatedMLP trained once per session (about 20 s:
    distilled from FashionCNN on the 256 bundled calibration images) and its three model files: the
    .pt2 (both ops as torch custom ops), gated_mlp_gelu_node.onnx (mylib::FusedGatedGelu,
    decomposable) and gated_mlp_rmsnorm_node.onnx (mylib::RmsNormNoWeight, Python kernel), plus the
    torch model's top-1 (%) on the 1,000 bundled test images under ``"torch_top1"``."""
    from edgeport import ops
    from examples.custom_ops.model import accuracy, train_gated_mlp, write_models

    model = train_gated_mlp()
    paths: dict[str, Path | float] = dict(write_models(model, tmp_path_factory.mktemp("custom_ops")))
    paths["torch_top1"] = accuracy(model)
    for name in EXAMPLE_CUSTOM_OPS:  # --custom_ops puts them back (ops.load_custom_ops)
        ops.unregister_op(name)
    return paths


@pytest.fixture(scope="module")
def custom_op_models(custom_op_model_files) -> Iterator[dict[str, Path | float]]:
    """``custom_op_model_files`` for one test module; afterwards the example ops are unregistered,
    so later tests of the run see no custom ops (their ORT sessions open as before)."""
    from edgeport import ops

    yield custom_op_model_files
    for name in EXAMPLE_CUSTOM_OPS:
        ops.unregister_op(name)
