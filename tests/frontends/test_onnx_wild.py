"""ONNX files from the wild: other exporters (tf2onnx), old opsets and IR versions, quirks
(initializers listed as inputs, shapeless outputs, ':' and '/' in names, arbitrary symbolic
dims), and nothing left outside the bundle whatever the outcome."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeport.api import convert
from edgeport.core.errors import ConversionError
from edgeport.runtime.ort import OrtRunner
from tests.conftest import REPO
from tests.models_keras import TRAIN, digits_data

SCHEMES = ("int8", "int8-dynamic", "auto")
FAST = {"latency_runs": 5, "warmup_runs": 1}


def _keras_bn_cnn():
    """A small Keras CNN with batchnorm, max pool and dense, trained on the 8x8 digits."""
    import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((8, 8, 1), name="image")
    x = layers.Conv2D(16, 3, padding="same", name="conv1")(inputs)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    x = layers.MaxPooling2D(name="pool")(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(32, activation="relu", name="hidden")(x)
    model = keras.Model(inputs, layers.Dense(10, name="logits")(x))
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def _old_exporter_model() -> onnx.ModelProto:
    """What pre-2019 exporters wrote: IR 3 with every initializer also a graph input, opset 11,
    names with ':' and '/', a symbolic batch named 'N', and an output without a shape."""
    rng = np.random.default_rng(0)
    weights = {
        "conv/W:0": rng.normal(0, 0.3, (16, 3, 3, 3)),
        "conv/B:0": rng.normal(0, 0.1, 16),
        "fc/W:0": rng.normal(0, 0.3, (10, 16)),
        "fc/B:0": np.zeros(10),
    }
    nodes = [
        helper.make_node(
            "Conv", ["input:0", "conv/W:0", "conv/B:0"], ["conv/out:0"], pads=[1, 1, 1, 1], name="conv/Conv"
        ),
        helper.make_node("Relu", ["conv/out:0"], ["relu:0"], name="relu/Relu"),
        helper.make_node("MaxPool", ["relu:0"], ["pool:0"], kernel_shape=[2, 2], strides=[2, 2], name="pool/MaxPool"),
        helper.make_node("GlobalAveragePool", ["pool:0"], ["gap:0"], name="gap"),
        helper.make_node("Flatten", ["gap:0"], ["flat:0"], name="flatten"),
        helper.make_node("Gemm", ["flat:0", "fc/W:0", "fc/B:0"], ["logits:0"], transB=1, name="fc/Gemm"),
    ]
    inputs = [helper.make_tensor_value_info("input:0", TensorProto.FLOAT, ["N", 3, 16, 16])]
    inputs += [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape)) for k, v in weights.items()]
    initializers = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    output = onnx.ValueInfoProto(name="logits:0")
    output.type.tensor_type.elem_type = TensorProto.FLOAT  # no shape field at all
    graph = helper.make_graph(nodes, "old_exporter", inputs, [output], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], producer_name="old-exporter")
    model.ir_version = 3
    return model


def _shape_puzzle_model() -> onnx.ModelProto:
    """A classifier whose learned bias is broadcast to a shape computed at run time (Shape ->
    Abs -> Expand): ORT's symbolic shape inference cannot finish on it, the case in which it
    writes a copy of every weight (here 18 KB, over onnx's 1 KB external-data threshold) into
    the current directory. Logits are close together, so int8 flips some top-1 decisions."""
    rng = np.random.default_rng(1)
    weights = {
        "bias": rng.normal(0, 0.2, (1, 64)),
        "W1": rng.normal(0, 0.2, (64, 64)),
        "W2": rng.normal(0, 0.05, (64, 10)),
    }
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        helper.make_node("Abs", ["shape"], ["target"], name="abs"),
        helper.make_node("Expand", ["bias", "target"], ["bias_full"], name="expand"),
        helper.make_node("Add", ["x", "bias_full"], ["shifted"], name="add"),
        helper.make_node("MatMul", ["shifted", "W1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "W2"], ["logits"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "shape_puzzle",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["unk__7", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["unk__7", 10])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="session")
def wild_onnx(tmp_path_factory) -> dict[str, dict]:
    """The foreign ONNX files and real or fitting data for each, built once per session:
    ``tf2onnx`` (a trained Keras CNN, opset 12), ``old`` (IR 3, opset 11) and ``puzzle``."""
    import tensorflow as tf
    import tf2onnx

    root = tmp_path_factory.mktemp("wild_onnx")
    x, y = digits_data()
    keras_model = _keras_bn_cnn()
    keras_model.fit(x[:TRAIN], y[:TRAIN], epochs=6, batch_size=32, verbose=0)
    spec = (tf.TensorSpec((None, 8, 8, 1), tf.float32, name="image"),)
    proto, _ = tf2onnx.convert.from_keras(keras_model, input_signature=spec, opset=12)
    models = {"tf2onnx": proto, "old": _old_exporter_model(), "puzzle": _shape_puzzle_model()}
    rng = np.random.default_rng(2)
    data = {
        "tf2onnx": {"image": x[TRAIN:]},
        "old": {"input:0": rng.standard_normal((96, 3, 16, 16)).astype(np.float32)},
        "puzzle": {"x": rng.standard_normal((96, 64)).astype(np.float32)},
    }
    calibration = {"tf2onnx": {"image": x[:128]}}
    found = {}
    for name, model in models.items():
        path = root / f"{name}.onnx"
        onnx.save(model, str(path))
        entry = {"path": path, "eval": root / f"{name}_eval.npz", "feeds": data[name]}
        np.savez(entry["eval"], **data[name])
        if name in calibration:
            entry["calibration"] = root / f"{name}_calibration.npz"
            np.savez(entry["calibration"], **calibration[name])
        entry["fp32"] = OrtRunner(path).run(data[name])[0]
        found[name] = entry
    assert [o.version for o in models["tf2onnx"].opset_import if o.domain == ""] == [12]
    assert any(":" in i.name for i in models["tf2onnx"].graph.initializer)
    return found


def _data_options(entry: dict) -> dict[str, str]:
    options = {"eval_data": str(entry["eval"])}
    if "calibration" in entry:
        options["calibration_data"] = str(entry["calibration"])
    return options


def _top1_agreement(artifact: Path, entry: dict) -> float:
    """Top-1 agreement of ``artifact`` (run in ONNX Runtime here) with the original fp32 file."""
    outputs = OrtRunner(artifact).run(entry["feeds"])[0]
    assert outputs.shape == entry["fp32"].shape
    return float(np.mean(outputs.argmax(-1) == entry["fp32"].argmax(-1)))


def _dequantize_axes(model: onnx.ModelProto) -> list[int]:
    """The ``axis`` attributes of DequantizeLinear nodes: per-channel weights have one."""
    return [a.i for n in model.graph.node if n.op_type == "DequantizeLinear" for a in n.attribute if a.name == "axis"]


# --- nothing outside the bundle --------------------------------------------------------------


def _cli(args: list[str], cwd: Path, tmpdir: Path) -> subprocess.CompletedProcess:
    """``edgeport convert`` in a child with ``cwd`` and TMPDIR as given; edgeport's own choice
    on ONNX Runtime's telemetry is under test, so a setting inherited from this process is dropped."""
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env.update({"PYTHONPATH": str(REPO), "TMPDIR": str(tmpdir)})
    command = [sys.executable, "-m", "edgeport.cli.main", "convert", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize(
    ("scheme", "gate", "code"),
    [
        ("int8", None, 0),
        ("int8-dynamic", None, 0),
        ("auto", None, 0),
        ("int8", 0, 3),
        ("int8-dynamic", 0, 3),
        ("auto", 0, 3),  # no quantized plan meets a zero budget: the float model, marked failed
    ],
)
def test_cli_leaves_no_file_outside_the_bundle(wild_onnx, tmp_path, scheme, gate, code):
    """CLI runs on an .onnx source, passing and failing the gate: the working directory and
    TMPDIR hold nothing new afterwards (ORT used to leave uuid-named .data files in the cwd)."""
    entry = wild_onnx["puzzle"]
    cwd, tmpdir, out = tmp_path / "cwd", tmp_path / "tmpdir", tmp_path / "out" / "bundle"
    cwd.mkdir()
    tmpdir.mkdir()
    args = ["--input_model", str(entry["path"]), "--quantization", scheme, "--output_dir", str(out)]
    args += ["--eval_data", str(entry["eval"]), "--latency_runs", "5"]
    if gate is not None:
        args += ["--max_accuracy_drop", str(gate)]
    if scheme == "auto" and gate == 0:  # int8 keeps every top-1 here; its cosine is never exactly 1
        args += ["--metric", "cosine"]
    result = _cli(args, cwd, tmpdir)
    assert result.returncode == code, result.stderr[-2000:]
    assert _listing(cwd) == []
    assert _listing(tmpdir) == []
    assert (out / "report.json").is_file()
    import json

    report = json.loads((out / "report.json").read_text())
    if scheme != "auto":  # the run did reach the case that used to write into the cwd
        assert any("without symbolic shape inference" in note for note in report["notes"])
    if code == 3 and scheme != "auto":
        assert report["gate"]["drop"] > 0
    if code == 3 and scheme == "auto":
        assert report["search"]["float_fallback"] == "budget" and report["status"] == "failed"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_failed_conversion_leaves_no_file_outside(wild_onnx, tmp_path, monkeypatch, scheme):
    """A conversion that fails inside the quantizer (exit 4), after ORT has written its own
    temporary files: nothing new in the cwd or the temp folder, and no bundle. Auto survives
    failing candidates: it returns the float model, and leaves nothing outside the bundle either."""
    import onnxruntime.quantization as ort_quantization

    def failing(real):
        def run(*args, **kwargs):
            real(*args, **kwargs)  # let ORT write whatever it writes, then fail
            raise RuntimeError("simulated quantizer failure")

        return run

    for name in ("quantize_static", "quantize_dynamic"):
        monkeypatch.setattr(ort_quantization, name, failing(getattr(ort_quantization, name)))
    cwd, tmpdir, out = tmp_path / "cwd", tmp_path / "tmpdir", tmp_path / "out" / "bundle"
    cwd.mkdir()
    tmpdir.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    entry = wild_onnx["puzzle"]
    if scheme == "auto":
        result = convert(str(entry["path"]), quantization=scheme, output_dir=str(out), eval_data=str(entry["eval"]),
                         **FAST)  # fmt: skip
        search = result.report["search"]
        assert search["float_fallback"] == "budget" and "simulated quantizer failure" in search["float_fallback_why"]
        assert _listing(cwd) == [] and _listing(tmpdir) == []
        return
    with pytest.raises(ConversionError, match="simulated quantizer failure") as error:
        convert(str(entry["path"]), quantization=scheme, output_dir=str(out), eval_data=str(entry["eval"]), **FAST)
    assert error.value.exit_code == 4
    assert _listing(cwd) == []
    assert _listing(tmpdir) == []
    assert not out.exists()


# --- old opsets and foreign quirks -----------------------------------------------------------

# Top-1 agreement with the fp32 file that int8 must reach: the tf2onnx CNN on 397 real digits,
# the random-weight models on random inputs (their logits are close, so int8 flips a few).
AGREEMENT = {"tf2onnx": 0.97, "old": 0.9}


@pytest.fixture(scope="session")
def wild_runs(wild_onnx, tmp_path_factory) -> dict[tuple[str, str], object]:
    """Each foreign model converted once per scheme (the Results by (model, scheme))."""
    root = tmp_path_factory.mktemp("wild_runs")
    runs = {}
    for name in AGREEMENT:
        entry = wild_onnx[name]
        for scheme in SCHEMES:
            out = root / f"{name}-{scheme}"
            runs[name, scheme] = convert(
                str(entry["path"]), quantization=scheme, output_dir=str(out), **_data_options(entry), **FAST
            )
    return runs


@pytest.mark.parametrize("name", list(AGREEMENT))
@pytest.mark.parametrize("scheme", SCHEMES)
def test_foreign_onnx_converts_and_agrees(wild_onnx, wild_runs, name, scheme):
    """tf2onnx (opset 12, ':' and '/' names, 'unk__' batch) and an IR-3 opset-11 file with
    initializers as inputs and a shapeless output: each scheme gives an artifact that ONNX
    Runtime runs and that agrees with the original file."""
    result = wild_runs[name, scheme]
    agreement = _top1_agreement(result.artifact, wild_onnx[name])
    assert agreement >= AGREEMENT[name], f"{name} {scheme}: top-1 agreement {agreement:.3f}"
    decisions = [d["done"] for d in result.report["decisions"]]
    opset = 12 if name == "tf2onnx" else 11
    upgrade = [d for d in decisions if d.startswith(f"upgraded opset {opset} -> 18, parity max abs err")]
    assert upgrade, decisions
    assert float(upgrade[0].rpartition("err ")[2]) <= 1e-4
    artifact = onnx.load(str(result.artifact))
    assert [o.version for o in artifact.opset_import if o.domain in ("", "ai.onnx")] == [18]
    if scheme == "int8":  # per-channel weights, which opset 12 could not express
        axes = [
            a for n in artifact.graph.node if n.op_type == "DequantizeLinear" for a in n.attribute if a.name == "axis"
        ]
        assert axes
    if name == "old":
        notes = " ".join(result.report["notes"])
        assert "4 initializer(s) were also listed as graph inputs" in notes
        assert "IR version 3 raised to" in notes
        assert "logits:0" in notes  # its shape was inferred


def test_failed_opset_upgrade_falls_back_to_per_tensor(wild_onnx, tmp_path, monkeypatch):
    """When the ONNX version converter fails, int8 keeps the opset, quantizes weights per
    tensor (which opset 10+ supports) and says so, instead of exiting 4."""
    from onnx import version_converter

    def broken(model, target):
        raise RuntimeError("converter failure")

    monkeypatch.setattr(version_converter, "convert_version", broken)
    entry = wild_onnx["tf2onnx"]
    result = convert(
        str(entry["path"]), quantization="int8", output_dir=str(tmp_path / "b"), **_data_options(entry), **FAST
    )
    assert any(
        d["done"].startswith("kept opset 12: int8 weights quantized per tensor") for d in result.report["decisions"]
    )
    assert any("per-tensor weights instead of per-channel" in n for n in result.report["notes"])
    artifact = onnx.load(str(result.artifact))
    assert [o.version for o in artifact.opset_import if o.domain in ("", "ai.onnx")] == [12]
    assert not [
        n for n in artifact.graph.node for a in n.attribute if n.op_type == "DequantizeLinear" and a.name == "axis"
    ]
    assert _top1_agreement(result.artifact, entry) >= AGREEMENT["tf2onnx"]


# --- never worse than ONNX Runtime's own quantizer ---------------------------------------------


class _Reader:
    """The CalibrationDataReader a user writes by hand for quantize_static."""

    def __init__(self, feeds: dict[str, np.ndarray]) -> None:
        self.batches = iter([{k: v[i : i + 1] for k, v in feeds.items()} for i in range(32)])

    def get_next(self):
        return next(self.batches, None)


@pytest.mark.parametrize("name", list(AGREEMENT))
def test_ort_defaults_work_so_edgeport_works(wild_onnx, wild_runs, tmp_path, name):
    """ORT's quantize_dynamic(in, out) and quantize_static(in, out, reader) with their defaults
    give runnable models on the foreign files; edgeport's int8 and int8-dynamic then succeed
    too, and agree with fp32 at least as well as ORT's defaults less one point."""
    from onnxruntime.quantization import quantize_dynamic, quantize_static

    entry = wild_onnx[name]
    peers = {"int8-dynamic": tmp_path / "dynamic.onnx", "int8": tmp_path / "static.onnx"}
    quantize_dynamic(str(entry["path"]), str(peers["int8-dynamic"]))
    quantize_static(str(entry["path"]), str(peers["int8"]), _Reader(entry["feeds"]))
    for scheme, peer in peers.items():
        peer_agreement = _top1_agreement(peer, entry)  # ORT's default runs
        ours = _top1_agreement(wild_runs[name, scheme].artifact, entry)
        assert ours >= peer_agreement - 0.01, f"{name} {scheme}: edgeport {ours:.3f} < ORT default {peer_agreement:.3f}"


@pytest.mark.parametrize("scheme", ["int8", "auto"])
def test_quantizer_failure_falls_back_to_ort_defaults(wild_onnx, tmp_path, monkeypatch, scheme):
    """When the plan's configuration fails in ORT's quantizer, edgeport retries per tensor and
    then with ORT's defaults, and says which one it used, instead of exiting 4. Within one run
    the failing settings are tried once per scheme, not again for every auto candidate."""
    from edgeport.formats.onnx import quantize as onnx_apply

    real = onnx_apply._quantize
    failed: list[str] = []
    built: list[str] = []

    def plan_settings_fail(*args, **kwargs):
        if not args[-1]:  # defaults=False: the plan's own settings
            failed.append(args[2].scheme)
            raise RuntimeError("simulated failure of the plan's settings")
        built.append(args[2].scheme)
        return real(*args, **kwargs)

    monkeypatch.setattr(onnx_apply, "_quantize", plan_settings_fail)
    entry = wild_onnx["tf2onnx"]
    result = convert(
        str(entry["path"]), quantization=scheme, output_dir=str(tmp_path / "b"), **_data_options(entry), **FAST
    )
    if scheme == "int8":
        assert any(
            n.startswith("int8 with ONNX Runtime's default settings, because the plan's scheme: simulated failure")
            for n in result.report["notes"]
        ), result.report["notes"]
    # The plan's settings and per-tensor weights: two failures per scheme in the whole run.
    assert all(failed.count(name) <= 2 for name in set(failed)), failed
    if scheme == "auto":  # several int8 candidates were built, from the remembered fallback
        assert built.count("int8") > 1, built
    assert _top1_agreement(result.artifact, entry) >= AGREEMENT["tf2onnx"]


def test_upgrade_only_for_quantized_onnx_artifacts(wild_onnx):
    """The opset upgrade is for ONNX Q/DQ: an fp32 ONNX run or a TFLite target keeps opset 11."""
    from edgeport.frontends.normalize import upgrade_opset
    from edgeport.frontends.onnx import opset_of, read_onnx
    from edgeport.options.recipe import Recipe

    entry = wild_onnx["old"]
    model = read_onnx(entry["path"])
    feeds = {"input:0": entry["feeds"]["input:0"][:4]}
    reference = [entry["fp32"][:4]]
    for output_format, quantization, upgraded in (("onnx", "int8", 18), ("onnx", "none", 11), ("tflite", "int8", 11)):
        recipe = Recipe(str(entry["path"]), output_format=output_format, quantization=quantization)
        result, decisions = upgrade_opset(model, feeds, reference, recipe.source)
        assert opset_of(result) == upgraded
        assert len(decisions) == (upgraded == 18)


def test_minus_one_dimension_is_a_free_dimension(tmp_path):
    """paddle2onnx writes "any size" as dim_value -1 (PaddleOCR's classifier: x [-1, 3, ?, ?]);
    ONNX Runtime runs it, so edgeport converts it: the -1 becomes a named free dim, int8 runs
    and agrees with ONNX Runtime's own fp32 run at another batch size."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 4])
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "paddle_like", [x], [y], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "paddle_like.onnx"
    onnx.save(model, str(path))
    result = convert(str(path), quantization="int8", output_dir=str(tmp_path / "b"), latency_runs=5)
    assert any("dimension -1" in note for note in result.report["notes"]), result.report["notes"]
    batch = rng.standard_normal((3, 8)).astype(np.float32)
    artifact = OrtRunner(result.artifact).run({"x": batch})[0]
    expected = batch @ onnx.numpy_helper.to_array(weight)
    assert artifact.shape == (3, 4) and np.abs(artifact - expected).max() < 0.05 * np.abs(expected).max()
    # other negative sizes stay refused
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = -2
    onnx.save(model, str(path))
    with pytest.raises(Exception, match="negative dimension"):
        convert(str(path), quantization="none", output_dir=str(tmp_path / "c"))
