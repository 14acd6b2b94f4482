"""Fuzzing every model loader (hypothesis, derandomized, a bounded number of cases per loader):
byte mutations of small valid files in each form edgeport reads (.pt2, TorchScript, state_dict,
pickled module, legacy torch.save, .onnx with external data, .keras, .h5, SavedModel folders,
Hugging Face folders: config.json, tokenizer files, safetensors header) and files of the wrong
type under each suffix. The only allowed outcomes are success or an EdgeportError (exit 2, 3
or 4); never the CLI's "internal error" (exit 1). Nothing is unpickled: no --allow-pickle.

``EDGEPORT_FUZZ_EXAMPLES=N`` runs N examples per loader instead of the default counts (the long
profile: ``make fuzz-models`` / bench/fuzz_loaders.py). With ``EDGEPORT_FUZZ_RECORD=file.json``
the outcomes are counted per loader and written to that file, and an internal error is counted
instead of failing the test.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import zipfile
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeport.core.errors import EdgeportError
from edgeport.frontends import TORCH_SUFFIXES, ingest
from edgeport.options.recipe import InputShape, Recipe
from tests.frontends.test_fuzz import FUZZ
from tests.fuzz_files import EDIT, mutate

RECORD = os.environ.get("EDGEPORT_FUZZ_RECORD")
COUNTS: dict[str, Counter] = defaultdict(Counter)


def examples(default: int) -> int:
    """The number of examples of one loader: ``default``, or EDGEPORT_FUZZ_EXAMPLES when set."""
    return int(os.environ.get("EDGEPORT_FUZZ_EXAMPLES") or default)


@pytest.fixture(scope="module", autouse=True)
def _write_counts():
    yield
    if RECORD:
        path = Path(RECORD)
        old = json.loads(path.read_text()) if path.is_file() else {}
        old.update({name: dict(counter) for name, counter in COUNTS.items()})
        path.write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")


def load_model(path: Path) -> None:
    """What ``edgeport convert`` does first: detect the input and load it (no --allow-pickle), and
    tokenize a sentence with a Hugging Face folder's tokenizer."""
    shape = [InputShape(None, [1, 3, 16, 16])] if path.suffix in TORCH_SUFFIXES else []  # not stored in the file
    recipe = Recipe(str(path), quantization="none", max_memory="256MB", input_shape=shape)
    source, _ = ingest(recipe.source)
    if source.tokenize is not None:  # a Hugging Face folder's tokenizer, loaded with the model
        source.tokenize(["hello world", "a"])


