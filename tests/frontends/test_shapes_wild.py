"""Shapes and inputs as they come (issue 15, point 4): a stateful audio model with a rank-0
int64 sample rate and its batch at axis 1 of the state (like Silero VAD), ragged data, and the
batch/latency machinery under them.

The stateful model is built once per session (tests/models_for_tests.py has no recurrent
model with state I/O): a conv front end and an LSTM cell over 512 audio samples, its state
``[2, batch, 128]`` in and out, ``sr`` scaling the signal (so a random ``sr`` would visibly be
the wrong input), exported by torch.onnx with symbolic ``batch`` and ``samples`` dims.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from edgeport.api import convert
from edgeport.cli.main import main
from edgeport.core.errors import InputError
from edgeport.core.model import TensorSpec, batch_axes
from edgeport.data import load_dataset, parse_preprocess, synthetic_dataset
from edgeport.verify.evaluate import latency_feeds, run_dataset

SAMPLES = 512
STATE = 128
VAD_SPECS = [
    TensorSpec("input", ["batch", "samples"]),
    TensorSpec("state", [2, "batch", STATE]),
    TensorSpec("sr", [], "int64"),
]


class TinyVAD(torch.nn.Module):
    """Silero-VAD-like: (audio [B, S], state [2, B, 128], sr int64 scalar) -> (speech prob [B, 1], state)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 32, kernel_size=16, stride=8)
        self.proj = torch.nn.Linear(32, STATE)
        self.cell = torch.nn.LSTMCell(STATE, STATE)
        self.head = torch.nn.Linear(STATE, 1)

    def forward(self, x: torch.Tensor, state: torch.Tensor, sr: torch.Tensor):
        gain = sr.to(torch.float32) / 16000.0
        features = torch.relu(self.conv((x * gain).unsqueeze(1))).mean(-1)
        h, c = self.cell(torch.relu(self.proj(features)), (state[0], state[1]))
        return torch.sigmoid(self.head(h)), torch.stack([h, c])


def _audio(rng: np.random.Generator, length: int) -> np.ndarray:
    t = np.arange(length) / 16000
    return (0.3 * np.sin(2 * np.pi * rng.uniform(100, 800) * t) + 0.05 * rng.standard_normal(length)).astype(np.float32)


@pytest.fixture(scope="session")
def vad(tmp_path_factory) -> dict[str, Path]:
    """The stateful model as .onnx, eval data (sample-first, sr as one 0-d value) and ragged data."""
    root = tmp_path_factory.mktemp("vad")
    torch.manual_seed(0)
    model = TinyVAD().eval()
    args = (torch.randn(1, SAMPLES), torch.zeros(2, 1, STATE), torch.tensor(16000, dtype=torch.int64))
    files = {"onnx": root / "vad.onnx"}
    torch.onnx.export(
        model,
        args,
        str(files["onnx"]),
        dynamo=False,
        opset_version=17,
        input_names=["input", "state", "sr"],
        output_names=["output", "stateN"],
        dynamic_axes={
            "input": {0: "batch", 1: "samples"},
            "state": {1: "batch"},
            "output": {0: "batch"},
            "stateN": {1: "batch"},
        },
    )
    rng = np.random.default_rng(0)
    count = 24
    state = (0.5 * np.tanh(rng.standard_normal((count, 2, STATE)))).astype(np.float32)  # sample-first
    files["data"] = root / "vad_data.npz"
    np.savez(
        files["data"],
        input=np.stack([_audio(rng, SAMPLES) for _ in range(count)]),
        state=state,
        sr=np.asarray(16000, np.int64),
    )
    # Ragged: clips of 256, 512 or 1024 samples, one array per sample (keys input/0, input/1...).
    lengths = [256, 512, 512, 1024] * 4
    ragged = {f"input/{i}": _audio(rng, n) for i, n in enumerate(lengths)}
    files["ragged"] = root / "vad_ragged.npz"
    np.savez(files["ragged"], **ragged, state=state[: len(lengths)], sr=np.asarray(16000, np.int64))
    return files


