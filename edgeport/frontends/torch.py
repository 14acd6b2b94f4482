"""PyTorch ingestion: .pt2 ExportedProgram, TorchScript, state_dict + --model_class,
``module:factory`` callables, and pickled nn.Modules (only with --allow-pickle)."""

from __future__ import annotations

import contextlib
import inspect
import pickle
import struct
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.core.errors import InputError, describe_exception
from edgeport.core.extras import require
from edgeport.core.hashing import sha256_file
from edgeport.core.imports import import_object
from edgeport.core.model import SourceModel, TensorSpec
from edgeport.options.groups import SourceOptions
from edgeport.options.recipe import InputShape

torch = require("torch", "A PyTorch model", "torch")

_TORCH_DTYPES = {
    torch.float32: "float32",
    torch.float16: "float16",
    torch.int64: "int64",
    torch.int32: "int32",
    torch.uint8: "uint8",
    torch.int8: "int8",
    torch.bool: "bool",
}


# A legacy (non-zip) torch.save file starts with its pickled magic number: protocol 2+ (b"\x80")
# or protocol 0/1 (the number in text).
_LEGACY_PICKLE_STARTS = (b"\x80", b"L119547037146038801333356")
# What zipfile raises for a damaged central directory: a bad record, an unknown version or
# compression, a member name that is not valid UTF-8.
_ZIP_ERRORS = (zipfile.BadZipFile, OSError, NotImplementedError, UnicodeDecodeError, ValueError, EOFError, struct.error)
# What torch's unpicklers raise for a damaged pickle stream or zip record (besides RuntimeError).
_CORRUPT_FILE_ERRORS = (
    RuntimeError, EOFError, OSError, zipfile.BadZipFile, KeyError, IndexError, ValueError, TypeError,
    AttributeError, UnicodeDecodeError, struct.error, OverflowError, MemoryError, RecursionError,
)  # fmt: skip


def _archive_kind(path: Path) -> str:
    """Classify a torch file by its zip layout: 'exported_program', 'torchscript' or 'pickle'.

    Raises InputError for a file that is neither a zip archive nor a legacy torch.save pickle
    (text, an ONNX or HDF5 file under a torch suffix): no unpickler sees it.
    """
    try:
        is_zip = zipfile.is_zipfile(path)
    except _ZIP_ERRORS as exc:  # an end record that cannot be read (e.g. "spans multiple disks")
        raise InputError(f"{path} is a damaged zip archive: {describe_exception(exc, with_type=False)}") from exc
    if not is_zip:
        with open(path, "rb") as handle:
            start = handle.read(len(_LEGACY_PICKLE_STARTS[1]))
        if not start.startswith(_LEGACY_PICKLE_STARTS):
            raise InputError(
                f"{path} is not a PyTorch file: neither a zip archive (torch.save, torch.export, TorchScript) "
                f"nor a legacy torch.save pickle (it starts with {start[:8]!r})"
            )
        return "pickle"  # legacy (non-zip) torch.save format
    try:
        names = zipfile.ZipFile(path).namelist()
    except _ZIP_ERRORS as exc:  # zipfile: BadZipFile, or e.g. NotImplementedError for a bad version field
        raise InputError(f"{path} is a damaged zip archive: {describe_exception(exc, with_type=False)}") from exc
    if any(n.endswith("archive_format") or "/models/" in n for n in names):
        return "exported_program"
    if any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names):
        return "torchscript"
    return "pickle"


@contextlib.contextmanager
def _weights_only_unpickling():
    """Make torch.export.load unpickle nothing but tensors while it runs.

    torch.export.load falls back to ``torch.load(weights_only=False)`` for sample inputs and
    pickled weights/constants, and ``pickle.loads`` for opaque constants: a crafted ``.pt2``
    would run code through them. Inside this block ``torch.load`` is always weights-only and
    ``pickle.loads`` refuses (the process is single-threaded while a model loads).
    """
    original_load, original_loads = torch.load, pickle.loads

    def load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return original_load(*args, **kwargs)

    def loads(*args: Any, **kwargs: Any) -> Any:
        raise pickle.UnpicklingError("edgeport: unpickling Python objects is refused without --allow-pickle")

    torch.load, pickle.loads = load, loads
    try:
        yield
    finally:
        torch.load, pickle.loads = original_load, original_loads


