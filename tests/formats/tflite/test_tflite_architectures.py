"""TFLite coverage beyond plain CNNs (issue #4): every architecture of
:mod:`tests.models_architectures` goes through ``edgeport.api.convert(..., output_format="tflite",
quantization="int8")`` once (session cache), which writes both the fp32 TFLite baseline and
the full-integer int8 model; both are run in LiteRT on held-out inputs and compared with the
fp32 PyTorch model.

Bounds (measured on these seeded models, with margin):

* fp32: max abs error <= 1e-4 x max(1, peak |reference|) per output (measured <= 6e-7 relative).
* int8: per-sample cosine >= 0.98 (mean over samples, per output; measured >= 0.996) and,
  for class scores, top-1 agreement >= 0.8 on 16 samples.

Routes that made the hard cases work are asserted through the export notes: LSTM/GRU are
unrolled per time step before onnx2tf (its own recurrent conversion fails), and int64 token
ids are fed to the calibrator as int64. A recurrent model that cannot be unrolled (dynamic
sequence length) fails with exit 4 naming the op and what to try.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from edgeport.api import convert
from edgeport.core.errors import ConversionError, EdgeportError
from edgeport.core.plan import uniform_plan
from edgeport.formats.tflite.export import export_tflite
from edgeport.formats.tflite.onnx2tf_gelu import canonical_gelu
from edgeport.formats.tflite.onnx2tf_unroll import unroll_recurrent
from edgeport.profiles import resolve_profile
from edgeport.runtime.litert import LiteRTRunner
from tests import models_architectures
from tests.models_architectures import ARCHITECTURES, ArchSpec

CALIBRATION = 16
TEST_SAMPLES = 16
FP32_RTOL = 1e-4
INT8_MIN_COSINE = 0.98
INT8_MIN_TOP1 = 0.8


class _Converted:
    """One architecture converted by the pipeline: its bundle, or the error it raised."""

    def __init__(self, bundle: Path | None, report: dict | None, error: EdgeportError | None) -> None:
        self.bundle = bundle
        self.report = report
        self.error = error

    def runner(self, file_name: str) -> LiteRTRunner:
        """A LiteRT runner of a .tflite in the bundle, fed in ONNX layout as the manifest says."""
        manifest = json.loads((self.bundle / "manifest.json").read_text())
        return LiteRTRunner(self.bundle / file_name, **manifest["runner"]["kwargs"])


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """``get(name)``: the architecture converted to TFLite int8 (and its fp32 baseline), once per session."""
    root = tmp_path_factory.mktemp("architectures")
    cache: dict[str, _Converted] = {}

    def get(name: str) -> _Converted:
        if name not in cache:
            spec = ARCHITECTURES[name]
            folder = root / name
            folder.mkdir()
            np.savez(folder / "calibration.npz", **spec.make_inputs(CALIBRATION, seed=2))
            np.savez(folder / "eval.npz", **spec.make_inputs(CALIBRATION, seed=1))
            try:
                result = convert(
                    f"{models_architectures.__file__}:make_{name}",
                    output_format="tflite",
                    quantization="int8",
                    input_shape=[f"{n}:{','.join(map(str, s))}" for n, (s, _) in spec.inputs.items()],
                    input_dtype=[f"{n}:{d}" for n, (_, d) in spec.inputs.items()],
                    calibration_data=str(folder / "calibration.npz"),
                    eval_data=str(folder / "eval.npz"),
                    output_dir=str(folder / "bundle"),
                    latency_runs=3,
                )
                cache[name] = _Converted(result.bundle_dir, result.report, None)
            except EdgeportError as exc:
                cache[name] = _Converted(None, None, exc)
        return cache[name]

    return get


def _run(spec: ArchSpec, runner: LiteRTRunner, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run the .tflite one sample at a time (its batch is fixed to 1); return outputs stacked."""
    count = len(next(iter(inputs.values())))
    rows = [runner.run({k: v[i : i + 1] for k, v in inputs.items()}) for i in range(count)]
    return [np.concatenate([row[j] for row in rows]) for j in range(spec.outputs)]