def _edgeport_frame(exc: BaseException) -> str:
    """The innermost edgeport file:line of the traceback of ``exc`` (where the loader let it through)."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/edgeport/" in f.filename]
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"


def check_outcome(loader: str, path: Path) -> None:
    """Load ``path``; success or a one-line EdgeportError with exit code 2, 3 or 4 (counted per loader)."""
    try:
        load_model(path)
    except EdgeportError as exc:
        assert exc.exit_code in (2, 3, 4) and exc.message.strip() and "\n" not in exc.one_line()
        COUNTS[loader][f"error_exit_{exc.exit_code}"] += 1
        return
    except Exception as exc:  # what the CLI would report as "internal error" (exit 1)
        if not RECORD:
            raise
        COUNTS[loader]["internal_error"] += 1
        COUNTS[loader + ":internal"][f"{type(exc).__name__}: {str(exc)[:80]} (at {_edgeport_frame(exc)})"] += 1
        return
    COUNTS[loader]["ok"] += 1


# --- seed files, built once per session --------------------------------------------------------


def _keras_seeds(root: Path) -> dict[str, Path]:
    """A tiny dense Keras model as .keras, .h5 (tf_keras) and an exported SavedModel folder."""
    from edgeport.frontends.tf import import_tensorflow

    import_tensorflow()
    import keras

    files = {"keras": root / "tiny.keras", "h5": root / "tiny.h5", "saved_model": root / "tiny_savedmodel"}
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,), name="x"), keras.layers.Dense(3, name="dense")])
    model.save(files["keras"])
    model.export(str(files["saved_model"]), verbose=False)
    try:
        import tf_keras
    except ImportError:
        files.pop("h5")
    else:
        legacy = tf_keras.Sequential([tf_keras.Input((4,), name="x"), tf_keras.layers.Dense(3, name="dense")])
        legacy.save(files["h5"])
    return files


def _hf_seed(root: Path) -> Path:
    """A tiny random BERT folder: config.json, model.safetensors, a WordPiece tokenizer."""
    from edgeport.frontends.hf_folder import force_offline

    force_offline()
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = root / "tiny_bert"
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=40,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=32,
    )
    BertModel(config).eval().save_pretrained(str(folder), safe_serialization=True)
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz"]) + "\n")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def model_seeds(tiny_files, tmp_path_factory) -> dict[str, Path]:
    """Every model form edgeport loads, small and valid (checked by test_the_model_seeds_load)."""
    import torch

    from tests import models_for_tests

    root = tmp_path_factory.mktemp("fuzz_seeds")
    seeds = {k: tiny_files[k] for k in ("pt2", "torchscript", "state_dict", "pickle", "onnx_external")}
    seeds["legacy_state_dict"] = root / "tiny_legacy.pth"
    state = models_for_tests.make_tiny().state_dict()
    torch.save(state, seeds["legacy_state_dict"], _use_new_zipfile_serialization=False)
    seeds.update(_keras_seeds(root))
    seeds["hf"] = _hf_seed(root)
    return seeds


def test_the_model_seeds_load(model_seeds):
    """The seeds are valid: each loads (or, for weights and pickles, is refused for that reason only)."""
    for name in ("pt2", "torchscript", "onnx_external", "keras", "h5", "saved_model", "hf"):
        if name in model_seeds:
            load_model(model_seeds[name])
    for name in ("state_dict", "legacy_state_dict"):
        with pytest.raises(EdgeportError, match="--model_class"):
            load_model(model_seeds[name])
    with pytest.raises(EdgeportError, match="pickled Python objects"):
        load_model(model_seeds["pickle"])


# --- byte mutations of one file of a valid model ------------------------------------------------

# loader -> (seed name, file inside a seed folder or None, default example count)
BYTE_TARGETS = {
    "pt2": ("pt2", None, 12),
    "torchscript": ("torchscript", None, 10),
    "state_dict": ("state_dict", None, 8),
    "pickled_module": ("pickle", None, 6),
    "legacy_torch_save": ("legacy_state_dict", None, 8),
    "onnx_external_graph": ("onnx_external", None, 8),
    "onnx_external_data": ("onnx_external", "tiny_ext.data", 6),
    "keras": ("keras", None, 8),
    "h5": ("h5", None, 8),
    "saved_model_pb": ("saved_model", "saved_model.pb", 6),
    "saved_model_variables": ("saved_model", "variables/variables.index", 4),
    "hf_config": ("hf", "config.json", 6),
    "hf_safetensors": ("hf", "model.safetensors", 8),
    "hf_tokenizer": ("hf", "tokenizer.json", 4),
    "hf_vocab": ("hf", "vocab.txt", 3),
}


def _copy_seed(seed: Path, where: Path) -> Path:
    """Copy a seed file (with its external-data neighbours) or folder under ``where``; return the model path."""
    if where.exists():
        shutil.rmtree(where)
    if seed.is_dir():
        shutil.copytree(seed, where / seed.name)
        return where / seed.name
    shutil.copytree(seed.parent, where)
    return where / seed.name


@pytest.mark.parametrize("loader", list(BYTE_TARGETS))
def test_mutated_model_files_load_or_are_refused(loader, model_seeds, tmp_path):
    seed_name, inner, default = BYTE_TARGETS[loader]
    if seed_name not in model_seeds:
        pytest.skip(f"no {seed_name} seed (optional library missing)")
    seed = model_seeds[seed_name]
    source = (seed / inner if seed.is_dir() else seed.parent / inner) if inner else seed  # inner: a neighbour
    original = source.read_bytes()

    @settings(FUZZ, max_examples=examples(default))
    @given(edits=st.lists(EDIT, min_size=1, max_size=6), truncate=st.none() | st.floats(0.3, 1, allow_nan=False))
    def fuzz(edits, truncate):
        model = _copy_seed(seed, tmp_path / "case")
        target = (model / inner if model.is_dir() else model.parent / inner) if inner else model
        target.write_bytes(mutate(original, edits, truncate))
        check_outcome(loader, model)

    fuzz()


# --- structured edits: safetensors header, config.json values, ONNX external-data entries -------

_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
    | st.sampled_from(["bert", "gpt2", "F32", "F16", "I64", "BOOL", "float32", "relu", "../../etc/passwd"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


def _safetensors_parts(data: bytes) -> tuple[dict, bytes]:
    (size,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + size]), data[8 + size :]


@settings(FUZZ, max_examples=examples(10))
@given(
    edits=st.lists(
        st.tuples(st.sampled_from(["dtype", "shape", "data_offsets", "drop", "__metadata__"]), _JSON_VALUES),
        min_size=1,
        max_size=3,
    ),
    index=st.integers(0, 30),
    length_delta=st.sampled_from([0, 0, 0, -1, 1, -8, 2**40, -(2**20)]),
)
def test_safetensors_header_edits_load_or_are_refused(edits, index, length_delta, model_seeds, tmp_path):
    folder = _copy_seed(model_seeds["hf"], tmp_path / "case")
    header, body = _safetensors_parts((folder / "model.safetensors").read_bytes())
    names = sorted(k for k in header if k != "__metadata__")
    name = names[index % len(names)]
    for field, value in edits:
        if field == "drop":
            header.pop(name, None)
        elif field == "__metadata__":
            header["__metadata__"] = value
        elif name in header:
            header[name][field] = value
    raw = json.dumps(header).encode()
    size = max(0, len(raw) + length_delta) % 2**64
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", size) + raw + body)
    check_outcome("hf_safetensors_header", folder)


@settings(FUZZ, max_examples=examples(10))
@given(
    replacements=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "model_type",
                    "hidden_size",
                    "num_attention_heads",
                    "num_hidden_layers",
                    "vocab_size",
                    "max_position_embeddings",
                    "architectures",
                    "hidden_act",
                    "torch_dtype",
                    "type_vocab_size",
                    "intermediate_size",
                    "layer_norm_eps",
                    "auto_map",
                    "pad_token_id",
                ]
            ),
            st.none() | _JSON_VALUES,
        ),
        min_size=1,
        max_size=3,
    ),
    target=st.sampled_from(["config.json", "tokenizer_config.json"]),
)
def test_hf_config_values_load_or_are_refused(replacements, target, model_seeds, tmp_path):
    folder = _copy_seed(model_seeds["hf"], tmp_path / "case")
    path = folder / target
    data = json.loads(path.read_text())
    for key, value in replacements:
        if key == "auto_map" and value is None:
            continue  # a present auto_map is refused; None is the same as absent
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))
    check_outcome(f"hf_{target.split('.')[0]}_values", folder)


@settings(FUZZ, max_examples=examples(10))
@given(
    key=st.sampled_from(["location", "offset", "length", "checksum", "junk"]),
    value=st.sampled_from(
        [
            "",
            "missing.data",
            "../outside.data",
            "/etc/passwd",
            "tiny_ext.data",
            "sub/../tiny_ext.data",
            "0",
            "-1",
            "7",
            "123456789012",
            "99999999999999999999",
            "abc",
            "nan",
        ]
    ),
    tensor=st.integers(0, 10),
)
def test_onnx_external_data_entries_load_or_are_refused(key, value, tensor, model_seeds, tmp_path):
    import onnx

    model_path = _copy_seed(model_seeds["onnx_external"], tmp_path / "case")
    model = onnx.load(str(model_path), load_external_data=False)
    external = [t for t in model.graph.initializer if t.external_data]
    entries = external[tensor % len(external)].external_data
    for entry in entries:
        if entry.key == key:
            entry.value = value
            break
    else:
        entries.add(key=key, value=value)
    model_path.write_bytes(model.SerializeToString())
    check_outcome("onnx_external_entries", model_path)


# --- files of the wrong type under each suffix ---------------------------------------------------

SUFFIXES = [".pt", ".pt2", ".pth", ".bin", ".ckpt", ".ptl", ".torchscript", ".onnx", ".keras", ".h5", ".hdf5"]
FOLDER_KINDS = ["saved_model.pb", "config.json", "model.safetensors"]


def _random_zip(members: dict[str, bytes]) -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def wrong_contents(model_seeds) -> dict[str, bytes]:
    """Contents of every kind, to put under a suffix (or into a folder) they do not belong to."""
    seeds = model_seeds
    contents = {
        "empty": b"",
        "text": b"plain text, not a model\n",
        "one_byte": b"\x80",
        "json": b'{"model_type": "bert"}',
        "binary": bytes(range(256)) * 4,
        "empty_zip": _random_zip({}),
        "zip_code_dir": _random_zip({"m/code/x.py": b"def f(): pass", "m/constants.pkl": b"\x80\x02."}),
        "zip_models_dir": _random_zip({"m/models/model.json": b"{", "m/archive_format": b"pt2"}),
        "zip_data_pkl": _random_zip({"m/data.pkl": b"\x80\x02}q\x00.", "m/version": b"3\n"}),
        "pickle_proto2": b"\x80\x02}q\x00.",
        "hdf5_magic": b"\x89HDF\r\n\x1a\n" + b"\x00" * 64,
        "safetensors": (seeds["hf"] / "model.safetensors").read_bytes(),
        "saved_model_pb": (seeds["saved_model"] / "saved_model.pb").read_bytes(),
    }
    for name in ("pt2", "torchscript", "state_dict", "legacy_state_dict", "keras", "h5"):
        if name in seeds:
            contents[name] = seeds[name].read_bytes()
    contents["onnx"] = seeds["onnx_external"].read_bytes()
    return contents


WRONG_NAMES = [
    "empty", "text", "one_byte", "json", "binary", "empty_zip", "zip_code_dir", "zip_models_dir", "zip_data_pkl",
    "pickle_proto2", "hdf5_magic", "safetensors", "saved_model_pb", "pt2", "torchscript", "state_dict",
    "legacy_state_dict", "keras", "h5", "onnx",
]  # fmt: skip


def _damaged_zip(edits: dict[int, int]) -> bytes:
    """A one-member zip whose central directory entry has the bytes at the offsets of ``edits`` set."""
    data = bytearray(_random_zip({"ab.json": b"{}"}))
    entry = data.find(b"PK\x01\x02")
    for offset, value in edits.items():
        data[entry + offset] = value
    return bytes(data)


DAMAGED_ZIPS = {
    "version_needed_19.9": {6: 199},  # zipfile: NotImplementedError
    "name_not_utf8": {9: 0x08, 46: 0xC7, 47: 0x28},  # the UTF-8 flag on an invalid name: UnicodeDecodeError
}


@pytest.mark.parametrize("suffix", [".pt2", ".pt", ".keras"])
@pytest.mark.parametrize("damage", list(DAMAGED_ZIPS))
def test_damaged_zip_directories_are_refused(suffix, damage, tmp_path):
    """Zip directories zipfile reads with NotImplementedError or UnicodeDecodeError (were internal errors)."""
    path = tmp_path / f"model{suffix}"
    path.write_bytes(_damaged_zip(DAMAGED_ZIPS[damage]))
    with pytest.raises(EdgeportError) as caught:
        load_model(path)
    assert caught.value.exit_code == 2 and str(path) in caught.value.message


def test_plain_text_named_pt2_is_refused_with_exit_2(tmp_path):
    """Issue #21: a text file named x.pt2 ended with "internal error: IndexError: pop from empty list"."""
    from click.testing import CliRunner

    from edgeport.cli.main import main

    path = tmp_path / "x.pt2"
    path.write_text("this is not a model\n")
    result = CliRunner().invoke(main, ["convert", "--input_model", str(path), "--output_dir", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "internal error" not in result.output and "x.pt2" in result.output


@settings(FUZZ, max_examples=examples(40))
@given(
    suffix=st.sampled_from(SUFFIXES),
    content=st.sampled_from(WRONG_NAMES),
    edits=st.none() | st.lists(EDIT, min_size=1, max_size=3),
)
def test_wrong_file_types_are_refused(suffix, content, edits, wrong_contents, tmp_path):
    if content not in wrong_contents:
        return
    data = wrong_contents[content]
    path = tmp_path / f"model{suffix}"
    path.write_bytes(mutate(data, edits, None) if edits else data)
    check_outcome("wrong_type_file", path)


@settings(FUZZ, max_examples=examples(16))
@given(
    marker=st.sampled_from(FOLDER_KINDS),
    content=st.sampled_from(WRONG_NAMES),
    with_config=st.booleans(),
)
def test_wrong_contents_in_model_folders_are_refused(marker, content, with_config, wrong_contents, tmp_path):
    if content not in wrong_contents:
        return
    folder = tmp_path / "case" / "model_folder"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    if with_config and marker != "config.json":
        (folder / "config.json").write_text('{"model_type": "bert", "hidden_size": 8}')
    (folder / marker).write_bytes(wrong_contents[content])
    check_outcome("wrong_type_folder", folder)
