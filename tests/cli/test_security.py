"""No code runs from a model file unless the user says so (``--allow-pickle``): malicious pickles
in every PyTorch form, Keras Lambda layers (.keras and .h5), Hugging Face folders with custom
code. Each test's payload would create a marker file; the marker must not appear."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from edgeport.cli.main import main
from edgeport.core.errors import InputError
from tests.conftest import EXAMPLES


def _exploit(marker: Path) -> object:
    """An object whose unpickling runs ``touch marker`` (os.system)."""

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    return Exploit()


def _malicious_pt2(path: Path, marker: Path) -> None:
    """The bundled .pt2 with its sample inputs replaced by a malicious pickle: torch.export.load
    falls back to ``torch.load(weights_only=False)`` for them."""
    payload = io.BytesIO()
    torch.save(_exploit(marker), payload)
    with zipfile.ZipFile(EXAMPLES / "fashion_cnn.pt2") as source, zipfile.ZipFile(path, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            target.writestr(info, payload.getvalue() if info.filename.endswith("sample_inputs/model.pt") else data)


def _malicious_file(kind: str, folder: Path, marker: Path) -> Path:
    if kind == "pt2":
        path = folder / "evil.pt2"
        _malicious_pt2(path, marker)
    elif kind == "torch.save":
        path = folder / "evil.pt"
        torch.save({"weights": _exploit(marker)}, path)
    elif kind == "torch.save legacy format":
        path = folder / "evil_legacy.pth"
        torch.save({"weights": _exploit(marker)}, path, _use_new_zipfile_serialization=False)
    else:  # a plain pickle named like a checkpoint
        path = folder / "evil_plain.ckpt"
        path.write_bytes(pickle.dumps(_exploit(marker)))
    return path


def _convert(args: list[str]):
    return CliRunner().invoke(main, ["convert", "--quiet", *args])


PICKLE_KINDS = ["torch.save", "torch.save legacy format", "plain pickle", "pt2"]


@pytest.mark.parametrize("kind", PICKLE_KINDS)
def test_malicious_pickle_is_not_run_without_allow_pickle(kind, tmp_path):
    marker = tmp_path / "pwned"
    path = _malicious_file(kind, tmp_path, marker)
    out = tmp_path / "bundle"
    result = _convert(["--input_model", str(path), "--input_shape", "1,3,16,16", "--output_dir", str(out)])
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in result.output
    assert "arbitrary code" in line and "--allow-pickle" in line
    assert not marker.exists()
    assert not out.exists()


@pytest.mark.parametrize("spelling", ["--allow-pickle", "--allow_pickle"])
def test_allow_pickle_in_either_spelling_unpickles(spelling, tmp_path):
    """With the flag the user trusts the file: it is unpickled (the payload runs), and a file that
    is not an nn.Module is still refused with one line."""
    marker = tmp_path / "ran"
    path = _malicious_file("torch.save", tmp_path, marker)
    result = _convert(
        ["--input_model", str(path), spelling, "--input_shape", "1,3,16,16", "--output_dir", str(tmp_path / "b")]
    )
    assert marker.exists()  # the flag reached the loader
    assert result.exit_code == 2 and "not a torch.nn.Module" in result.stderr


def test_torch_load_is_weights_only_in_the_loader():
    """The loader's first torch.load is always weights_only=True (read from the source, so that a
    refactoring cannot silently drop it)."""
    import inspect

    from edgeport.frontends import torch as torch_in

    source = inspect.getsource(torch_in._load_pickled_file)
    first_load = source.index("torch.load(")
    assert "weights_only=True" in source[first_load : source.index(")", first_load)]


@pytest.fixture(scope="module")
def keras_lambda_files(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A Keras 3 ``.keras`` and a tf_keras ``.h5`` model, each with a Lambda layer whose Python
    code creates the returned marker file when the layer is called (as loading a model does)."""
    keras = pytest.importorskip("keras")
    tf_keras = pytest.importorskip("tf_keras")
    folder = tmp_path_factory.mktemp("keras-lambda")
    marker = folder / "lambda_ran"
    code = f"lambda x: (open({str(marker)!r}, 'w').close(), x * 2)[1]"
    inputs = keras.Input((4,), name="x")
    keras.Model(inputs, keras.layers.Lambda(eval(code))(inputs)).save(folder / "lambda.keras")
    inputs = tf_keras.Input((4,), name="x")
    tf_keras.Model(inputs, tf_keras.layers.Lambda(eval(code))(inputs)).save(folder / "lambda.h5")
    marker.unlink()  # building the models called the lambdas
    return folder / "lambda.keras", folder / "lambda.h5", marker


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_lambda_layer_is_refused(suffix, keras_lambda_files, tmp_path):
    keras_file, h5_file, marker = keras_lambda_files
    path = keras_file if suffix == ".keras" else h5_file
    result = _convert(["--input_model", str(path), "--output_dir", str(tmp_path / "bundle")])
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "Lambda layer" in line and "run code" in line and "--allow-pickle" in line
    assert not marker.exists()
    assert not (tmp_path / "bundle").exists()


