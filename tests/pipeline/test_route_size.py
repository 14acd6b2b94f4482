"""Routing by input size (issue 18, ``--route size``) on the small text model fed real sentences
(tests/data/sentences.txt) at their natural length: the picked threshold meets the budget on the
calibration sentences by hand and nothing faster does, edgeport.runtime sends long sentences to
the small (int8) model and short ones to the large (fp32) one, its routed outputs give the
pipeline's eval figures, and bad uses are one-line InputErrors (exit 2)."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

import edgeport
from edgeport.cli.main import main
from edgeport.core.errors import GateFailed, InputError
from edgeport.pipeline.bucket_build import join_samples
from edgeport.pipeline.cascade import pick_threshold, size_candidates, size_figures
from edgeport.runtime.bundle import load_bundle
from edgeport.verify.gate import gate_from_report
from tests.runtime.runtime_only import run_in_runtime_venv
from tests.runtime.text_model import VOCAB, text_model

SENTENCES = Path(__file__).resolve().parents[1] / "data" / "sentences.txt"
BUDGET = 0.005  # points of 100 x (1 - cosine): tighter than int8 on every sentence (about 0.01)
OUTPUTS = ["tokens", "pooled"]
TOKEN_AXES = {"tokens": 1}  # the output that carries the sequence axis, joined token by token


def _tokens(sentence: str) -> list[int]:
    """Word pieces of at most 3 letters, hashed into the model's vocabulary (1..VOCAB-1)."""
    pieces = [word[i : i + 3] for word in sentence.lower().split() for i in range(0, len(word), 3)]
    return [zlib.crc32(p.encode()) % (VOCAB - 1) + 1 for p in pieces]


