"""Frontends (``*_in``: source -> SourceModel), normalization to ONNX, and format backends (``*_out``)."""

from __future__ import annotations

from pathlib import Path

from edgeport.errors import InputError
from edgeport.imports import looks_like_object_ref
from edgeport.model_bundle import SourceModel
from edgeport.recipe import Recipe

ONNX_SUFFIXES = (".onnx",)


def detect_source_kind(input_model: str) -> str:
    """Say what ``--input_model`` is: 'onnx', 'torch_file' or 'torch_factory'.

    Raises InputError for a missing path, a directory, or an unknown suffix.
    """
    from edgeport.converters.torch_in import TORCH_SUFFIXES

    path = Path(input_model)
    if not path.exists():
        if looks_like_object_ref(input_model):
            return "torch_factory"
        raise InputError(f"input model not found: {input_model}")
    if path.is_dir():
        raise InputError(
            f"{input_model} is a directory; edgeport needs a model file",
            hint=f"pass a {', '.join(ONNX_SUFFIXES + TORCH_SUFFIXES)} file",
        )
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return "onnx"
    if suffix in TORCH_SUFFIXES:
        return "torch_file"
    raise InputError(
        f"{input_model}: unsupported file type {suffix or '(no suffix)'!r}",
        hint=f"supported: {', '.join(ONNX_SUFFIXES + TORCH_SUFFIXES)}, or package.module:factory",
    )


def ingest(recipe: Recipe):
    """Load ``recipe.input_model``; returns ``(SourceModel, ONNX ModelProto or None)``.

    The ModelProto is set for ONNX sources; framework sources are exported by normalize().
    """
    kind = detect_source_kind(recipe.input_model)
    if kind == "onnx":
        from edgeport.converters.onnx_in import load_onnx_file

        return load_onnx_file(Path(recipe.input_model), recipe)
    from edgeport.converters.torch_in import load_torch_factory, load_torch_file

    source: SourceModel
    if kind == "torch_factory":
        source = load_torch_factory(recipe.input_model, recipe)
    else:
        if Path(recipe.input_model).stat().st_size == 0:
            raise InputError(f"{recipe.input_model} is empty (0 bytes)")
        source = load_torch_file(Path(recipe.input_model), recipe)
    return source, None
