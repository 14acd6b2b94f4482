"""Artifact sizes: the ``--max_size`` grammar, the bytes an artifact occupies on disk (with its
external data) and a readable rendering of a byte count.

Download sizes are counted in decimal units (1 MB = 1,000,000 bytes), as browsers' network
panels and HTTP tooling show them; ``KiB``/``MiB``/``GiB`` are accepted for binary units.
(``--max_memory`` stays binary: RAM is sold and limited in powers of two.)
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from edgeport.core.errors import InputError

_DECIMAL = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_BINARY = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*(?:([kmgt])(i)?b?|(b))?\s*")
HINT = "e.g. 10MB, 500KB, 1.5GB, 8MiB or a number of bytes"


def parse_size(value: str | int | float, flag: str = "--max_size") -> int:
    """Parse ``10MB``, ``500KB``, ``1.5GB``, ``8MiB`` or a plain number of bytes; return bytes.

    Units are decimal (``MB`` = 10**6) unless written ``KiB``/``MiB``/``GiB``/``TiB``; case is
    ignored. Raises InputError (one line naming ``flag``) for anything else or a size < 1 byte.
    """
    if isinstance(value, bool):
        raise InputError(f"bad {flag} {value!r}", hint=HINT)
    if isinstance(value, int | float):
        size = float(value)
    else:
        match = _SIZE_RE.fullmatch(str(value).lower())
        if not match:
            raise InputError(f"bad {flag} {value!r}", hint=HINT)
        unit, binary = match.group(2) or "", match.group(3)
        size = float(match.group(1)) * (_BINARY[unit] if binary else _DECIMAL[unit])
    if not math.isfinite(size) or size < 1:
        raise InputError(f"bad {flag} {value!r}: it must be a size of at least 1 byte", hint=HINT)
    return int(size)


def format_size(size: int | float) -> str:
    """Return ``size`` bytes as a short decimal figure: ``812 B``, ``45.2 KB``, ``12.3 MB``, ``1.50 GB``."""
    for unit, factor in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if size >= factor:
            value = size / factor
            return f"{value:.2f} {unit}" if value < 10 else f"{value:.1f} {unit}"
    return f"{int(size)} B"


def artifact_bytes(path: Path | str) -> int:
    """Return the bytes an artifact occupies on disk: a file plus the external data files it names
    (an ONNX model's ``<name>.data`` beside it), or every file of a folder (an ``.mlpackage``).

    The external data is what a page or an app downloads with the model, so a size budget counts it.
    """
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    total = path.stat().st_size
    for companion in external_files(path):
        total += companion.stat().st_size
    return total


def external_files(path: Path) -> list[Path]:
    """Return the external data files beside ONNX model ``path`` that it references (read from the
    model's initializers without loading their data); [] for other files or when there are none."""
    if path.suffix != ".onnx":
        return []
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001  (an unreadable file has no companions we could count)
        return []
    names = set()
    tensors = list(model.graph.initializer)
    for node in model.graph.node:  # Constant nodes may hold external tensors too
        tensors += [a.t for a in node.attribute if a.HasField("t")]
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            names.update(e.value for e in tensor.external_data if e.key == "location")
    return [path.parent / name for name in sorted(names) if (path.parent / name).is_file()]


def over_budget(size: int, budget: int) -> str:
    """Return how ``size`` compares with ``budget`` in words: ``12.3 MB against the 10.0 MB budget:
    23% over`` (or ``... 8% under``)."""
    share = (size - budget) / budget * 100
    side = "over" if size > budget else "under"
    return f"{format_size(size)} against the {format_size(budget)} budget: {abs(share):.0f}% {side}"
