"""A Hugging Face model folder on disk: recognising it, reading its config.json, checking that
its weights are all there and that it needs no code of its own; and keeping the hub offline."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edgeport.core.errors import InputError, describe_exception

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
OTHER_FRAMEWORK_WEIGHTS = ("tf_model.h5", "flax_model.msgpack")


def force_offline() -> None:
    """Switch the Hugging Face hub off for this process (before and after its libraries are imported)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # transformers imports TensorFlow too when it is installed: slow, and not needed here.
    os.environ.setdefault("USE_TF", "0")
    os.environ.setdefault("USE_TORCH", "1")
    import sys

    if "huggingface_hub" in sys.modules:  # read at import time: patch the already-imported constant
        import huggingface_hub.constants

        huggingface_hub.constants.HF_HUB_OFFLINE = True


def is_hf_folder(path: Path) -> bool:
    """True when ``path`` is a folder with a config.json (the mark of a Hugging Face model folder)."""
    return path.is_dir() and (path / "config.json").is_file()


def read_config(folder: Path) -> dict[str, Any]:
    """Return the folder's config.json; raise InputError when it is unreadable or not a model config."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(
            f"{folder / 'config.json'} is not valid JSON: {describe_exception(exc, with_type=False)}"
        ) from exc
    if not isinstance(config, dict) or "model_type" not in config:
        raise InputError(f"{folder / 'config.json'} is not a Hugging Face model config (it has no 'model_type')")
    return config


def check_config_fields(path: Path, config: dict[str, Any]) -> None:
    """Raise InputError when a config.json field edgeport reads itself has the wrong type:
    ``model_type`` a name, ``architectures`` a list of class names, the position limits integers."""
    if not isinstance(config.get("model_type"), str) or not config["model_type"]:
        raise InputError(f"{path}: 'model_type' is {config.get('model_type')!r}, not a model type name")
    architectures = config.get("architectures")
    if architectures is not None and (
        not isinstance(architectures, list) or not all(isinstance(a, str) for a in architectures)
    ):
        raise InputError(f"{path}: 'architectures' is {architectures!r}, not a list of class names")
    for key in ("max_position_embeddings", "n_positions"):
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise InputError(f"{path}: {key!r} is {value!r}, not a number of positions")


def refuse_remote_code(folder: Path, config: dict[str, Any]) -> None:
    """Refuse a folder whose model or tokenizer needs its own Python code (``auto_map`` in
    config.json or tokenizer_config.json): edgeport never runs code shipped in a model folder
    (every transformers load also passes ``trust_remote_code=False``)."""
    tokenizer_config: Any = {}
    path = folder / "tokenizer_config.json"
    if path.is_file():
        try:
            tokenizer_config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            tokenizer_config = {}  # a broken tokenizer only costs text data (see load_hf_source)
    for name, data in (("config.json", config), ("tokenizer_config.json", tokenizer_config)):
        if isinstance(data, dict) and data.get("auto_map"):
            raise InputError(
                f"{folder / name} maps to custom Python code in the folder (auto_map); edgeport never runs code "
                "from a model folder (no trust_remote_code)",
                hint="convert a model whose architecture transformers ships, or export it to .onnx yourself",
            )


def check_folder(folder: Path) -> dict[str, Any]:
    """Check that ``folder`` is a complete Hugging Face model folder; return its config.

    Raises InputError (one line) naming what is missing: config.json, the weights, or the
    shards a sharded index lists.
    """
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder} is not a complete Hugging Face model folder: config.json is missing")
    config = read_config(folder)
    check_config_fields(folder / "config.json", config)
    refuse_remote_code(folder, config)
    if any((folder / name).is_file() and (folder / name).stat().st_size > 0 for name in WEIGHT_FILES):
        return config
    for index_name in WEIGHT_INDEXES:
        index = folder / index_name
        if not index.is_file():
            continue
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise InputError(f"{index} is not a valid weight index: {describe_exception(exc)}") from exc
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise InputError(
                f"{folder} is an incomplete Hugging Face model folder: {len(missing)} of {len(shards)} weight shards "
                f"listed in {index_name} are missing ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})",
                hint="copy the whole folder (edgeport never downloads from the hub)",
            )
        return config
    others = [name for name in OTHER_FRAMEWORK_WEIGHTS if (folder / name).is_file()]
    raise InputError(
        f"{folder} is an incomplete Hugging Face model folder: no PyTorch weights "
        f"({' or '.join(WEIGHT_FILES)})"
        + (f"; only {', '.join(others)}, which edgeport does not read" if others else ""),
        hint="copy the folder with its weights (edgeport never downloads from the hub)",
    )
