"""--buckets end to end on a small text model: one static int8 artifact per bucket from one
plan, each verified on its eval samples, and the manifest's rule served by edgeport.runtime
(in this python and in one with only numpy + onnxruntime)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

import edgeport
from edgeport.core.errors import InputError
from edgeport.runtime.bundle import load_bundle
from tests.runtime.runtime_only import run_in_runtime_venv
from tests.runtime.text_model import text_data, text_model

SIZES = (8, 16, 32)
EVAL = 48


@pytest.fixture(scope="module")
def bucketed(tmp_path_factory):
    """The text model converted to int8 ONNX with --buckets seq=8,16,32 (eval rows of natural
    lengths 3..40, padded to 40), and its fp32 model."""
    folder = tmp_path_factory.mktemp("buckets")
    model, data = text_model(folder / "text.onnx"), text_data(folder / "data.npz", count=EVAL)
    result = edgeport.convert(
        str(model),
        quantization="int8",
        eval_data=str(data),
        calibration_data=str(data),
        output_dir=str(folder / "out"),
        latency_runs=10,
        warmup_runs=2,
        buckets="seq=32,8,16",
        metric="cosine",  # embeddings and token states: the gate compares them by cosine
    )
    return result, model


def _sentence(length: int, seed: int = 1) -> dict[str, np.ndarray]:
    ids = np.random.default_rng(seed).integers(1, 50, (1, length)).astype(np.int64)
    return {"input_ids": ids, "attention_mask": np.ones((1, length), dtype=np.int64)}


def _fp32(model, feeds):
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return dict(zip(["tokens", "pooled"], session.run(["tokens", "pooled"], feeds), strict=True))


def _cosine(a, b) -> float:
    return float(np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_each_bucket_is_a_static_artifact_with_the_plans_precision(bucketed):
    result, _ = bucketed
    manifest = json.loads((result.bundle_dir / "manifest.json").read_text())
    section = manifest["buckets"]
    assert section["sizes"] == list(SIZES) and section["dim"] == "sequence"
    assert section["files"] == [f"model_seq{s}.onnx" for s in SIZES]
    assert section["inputs"] == {"input_ids": 1, "attention_mask": 1} and section["outputs"] == {"tokens": 1}
    assert section["mask_input"] == "attention_mask" and section["rule"] == "smallest bucket that fits"
    main_ops = sorted(n.op_type for n in onnx.load(str(result.artifact)).graph.node)
    for size, file in zip(SIZES, section["files"], strict=True):
        assert file in manifest["files"]  # hashed into the bundle like every file
        model = onnx.load(str(result.bundle_dir / file))
        assert [[d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim] for i in model.graph.input] == [
            ["batch", size],
            ["batch", size],
        ]
        assert sorted(n.op_type for n in model.graph.node) == main_ops  # the same plan: same Q/DQ pattern


def test_every_eval_sample_is_verified_in_its_bucket(bucketed):
    result, _ = bucketed
    lengths = np.load(result.bundle_dir.parent / "data.npz")["attention_mask"].sum(axis=1)
    checks = result.report["buckets"]
    counts = [b["samples"] for b in checks["buckets"]]
    assert counts == [
        int(np.sum((lengths > low) & (lengths <= high))) for low, high in zip((0, *SIZES[:-1]), SIZES, strict=True)
    ]
    assert (
        checks["longer_than_largest"] == int(np.sum(lengths > SIZES[-1]))
        and sum(counts) + checks["longer_than_largest"] == EVAL
    )
    for bucket in checks["buckets"]:
        assert bucket["cosine_min"] > 0.999, bucket  # int8 vs fp32 at the natural length
        # The run's gate measure on the bucket's samples, within the default budget.
        assert bucket["within_budget"] and 0 <= bucket["budget_use"] <= 1 and bucket["metric"], bucket
    html = (result.bundle_dir / "report.html").read_text()
    assert "Shape buckets" in html and "model_seq16.onnx" in html


def test_runtime_routes_pads_and_unpads(bucketed):
    result, model = bucketed
    deployed = load_bundle(result.bundle_dir)
    feeds = _sentence(5)
    outputs = deployed.run(feeds)
    assert deployed.opened == ["model_seq8.onnx"]
    assert outputs["tokens"].shape == (1, 5, 8)
    expected = _fp32(model, feeds)
    assert _cosine(outputs["pooled"], expected["pooled"]) > 0.999
    # What the runtime did by hand: pad ids with 0 and the mask with 0 to 8, run the bucket file.
    session = onnxruntime.InferenceSession(str(result.bundle_dir / "model_seq8.onnx"))
    padded = {name: np.pad(array, ((0, 0), (0, 3))) for name, array in feeds.items()}
    tokens, pooled = session.run(["tokens", "pooled"], padded)
    np.testing.assert_array_equal(outputs["pooled"], pooled)
    np.testing.assert_array_equal(outputs["tokens"], tokens[:, :5])
    # No mask given: the runtime builds it (ones on the real tokens).
    built = deployed.run({"input_ids": feeds["input_ids"]})
    np.testing.assert_array_equal(built["pooled"], outputs["pooled"])
    deployed.run(_sentence(17))
    assert deployed.opened == ["model_seq8.onnx", "model_seq32.onnx"]


def test_padding_to_a_fixed_length_routes_by_the_real_length(bucketed):
    result, _ = bucketed
    deployed = load_bundle(result.bundle_dir)
    natural = deployed.run(_sentence(5))
    # As a tokenizer padding to max_length=40 gives it: ids padded with 0, mask 0 past 5 tokens.
    padded = {name: np.pad(array, ((0, 0), (0, 35))) for name, array in _sentence(5).items()}
    outputs = deployed.run(padded)
    assert deployed.opened == ["model_seq8.onnx"]  # 40 given, 5 real: bucket 8, not "too long"
    np.testing.assert_array_equal(outputs["pooled"], natural["pooled"])
    assert outputs["tokens"].shape == (1, 40, 8)
    np.testing.assert_array_equal(outputs["tokens"][:, :5], natural["tokens"])
    assert not outputs["tokens"][:, 5:].any()


def test_too_long_or_mismatched_inputs_are_input_errors(bucketed):
    deployed = load_bundle(bucketed[0].bundle_dir)
    with pytest.raises(InputError, match="longer than the largest bucket"):
        deployed.run(_sentence(33))
    with pytest.raises(InputError, match="share one seq length"):
        deployed.run({"input_ids": _sentence(5)["input_ids"], "attention_mask": np.ones((1, 6), np.int64)})


def test_unknown_axis_is_refused(tmp_path):
    model, data = text_model(tmp_path / "text.onnx"), text_data(tmp_path / "data.npz", count=8)
    with pytest.raises(InputError, match="not a dynamic dim") as caught:
        edgeport.convert(
            str(model), quantization="none", eval_data=str(data), output_dir=str(tmp_path / "o"), buckets="time=8"
        )
    assert caught.value.hint == "dynamic dims: sequence"
    assert not (tmp_path / "o").exists()  # refused before anything was built
    with pytest.raises(InputError, match="height and width together") as caught:
        edgeport.convert(
            str(model), quantization="none", eval_data=str(data), output_dir=str(tmp_path / "o"), buckets="image=224"
        )
    assert "bucket one named dim instead" in caught.value.hint and not (tmp_path / "o").exists()


SERVE = """
import json, sys
import numpy as np
from edgeport.runtime.bundle import load_bundle
deployed = load_bundle(sys.argv[1])
out = deployed.run({"input_ids": np.arange(1, 12, dtype=np.int64)[None]})
print(json.dumps({"pooled": out["pooled"].tolist(), "tokens": list(out["tokens"].shape), "opened": deployed.opened,
                  "torch": "torch" in sys.modules or "onnx" in sys.modules}))