def _cosines(reference: np.ndarray, actual: np.ndarray) -> np.ndarray:
    a = reference.reshape(len(reference), -1).astype(np.float64)
    b = actual.reshape(len(actual), -1).astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def _all_notes(report: dict) -> str:
    """Every note of the run (export notes included), as one string to search."""
    return json.dumps(report)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_fp32_tflite_matches_torch(converted, name):
    spec = ARCHITECTURES[name]
    result = converted(name)
    assert result.error is None, f"{name}: exit {result.error.exit_code}: {result.error.one_line()}"
    inputs = spec.make_inputs(TEST_SAMPLES, seed=3)
    reference = spec.reference(inputs)
    actual = _run(spec, result.runner("baseline_fp32.tflite"), inputs)
    for ref, got in zip(reference, actual, strict=True):
        assert got.shape == ref.shape
        error = float(np.abs(ref - got).max())
        assert error <= FP32_RTOL * max(1.0, float(np.abs(ref).max())), f"{name}: fp32 max abs error {error:.3g}"


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_int8_tflite_close_to_torch(converted, name):
    spec = ARCHITECTURES[name]
    result = converted(name)
    assert result.error is None, f"{name}: exit {result.error.exit_code}: {result.error.one_line()}"
    assert result.report["target"]["scheme"] == "int8"
    inputs = spec.make_inputs(TEST_SAMPLES, seed=3)
    reference = spec.reference(inputs)
    actual = _run(spec, result.runner(result.report["target"]["artifact"]), inputs)
    for i, (ref, got) in enumerate(zip(reference, actual, strict=True)):
        cosine = float(_cosines(ref, got).mean())
        assert cosine >= INT8_MIN_COSINE, f"{name} output {i}: int8 mean cosine {cosine:.4f}"
        if spec.kind == "logits" and i == 0 and ref.shape[-1] > 1:
            agreement = float(np.mean(ref.argmax(-1) == got.argmax(-1)))
            assert agreement >= INT8_MIN_TOP1, f"{name}: int8 top-1 agreement {agreement:.2f}"
    # The pipeline's own fidelity figures say the same thing.
    for output in result.report["fidelity"]["outputs"].values():
        assert output["cosine_mean"] >= INT8_MIN_COSINE


@pytest.mark.parametrize("name", ["lstm_seq", "gru_seq"])
def test_recurrent_layers_are_unrolled_and_say_so(converted, name):
    result = converted(name)
    assert result.error is None
    notes = _all_notes(result.report)
    op = "LSTM" if name == "lstm_seq" else "GRU"
    assert f"{op} " in notes and "unrolled into per-step MatMul/Sigmoid/Tanh" in notes


def test_token_ids_stay_int64_in_the_int8_model(converted):
    """The int8 model takes the token ids as int64 (calibrated with int64 ids, not cast to float)."""
    from ai_edge_litert.interpreter import Interpreter

    result = converted("token_transformer")
    assert result.error is None
    interpreter = Interpreter(model_path=str(result.bundle / result.report["target"]["artifact"]))
    assert [np.dtype(d["dtype"]).name for d in interpreter.get_input_details()] == ["int64"]
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "FULLY_CONNECTED" in ops and "SOFTMAX" in ops
    assert "fed input 'ids' as int64" in _all_notes(result.report)


def test_gelu_becomes_the_tflite_gelu_builtin(converted):
    """The opset-18 export writes GELU with Erf (no TFLite builtin): rewritten, it is one GELU op."""
    from ai_edge_litert.interpreter import Interpreter

    result = converted("vit_attention")
    assert result.error is None
    assert "Erf-based GELU subgraph(s) rewritten" in _all_notes(result.report)
    interpreter = Interpreter(model_path=str(result.bundle / "baseline_fp32.tflite"))
    assert "GELU" in {op["op_name"] for op in interpreter._get_ops_details()}


def test_recurrent_op_that_cannot_be_unrolled_fails_with_exit_4(tmp_path):
    """A dynamic sequence length cannot be unrolled; onnx2tf's own LSTM then fails: exit 4 names the op."""
    model = models_architectures.make_lstm_seq()
    seq = torch.export.Dim("seq", min=2, max=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (torch.randn(1, 12, 8),),
            dynamo=True,
            external_data=False,
            report=False,
            verbose=False,
            dynamic_shapes=({1: seq},),
        )
    path = tmp_path / "lstm_dynamic.onnx"
    onnx.save(program.model_proto, path)
    profile, _ = resolve_profile("generic-cpu")
    plan = uniform_plan(program.model_proto, "none", profile)
    with pytest.raises(ConversionError) as caught:
        export_tflite(path, plan, tmp_path / "out.tflite", tmp_path / "work", None)
    assert caught.value.exit_code == 4
    assert "LSTM" in caught.value.message and "sequence length is not static" in caught.value.message
    assert "--input_shape" in caught.value.hint


# --- the rewrites alone, against ONNX Runtime (no TensorFlow, fast) ---


