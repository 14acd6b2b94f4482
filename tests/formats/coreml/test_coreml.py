"""Core ML export (issue #5): the bundled model to .mlpackage for the metal profile in fp16, int8
weights and 4-bit palettization, read back from the saved package; emulated accuracy on Linux;
the auto search's mixed package against precision_plan.json; bundles carrying a folder artifact;
image-typed inputs; TensorFlow/Keras sources through coremltools' TF2 frontend; a palettized plan
refused for ONNX/TFLite; the real Core ML run on macOS (skipped elsewhere, with the reason)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import numpy as np
import pytest

from edgeport.api import convert
from edgeport.core.errors import ConversionError, InputError
from edgeport.formats.coreml.inspect import inspect_package
from edgeport.formats.coreml.tools import import_coremltools
from edgeport.verify.bundle_check import check_files, load_manifest, verify_bundle
from tests.conftest import EXAMPLES, REPO

DATA = dict(
    calibration_data=str(EXAMPLES / "fashion_mnist_calib.npz"), eval_data=str(EXAMPLES / "fashion_mnist_test_1k.npz")
)
SCHEMES = ("fp16", "int8-weight", "palettize-4")
NOT_MAC = platform.system() != "Darwin"
MAC_ONLY = "Core ML predictions run only on macOS (coremltools: 'Model prediction is only supported on macOS')"


@pytest.fixture(scope="session")
def fashion_coreml(tmp_path_factory) -> dict:
    """The bundled Fashion-MNIST CNN as Core ML packages for metal, one per scheme (converted once)."""
    root = tmp_path_factory.mktemp("coreml")
    return {
        scheme: convert(
            str(EXAMPLES / "fashion_cnn.pt2"),
            output_format="coreml",
            quantization=scheme,
            optimize_for="metal",
            output_dir=str(root / scheme),
            **DATA,
        )
        for scheme in SCHEMES
    }


@pytest.fixture(scope="session")
def fashion_auto(tmp_path_factory):
    """``--quantization auto --output_format coreml --optimize_for metal`` on the bundled model."""
    out = tmp_path_factory.mktemp("coreml-auto") / "bundle"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "convert.py"),
            "--input_model",
            str(EXAMPLES / "fashion_cnn.pt2"),
            "--output_format",
            "coreml",
            "--quantization",
            "auto",
            "--optimize_for",
            "metal",
            "--calibration_data",
            DATA["calibration_data"],
            "--eval_data",
            DATA["eval_data"],
            "--output_dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # The summary says what was not measured rather than printing numbers.
    assert "emulated" in result.stdout and "latency: not run" in result.stdout
    return out


def _weights_by_layer(bundle) -> dict[str, dict]:
    """Read the saved package and return its weight entries by plan layer (via the manifest's
    record of which Core ML constant holds which ONNX node's weight)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    weights = manifest["format_facts"]["weights"]
    structure = inspect_package(bundle / "model.mlpackage")
    by_layer: dict[str, list[dict]] = {}
    for entry in structure["weights"]:
        for fact in weights.values():
            if entry["weight"] == fact["const"] or entry["weight"].startswith(fact["const"] + "_"):
                by_layer.setdefault(fact["layer"], []).append(entry)
    return by_layer


def test_packages_load_and_hold_the_compression_asked_for(fashion_coreml):
    ct = import_coremltools()
    expected = {
        "fp16": ("const", "FLOAT16", "fp16"),
        "int8-weight": ("constexpr_blockwise_shift_scale", "INT8", "int8-weight"),
        "palettize-4": ("constexpr_lut_to_dense", "UINT4", "palettize-4"),
    }
    sizes = {}
    for scheme, result in fashion_coreml.items():
        package = result.artifact
        assert package.suffix == ".mlpackage" and package.is_dir()
        spec = ct.models.MLModel(str(package), skip_model_load=True).get_spec()
        assert spec.WhichOneof("Type") == "mlProgram"
        assert [i.name for i in spec.description.input] == ["x"]  # named as in the source
        structure = inspect_package(package)
        storage, dtype, precision = expected[scheme]
        assert len(structure["weights"]) == 5  # 4 convs (BatchNorm folded) + the classifier
        for entry in structure["weights"]:
            assert (entry["storage"], entry["dtype"], entry["precision"]) == expected[scheme]
            assert entry["compute"] == "FLOAT16"
        # Every layer compressed, the 288-weight first conv too (coremltools' default threshold skips it).
        applied = result.report["precision_plan"]["applied"]
        assert set(applied.values()) == {precision} and len(applied) == 5
        assert result.report["target"]["scheme"] == scheme
        assert "Core ML conversion route: torch.export" in result.report["notes"]
        sizes[scheme] = structure["weight_bin_bytes"]
    # 241k weights: 2 bytes each in fp16; int8 about half that (+ scales, zero points); 4-bit a quarter.
    assert 480_000 < sizes["fp16"] < 490_000
    assert 0.49 < sizes["int8-weight"] / sizes["fp16"] < 0.55
    assert 0.22 < sizes["palettize-4"] / sizes["fp16"] < 0.30
    fp32 = fashion_coreml["fp16"].report["size"]
    assert fp32["reference_file"] == "baseline_fp32.mlpackage" and 1.9 < fp32["ratio"] < 2.05


def test_emulated_accuracy_is_labelled_and_within_bounds(fashion_coreml):
    bounds = {"fp16": 0.2, "int8-weight": 0.5, "palettize-4": 2.5}  # emulated drop, points of top-1
    for scheme, result in fashion_coreml.items():
        report = result.report
        fidelity = report["fidelity"]
        assert fidelity["samples"] == 1000 and abs(fidelity["reference_top1"] - 92.8) < 0.01
        assert fidelity["emulated"].startswith("emulated:")
        assert fidelity["reference_top1"] - fidelity["artifact_top1"] <= bounds[scheme], scheme
        assert report["latency"]["not_run"] and report["latency"]["measured"].startswith("not run")
        assert report["latency"]["speedup"] is None and report["latency"]["artifact"] is None
        assert report["memory"] == {"not_run": report["latency"]["measured"]}
        assert report["environment"]["runner"]["runtime"] == "coreml (emulated in onnxruntime)"
    # The emulation is not the fp32 model: fp16 rounding changes the logits a little.
    first = next(iter(fashion_coreml["fp16"].report["fidelity"]["outputs"].values()))
    assert 0 < first["max_abs_error"] < 0.1 and first["cosine_mean"] > 0.99999
    html = (fashion_coreml["palettize-4"].bundle_dir / "report.html").read_text()
    assert "emulated" in html and "not run" in html and "constexpr_lut_to_dense" in html


def test_bundle_hashes_the_package_folder(fashion_coreml, tmp_path):
    bundle = fashion_coreml["int8-weight"].bundle_dir
    manifest = load_manifest(bundle)
    assert manifest["runner"]["kind"] == "coreml" and manifest["runner"]["file"] == "model.mlpackage"
    assert manifest["runner"]["kwargs"]["compute_units"] == "CPU_AND_GPU"
    assert set(manifest["directories"]) == {"model.mlpackage", "baseline_fp32.mlpackage"}
    assert any(name.startswith("model.mlpackage/") and name.endswith("weight.bin") for name in manifest["files"])
    assert check_files(bundle, manifest) == len(manifest["files"])
    # A file slipped into the package changes nothing per-file, but the folder entry catches it.
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    (copy / "model.mlpackage" / "Data" / "extra.bin").write_bytes(b"x")
    with pytest.raises(InputError, match="model.mlpackage"):
        check_files(copy, manifest)


@pytest.mark.skipif(not NOT_MAC, reason="on macOS the local run works; this checks the message elsewhere")
def test_local_verify_off_macos_says_where_to_run(fashion_coreml):
    with pytest.raises(InputError, match="only on macOS.*ssh://"):
        verify_bundle(fashion_coreml["fp16"].bundle_dir, runs=2)


def test_device_harness_runs_coreml_only_on_macos(fashion_coreml, tmp_path):
    """The harness a Mac runs over ssh: on this host it must fail cleanly (exit 4, one line)."""
    bundle = fashion_coreml["fp16"].bundle_dir
    manifest = load_manifest(bundle)
    np.savez(tmp_path / "inputs.npz", x=np.zeros((1, 1, 28, 28), np.float32))
    job = {
        "artifact": {"kind": "coreml", "file": str(bundle / "model.mlpackage"), "kwargs": manifest["runner"]["kwargs"]},
        "reference": None,
        "inputs": str(tmp_path / "inputs.npz"),
        "input_names": ["x"],
        "output_names": manifest["runner"]["kwargs"]["output_names"],
    }
    (tmp_path / "job.json").write_text(json.dumps(job))
    harness = REPO / "edgeport" / "verify" / "harness.py"
    done = subprocess.run([sys.executable, str(harness), str(tmp_path / "job.json")], capture_output=True, text=True)
    document = json.loads(done.stdout.strip().splitlines()[-1])
    if NOT_MAC:
        assert done.returncode == 4 and "only on macOS" in document["error"]
    else:
        assert done.returncode == 0 and document["runtime"]["runtime"] == "coreml"


def test_auto_mixed_package_matches_the_plan(fashion_auto):
    plan = json.loads((fashion_auto / "precision_plan.json").read_text())
    report = json.loads((fashion_auto / "report.json").read_text())
    planned = {name: layer["precision"] for name, layer in plan["layers"].items()}
    # Mixed: some layers palettized/quantized, others kept uncompressed in fp16.
    assert "fp16" in planned.values() and len(set(planned.values())) > 1
    found = _weights_by_layer(fashion_auto)
    assert set(found) == set(planned)
    for layer, precision in planned.items():
        assert {entry["precision"] for entry in found[layer]} == {precision}, layer
        if precision == "fp16":
            assert all(e["storage"] == "const" and e["dtype"] == "FLOAT16" for e in found[layer])
        else:
            assert all(e["storage"].startswith("constexpr_") for e in found[layer])
    assert report["precision_plan"]["applied"] == planned
    search = report["search"]
    assert search["met_budget"] and all(p["speedup"] is None for p in search["points"])  # nothing timed here
    assert report["fidelity"]["emulated"] and report["gate"]["passed"] and report["gate"]["drop"] <= 1.0 + 1e-9


def test_clear_errors_for_other_profiles_and_sources(tmp_path, tiny_files):
    with pytest.raises(InputError, match="does not run coreml"):
        convert(str(EXAMPLES / "fashion_cnn.pt2"), output_format="coreml", optimize_for="x86-avx2", quantization="fp16")
    with pytest.raises(InputError, match="PyTorch or TensorFlow/Keras source.*no ONNX frontend"):
        convert(
            str(tiny_files["onnx"]),
            output_format="coreml",
            optimize_for="metal",
            quantization="fp16",
            output_dir=str(tmp_path / "onnx"),
        )
    assert not (tmp_path / "onnx").exists()


def test_unsupported_op_exits_4_naming_op_module_and_what_to_try(tmp_path):
    model_file = tmp_path / "det_model.py"
    model_file.write_text(
        "import torch\n"
        "class Det(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return torch.linalg.det(x.reshape(-1, 2, 2))\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.proj = torch.nn.Linear(4, 4)\n"
        "        self.block = Det()\n"
        "    def forward(self, x):\n"
        "        return self.block(self.proj(x))\n"
        "def make():\n"
        "    torch.manual_seed(0)\n"
        "    return Net().eval()\n"
    )
    with pytest.raises(ConversionError) as info:
        convert(
            f"{model_file}:make",
            output_format="coreml",
            optimize_for="metal",
            quantization="fp16",
            input_shape="1,4",
            output_dir=str(tmp_path / "out"),
        )
    message = info.value.one_line()
    assert info.value.exit_code == 4
    assert "'linalg_det'" in message and "block (Det)" in message and "hint: rewrite block" in message
    assert "torch.export" in message and "torch.jit.trace" in message  # every route tried
    assert not (tmp_path / "out").exists()  # nothing half-written


@pytest.mark.skipif(NOT_MAC, reason=MAC_ONLY)
def test_real_prediction_on_macos(fashion_coreml):
    """On a Mac: the package runs in Core ML and agrees with the fp32 reference outputs."""
    from edgeport.runtime.coreml import CoreMLRunner

    bundle = fashion_coreml["fp16"].bundle_dir
    manifest = load_manifest(bundle)
    runner = CoreMLRunner(bundle / "model.mlpackage", **manifest["runner"]["kwargs"])
    with np.load(bundle / "reference.npz") as data:
        feeds = {"x": data["inputs/x"]}
        expected = data[f"outputs/{manifest['outputs'][0]['name']}"]
    got = runner.run(feeds)[0]
    assert got.shape == expected.shape and np.abs(got - expected).max() < 0.05 * np.abs(expected).max()
    assert runner.describe()["compute_units"] == "CPU_AND_GPU"
    section = verify_bundle(bundle, runs=5)
    assert section["runtime"]["runtime"] == "coreml" and section["latency"]["artifact"]["p50_ms"] > 0


# --- image inputs (--coreml_image_input) -------------------------------------------------------------


@pytest.fixture(scope="session")
def fashion_image_input(tmp_path_factory):
    """The bundled model with its input as a Core ML GRAYSCALE image (fp16, like fashion_coreml's)."""
    return convert(
        str(EXAMPLES / "fashion_cnn.pt2"),
        output_format="coreml",
        quantization="fp16",
        optimize_for="metal",
        coreml_image_input=True,
        output_dir=str(tmp_path_factory.mktemp("coreml-image") / "bundle"),
        **DATA,
    )


def test_image_input_is_an_image_type_with_the_data_scaling(fashion_image_input, fashion_coreml):
    """The uint8 Fashion-MNIST data are scaled by 1/255 to the model's [0, 1] input: the package's
    input must be a 28x28 GRAYSCALE image applying exactly that, read back from the saved spec."""
    ct = import_coremltools()
    package = fashion_image_input.artifact
    spec = ct.models.MLModel(str(package), skip_model_load=True).get_spec()
    image = spec.description.input[0].type
    assert spec.description.input[0].name == "x" and image.WhichOneof("Type") == "imageType"
    assert (image.imageType.width, image.imageType.height) == (28, 28)
    assert ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(image.imageType.colorSpace) == "GRAYSCALE"
    held = inspect_package(package)["inputs"][0]
    assert held["type"] == "imageType" and held["color_layout"] == "GRAYSCALE"
    assert abs(held["scale"] - 1 / 255) < 1e-9 and held["bias"] == [0.0]
    report = fashion_image_input.report
    assert report["artifact_structure"]["inputs"][0]["scale"] == held["scale"]
    assert any("image input 'x': 8-bit GRAYSCALE pixels" in note for note in report["notes"])
    manifest = load_manifest(fashion_image_input.bundle_dir)
    assert manifest["runner"]["kwargs"]["image_inputs"]["x"]["color_layout"] == "GRAYSCALE"
    # Emulated: the pixels round-trip exactly (the data are whole 8-bit pixels), so the accuracy
    # equals the tensor-input package's, within the fp16 bound.
    fidelity = report["fidelity"]
    assert "8-bit pixels" in fidelity["emulated"]
    assert fidelity["reference_top1"] - fidelity["artifact_top1"] <= 0.2
    assert abs(fidelity["artifact_top1"] - fashion_coreml["fp16"].report["fidelity"]["artifact_top1"]) < 1e-9


def test_rgb_image_input_bias_from_mean_std_and_clear_refusals(tmp_path):
    """RGB: scale = (1/255)/std and bias = -mean/std per channel, read back from the package's
    preprocessing ops; unequal stds and inputs that are no image are refused (exit 2, one line)."""
    from edgeport.core.model import SourceModel, TensorSpec
    from edgeport.data import parse_preprocess
    from edgeport.formats.coreml.convert import convert_source
    from edgeport.formats.coreml.images import image_inputs
    from edgeport.formats.coreml.tools import quiet
    from edgeport.profiles import resolve_profile
    from tests.models_architectures import ARCHITECTURES

    spec = ARCHITECTURES["depthwise_cnn"]
    specs = [TensorSpec("x", [1, 3, 32, 32], "float32")]
    preprocess = parse_preprocess("scale=1/255;mean=0.485,0.456,0.406;std=0.25")
    images = image_inputs(specs, preprocess, 1)
    source = SourceModel("pytorch", "factory", "depthwise_cnn", None, specs, None, spec.factory())
    target = resolve_profile("metal")[0].formats["coreml"]
    mlmodel, _, _ = convert_source(source, ["out0"], 1, target, True, images=images)
    path = tmp_path / "rgb.mlpackage"
    with quiet():
        mlmodel.save(str(path))
    held = inspect_package(path)["inputs"][0]
    assert held["type"] == "imageType" and held["color_layout"] == "RGB" and held["height"] == 32
    assert abs(held["scale"] - 4 / 255) < 1e-6
    np.testing.assert_allclose(held["bias"], [-1.94, -1.824, -1.624], atol=1e-6)
    with pytest.raises(InputError) as info:
        image_inputs(specs, parse_preprocess("mean=0.5,0.5,0.5;std=0.2,0.3,0.4"), 1)
    assert info.value.exit_code == 2 and "\n" not in info.value.one_line()
    assert "differs per channel" in info.value.message and "one scale" in info.value.message
    with pytest.raises(InputError, match="no input is an image.*ids int64"):
        image_inputs([TensorSpec("ids", [1, 16], "int64")], parse_preprocess(None), 1)
    with pytest.raises(InputError, match="applies to --output_format coreml"):
        convert(str(EXAMPLES / "fashion_cnn.pt2"), output_format="onnx", coreml_image_input=True)


# --- a plan with Core ML-only precisions re-applied to another format -------------------------------


def test_palettized_plan_for_onnx_or_tflite_is_a_one_line_input_error(fashion_coreml, tmp_path):
    plan_path = fashion_coreml["palettize-4"].bundle_dir / "precision_plan.json"
    plan = json.loads(plan_path.read_text())
    layers = sorted(plan["layers"])
    # The CLI: exit 2 and one line naming the precision, the layers and the format that has it.
    flags = f"--output_format onnx --precision_plan {plan_path} --output_dir {tmp_path / 'onnx'} --quiet"
    model = str(EXAMPLES / "fashion_cnn.pt2")
    command = [sys.executable, str(REPO / "convert.py"), "--input_model", model, *flags.split()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr and "KeyError" not in done.stderr, done.stderr
    assert "palettize-4" in lines[0] and "only in --output_format coreml" in lines[0]
    assert all(layer in lines[0] for layer in layers[:5])
    assert not (tmp_path / "onnx").exists()
    # TFLite goes through the same check; a mixed plan names only its palettized layers.
    plan["scheme"] = "int8-weight"
    for name in layers:
        plan["layers"][name]["precision"] = "palettize-6" if name == layers[0] else "int8-weight"
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps(plan))
    with pytest.raises(InputError) as info:
        convert(
            str(EXAMPLES / "fashion_cnn.pt2"),
            output_format="tflite",
            optimize_for="metal",
            precision_plan=str(mixed),
            output_dir=str(tmp_path / "tflite"),
            **DATA,
        )
    message = info.value.one_line()
    assert info.value.exit_code == 2 and f"palettize-6 (layers {layers[0]})" in message
    assert "tflite cannot express" in message and layers[1] not in message


# --- TensorFlow/Keras sources -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "scheme"),
    [("saved_model", "int8-weight"), ("keras", "palettize-4"), ("h5", "fp16"), ("tf_keras_saved_model", "palettize-8")],
)
def test_tensorflow_source_converts_with_per_layer_compression(form, scheme, request, tmp_path):
    """The Keras digits CNN in each TF form edgeport ingests through coremltools' TF2 frontend:
    names kept, every layer compressed as planned, emulated accuracy near TF's."""
    digits = request.getfixturevalue("tf_digits")
    result = convert(
        str(digits[form]),
        output_format="coreml",
        quantization=scheme,
        optimize_for="metal",
        calibration_data=str(digits["calibration"]),
        eval_data=str(digits["test"]),
        output_dir=str(tmp_path / form),
    )
    report = result.report
    assert "Core ML conversion route: coremltools TensorFlow 2 frontend (concrete tf.function)" in report["notes"]
    assert any("tested with TensorFlow <= 2.12.0; this is 2.21" in note for note in report["notes"])
    structure = inspect_package(result.artifact)
    assert [i["name"] for i in structure["inputs"]] == ["image"] and structure["inputs"][0]["shape"] == [1, 8, 8, 1]
    assert [o["name"] for o in structure["outputs"]] == [o["name"] for o in report["model"]["outputs"]]
    assert report["precision_plan"]["applied"] == {"conv": scheme, "hidden": scheme, "logits": scheme}
    assert {w["precision"] for w in structure["weights"]} == {scheme} and len(structure["weights"]) == 3
    fidelity = report["fidelity"]
    assert fidelity["emulated"] and abs(fidelity["reference_top1"] - 100 * digits["tf_accuracy"]) < 0.3
    assert fidelity["reference_top1"] - fidelity["artifact_top1"] <= 1.5


