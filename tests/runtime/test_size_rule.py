"""The size rule of edgeport.runtime (issue 18, model routing) on a hand-made bundle: the text
model's dynamic-int8 copy as the small model, the fp32 model as the large one. Long rows (by the
mask's sum) get the small model's outputs, short rows the large one's; malformed rules are
one-line InputErrors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnxruntime.quantization import QuantType, quantize_dynamic

from edgeport.core.errors import InputError
from edgeport.runtime.bundle import load_bundle
from edgeport.runtime.cascade import ELEMENTS, MASK_SUM, sample_sizes
from tests.runtime.text_model import text_data, text_model

THRESHOLD = 20
RULE = {
    "rule": "size",
    "small": "model.onnx",
    "large": "baseline_fp32.onnx",
    "input": "attention_mask",
    "axis": 1,
    "threshold": THRESHOLD,
    "measure": MASK_SUM,
}


def _bundle(folder: Path, rule: dict) -> Path:
    """A bundle folder with the fp32 text model, its dynamic int8 copy and a manifest holding ``rule``."""
    text_model(folder / "baseline_fp32.onnx", width=64)
    quantize_dynamic(str(folder / "baseline_fp32.onnx"), str(folder / "model.onnx"), weight_type=QuantType.QInt8)
    runner = {"kind": "onnxruntime", "file": "model.onnx", "kwargs": {}}
    (folder / "manifest.json").write_text(json.dumps({"runner": runner, "cascade": rule}))
    return folder


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return _bundle(tmp_path_factory.mktemp("size_rule"), RULE)


def _run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["tokens", "pooled"], feeds)


def test_long_rows_get_the_small_models_outputs_and_short_rows_the_large(bundle, tmp_path):
    data = np.load(text_data(tmp_path / "rows.npz", count=32, width=40))
    feeds = {name: data[name] for name in data.files}
    lengths = feeds["attention_mask"].sum(axis=1)
    assert 0 < np.sum(lengths > THRESHOLD) < len(lengths)
    deployed = load_bundle(bundle)
    outputs, to_large = deployed.run_routed(feeds)
    np.testing.assert_array_equal(to_large, lengths <= THRESHOLD)
    small, large = _run(bundle / "model.onnx", feeds), _run(bundle / "baseline_fp32.onnx", feeds)
    assert not np.allclose(small[1], large[1], atol=1e-4), "int8 differs from fp32: the routing is visible"
    for name, by_small, by_large in zip(["tokens", "pooled"], small, large, strict=True):
        rows = to_large.reshape(-1, *[1] * (by_small.ndim - 1))
        np.testing.assert_allclose(outputs[name], np.where(rows, by_large, by_small), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(deployed.run(feeds)["pooled"], outputs["pooled"])


def test_a_batch_of_long_rows_runs_the_small_model_only(bundle):
    ids = np.arange(1, 31, dtype=np.int64).reshape(1, 30) % 49 + 1
    feeds = {"input_ids": np.repeat(ids, 3, axis=0), "attention_mask": np.ones((3, 30), dtype=np.int64)}
    deployed = load_bundle(bundle)
    outputs, to_large = deployed.run_routed(feeds)
    assert not to_large.any() and deployed.opened == ["model.onnx"]
    np.testing.assert_array_equal(outputs["pooled"], _run(bundle / "model.onnx", feeds)[1])
    with pytest.raises(InputError, match="size routing reads input 'attention_mask'"):
        deployed.run_routed({"input_ids": feeds["input_ids"]})


def test_sample_sizes_count_the_mask_or_the_elements():
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    np.testing.assert_array_equal(sample_sizes({"m": mask}, "m", MASK_SUM), [3, 5, 1])
    np.testing.assert_array_equal(sample_sizes({"x": np.zeros((2, 3, 4, 5))}, "x", ELEMENTS), [60, 60])
    with pytest.raises(InputError, match="needs a batch axis"):
        sample_sizes({"m": np.array(3)}, "m", MASK_SUM)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rule": "length"}, "rule 'length'"),
        ({"measure": "max softmax"}, "measure 'max softmax'"),
        ({"input": None}, "malformed cascade section"),
        ({"threshold": "long"}, "malformed cascade section"),
    ],
)
def test_a_malformed_size_rule_is_a_one_line_input_error(tmp_path, change, message):
    rule = {k: v for k, v in {**RULE, **change}.items() if v is not None}
    (tmp_path / "manifest.json").write_text(
        json.dumps({"runner": {"kind": "onnxruntime", "file": "m.onnx"}, "cascade": rule})
    )
    with pytest.raises(InputError, match=message) as raised:
        load_bundle(tmp_path)
    assert "\n" not in raised.value.message