"""


def test_bucketed_bundle_serves_with_numpy_and_onnxruntime_only(bucketed, runtime_venv, tmp_path):
    served = run_in_runtime_venv(runtime_venv, SERVE, [bucketed[0].bundle_dir], tmp_path)
    assert served["opened"] == ["model_seq16.onnx"] and served["tokens"] == [1, 11, 8] and not served["torch"]
    here = load_bundle(bucketed[0].bundle_dir).run({"input_ids": np.arange(1, 12, dtype=np.int64)[None]})
    np.testing.assert_allclose(np.array(served["pooled"]), here["pooled"], rtol=1e-6, atol=1e-7)


def test_cli_summary_names_each_bucket(bucketed):
    from edgeport.cli.main import bucket_line

    line = bucket_line(bucketed[0].report["buckets"])
    counts = [b["samples"] for b in bucketed[0].report["buckets"]["buckets"]]
    assert line.startswith("buckets (seq, smallest bucket that fits): 8 (")
    assert f"32 ({counts[2]} samples, " in line and "longer than the largest, not run" in line


def test_verify_reruns_every_bucket_file(bucketed, tmp_path):
    from edgeport.verify.bundle_check import verify_bundle

    copy = tmp_path / "bundle"
    shutil.copytree(bucketed[0].bundle_dir, copy)
    section = verify_bundle(copy, runs=3, warmup=1)
    rerun = section["buckets"]
    reference = np.load(copy / "reference.npz")
    samples = len(reference["outputs/pooled"])
    assert sum(b["samples"] for b in rerun["buckets"]) + rerun["longer_than_largest"] == samples
    assert [b["file"] for b in rerun["buckets"]] == [f"model_seq{s}.onnx" for s in SIZES]
    for bucket in rerun["buckets"]:
        if bucket["samples"]:
            assert bucket["cosine_min"] > 0.99 and bucket["max_abs_diff"] < 0.5
    rows = [row["figure"] for row in section["table"] if row["figure"].startswith("bucket seq=")]
    assert len(rows) == len(SIZES)
    saved = json.loads(Path(section["report_json"]).read_text())
    assert saved["verification"]["buckets"] == rerun
