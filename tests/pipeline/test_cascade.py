"""Cascade routing (issue 18): the threshold picked on the Fashion CNN's real calibration images
obeys the budget and is the fastest that does, the eval figures are what the two models give by
hand, edgeport.runtime routes per sample as running the two models by hand does, and a model
whose output is not class scores is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import edgeport
from edgeport.core.errors import InputError
from edgeport.pipeline.cascade import choose_threshold, mean_latency
from edgeport.runtime.bundle import load_bundle
from edgeport.runtime.cascade import confidence
from tests.runtime.text_model import text_data, text_model

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BUDGET = 0.5


@pytest.fixture(scope="module")
def cascaded(tmp_path_factory):
    """The Fashion CNN, int8 ONNX in front of its fp32 baseline, under a 0.5-point budget."""
    return edgeport.convert(
        str(EXAMPLES / "fashion_cnn.pt2"),
        output_format="onnx",
        quantization="int8",
        optimize_for="cpu",
        calibration_data=str(EXAMPLES / "fashion_mnist_calib.npz"),
        eval_data=str(EXAMPLES / "fashion_mnist_test_1k.npz"),
        output_dir=str(tmp_path_factory.mktemp("cascade") / "bundle"),
        latency_runs=30,
        cascade="fp32",
        max_accuracy_drop=BUDGET,
    )


def _scores(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _images(name: str) -> tuple[np.ndarray, np.ndarray | None]:
    data = np.load(EXAMPLES / name)
    x = data["x"].astype(np.float32)
    x = x / 255.0 if x.max() > 1.5 else x
    return x[:, None], (data["y"] if "y" in data else None)


def test_threshold_obeys_the_budget_and_is_the_fastest_that_does(cascaded):
    section, folder = cascaded.report["cascade"], cascaded.bundle_dir
    x, _ = _images("fashion_mnist_calib.npz")
    small, large = _scores(folder / "model.onnx", x), _scores(folder / "baseline_fp32.onnx", x)
    conf, agree = confidence(small), small.argmax(1) == large.argmax(1)
    threshold = section["threshold"]
    # No labels in the calibration file: accuracy is agreement with fp32, by hand.
    drop = 100.0 - 100.0 * np.mean(np.where(conf >= threshold, agree, True))
    assert drop <= BUDGET + 1e-9
    assert abs(drop - section["calibration"]["drop_vs_large"]) < 1e-2
    # The next lower confidence would let the small model answer more (faster): over budget.
    lower = conf[conf < threshold]
    if lower.size:
        looser = 100.0 - 100.0 * np.mean(np.where(conf >= lower.max(), agree, True))
        assert looser > BUDGET
    t_small, t_large = (section["calibration"]["mean_latency_ms"][k] for k in ("small", "large"))
    expected = mean_latency(float(np.mean(conf >= threshold)), t_small, t_large)
    assert section["calibration"]["mean_latency_ms"]["cascade"] == pytest.approx(expected, abs=1e-3)
    assert cascaded.bundle_dir.joinpath("manifest.json").read_text().count('"max softmax"') == 1


def test_eval_figures_match_the_two_models_by_hand(cascaded):
    section, folder = cascaded.report["cascade"], cascaded.bundle_dir
    x, y = _images("fashion_mnist_test_1k.npz")
    small, large = _scores(folder / "model.onnx", x), _scores(folder / "baseline_fp32.onnx", x)
    chosen = np.where(confidence(small) >= section["threshold"], small.argmax(1), large.argmax(1))
    measured = section["eval"]
    assert measured["samples"] == 1000 and measured["measured_against"] == "labels"
    assert measured["accuracy"]["cascade"] == pytest.approx(100.0 * np.mean(chosen == y), abs=1e-3)
    assert measured["accuracy"]["large"] == pytest.approx(100.0 * np.mean(large.argmax(1) == y), abs=1e-3)
    assert measured["drop_vs_large"] <= 1.0  # the eval data is not what the threshold was picked on


def test_runtime_routes_each_sample_as_the_two_models_by_hand(cascaded):
    folder = cascaded.bundle_dir
    x, _ = _images("fashion_mnist_test_1k.npz")
    batch = x[:200]
    deployed = load_bundle(folder)
    name = _names(folder)[0]
    outputs, escalated = deployed.run_routed({name: batch})
    small, large = _scores(folder / "model.onnx", batch), _scores(folder / "baseline_fp32.onnx", batch)
    by_hand = confidence(small) < cascaded.report["cascade"]["threshold"]
    np.testing.assert_array_equal(escalated, by_hand)
    expected = np.where(by_hand[:, None], large, small)
    np.testing.assert_allclose(outputs["linear"], expected, rtol=1e-5, atol=1e-5)
    assert 0 < escalated.sum() < len(batch), "the 0.5-point budget escalates some samples, not all"
    assert deployed.opened == ["model.onnx", "baseline_fp32.onnx"]


def _names(folder: Path) -> list[str]:
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    return [i.name for i in session.get_inputs()]


def test_choose_threshold_prefers_the_fastest_within_budget():
    conf = np.array([0.9, 0.8, 0.6, 0.4])
    small, large = np.array([1, 1, 0, 0]), np.array([1, 1, 1, 1])
    # Escalating below 0.8 fixes both wrong answers (drop 0); 0.6 leaves one wrong (25 points).
    picked = choose_threshold(conf, small, large, None, 1.0, 4.0, budget=10.0)
    assert picked["threshold"] == 0.8 and picked["drop_vs_large"] == 0.0
    assert picked["mean_latency_ms"]["cascade"] == pytest.approx(0.5 * 1.0 + 0.5 * 5.0)
    assert choose_threshold(conf, small, large, None, 1.0, 4.0, budget=30.0)["threshold"] == 0.6


def test_a_model_without_class_scores_is_refused(tmp_path):
    with pytest.raises(InputError, match="cascade needs a classifier's scores"):
        confidence(np.zeros((2, 5, 8), dtype=np.float32))
    model, data = text_model(tmp_path / "text.onnx"), text_data(tmp_path / "data.npz")
    with pytest.raises(InputError, match="cascade needs a classifier's scores"):
        edgeport.convert(str(model), quantization="int8", eval_data=str(data), cascade="fp32")


def test_report_html_and_summary_line_show_the_cascade(cascaded):
    from edgeport.cli.main import cascade_line

    html = (cascaded.bundle_dir / "report.html").read_text()
    assert "<h2>Cascade</h2>" in html and "calibration (threshold picked)" in html
    section = cascaded.report["cascade"]
    line = cascade_line(section)
    assert f"{100 * section['eval']['small_answers']:.1f}%" in line
    assert f"{section['eval']['mean_latency_ms']['cascade']:.4g} ms vs" in line


ROUTE = """
import json, sys
import numpy as np
from edgeport.runtime.bundle import load_bundle
model = load_bundle(sys.argv[1])
outputs, escalated = model.run_routed({sys.argv[3]: np.load(sys.argv[2])})
heavy = [m for m in ("torch", "onnx", "tensorflow", "edgeport.pipeline") if m in sys.modules]
print(json.dumps({"escalated": escalated.tolist(), "linear": outputs["linear"].tolist(), "heavy": heavy}))
"""


def test_routes_with_numpy_and_onnxruntime_only(cascaded, runtime_venv, tmp_path):
    from tests.runtime.runtime_only import run_in_runtime_venv

    batch = _images("fashion_mnist_test_1k.npz")[0][:64]
    np.save(tmp_path / "x.npy", batch)
    name = _names(cascaded.bundle_dir)[0]
    result = run_in_runtime_venv(runtime_venv, ROUTE, [cascaded.bundle_dir, tmp_path / "x.npy", name], tmp_path)
    outputs, escalated = load_bundle(cascaded.bundle_dir).run_routed({name: batch})
    assert result["heavy"] == [] and result["escalated"] == escalated.tolist()
    np.testing.assert_allclose(np.array(result["linear"]), outputs["linear"], rtol=1e-6, atol=1e-6)
