"""edgeport.runtime.bundle serves a real bundle made by edgeport.convert, with the runtime only.

The runtime-only test serves the bundle in a fresh venv holding only numpy, onnxruntime and
edgeport's wheel installed with --no-deps, and gets the outputs the full install gets.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

import edgeport
from edgeport.core.errors import InputError
from edgeport.runtime.bundle import load_bundle
from tests.runtime.runtime_only import run_in_runtime_venv
from tests.runtime.text_model import text_data, text_model


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A text model converted to int8 ONNX by edgeport.convert (a real bundle)."""
    folder = tmp_path_factory.mktemp("bundle")
    model, data = text_model(folder / "text.onnx"), text_data(folder / "data.npz")
    result = edgeport.convert(
        str(model),
        quantization="int8",
        eval_data=str(data),
        calibration_data=str(data),
        output_dir=str(folder / "out"),
        latency_runs=10,
        warmup_runs=2,
    )
    return result.bundle_dir


def _feeds(length: int = 11) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        "input_ids": rng.integers(1, 50, (2, length)).astype(np.int64),
        "attention_mask": np.ones((2, length), dtype=np.int64),
    }


def test_runs_the_artifact_as_onnxruntime_does(bundle):
    deployed = load_bundle(bundle)
    outputs = deployed.run(_feeds())
    session = onnxruntime.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = dict(zip(["tokens", "pooled"], session.run(["tokens", "pooled"], _feeds()), strict=True))
    assert sorted(outputs) == ["pooled", "tokens"]
    assert outputs["tokens"].shape == (2, 11, 8)
    np.testing.assert_allclose(outputs["pooled"], expected["pooled"], rtol=1e-5, atol=1e-6)
    assert deployed.threads == 1  # no tuning in this bundle: one thread


def test_applies_recommended_threads_unless_told(bundle, tmp_path):
    copy = tmp_path / "tuned"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["recommended_session_options"] = {"batch": 4, "intra_op_num_threads": 2}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    tuned = load_bundle(copy)
    tuned.run(_feeds())
    assert tuned.threads == 2 and tuned.runner("model.onnx").threads == 2
    assert load_bundle(copy, threads=1).threads == 1


def test_a_folder_without_manifest_is_a_one_line_input_error(tmp_path):
    with pytest.raises(InputError, match="not an edgeport bundle"):
        load_bundle(tmp_path)


SERVE = """
import json, sys
import numpy as np
from edgeport.runtime.bundle import load_bundle
feeds = dict(np.load(sys.argv[2]))
outputs = load_bundle(sys.argv[1]).run(feeds)
heavy = sorted(m for m in ("torch", "onnx", "tensorflow", "edgeport.pipeline") if m in sys.modules)
print(json.dumps({"pooled": outputs["pooled"].tolist(), "heavy": heavy}))
"""


def test_serves_with_numpy_and_onnxruntime_only(bundle, runtime_venv, tmp_path):
    np.savez(tmp_path / "feeds.npz", **_feeds())
    result = run_in_runtime_venv(runtime_venv, SERVE, [bundle, tmp_path / "feeds.npz"], tmp_path)
    assert result["heavy"] == []
    expected = load_bundle(bundle).run(_feeds())["pooled"]
    np.testing.assert_allclose(np.array(result["pooled"]), expected, rtol=1e-6, atol=1e-7)