class _Gelus(torch.nn.Module):
    """nn.GELU and two hand-written erf GELUs in other operand orders, plus an Erf used elsewhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # different inputs per variant, so the exporter cannot share one Div/Erf between them
        a = torch.nn.functional.gelu(x)
        y = x + 1.0
        b = y * 0.5 * (1.0 + torch.erf(y / math.sqrt(2.0)))
        z = x - 1.0
        c = 0.5 * z * (1.0 + torch.erf(z * (1 / math.sqrt(2.0))))
        w = x * 3.0
        e = torch.erf(w / math.sqrt(2.0))  # also used outside the GELU: must stay as it is
        return a + b + c + w * 0.5 * (1.0 + e) + e


@pytest.mark.parametrize("dynamo", [True, False])
def test_erf_gelu_rewrite_is_exact(dynamo):
    x = torch.randn(3, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            model = torch.onnx.export(
                _Gelus(), (x,), dynamo=True, opset_version=18, external_data=False, report=False, verbose=False
            ).model_proto
        else:
            buffer = io.BytesIO()
            torch.onnx.export(_Gelus(), (x,), buffer, dynamo=False, input_names=["x"], opset_version=17)
            model = onnx.load_from_string(buffer.getvalue())
    rewritten, count = canonical_gelu(model)
    assert count == 3
    onnx.checker.check_model(rewritten)
    feeds = {model.graph.input[0].name: x.numpy()}
    np.testing.assert_allclose(_ort(rewritten, feeds)[0], _ort(model, feeds)[0], rtol=1e-6, atol=1e-6)


# --- the unroller alone, against ONNX Runtime's LSTM/GRU kernels (no TensorFlow, fast) ---

_RNG = np.random.default_rng(0)
_H, _I, _T, _B = 5, 3, 4, 2


def _recurrent_model(kind: str, layout: int, direction: str, lbr: int, arrays: dict, h0: np.ndarray):
    dirs = 2 if direction == "bidirectional" else 1
    x_shape = [_T, _B, _I] if layout == 0 else [_B, _T, _I]
    outs = ["Y", "Yh"] + (["Yc"] if kind == "LSTM" else [])
    extra = {"linear_before_reset": lbr} if kind == "GRU" else {"activations": ["Sigmoid", "Relu", "Tanh"] * dirs}
    inputs = ["X", "W", "R", "B", "", "h0"] + (["h0"] if kind == "LSTM" else [])
    node = helper.make_node(kind, inputs, outs, hidden_size=_H, layout=layout, direction=direction, **extra)
    state = h0 if layout == 0 else h0.transpose(1, 0, 2).copy()
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outs],
        [numpy_helper.from_array(a, n) for n, a in arrays.items()] + [numpy_helper.from_array(state, "h0")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _ort(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


@pytest.mark.parametrize(
    "kind,layout,direction,lbr",
    [
        ("LSTM", 0, "bidirectional", 0),
        ("LSTM", 1, "reverse", 0),
        ("GRU", 0, "forward", 0),
        ("GRU", 1, "bidirectional", 1),
    ],
)
def test_unrolled_recurrent_node_equals_onnx_runtime(kind, layout, direction, lbr):
    """Unrolled = the ONNX operator; layout 1 is checked against ORT's layout-0 twin (ORT has no layout 1)."""
    gates, dirs = {"LSTM": 4, "GRU": 3}[kind], 2 if direction == "bidirectional" else 1
    arrays = {
        "W": _RNG.standard_normal((dirs, gates * _H, _I)).astype(np.float32),
        "R": _RNG.standard_normal((dirs, gates * _H, _H)).astype(np.float32),
        "B": _RNG.standard_normal((dirs, 2 * gates * _H)).astype(np.float32),
    }
    h0 = _RNG.standard_normal((dirs, _B, _H)).astype(np.float32)
    x = _RNG.standard_normal((_T, _B, _I)).astype(np.float32)
    expected = _ort(_recurrent_model(kind, 0, direction, lbr, arrays, h0), {"X": x})
    result = unroll_recurrent(_recurrent_model(kind, layout, direction, lbr, arrays, h0))
    assert len(result.unrolled) == 1 and not result.skipped
    assert not any(n.op_type == kind for n in result.model.graph.node)
    got = _ort(result.model, {"X": x if layout == 0 else x.transpose(1, 0, 2).copy()})
    if layout == 1:
        got = [got[0].transpose(1, 2, 0, 3)] + [g.transpose(1, 0, 2) for g in got[1:]]
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
