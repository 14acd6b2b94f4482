"""Optional dependencies: which pip extra gives what, and the one-line error when one is missing.

The base install converts ONNX models for ONNX Runtime. Frontends and formats that need more
import it through :func:`require`, so a missing package ends in one line naming the extra.
"""

from __future__ import annotations

import importlib
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


def missing_extra(what: str, extra: str) -> InputError:
    """Return the InputError (exit 2) for ``what`` needing the pip extra ``extra``."""
    return InputError(
        f"{what} needs the '{extra}' extra, which is not installed",
        hint=f"pip install 'edgeport[{extra}]'",
    )


def require(module: str, what: str, extra: str) -> ModuleType:
    """Import ``module`` and return it; raise :func:`missing_extra` when it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and module.split(".")[0] != exc.name.split(".")[0] and "No module" not in str(exc):
            raise
        raise missing_extra(what, extra) from exc