def _ort_outputs(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def test_batch_axes_follow_the_named_batch_dim():
    assert batch_axes(VAD_SPECS) == {"input": 0, "state": 1, "sr": None}
    assert batch_axes([TensorSpec("x", [1, 3, 8, 8])]) == {"x": 0}  # all static: axis 0
    assert VAD_SPECS[1].concrete_shape(4, "batch") == [2, 4, STATE]


def test_npz_rows_are_fed_at_the_models_batch_axis(vad):
    dataset = load_dataset(str(vad["data"]), VAD_SPECS, None, parse_preprocess(None))
    assert len(dataset) == 24 and not dataset.ragged
    feeds = dataset.batch(0, 3)
    assert feeds["input"].shape == (3, SAMPLES) and feeds["state"].shape == (2, 3, STATE)
    assert feeds["sr"].shape == () and int(feeds["sr"]) == 16000  # the user's value, not noise
    with np.load(vad["data"]) as data:
        np.testing.assert_array_equal(feeds["state"][:, 1], data["state"][1])


def test_synthetic_int_scalar_is_a_real_value_not_noise():
    specs = [TensorSpec("input", ["batch", SAMPLES]), *VAD_SPECS[1:]]
    dataset = synthetic_dataset(specs, 8, 0, 1)
    feeds = dataset.batch(0, 4)
    assert feeds["sr"].shape == () and int(feeds["sr"]) == 16000
    assert feeds["state"].shape == (2, 4, STATE)
    assert any("'sr'" in note and "16000" in note for note in dataset.describe()["applied"])
    other = synthetic_dataset([TensorSpec("x", ["batch", 4]), TensorSpec("steps", [], "int64")], 4, 0, 1)
    assert int(other.batch(0, 2)["steps"]) == 1
    # A source that knows a typical size (Hugging Face: 32 tokens) sizes the free dim.
    tokens = synthetic_dataset([TensorSpec("input_ids", ["batch", "sequence"], "int64")], 4, 0, 1, {"sequence": 32})
    assert tokens.batch(0, 2)["input_ids"].shape == (2, 32)
    assert any("'sequence' set to 32" in note for note in tokens.describe()["applied"])
    # A symbolic length with no data is one line that says what to pass.
    with pytest.raises(InputError, match="'samples'") as info:
        synthetic_dataset(VAD_SPECS, 4, 0, 1)
    assert "--eval_data" in info.value.one_line()


def test_outputs_are_joined_along_their_batch_axis(vad):
    dataset = load_dataset(str(vad["data"]), VAD_SPECS, 6, parse_preprocess(None))
    dataset.set_outputs([TensorSpec("output", ["batch", 1]), TensorSpec("stateN", [2, "batch", STATE])])

    class Runner:
        def run(self, feeds):
            return _ort_outputs(vad["onnx"], feeds)

    probability, state = run_dataset(Runner(), dataset, 1, False)
    assert probability.shape == (6, 1) and state.shape == (6, 2, STATE)  # sample-first, per sample
    whole = _ort_outputs(vad["onnx"], dataset.batch(0, 6))  # one batch of 6: batch at axis 1
    np.testing.assert_allclose(state, np.moveaxis(whole[1], 1, 0), atol=1e-5)


def test_stateful_model_int8_dynamic_through_the_cli(vad, tmp_path):
    """The crash of issue 15 ("invalid literal for int() with base 10: 'batch'"): exit 0 now."""
    out = tmp_path / "bundle"
    result = CliRunner().invoke(
        main,
        [
            "convert",
            "--input_model",
            str(vad["onnx"]),
            "--quantization",
            "int8-dynamic",
            "--eval_data",
            str(vad["data"]),
            "--output_dir",
            str(out),
            "--latency_runs",
            "30",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert (out / "report.html").is_file()
    outputs = report["fidelity"]["outputs"]
    assert report["fidelity"]["samples"] == 24
    assert outputs["output"]["max_abs_error"] < 0.01 and outputs["stateN"]["cosine_min"] > 0.999, outputs
    assert report["latency"]["reference"]["p50_ms"] > 0 and report["latency"]["speedup"] > 0
    assert all("error" not in figures for figures in report["memory"].values()), report["memory"]
    with np.load(out / "reference.npz", allow_pickle=False) as reference:
        assert reference["inputs/sr"].shape == () and int(reference["inputs/sr"]) == 16000
        assert reference["inputs/state"].shape == (2, 1, STATE)
        expected = _ort_outputs(
            out / "baseline_fp32.onnx", {k[7:]: reference[k] for k in reference.files if k.startswith("inputs/")}
        )
        np.testing.assert_allclose(reference["outputs/stateN"], expected[1], atol=1e-5)
    # The bundle re-verifies: the latency batch is cut along each input's batch axis (none for sr).
    from edgeport.verify.bundle_check import verify_bundle

    section = verify_bundle(out, runs=10)
    assert section["latency"]["artifact"]["p50_ms"] > 0


def test_first_samples_cut_along_the_batch_axis():
    from edgeport.runtime.timing import first_samples

    feeds = {"input": np.zeros((4, 8)), "state": np.zeros((2, 4, STATE)), "sr": np.asarray(16000)}
    cut = first_samples(feeds, 1, {"input": 0, "state": 1, "sr": None})
    assert {k: v.shape for k, v in cut.items()} == {"input": (1, 8), "state": (2, 1, STATE), "sr": ()}
    assert first_samples({"x": np.zeros((4, 3))}, 2)["x"].shape == (2, 3)  # default: axis 0


def test_stateful_model_auto_through_the_api(vad, tmp_path):
    result = convert(
        str(vad["onnx"]),
        quantization="auto",
        eval_data=str(vad["data"]),
        calibration_data=str(vad["data"]),
        output_dir=str(tmp_path / "auto"),
        latency_runs=20,
        warmup_runs=2,
    )
    report = result.report
    assert (result.bundle_dir / "report.json").is_file()
    outputs = report["fidelity"]["outputs"]
    assert outputs["output"]["max_abs_error"] < 0.02 and outputs["stateN"]["cosine_mean"] > 0.999, outputs


def test_ragged_npz_runs_each_shape_and_times_the_real_shapes(vad, tmp_path):
    dataset = load_dataset(str(vad["ragged"]), VAD_SPECS, None, parse_preprocess(None))
    assert len(dataset) == 16 and dataset.ragged and dataset.describe()["shapes"] == 3
    assert dataset.spans(8)[:3] == [(0, 1), (1, 3), (3, 4)]  # equal neighbours share a batch
    assert {f["input"].shape[1] for f in latency_feeds(dataset, 1)} == {256, 512, 1024}
    assert len(load_dataset(str(vad["ragged"]), VAD_SPECS, 5, parse_preprocess(None))) == 5
    result = convert(
        str(vad["onnx"]),
        quantization="int8-dynamic",
        eval_data=str(vad["ragged"]),
        output_dir=str(tmp_path / "ragged"),
        latency_runs=30,
        warmup_runs=2,
    )
    report = result.report
    assert report["fidelity"]["samples"] == 16 and report["data"]["eval"]["shapes"] == 3
    shapes = report["latency"]["shapes"]
    assert "real shapes" in shapes["measured_on"] and len(shapes["by_shape"]) == 3
    assert sum(s["runs"] for s in shapes["by_shape"]) == 30
    assert report["fidelity"]["outputs"]["stateN"]["cosine_min"] > 0.999
    html = (tmp_path / "ragged" / "report.html").read_text()
    assert "real shapes" in html
    for entry in shapes["by_shape"]:  # each shape's row is in the page
        assert f"<td>{entry['shape']}</td>" in html


def test_ragged_npz_mistakes_are_one_line(tmp_path):
    specs = [TensorSpec("x", ["batch", "n"])]
    path = tmp_path / "gap.npz"
    np.savez(path, **{"x/0": np.ones(3, np.float32), "x/2": np.ones(4, np.float32)})
    with pytest.raises(InputError, match="skip index 1"):
        load_dataset(str(path), specs, None, parse_preprocess(None))
    path = tmp_path / "both.npz"
    np.savez(path, **{"x/0": np.ones(3, np.float32), "x": np.ones((2, 3), np.float32)})
    with pytest.raises(InputError, match="both an array"):
        load_dataset(str(path), specs, None, parse_preprocess(None))


def test_ragged_calibration_with_histogram_calibrators(vad, tmp_path):
    """ORT's percentile/entropy calibrators stack one collect's batches with np.asarray, which
    fails on shapes that differ: the reader hands them over one batch at a time."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    from edgeport.quantize.calibrate import DatasetReader

    dataset = load_dataset(str(vad["ragged"]), VAD_SPECS, None, parse_preprocess(None))
    reader = DatasetReader(dataset, 8)
    assert len(reader) == len(dataset.spans(8))
    out = tmp_path / "percentile.onnx"
    quantize_static(
        str(vad["onnx"]),
        str(out),
        reader,
        quant_format=QuantFormat.QDQ,
        calibrate_method=CalibrationMethod.Percentile,
        extra_options={"CalibStridedMinMax": 1},
    )
    feeds = dataset.batch(0, 1)
    expected, actual = _ort_outputs(vad["onnx"], feeds), _ort_outputs(out, feeds)
    assert np.abs(expected[0] - actual[0]).max() < 0.05


def test_unnamed_dims_of_a_state_are_its_batch(vad, tmp_path):
    """Silero VAD's real file names no dim (input [?, ?], state [2, ?, 128]): the one free dim of a
    tensor whose leading dim is fixed above 1 is its batch, so sample-first data fits; a leading
    fixed 1 ([1, ?, 80]: a static batch with a free length) is not taken for a state."""
    import onnx

    from edgeport.frontends.onnx import value_info_spec

    model = onnx.load(str(vad["onnx"]))
    for value in [*model.graph.input, *model.graph.output]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.Clear()  # unnamed, like the exporter of the real model left them
    unnamed = tmp_path / "vad_unnamed.onnx"
    onnx.save(model, str(unnamed))
    state = next(v for v in model.graph.input if v.name == "state")
    assert value_info_spec(state).shape == [2, "batch", STATE]
    features = onnx.helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, [1, None, 80])
    assert value_info_spec(features).shape == [1, "dim1", 80]
    result = convert(str(unnamed), quantization="int8-dynamic", eval_data=str(vad["data"]),
                     output_dir=str(tmp_path / "bundle"), latency_runs=10)  # fmt: skip
    assert result.passed and result.report["fidelity"]["outputs"]["output"]["cosine_min"] > 0.99


def test_free_axis_zero_of_every_input_is_one_batch():
    """tf2onnx names each free dim apart: two inputs [unk__1, 21] and [unk__2, 21] share the batch."""
    import onnx

    from edgeport.frontends.onnx import graph_input_specs

    a = onnx.helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, ["unk__1", 21])
    b = onnx.helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, ["unk__2", 21])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["unk__3", 42])
    concat = onnx.helper.make_node("Concat", ["a", "b"], ["y"], axis=1)
    model = onnx.helper.make_model(onnx.helper.make_graph([concat], "g", [a, b], [y]))
    specs = graph_input_specs(model)
    assert [s.shape for s in specs] == [["batch", 21], ["batch", 21]]
    assert batch_axes(specs) == {"a": 0, "b": 0}