def _flatten_outputs(value: Any) -> list[np.ndarray]:
    if isinstance(value, torch.Tensor):
        return [value.detach().cpu().numpy()]
    if isinstance(value, Mapping):
        return [a for v in value.values() for a in _flatten_outputs(v)]
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in _flatten_outputs(v)]
    if hasattr(value, "to_tuple"):  # Hugging Face ModelOutput
        return _flatten_outputs(value.to_tuple())
    raise InputError(f"the model returned a {type(value).__name__}; edgeport needs tensors (or tuples/dicts of them)")


def make_torch_runner(module: Any, input_names: list[str]):
    """Return a function running ``module`` on numpy inputs (by name) and returning numpy outputs."""

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            args = [torch.from_numpy(np.ascontiguousarray(feeds[name])) for name in input_names]
            return _flatten_outputs(module(*args))

    return run


def _specs_from_exported_program(program: torch.export.ExportedProgram) -> list[TensorSpec]:
    user_inputs = set(program.graph_signature.user_inputs)
    specs = []
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in user_inputs:
            continue
        value = node.meta.get("val")
        if not isinstance(value, torch.Tensor):
            raise InputError(
                f"input {node.name!r} of the ExportedProgram is not a tensor; edgeport needs tensor inputs"
            )
        shape = [
            int(d) if isinstance(d, int) or str(d).isdigit() else "batch" if i == 0 else str(d)
            for i, d in enumerate(value.shape)
        ]
        specs.append(TensorSpec(node.name, shape, _TORCH_DTYPES.get(value.dtype, "float32")))
    return specs


def _forward_arg_names(module: Any) -> list[str]:
    if isinstance(module, torch.jit.ScriptModule):
        return [arg.name for arg in module.forward.schema.arguments[1:]]
    params = inspect.signature(module.forward).parameters.values()
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def specs_from_flags(arg_names: list[str], options: SourceOptions, form: str) -> list[TensorSpec]:
    """Build input specs from ``--input_shape``/``--input_dtype``/``--dynamic_batch``.

    Raises InputError when shapes are missing or name inputs the model does not have.
    """
    shapes: list[InputShape] = options.input_shape
    if not shapes:
        raise InputError(
            f"--input_shape is required for a {form} model: its input shapes are not stored in the file",
            hint="e.g. --input_shape 1,3,224,224 (or name:1,3,224,224 for each input)",
        )
    if len(shapes) == 1 and shapes[0].name is None:
        if not arg_names:
            raise InputError("cannot tell the model's input name from its forward(); name it in --input_shape")
        shapes = [InputShape(arg_names[0], shapes[0].dims)]
    for shape in shapes:
        if arg_names and shape.name not in arg_names:
            raise InputError(f"--input_shape names {shape.name!r}, but forward() takes {', '.join(arg_names)}")
    specs = []
    for shape in shapes:
        dtype = options.input_dtype.get(shape.name, options.input_dtype.get(None, "float32"))
        dims: list[int | str] = list(shape.dims)
        if options.dynamic_batch and dims:
            dims[0] = "batch"
        specs.append(TensorSpec(shape.name or "input", dims, dtype))
    return specs


