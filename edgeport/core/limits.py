"""Resource limits: the memory budget of one conversion (``--max_memory``) and the checks that
refuse an input early, with a message, instead of letting the OS kill the process.

Everything here looks at sizes a file *declares* (file and folder sizes, zip members'
uncompressed sizes, tensor dims) before anything large is read or allocated.
"""

from __future__ import annotations

import math
import re
import resource
import zipfile
from pathlib import Path

from edgeport.core.errors import InputError

# The default budget when --max_memory is not given: this share of the RAM available now.
DEFAULT_SHARE_OF_AVAILABLE = 0.8
# Peak memory of a conversion, per byte of model weights: the loaded model, the normalized
# ONNX copy, its serialization for ONNX Runtime, the quantized copy and the runtime sessions
# all hold the weights at once (measured peaks of the bundled example were 3-4x its file).
WEIGHT_COPIES = 4
# A zip member (a .keras file's weights, an .npz array) expanding more than this many times its
# archive's size, beyond ZIP_BOMB_MIN_BYTES, is a zip bomb: real weights compress about 1.1x.
ZIP_BOMB_RATIO = 100
ZIP_BOMB_MIN_BYTES = 1 << 30
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_memory(value: str | int | float) -> int:
    """Parse ``4GB``, ``512MB``, ``1.5G``, ``800k`` or a number of bytes; return bytes.

    Units are binary (1 GB = 2**30 bytes). Raises InputError for anything else or a size <= 0.
    """
    if isinstance(value, bool):
        raise InputError(f"bad --max_memory {value!r}", hint="e.g. 4GB, 512MB or a number of bytes")
    if isinstance(value, int | float):
        number, unit = float(value), ""
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(value).lower())
        if not match:
            raise InputError(f"bad --max_memory {value!r}", hint="e.g. 4GB, 512MB or a number of bytes")
        number, unit = float(match.group(1)), match.group(2)
    size = number * _UNITS[unit]
    if not math.isfinite(size) or size < 1:
        raise InputError(f"bad --max_memory {value!r}: it must be a positive size")
    return int(size)


def default_memory_limit() -> int:
    """Return the default budget in bytes: 80% of the RAM available now (psutil), capped by the
    process's address-space limit (``ulimit -v``) when one is set."""
    import psutil

    limit = int(psutil.virtual_memory().available * DEFAULT_SHARE_OF_AVAILABLE)
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limit = min(limit, int(soft * DEFAULT_SHARE_OF_AVAILABLE))
    return max(limit, 1)


def memory_limit(value: str | int | None) -> int:
    """Return the budget in bytes: ``value`` (``--max_memory``) parsed, or the default."""
    return default_memory_limit() if value in (None, "") else parse_memory(value)


def format_bytes(size: float) -> str:
    """Return ``size`` as a short human string (``3.2 GB``, ``512 MB``, ``12 KB``)."""
    for unit, scale in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{int(size)} bytes"


def refuse_over_budget(what: str, needed: float, limit: int) -> None:
    """Raise InputError saying that ``what`` needs ``needed`` bytes, over the ``limit``."""
    if needed > limit:
        raise InputError(
            f"{what} needs about {format_bytes(needed)}, over the memory limit of {format_bytes(limit)}",
            hint="pass --max_memory with a larger budget if the machine has the memory, or use a smaller model",
        )


def check_model_bytes(what: str, weight_bytes: int, limit: int) -> None:
    """Refuse a model whose weights (``weight_bytes``) would not fit the budget ``WEIGHT_COPIES`` times."""
    refuse_over_budget(f"{what} ({format_bytes(weight_bytes)} of weights)", weight_bytes * WEIGHT_COPIES, limit)