def _encode(sentences: list[str], width: int) -> dict[str, np.ndarray]:
    """Token ids padded with 0 to ``width`` and the attention mask (1 on the real tokens)."""
    ids = np.zeros((len(sentences), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, sentence in enumerate(sentences):
        tokens = _tokens(sentence)
        ids[row, : len(tokens)], mask[row, : len(tokens)] = tokens, 1
    return {"input_ids": ids, "attention_mask": mask}


def _natural(sentence: str) -> dict[str, np.ndarray]:
    ids = np.array([_tokens(sentence)], dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


SPLIT = [line for line in SENTENCES.read_text().splitlines() if line.strip()]
CALIBRATION, EVAL = SPLIT[0::2], SPLIT[1::2]
WIDTH = max(len(_tokens(s)) for s in SPLIT) + 4  # a tokenizer's padding beyond the longest sentence
MODEL_WIDTH = 256  # wide enough that int8 is faster than fp32, the more so the longer the input
FORCED = float(np.median([len(_tokens(s)) for s in EVAL]))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """The text model and the sentences as token npz files (calibration: even lines, eval: odd)."""
    folder = tmp_path_factory.mktemp("route_size")
    text_model(folder / "text.onnx", width=MODEL_WIDTH)
    np.savez(folder / "calib.npz", **_encode(CALIBRATION, WIDTH))
    np.savez(folder / "eval.npz", **_encode(EVAL, WIDTH))
    return folder


@dataclass
class Routed:
    """A routed bundle: its folder and report.json."""

    bundle_dir: Path
    report: dict


def _convert(folder: Path, name: str, **extra) -> Routed:
    """Convert with --cascade fp32 --route size under BUDGET. The int8 model alone is over
    BUDGET; the gate judges the routed pair, which the bundle serves (a forced threshold may
    still miss it: exit 3, the bundle kept and marked failed)."""
    try:
        options = {"quantization": "int8", **extra}
        result = edgeport.convert(
            str(folder / "text.onnx"),
            calibration_data=str(folder / "calib.npz"),
            eval_data=str(folder / "eval.npz"),
            output_dir=str(folder / name),
            latency_runs=10,
            warmup_runs=2,
            metric="cosine",
            cascade="fp32",
            route="size",
            max_accuracy_drop=BUDGET,
            **options,
        )
        bundle_dir = result.bundle_dir
    except GateFailed as exc:
        assert "accuracy gate failed" in exc.message
        bundle_dir = Path(exc.bundle_dir)
    return Routed(bundle_dir, json.loads((bundle_dir / "report.json").read_text()))


@pytest.fixture(scope="module")
def picked(folder):
    """Routed by size, the threshold picked on the calibration sentences."""
    return _convert(folder, "picked")


@pytest.fixture(scope="module")
def forced(folder):
    """Routed by size at the eval sentences' median length (so both models answer some)."""
    return _convert(folder, "forced", cascade_threshold=FORCED)


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_gate_judges_the_routed_pair(picked):
    gate, section = picked.report["gate"], picked.report["cascade"]
    assert section["eval"]["drop_small_vs_large"] > BUDGET  # int8 alone would fail the gate
    assert gate["passed"] and gate["drop"] == pytest.approx(section["eval"]["drop_vs_large"])
    assert gate["drop"] <= BUDGET and "of the routed pair (routing by size" in gate["metric"]
    assert f"the small model alone: {section['eval']['drop_small_vs_large']:.3f}" in gate["metric"]


def test_manifest_holds_the_size_rule(picked):
    section = json.loads((picked.bundle_dir / "manifest.json").read_text())["cascade"]
    assert section == {
        "rule": "size",
        "small": "model.onnx",
        "large": "baseline_fp32.onnx",
        "input": "attention_mask",
        "axis": 1,
        "threshold": picked.report["cascade"]["threshold"],
        "measure": "mask sum",
    }


def test_long_inputs_get_the_small_models_outputs_and_short_ones_the_large(forced):
    folder = forced.bundle_dir
    small, large = _session(folder / "model.onnx"), _session(folder / "baseline_fp32.onnx")
    deployed = load_bundle(folder)
    lengths = []
    for sentence in EVAL:
        feeds = _natural(sentence)
        outputs, to_large = deployed.run_routed(feeds)
        length = feeds["input_ids"].shape[1]
        lengths.append(length)
        assert bool(to_large[0]) == (length <= FORCED)
        expected = (large if length <= FORCED else small).run(OUTPUTS, feeds)
        for name, value in zip(OUTPUTS, expected, strict=True):
            np.testing.assert_allclose(outputs[name], value, rtol=1e-6, atol=1e-6)
    assert 0 < sum(n > FORCED for n in lengths) < len(lengths), "both models answer some sentences"
    # A tokenizer-padded batch routes each row by its mask's sum, each model running its rows.
    batch = _encode(EVAL, WIDTH)
    outputs, to_large = deployed.run_routed(batch)
    np.testing.assert_array_equal(to_large, batch["attention_mask"].sum(1) <= FORCED)
    for name, value_small, value_large in zip(
        OUTPUTS, small.run(OUTPUTS, batch), large.run(OUTPUTS, batch), strict=True
    ):
        expected = np.where(to_large.reshape(-1, *[1] * (value_small.ndim - 1)), value_large, value_small)
        np.testing.assert_allclose(outputs[name], expected, rtol=1e-5, atol=1e-5)
    assert deployed.opened == ["model.onnx", "baseline_fp32.onnx"]


def _drop(report: dict, small_runs: list, large_runs: list, answered_small: np.ndarray) -> float:
    """The run's gate measure (read back from report.json) of the routed outputs vs fp32's."""
    gate = gate_from_report(report)
    reference = [join_samples([r[i] for r in large_runs], TOKEN_AXES.get(n)) for i, n in enumerate(OUTPUTS)]
    routed = [
        join_samples(
            [s[i] if m else g[i] for s, g, m in zip(small_runs, large_runs, answered_small, strict=True)],
            TOKEN_AXES.get(n),
        )
        for i, n in enumerate(OUTPUTS)
    ]
    return float(gate.assess(reference, routed, OUTPUTS, None)["drop"])


def test_picked_threshold_meets_the_budget_and_nothing_faster_does(picked):
    section, folder = picked.report["cascade"], picked.bundle_dir
    small, large = _session(folder / "model.onnx"), _session(folder / "baseline_fp32.onnx")
    feeds = [_natural(s) for s in CALIBRATION]
    sizes = np.array([f["input_ids"].shape[1] for f in feeds])
    small_runs = [small.run(OUTPUTS, f) for f in feeds]
    large_runs = [large.run(OUTPUTS, f) for f in feeds]
    threshold = section["threshold"]
    assert section["threshold_source"] == "calibration data" and threshold in set(size_candidates(sizes))
    drop = _drop(picked.report, small_runs, large_runs, sizes > threshold)
    assert drop <= BUDGET + 1e-9
    assert drop == pytest.approx(section["calibration"]["drop_vs_large"], abs=1e-4)
    assert section["calibration"]["small_answers"] == pytest.approx(np.mean(sizes > threshold), abs=1e-4)
    # Every candidate that would be faster on the calibration sentences is over the budget.
    best = section["calibration"]["mean_latency_ms"]["cascade"]
    curve = section["calibration"]["curve"]
    assert [p[0] for p in curve] == list(size_candidates(sizes).astype(float))
    for candidate, share, candidate_drop, mean_ms in curve:
        assert share == pytest.approx(np.mean(sizes > candidate), abs=1e-4)
        if mean_ms < best - 1e-12:
            assert candidate_drop > BUDGET, (candidate, candidate_drop, mean_ms)
    # All-small is over this budget here, so the rule matters: the drop grows with the share small.
    assert section["calibration"]["drop_small_vs_large"] > BUDGET


def test_runtime_routing_gives_the_pipelines_eval_figures(forced):
    section = forced.report["cascade"]["eval"]
    deployed = load_bundle(forced.bundle_dir)
    runs = [deployed.run_routed(_natural(s)) for s in EVAL]
    answered_small = np.array([not flag[0] for _, flag in runs])
    assert section["small_answers"] == pytest.approx(answered_small.mean(), abs=1e-4)
    folder = forced.bundle_dir
    large = _session(folder / "baseline_fp32.onnx")
    large_runs = [large.run(OUTPUTS, _natural(s)) for s in EVAL]
    routed_runs = [[outputs[n] for n in OUTPUTS] for outputs, _ in runs]
    # The routed outputs are the small model's where it answered: the drop of all "small" here.
    drop = _drop(forced.report, routed_runs, large_runs, np.ones(len(EVAL), dtype=bool))
    assert drop == pytest.approx(section["drop_vs_large"], abs=1e-4)
    assert section["samples"] == len(EVAL) and section["sizes"]["max"] == max(len(_tokens(s)) for s in EVAL)
    ms = section["mean_latency_ms"]
    assert min(ms["small"], ms["large"]) > 0 and min(ms["small"], ms["large"]) <= ms["cascade"] <= max(ms.values())


def test_size_figures_and_the_pick_by_numbers():
    sizes = np.array([3, 5, 1, 8])
    ms_small, ms_large = np.array([1.0, 1.5, 0.5, 2.0]), np.array([3.0, 5.0, 1.0, 8.0])

    def drop(small: np.ndarray) -> float:
        return 0.4 * float(np.sum(small & (sizes < 5)))  # short inputs are where the small model errs

    point = size_figures(sizes, 4, drop, ms_small, ms_large, "test")
    assert point["small_answers"] == 0.5 and point["drop_vs_large"] == 0.0 and point["drop_small_vs_large"] == 0.8
    assert point["mean_latency_ms"]["cascade"] == pytest.approx((3.0 + 1.5 + 1.0 + 2.0) / 4)
    picked = pick_threshold(size_candidates(sizes), lambda t: size_figures(sizes, t, drop, ms_small, ms_large, ""), 0.5)
    assert picked["threshold"] == 1  # sizes 3, 5, 8 small: drop 0.4, the fastest within 0.5
    assert (
        pick_threshold(size_candidates(sizes), lambda t: size_figures(sizes, t, drop, ms_small, ms_large, ""), 0.1)[
            "threshold"
        ]
        == 3
    )


def test_refusals_are_one_line_input_errors_with_exit_2(tmp_path):
    from edgeport.options.recipe import Recipe

    with pytest.raises(InputError, match="--route size needs --cascade"):
        Recipe("m.onnx", route="size")
    with pytest.raises(InputError, match="--route size and --buckets"):
        Recipe("m.onnx", cascade="fp32", route="size", buckets="seq=8,16")
    with pytest.raises(InputError, match="a size >= 0"):
        Recipe("m.onnx", cascade="fp32", route="size", cascade_threshold=-1)
    assert Recipe("m.onnx", cascade="fp32", route="size", cascade_threshold=17).cascading.cascade_threshold == 17.0
    model = _static_model(tmp_path / "static.onnx")
    args = ["convert", "--input_model", str(model), "--quantization", "int8", "--cascade", "fp32", "--route", "size"]
    result = CliRunner().invoke(main, args + ["--output_dir", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "--route size needs an input with a variable axis" in result.output
    assert not (tmp_path / "out").exists()
    result = CliRunner().invoke(main, ["convert", "--input_model", "m.onnx", "--route", "size"])
    assert result.exit_code == 2 and "--route size needs --cascade" in result.output


def _static_model(path: Path) -> Path:
    """A [1, 4] -> [1, 3] Gemm with fixed shapes: every input has the same size."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "static",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


ROUTE = """
import json, sys
import numpy as np
from edgeport.runtime.bundle import load_bundle
data = np.load(sys.argv[2])
outputs, to_large = load_bundle(sys.argv[1]).run_routed({k: data[k] for k in data.files})
heavy = [m for m in ("torch", "onnx", "tensorflow", "edgeport.pipeline") if m in sys.modules]
print(json.dumps({"to_large": to_large.tolist(), "pooled": outputs["pooled"].tolist(), "heavy": heavy}))
"""


def test_routes_by_size_with_numpy_and_onnxruntime_only(forced, runtime_venv, tmp_path):
    np.savez(tmp_path / "batch.npz", **_encode(EVAL, WIDTH))
    result = run_in_runtime_venv(runtime_venv, ROUTE, [forced.bundle_dir, tmp_path / "batch.npz"], tmp_path)
    outputs, to_large = load_bundle(forced.bundle_dir).run_routed(_encode(EVAL, WIDTH))
    assert result["heavy"] == [] and result["to_large"] == to_large.tolist()
    np.testing.assert_allclose(np.array(result["pooled"]), outputs["pooled"], rtol=1e-6, atol=1e-6)


def test_report_html_and_summary_line_show_the_size_rule(forced):
    from edgeport.cli.main import cascade_line

    html = (forced.bundle_dir / "report.html").read_text()
    section = forced.report["cascade"]
    assert "<h2>Routing by input size</h2>" in html and "mask sum of <code>attention_mask</code>" in html
    assert f"{section['eval']['drop_small_vs_large']:.3f} / {section['eval']['drop_vs_large']:.3f}" in html
    line = cascade_line(section)
    assert line.startswith(f"route by size: attention_mask mask sum > {FORCED:.6g} -> model.onnx")
    assert f"small answers {100 * section['eval']['small_answers']:.1f}%" in line


def test_a_scheme_without_calibration_still_picks_on_the_calibration_data(folder):
    """Dynamic int8 calibrates nothing; the threshold is still picked on --calibration_data
    (20 sentences), not on the eval data (cut to 12 here)."""
    routed = _convert(folder, "dynamic", quantization="int8-dynamic", eval_samples=12)
    section = routed.report["cascade"]
    assert section["calibration"]["samples"] == len(CALIBRATION) and section["eval"]["samples"] == 12
    sizes = np.array([len(_tokens(s)) for s in CALIBRATION])
    assert section["calibration"]["small_answers"] == pytest.approx(np.mean(sizes > section["threshold"]), abs=1e-4)


def test_the_size_layout_reads_the_mask_else_the_first_inputs_elements():
    from edgeport.core.model import TensorSpec
    from edgeport.pipeline.size_route import resolve_size_layout

    text = [
        TensorSpec("input_ids", ["batch", "sequence"], "int64"),
        TensorSpec("attention_mask", ["batch", "sequence"], "int64"),
    ]
    outputs = [TensorSpec("tokens", ["batch", "sequence", 8]), TensorSpec("pooled", ["batch", 8])]
    layout = resolve_size_layout(text, outputs)
    assert (layout.input, layout.axis, layout.measure) == ("attention_mask", 1, "mask sum")
    assert layout.inputs == {"input_ids": 1, "attention_mask": 1} and layout.outputs == {"tokens": 1}
    image = resolve_size_layout(
        [TensorSpec("pixels", ["batch", 3, "height", "width"])], [TensorSpec("y", ["batch", 10])]
    )
    assert (image.input, image.axis, image.measure) == ("pixels", 2, "elements")
    with pytest.raises(
        InputError, match=r"--route size needs an input with a variable axis \(first input: x \['batch', 4\]\)"
    ):
        resolve_size_layout([TensorSpec("x", ["batch", 4])], [TensorSpec("y", ["batch", 3])])
