"""edgeport: convert a trained model into a verified, device-tuned ONNX/TFLite/Core ML artifact.

The Python API is :func:`edgeport.convert`; the CLI (``edgeport convert`` / ``convert.py``) is a
thin layer over it.
"""

from __future__ import annotations

__version__ = "0.1.0"

from edgeport.api import convert  # noqa: E402
from edgeport.errors import ConversionError, EdgeportError, GateFailed, InputError  # noqa: E402

__all__ = ["convert", "EdgeportError", "InputError", "ConversionError", "GateFailed", "__version__"]
