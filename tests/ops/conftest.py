"""The custom-op example's fixtures (``custom_op_models``) live in tests/conftest.py: the format
tests (tests/formats/tflite, tests/formats/coreml) convert the same models, trained once per session."""

from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
