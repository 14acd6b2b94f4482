"""The gate decides per output what to compare (by evidence), gates on the worst output relative
to its budget, takes the user's evaluator, and auto never returns a model slower than float."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgeport.api import convert
from edgeport.core.errors import InputError
from edgeport.quantize.floor import MIN_SPEEDUP, float_fallback
from edgeport.verify.gate import choose_gate, decide_measure, map_iou, relative_error


class Embedder(nn.Module):
    """A sentence-embedding-like head: pooled features projected and L2-normalized (384 wide)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 384))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.body(x).mean(dim=1), dim=-1)


class Segmenter(nn.Module):
    """A tiny segmentation net: a one-channel probability map."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(x))


class TwoHeads(nn.Module):
    """Class probabilities and a regression value from one trunk."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(16, 32), nn.ReLU())
        self.classes = nn.Linear(32, 5)
        self.value = nn.Linear(32, 1)

    def forward(self, x: torch.Tensor):
        h = self.trunk(x)
        return torch.softmax(self.classes(h), dim=-1), self.value(h)


def _export(model: nn.Module, example: torch.Tensor, path: Path, outputs: list[str]) -> Path:
    torch.manual_seed(0)
    torch.onnx.export(
        model.eval(),
        (example,),
        str(path),
        dynamo=False,
        input_names=["x"],
        output_names=outputs,
        dynamic_axes={"x": {0: "batch"}, **{o: {0: "batch"} for o in outputs}},
    )
    return path


@pytest.fixture(scope="session")
def gate_models(tmp_path_factory) -> dict[str, Path]:
    """Small ONNX files (made once) with their eval data: an embedder, a segmenter, two heads."""
    root = tmp_path_factory.mktemp("gate")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    files = {
        "embedder": _export(Embedder(), torch.randn(2, 12, 64), root / "embedder.onnx", ["embedding"]),
        "segmenter": _export(Segmenter(), torch.randn(2, 3, 24, 24), root / "segmenter.onnx", ["mask"]),
        "two_heads": _export(TwoHeads(), torch.randn(2, 16), root / "two_heads.onnx", ["probs", "value"]),
    }
    np.savez(root / "embedder.npz", x=rng.standard_normal((64, 12, 64)).astype(np.float32))
    # Blobs on a background, so that the map has real positives and negatives.
    images = rng.standard_normal((48, 3, 24, 24)).astype(np.float32) * 0.3
    images[:, :, 6:18, 6:18] += 1.5
    np.savez(root / "segmenter.npz", x=images)
    np.savez(root / "two_heads.npz", x=rng.standard_normal((96, 16)).astype(np.float32))
    files.update({f"{k}_data": root / f"{k}.npz" for k in ("embedder", "segmenter", "two_heads")})
    return files


def _outputs(path: Path, data: Path) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": np.load(data)["x"][:8]})


def test_evidence_picks_a_measure_per_output(gate_models):
    """Normalized rows -> cosine, a sigmoid map -> IoU, softmax scores -> top-1, a 1-wide head -> relative
    error; with labels the class output gets the task's accuracy; weak evidence names the flag."""
    picks = {}
    for name, outputs in (("embedder", ["embedding"]), ("segmenter", ["mask"]), ("two_heads", ["probs", "value"])):
        model = onnx.load(str(gate_models[name]))
        samples = _outputs(gate_models[name], gate_models[f"{name}_data"])
        gate = choose_gate(model, outputs, samples, metric="auto", budget=None, labels=False)
        picks.update({m.name: m.measure for m in gate.measures})
        assert len(gate.decisions) == len(outputs)
    assert picks == {"embedding": "cosine", "mask": "iou", "probs": "top1", "value": "rel_error"}
    model = onnx.load(str(gate_models["two_heads"]))
    samples = _outputs(gate_models["two_heads"], gate_models["two_heads_data"])
    labelled = choose_gate(model, ["probs", "value"], samples, metric="auto", budget=0.5, labels=True)
    assert [m.measure for m in labelled.measures] == ["labels", "rel_error"]
    assert all(m.budget == 0.5 for m in labelled.measures)  # the user's budget applies to every output
    # 384 logits from a linear layer could be an embedding: the decision says how to settle it.
    wide = decide_measure(model, "probs", np.random.default_rng(0).standard_normal((4, 384)), labels=False,
                          output_kind=None, first_scores=True)  # fmt: skip
    assert wide.measure == "top1"  # Softmax producer: strong evidence
    # One reference row (ragged data's first sentence) of norm 1 is an embedding too.
    one_row = samples[0][:1] / np.linalg.norm(samples[0][:1])
    single = decide_measure(model, "value", one_row, labels=False, output_kind=None, first_scores=True)
    assert single.measure == "cosine"
    with pytest.raises(InputError, match="names no output"):
        choose_gate(model, ["probs", "value"], samples, metric="nothing=cosine", budget=None, labels=False)


