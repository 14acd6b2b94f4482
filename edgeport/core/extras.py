"""Optional dependencies: which pip extra gives what, and the one-line error when one is missing.

The base install converts ONNX models for ONNX Runtime. Frontends and formats that need more
import it through :func:`require`, so a missing package ends in one line naming the extra.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

from edgeport.core.errors import InputError

# extra -> what it enables (README's table is written from the same facts).
EXTRAS = {
    "torch": "PyTorch sources (.pt2, TorchScript, state_dict, pickled modules), pruning by channels",
    "tensorflow": "TensorFlow/Keras sources (SavedModel, .keras, .h5)",
    "huggingface": "Hugging Face model folders (transformers + optimum)",
    "tflite": "TFLite output (onnx2tf, TensorFlow's converter, LiteRT)",
    "coreml": "Core ML output (coremltools)",
}


# What an extra cannot declare: onnx2tf pins numpy 1.26, protobuf 4.25 and tensorflow 2.19 exactly,
# which conflict with the rest, so it is installed without its dependencies (it then works with
# the extra's versions; ../shared/STACK.md). The version is the tested one (the Makefile's).
NO_DEPS = {"tflite": "onnx2tf==1.29.24"}


def missing_extra(what: str, extra: str) -> InputError:
    """Return the InputError (exit 2) for ``what`` needing the pip extra ``extra``; its hint is
    the one pip command line that installs it."""
    hint = f"pip install 'edgeport[{extra}]'"
    if extra in NO_DEPS:
        hint += f" && pip install --no-deps {NO_DEPS[extra]}"
    return InputError(f"{what} needs the '{extra}' extra, which is not installed", hint=hint)


def require(module: str, what: str, extra: str) -> ModuleType:
    """Import ``module`` and return it; raise :func:`missing_extra` when it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and module.split(".")[0] != exc.name.split(".")[0] and "No module" not in str(exc):
            raise
        raise missing_extra(what, extra) from exc


def require_installed(modules: Sequence[str], what: str, extra: str) -> None:
    """Raise :func:`missing_extra` unless every top-level module in ``modules`` is installed.

    Looks the modules up without importing them: the TFLite backend runs TensorFlow and
    onnx2tf in a child process, so importing them here would only cost start-up time.
    """
    for module in modules:
        if importlib.util.find_spec(module.split(".")[0]) is None:
            raise missing_extra(what, extra)


def import_hiding(module: str, hidden: Sequence[str]) -> ModuleType:
    """Import ``module`` while the packages ``hidden`` look uninstalled to it; return the module.

    onnxruntime's ``tools`` package imports torch merely because torch is installed: an ONNX-only
    conversion would pay seconds and hundreds of MB for it. Packages already imported (a torch
    source was loaded) are left alone.
    """
    hide = [name for name in hidden if name not in sys.modules]
    for name in hide:
        sys.modules[name] = None  # type: ignore[assignment]  # find_spec() then answers None
    try:
        return importlib.import_module(module)
    finally:
        for name in hide:
            sys.modules.pop(name, None)