def test_tf_frontend_is_enabled_after_coremltools_hid_tensorflow():
    """edgeport imports coremltools with TensorFlow hidden (faster); a TF source later in the same
    process must still find the TF2 frontend (checked in a fresh interpreter)."""
    code = (
        "from edgeport.formats.coreml.tools import import_coremltools, enable_tf_frontend\n"
        "ct = import_coremltools()\n"
        "import coremltools._deps as deps\n"
        "assert not deps._HAS_TF_2\n"
        "print(enable_tf_frontend(ct))\n"
        "import keras\n"
        "inputs = keras.Input((4,), name='v')\n"
        "model = keras.Model(inputs, keras.layers.Dense(2)(inputs))\n"
        "m = ct.convert(model, source='tensorflow', convert_to='mlprogram', skip_model_load=True)\n"
        "print([i.name for i in m.get_spec().description.input])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "['v']" and done.stdout.split()[0].startswith("2.")


def test_int8_activations_only_where_the_profile_runs_them():
    """W8A8 is planned only on a profile whose Core ML schemes list int8 (ane, iOS17) and applied
    only where Core ML can calibrate (macOS); otherwise int8 weights, with the reason reported."""
    from edgeport.formats.coreml.export import _expected
    from edgeport.profiles import resolve_profile

    metal = resolve_profile("metal")[0].formats["coreml"]
    ane = resolve_profile("ane")[0].formats["coreml"]
    assert "int8" not in metal.schemes and "int8" in ane.schemes and ane.minimum_deployment_target == "iOS17"
    for on_mac in (False, True):  # a plan made for ane, re-applied on metal: never W8A8
        got, why = _expected("int8", metal, on_mac)
        assert got == "int8-weight" and why.startswith("int8 activations:") and "Neural Engine" in why
    assert _expected("int8", ane, True) == ("int8", None)
    got, why = _expected("int8", ane, False)
    assert got == "int8-weight" and "macOS only" in why