def test_keras_lambda_runs_only_with_allow_code(keras_lambda_files):
    from edgeport.frontends.tf import load_tf_model

    keras_file, h5_file, marker = keras_lambda_files
    for path in (keras_file, h5_file):
        load_tf_model(path, allow_code=True)
        assert marker.exists()  # the user's explicit trust: the layer was rebuilt and called
        marker.unlink()


@pytest.mark.parametrize("config_file", ["config.json", "tokenizer_config.json"])
def test_hugging_face_folder_with_custom_code_is_refused(config_file, tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    marker = tmp_path / "remote_code_ran"
    (folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = {"model_type": "bert", "architectures": ["BertModel"]}
    auto_map = {"auto_map": {"AutoModel": "modeling_evil.EvilModel", "AutoTokenizer": ["modeling_evil.Tok", None]}}
    (folder / "config.json").write_text(json.dumps({**config, **(auto_map if config_file == "config.json" else {})}))
    if config_file == "tokenizer_config.json":
        (folder / config_file).write_text(json.dumps(auto_map))
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    result = _convert(["--input_model", str(folder), "--output_dir", str(tmp_path / "bundle")])
    assert result.exit_code == 2, result.output
    assert "auto_map" in result.stderr and "never runs code" in result.stderr
    assert not marker.exists()


def test_saved_model_that_writes_files_is_refused(tmp_path):
    """A SavedModel is a program: one whose serving function writes a file is refused before
    TensorFlow loads it (and with --allow-pickle it loads)."""
    tf = pytest.importorskip("tensorflow")
    marker = tmp_path / "written_by_the_graph"

    class Writer(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            tf.io.write_file(str(marker), "pwned")
            return {"y": x * 2}

    module = Writer()
    folder = tmp_path / "saved"
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    assert not marker.exists()  # tracing does not run the op
    result = _convert(["--input_model", str(folder), "--output_dir", str(tmp_path / "bundle")])
    assert result.exit_code == 2, result.output
    assert "WriteFile" in result.stderr and "refused" in result.stderr
    assert not marker.exists()

    from edgeport.frontends.tf import load_tf_model

    load_tf_model(folder, allow_code=True).call([tf.ones([1, 4])])
    assert marker.read_text() == "pwned"  # what the check prevented


def _with_external_data(folder: Path, location: str, offset: int = 0, length: int = 16) -> Path:
    """The corpus's valid model with its last initializer's data at ``location`` (in ``folder``)."""
    from tests.data.make_bad_inputs import valid_model

    model = valid_model()
    tensor = model.graph.initializer[3]
    tensor.ClearField("raw_data")
    tensor.data_location = tensor.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize(
    ("case", "phrase"),
    [
        ("symlink out of the folder", "outside the model.s folder \\(path traversal\\)"),
        ("absolute path", "an absolute or empty location"),
        ("beyond the end of the file", "is beyond the file's 16 bytes"),
        ("inside the folder", None),
    ],
)
def test_external_data_locations_are_checked_before_reading(case, phrase, tmp_path):
    from edgeport.frontends.onnx import read_onnx

    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(16))
    folder = tmp_path / "model"
    if case == "symlink out of the folder":
        path = _with_external_data(folder, "weights.bin")
        (folder / "weights.bin").symlink_to(secret)
    elif case == "absolute path":
        path = _with_external_data(folder, str(secret))
    else:
        path = _with_external_data(folder, "weights.bin", offset=8 if case.startswith("beyond") else 0)
        (folder / "weights.bin").write_bytes(bytes(16))
    if phrase is None:
        assert read_onnx(path).graph.initializer[3].raw_data == bytes(16)
    else:
        with pytest.raises(InputError, match=phrase):
            read_onnx(path)
