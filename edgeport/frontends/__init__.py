"""Frontends (``*_in``: source -> SourceModel), normalization to ONNX, and format backends (``*_out``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeport.core.errors import InputError
from edgeport.core.imports import looks_like_object_ref
from edgeport.core.model import SourceModel
from edgeport.options.groups import SourceOptions

ONNX_SUFFIXES = (".onnx",)
TORCH_SUFFIXES = (".pt2", ".pt", ".pth", ".bin", ".ckpt", ".torchscript", ".ptl")  # here: detecting needs no torch
# Files that belong to a Hugging Face folder: weights, not models edgeport can load alone.
_HF_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack")


@dataclass
class Detection:
    """What ``--input_model`` is: the source kind, the path to load, and a sentence saying why."""

    kind: str  # "onnx", "torch_file", "torch_factory", "tf_saved_model", "tf_file" or "hf_folder"
    path: Path | None  # None for a module:factory reference
    description: str


def _file_suffixes() -> tuple[str, ...]:
    from edgeport.frontends.tf import TF_FILE_SUFFIXES

    return ONNX_SUFFIXES + TORCH_SUFFIXES + TF_FILE_SUFFIXES


def _detect_file(path: Path) -> Detection:
    """Classify a model file by its name and suffix; raise InputError for an unsupported one."""
    from edgeport.frontends.hf_folder import is_hf_folder
    from edgeport.frontends.tf import SAVED_MODEL_FILES, TF_FILE_SUFFIXES

    suffix = path.suffix.lower()
    if path.name in SAVED_MODEL_FILES:
        return Detection("tf_saved_model", path.parent, f"a TensorFlow SavedModel folder ({path.parent}, {path.name})")
    if path.name == "config.json" and is_hf_folder(path.parent):
        return Detection("hf_folder", path.parent, f"a Hugging Face model folder ({path.parent}, config.json)")
    if path.name in _HF_WEIGHT_NAMES and is_hf_folder(path.parent):
        raise InputError(
            f"{path} is the weights file of a Hugging Face model folder, not a model on its own",
            hint=f"pass the folder: --input_model {path.parent}",
        )
    if suffix in ONNX_SUFFIXES:
        return Detection("onnx", path, f"an ONNX file ({suffix})")
    if suffix in TORCH_SUFFIXES:
        return Detection("torch_file", path, f"a PyTorch file ({suffix})")
    if suffix in TF_FILE_SUFFIXES:
        form = "Keras 3 model" if suffix == ".keras" else "Keras HDF5 model"
        return Detection("tf_file", path, f"a {form} ({suffix})")
    if suffix in (".pb", ".pbtxt"):
        raise InputError(
            f"{path}: a frozen TensorFlow graph (.pb) is not supported",
            hint="pass a SavedModel folder (tf.saved_model.save / model.export) or a .keras/.h5 file",
        )
    raise InputError(
        f"{path}: unsupported file type {suffix or '(no suffix)'!r}",
        hint=f"supported: {', '.join(_file_suffixes())}, a SavedModel or Hugging Face folder, or module:factory",
    )


def _detect_folder(path: Path) -> Detection:
    """Classify a folder: SavedModel, Hugging Face model folder, or one model file inside it.

    More than one candidate is ambiguous: InputError listing them, with how to pick one.
    """
    from edgeport.frontends.hf_folder import is_hf_folder, read_config
    from edgeport.frontends.tf import is_saved_model_dir

    candidates: list[tuple[Detection, str]] = []  # (detection, how to pick it)
    if is_saved_model_dir(path):
        marker = next(n for n in ("saved_model.pb", "saved_model.pbtxt") if (path / n).is_file())
        candidates.append(
            (Detection("tf_saved_model", path, f"a TensorFlow SavedModel folder ({marker})"), str(path / marker))
        )
    if is_hf_folder(path):
        try:
            model_type = read_config(path)["model_type"]
        except InputError:
            model_type = None  # a config.json that is not a model config (e.g. a Keras or app config)
        if model_type is not None:
            detection = Detection("hf_folder", path, f"a Hugging Face model folder (config.json, {model_type})")
            candidates.append((detection, str(path / "config.json")))
    suffixes = _file_suffixes()
    for child in sorted(path.iterdir()):
        if child.is_file() and child.suffix.lower() in suffixes and child.name not in _HF_WEIGHT_NAMES:
            candidates.append((Detection("file", child, ""), str(child)))
    folder_kinds = [c for c in candidates if c[0].kind != "file"]
    if len(candidates) == 1 and folder_kinds:
        return folder_kinds[0][0]
    if not candidates:
        raise InputError(
            f"{path} is a directory but not a model folder: it holds no saved_model.pb (TensorFlow SavedModel), "
            "no config.json (Hugging Face) and no model file",
            hint=f"pass a model file ({', '.join(suffixes)}) or a SavedModel / Hugging Face folder",
        )
    if not folder_kinds:
        names = ", ".join(c[0].path.name for c in candidates if c[0].path is not None)
        raise InputError(
            f"{path} is a directory; edgeport needs a model file or a model folder (files here: {names})",
            hint=f"pass one file, e.g. --input_model {candidates[0][1]}",
        )
    listed = "; ".join(
        (c[0].description or f"the model file {c[0].path.name if c[0].path else ''}") + f" -> --input_model {c[1]}"
        for c in candidates
    )
    raise InputError(f"{path} is ambiguous: it holds {len(candidates)} models: {listed}", hint="pass the one you mean")


def detect_source(input_model: str) -> Detection:
    """Say what ``--input_model`` is (file suffix, folder contents) and what path to load.

    Raises InputError for a missing path, an unsupported file, a folder with no model in it,
    or an ambiguous folder (the error lists every candidate and how to pass it).
    """
    path = Path(input_model)
    if not path.exists():
        if looks_like_object_ref(input_model):
            return Detection("torch_factory", None, f"a Python factory reference ({input_model})")
        raise InputError(f"input model not found: {input_model}")
    if path.is_dir():
        return _detect_folder(path)
    return _detect_file(path)


def detect_source_kind(input_model: str) -> str:
    """Say what ``--input_model`` is: 'onnx', 'torch_file', 'torch_factory', 'tf_saved_model',
    'tf_file' or 'hf_folder' (see :func:`detect_source`)."""
    return detect_source(input_model).kind


def ingest(options: SourceOptions):
    """Load ``options.input_model``; returns ``(SourceModel, ONNX ModelProto or None)``.

    ``options`` is the SourceOptions. The ModelProto
    is set for ONNX sources; framework sources are exported by normalize(). The first note of
    the SourceModel says what the input was detected as.
    """
    detection = detect_source(options.input_model)
    source: SourceModel
    onnx_model = None
    if detection.kind == "onnx":
        from edgeport.frontends.onnx import load_onnx_file

        source, onnx_model = load_onnx_file(detection.path, options)
    elif detection.kind in ("tf_saved_model", "tf_file"):
        from edgeport.frontends.tf import load_tf_source

        source = load_tf_source(detection.path, options)
    elif detection.kind == "hf_folder":
        from edgeport.frontends.hf import load_hf_source

        source = load_hf_source(detection.path, options)
    else:
        from edgeport.frontends.torch import load_torch_factory, load_torch_file

        if detection.kind == "torch_factory":
            source = load_torch_factory(options.input_model, options)
        else:
            if detection.path.stat().st_size == 0:
                raise InputError(f"{options.input_model} is empty (0 bytes)")
            source = load_torch_file(detection.path, options)
    source.notes.insert(0, f"input detected as {detection.description}")
    if options.task or options.sequence_length:
        if detection.kind != "hf_folder":
            source.notes.append("--task/--sequence_length apply to Hugging Face folders only; ignored")
    return source, onnx_model