def _load_pickled_file(path: Path, options: SourceOptions) -> tuple[Any, str]:
    """Load a torch.save file: a state_dict (safe) or, only with --allow-pickle, a whole module."""
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr: not the user's concern
            warnings.simplefilter("ignore")
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not options.allow_pickle:
            raise InputError(
                f"{path} holds pickled Python objects (not just weights); loading it could run arbitrary code",
                hint="if you trust the file pass --allow-pickle, or save a state_dict and use --model_class",
            ) from exc
        loaded = None
    except _CORRUPT_FILE_ERRORS as exc:  # a damaged pickle stream: torch's unpickler fails in any of these
        raise InputError(f"{path} is not a readable PyTorch file: {describe_exception(exc)}") from exc
    if loaded is None:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise InputError(f"{path} could not be unpickled: {type(exc).__name__}: {exc}") from exc
        if not isinstance(loaded, torch.nn.Module):
            raise InputError(f"{path} unpickled to a {type(loaded).__name__}, not a torch.nn.Module")
        return loaded, "pickle"
    state = loaded
    if isinstance(state, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(state.get(key), Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path} holds a {type(loaded).__name__}, not a state_dict of tensors or a model")
    if not options.model_class:
        raise InputError(
            f"{path} is a state_dict (weights only): pass --model_class so edgeport can build the model",
            hint="--model_class package.module:Class or path/file.py:Class",
        )
    model_class = import_object(options.model_class, "--model_class")
    try:
        model = model_class()
    except Exception as exc:
        raise InputError(f"--model_class {options.model_class}() raised {type(exc).__name__}: {exc}") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()
        raise InputError(
            f"the state_dict does not fit {options.model_class}: {first[1].strip() if len(first) > 1 else first[0]}"
        ) from exc
    return model, "state_dict"


def load_torch_file(path: Path, options: SourceOptions) -> SourceModel:
    """Ingest a PyTorch file (ExportedProgram, TorchScript, state_dict or pickled module)."""
    kind = _archive_kind(path)
    notes: list[str] = []
    if kind == "exported_program":
        guard = contextlib.nullcontext() if options.allow_pickle else _weights_only_unpickling()
        try:
            with guard:
                program = torch.export.load(path)
        except pickle.UnpicklingError as exc:
            raise InputError(
                f"{path} holds pickled Python objects besides the program; loading them could run arbitrary code",
                hint="if you trust the file pass --allow-pickle, or re-save it with torch.export.save",
            ) from exc
        except Exception as exc:
            raise InputError(f"{path} is not a loadable torch.export program: {describe_exception(exc)}") from exc
        specs = _specs_from_exported_program(program)
        if options.input_shape:
            notes.append("--input_shape ignored: the ExportedProgram declares its input shapes")
        module = program.module()
        return SourceModel(
            "pytorch",
            "exported_program",
            str(path),
            sha256_file(path),
            specs,
            make_torch_runner(module, [s.name for s in specs]),
            program,
            notes,
        )
    if kind == "torchscript":
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise InputError(
                f"{path} is not a loadable TorchScript file: {describe_exception(exc, with_type=False)}"
            ) from exc
        form = "torchscript"
    else:
        module, form = _load_pickled_file(path, options)
    module.eval()
    specs = specs_from_flags(_forward_arg_names(module), options, form)
    return SourceModel(
        "pytorch",
        form,
        str(path),
        sha256_file(path),
        specs,
        make_torch_runner(module, [s.name for s in specs]),
        module,
        notes,
    )


def load_torch_factory(ref: str, options: SourceOptions) -> SourceModel:
    """Ingest a ``module:factory`` reference: a callable returning an nn.Module (or the module itself)."""
    target = import_object(ref, "--input_model")
    if isinstance(target, torch.nn.Module):
        module = target
    elif callable(target):
        try:
            module = target()
        except Exception as exc:
            raise InputError(f"{ref}() raised {type(exc).__name__}: {exc}") from exc
    else:
        raise InputError(f"{ref} is neither a torch.nn.Module nor a callable returning one")
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"{ref} returned a {type(module).__name__}, not a torch.nn.Module")
    module.eval()
    specs = specs_from_flags(_forward_arg_names(module), options, "factory")
    return SourceModel(
        "pytorch", "factory", ref, None, specs, make_torch_runner(module, [s.name for s in specs]), module, []
    )
