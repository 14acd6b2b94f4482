"""A python that can import only numpy, onnxruntime and edgeport's runtime package (as a server
or device with just the runtime installed): ``python -S`` with a path of symlinks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnxruntime

import edgeport

RUNTIME = Path(edgeport.__file__).parent / "runtime"
ERRORS = Path(edgeport.__file__).parent / "core" / "errors.py"


def runtime_only_python(root: Path) -> tuple[str, Path]:
    """A python with only numpy and onnxruntime importable (``-S``), and a folder holding
    edgeport/runtime/ and edgeport/core/errors.py under empty package files."""
    site = root / "site"
    site.mkdir()
    for module in (np, onnxruntime):
        folder = Path(module.__file__).parent
        for entry in folder.parent.glob(f"{folder.name}*"):  # numpy, numpy.libs, ...dist-info
            (site / entry.name).symlink_to(entry)
    code = root / "code"
    shutil.copytree(RUNTIME, code / "edgeport" / "runtime", ignore=shutil.ignore_patterns("__pycache__"))
    (code / "edgeport" / "core").mkdir()
    shutil.copyfile(ERRORS, code / "edgeport" / "core" / "errors.py")
    (code / "edgeport" / "core" / "__init__.py").write_text("")
    (code / "edgeport" / "__init__.py").write_text("")
    return f"{site}:{code}", code