def test_state_outputs_are_reported_not_gated():
    """An output that mirrors a state input (same shape, a state name) is reported, not gated."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 8])
    state = onnx.helper.make_tensor_value_info("state", onnx.TensorProto.FLOAT, [2, "batch", 8])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 8])
    state_n = onnx.helper.make_tensor_value_info("stateN", onnx.TensorProto.FLOAT, [2, "batch", 8])
    nodes = [onnx.helper.make_node("Relu", ["x"], ["y"]), onnx.helper.make_node("Neg", ["state"], ["stateN"])]
    model = onnx.helper.make_model(onnx.helper.make_graph(nodes, "g", [x, state], [y, state_n]))
    rng = np.random.default_rng(0)
    samples = [rng.standard_normal((4, 8)).astype(np.float32), rng.standard_normal((2, 4, 8)).astype(np.float32)]
    gate = choose_gate(model, ["y", "stateN"], samples, metric="auto", budget=None, labels=False)
    assert [m.gated for m in gate.measures] == [True, False]
    figures = gate.assess(samples, [samples[0], samples[1] * 0], ["y", "stateN"], None)
    assert figures["worst"] == "y" and figures["drop"] == 0.0  # a wrecked state does not fail the gate
    assert figures["outputs"]["stateN"]["gated"] is False


def test_worst_output_relative_to_its_budget_drives_the_gate():
    """Two outputs: the gate figure is the one furthest into its own budget, in report points."""
    model = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []))
    rng = np.random.default_rng(1)
    scores, values = rng.standard_normal((200, 4)), rng.standard_normal((200, 1)) + 5
    gate = choose_gate(model, ["s", "v"], [scores, values], metric="s=top1,v=rel_error", budget=None, labels=False)
    noisy = values * 1.03  # 3 % relative error against a 2-point budget: 1.5 budgets
    figures = gate.assess([scores, values], [scores, noisy], ["s", "v"], None)
    assert figures["worst"] == "v"
    assert figures["outputs"]["v"]["drop"] == pytest.approx(3.0, rel=1e-6)
    assert figures["drop"] == pytest.approx(1.5, rel=1e-6)  # in the report's 1-point budget
    assert relative_error(values, noisy) == pytest.approx(0.03, rel=1e-6)
    assert map_iou(np.array([[0.9, 0.1, 0.8]]), np.array([[0.9, 0.6, 0.2]])) == pytest.approx(1 / 3)


def test_embedding_onnx_gets_cosine_and_auto_never_slower(gate_models, tmp_path):
    """A plain ONNX embedding model with default flags: the gate compares cosine (not the argmax
    of 384 values), and auto's artifact is either a quantized plan measured faster than fp32 or
    the float model itself."""
    out = tmp_path / "bundle"
    result = convert(
        str(gate_models["embedder"]),
        quantization="auto",
        calibration_data=str(gate_models["embedder_data"]),
        eval_data=str(gate_models["embedder_data"]),
        output_dir=str(out),
        latency_runs=20,
    )
    report = result.report
    assert report["gate"]["metric"].startswith("100 x (1 - mean cosine)")
    assert any("rows of constant norm" in d["why"] for d in report["decisions"])
    assert report["fidelity"]["measures"]["outputs"]["embedding"]["value"] > 0.99
    search = report["search"]
    if search["float_fallback"]:
        artifact = onnx.load(str(out / "model.onnx"))
        assert not [n for n in artifact.graph.node if n.op_type in ("QuantizeLinear", "DynamicQuantizeLinear")]
    else:
        assert search["chosen"]["speedup"] >= MIN_SPEEDUP


def test_float_model_when_int8_does_not_pay(tmp_path):
    """A model too small for int8 to pay (quantize/dequantize cost more than its GEMMs save): auto
    returns the float model with exit 0 (no budget was set) and says why."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    path = _export(model, torch.randn(2, 8), tmp_path / "small.onnx", ["logits"])
    data = tmp_path / "small.npz"
    np.savez(data, x=np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32))
    result = convert(str(path), quantization="auto", calibration_data=str(data), eval_data=str(data),
                     output_dir=str(tmp_path / "b"), latency_runs=20)  # fmt: skip
    search = result.report["search"]
    assert result.passed and search["float_fallback"] in ("speed", "budget")
    assert search["chosen"]["metrics"]["float_model"]
    assert result.report["gate"]["drop"] == pytest.approx(0.0, abs=1e-6)
    decision = next(d for d in result.report["decisions"] if d["asked"].startswith("--quantization auto"))
    assert decision["done"] == "the float model (fp32)"
    assert "nearest" in decision["why"] or "faster than fp32" in decision["why"]
    saved = onnx.load(str(tmp_path / "b" / "model.onnx"))
    assert [n.op_type for n in saved.graph.node] == [n.op_type for n in onnx.load(str(path)).graph.node]


