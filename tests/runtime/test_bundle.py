"""edgeport.runtime.bundle serves a real bundle made by edgeport.convert, with the runtime only.

The stripped-python test copies edgeport/runtime/ and core/errors.py (nothing else of
edgeport) next to a python whose path holds only numpy and onnxruntime (``-S``: no
site-packages), loads the bundle there and gets the outputs the full install gets.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

import edgeport
from edgeport.core.errors import InputError
from edgeport.runtime.bundle import load_bundle
from tests.runtime.runtime_only import runtime_only_python
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
print(json.dumps({"pooled": outputs["pooled"].tolist(), "heavy": heavy, "path": sys.path}))
"""


def test_serves_with_numpy_and_onnxruntime_only(bundle, tmp_path):
    path, code = runtime_only_python(tmp_path)
    np.savez(tmp_path / "feeds.npz", **_feeds())
    (tmp_path / "serve.py").write_text(SERVE)
    done = subprocess.run(
        [sys.executable, "-S", str(tmp_path / "serve.py"), str(bundle), str(tmp_path / "feeds.npz")],
        env={"PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["heavy"] == []
    assert not any("site-packages" in entry for entry in result["path"])
    expected = load_bundle(bundle).run(_feeds())["pooled"]
    np.testing.assert_allclose(np.array(result["pooled"]), expected, rtol=1e-6, atol=1e-7)
    # The same script fails without the runtime on the path: the check is not vacuous.
    bare = subprocess.run(
        [sys.executable, "-S", str(tmp_path / "serve.py"), str(bundle), str(tmp_path / "feeds.npz")],
        env={"PYTHONPATH": str(code)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bare.returncode != 0 and "numpy" in bare.stderr