def path_size(path: Path) -> int:
    """Return the size of a file, or the total size of the files under a folder (symlinks not followed)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return path.stat().st_size


def tensor_bytes(dims: list[int], itemsize: int) -> float:
    """Bytes of a tensor of ``dims`` (a float: declared dims can make it astronomically large)."""
    return float(math.prod(float(d) for d in dims)) * itemsize


def check_zip_archive(path: Path, limit: int | None) -> None:
    """Refuse a zip archive (``.keras``, ``.npz``, a torch file) that would expand beyond reason.

    Reads only the central directory: overlapping members (the trick of non-recursive zip
    bombs), a total declared size over the memory ``limit`` (None: files read partially, like
    data archives, skip this one), or a total over ZIP_BOMB_RATIO times the archive's size (and
    over ZIP_BOMB_MIN_BYTES) raise InputError. A file that is not a zip archive is left to its
    loader.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError):  # e.g. "zip file version 19.9"
        return  # not a zip (or a damaged one): the format's own loader says what is wrong
    archive_size = max(path.stat().st_size, 1)
    total = sum(m.file_size for m in members)
    offsets = sorted((m.header_offset, m.compress_size) for m in members)
    for (start, size), (next_start, _) in zip(offsets, offsets[1:], strict=False):
        if next_start < start + size or next_start == start:
            raise InputError(
                f"{path} is a zip bomb-like archive: its members overlap "
                f"({len(members)} members declaring {format_bytes(total)})",
                hint="edgeport does not extract archives whose members share data",
            )
    if total > ZIP_BOMB_MIN_BYTES and total > ZIP_BOMB_RATIO * archive_size:
        raise InputError(
            f"{path} is a zip bomb-like archive: {format_bytes(archive_size)} expanding to {format_bytes(total)}",
            hint="model weights do not compress that much; the file was made to exhaust memory or disk",
        )
    if limit is not None:
        refuse_over_budget(f"{path} (expanded)", total, limit)


# Files of a model folder that hold the same weights in another framework's format: a Hugging
# Face folder often ships several, and only one is loaded.
_ALTERNATE_WEIGHTS = (".onnx", ".msgpack", ".ot", ".tflite", ".mlmodel", ".gguf")
_ALTERNATE_NAMES = ("tf_model.h5",)


def model_bytes(path: Path) -> int:
    """Return the bytes of weights edgeport will load from ``path`` (a file, or a model folder
    without the copies of its weights in other formats)."""
    if not path.is_dir():
        return path.stat().st_size
    files = [p for p in path.rglob("*") if p.is_file() and not p.is_symlink() and ".git" not in p.parts]
    has_safetensors = any(p.suffix == ".safetensors" for p in files)
    kept = [
        p
        for p in files
        if p.suffix.lower() not in _ALTERNATE_WEIGHTS
        and p.name not in _ALTERNATE_NAMES
        and not (has_safetensors and p.suffix == ".bin")  # transformers loads safetensors first
    ]
    return sum(p.stat().st_size for p in kept)


def check_input_model(input_model: str, limit: int) -> None:
    """Refuse ``--input_model`` before it is loaded when its weights would not fit ``limit`` or it
    is a zip archive that would expand beyond it (a zip bomb). A missing path is left to
    ingestion (it may be a ``module:factory`` reference)."""
    path = Path(input_model)
    if not path.exists():
        return
    check_model_bytes(str(path), model_bytes(path), limit)
    if path.is_file():
        check_zip_archive(path, limit)


def check_inputs(specs: list, batch: int, limit: int) -> None:
    """Refuse a model whose declared inputs, at the batch the run uses, would not fit ``limit``.

    ``specs`` are TensorSpecs; a symbolic batch axis counts as ``batch``, other symbolic axes as 1
    (their size is set later, by --input_shape or the data).
    """
    import numpy as np

    total = 0.0
    for spec in specs:
        dims = [d if isinstance(d, int) else (batch if i == 0 else 1) for i, d in enumerate(spec.shape)]
        try:
            itemsize = np.dtype(spec.dtype).itemsize
        except TypeError:
            itemsize = 4
        total += tensor_bytes(dims, itemsize)
        refuse_over_budget(f"input {spec.name!r} of shape {spec.shape} (batch {batch})", total, limit)