EVALUATOR = '''
import numpy as np

def mask_iou(outputs, reference, labels):
    """IoU (%) of the artifact's thresholded mask against fp32's."""
    a, b = outputs["mask"] > 0.5, reference["mask"] > 0.5
    union = np.logical_or(a, b).sum()
    return 100.0 if union == 0 else 100.0 * np.logical_and(a, b).sum() / union
'''


def test_custom_evaluator_drives_the_search_and_the_report(gate_models, tmp_path):
    """--metric file.py:function: the search and the gate use the evaluator's score, which is in
    report.json and report.html; a callable works from the Python API."""
    evaluator = tmp_path / "my_metrics.py"
    evaluator.write_text(EVALUATOR)
    common = dict(
        quantization="auto",
        calibration_data=str(gate_models["segmenter_data"]),
        eval_data=str(gate_models["segmenter_data"]),
        latency_runs=10,
        search_budget="2",
    )
    result = convert(str(gate_models["segmenter"]), metric=f"{evaluator}:mask_iou", output_dir=str(tmp_path / "a"),
                     **common)  # fmt: skip
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    custom = report["fidelity"]["custom"]
    assert custom["evaluator"] == "mask_iou" and custom["reference_score"] == pytest.approx(100.0)
    assert 80.0 < custom["artifact_score"] <= 100.0
    assert report["gate"]["drop"] == pytest.approx(custom["drop"])
    assert "mask_iou" in report["gate"]["metric"]
    assert all("mask_iou" in p["metrics"]["metric"] for p in report["search"]["points"])
    html = (tmp_path / "a" / "report.html").read_text()
    assert "mask_iou" in html and f"{custom['artifact_score']:.4g}"[:4] in html
    assert result.passed == (custom["drop"] <= 1.0 or report["search"]["float_fallback"] is not None)

    def lower_error(outputs, reference, labels):
        return float(np.abs(outputs["mask"] - reference["mask"]).mean() * 100), "lower"

    api = convert(str(gate_models["segmenter"]), metric=lower_error, output_dir=str(tmp_path / "b"), **common)
    assert api.report["fidelity"]["custom"]["higher_is_better"] is False
    assert api.report["fidelity"]["custom"]["reference_score"] == pytest.approx(0.0)
    with pytest.raises(InputError, match="has no function"):
        convert(str(gate_models["segmenter"]), metric=f"{evaluator}:missing", output_dir=str(tmp_path / "c"),
                **common)  # fmt: skip
    assert not (tmp_path / "c").exists()


def test_yes_no_probabilities_are_compared_as_decisions():
    """A Sigmoid with one value per sample (VAD, word boundaries, binary classifiers): the gate
    counts flipped decisions at 0.5, not the distance of the probabilities."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 1])
    p = onnx.helper.make_tensor_value_info("p", onnx.TensorProto.FLOAT, ["batch", 1])
    sigmoid = onnx.helper.make_node("Sigmoid", ["x"], ["p"])
    model = onnx.helper.make_model(onnx.helper.make_graph([sigmoid], "g", [x], [p]))
    probabilities = np.array([[0.1], [0.45], [0.55], [0.9]], np.float32)
    gate = choose_gate(model, ["p"], [probabilities], metric="auto", budget=None, labels=False)
    assert gate.measures[0].measure == "binary"
    nudged = probabilities + np.float32(0.1)  # 0.45 crosses 0.5: one decision of four flips
    figures = gate.assess([probabilities], [nudged], ["p"], None)
    assert figures["outputs"]["p"]["drop"] == pytest.approx(25.0)


def test_concatenated_boxes_and_scores_are_values():
    """A YOLO-style head ([N, 4 + classes, anchors], boxes and scores concatenated) is compared by
    relative error, not as per-token features."""
    boxes = onnx.helper.make_tensor_value_info("boxes", onnx.TensorProto.FLOAT, ["batch", 4, 300])
    scores = onnx.helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, ["batch", 2, 300])
    out = onnx.helper.make_tensor_value_info("detections", onnx.TensorProto.FLOAT, ["batch", 6, 300])
    concat = onnx.helper.make_node("Concat", ["boxes", "scores"], ["detections"], axis=1)
    model = onnx.helper.make_model(onnx.helper.make_graph([concat], "g", [boxes, scores], [out]))
    sample = np.random.default_rng(0).random((2, 6, 300)).astype(np.float32)
    gate = choose_gate(model, ["detections"], [sample], metric="auto", budget=None, labels=False)
    assert gate.measures[0].measure == "rel_error" and "concatenated" in gate.measures[0].evidence


def test_float_fallback_reasons():
    """The floor on synthetic search points: a fast feasible plan stands; a slow one, or none
    within the budget, gives the float model with the nearest point named."""
    from edgeport.quantize.search import SearchPoint, SearchResult

    def result(points: list[SearchPoint]) -> SearchResult:
        best = max((p for p in points if p.feasible), key=lambda p: p.speedup or 0.0, default=points[0])
        return SearchResult(best, points, ["a", "b"], any(p.feasible for p in points), None, 1.0)

    fast = SearchPoint(["a"], 0.5, True, speedup=1.8)
    assert float_fallback(result([fast])) is None
    slow = SearchPoint([], 0.2, True, speedup=0.7)
    reason, why = float_fallback(result([slow]))
    assert reason == "speed" and "0.70x" in why
    lossy = SearchPoint([], 3.0, False, speedup=2.5)
    all_float = SearchPoint(["a", "b"], 0.0, True, speedup=1.0)  # the float model: no quantized plan
    reason, why = float_fallback(result([lossy, all_float]))
    assert reason == "budget" and "--max_accuracy_drop 3" in why and "2.50x" in why
