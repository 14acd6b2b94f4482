"""Reading .npz/.npy arrays without unpickling and without reading more rows than asked for:
``.npz`` members are parsed header-first, ragged members (``name/0``, ``name/1``...) grouped."""

from __future__ import annotations

import math
import re
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from edgeport.core.errors import InputError, describe_exception
from edgeport.core.limits import check_zip_archive

# What reading a damaged archive member can raise: zipfile's own errors, a bad offset (OSError,
# ValueError), a damaged deflate stream (zlib.error), an unknown compression method
# (NotImplementedError) or an encrypted member (RuntimeError).
_MEMBER_ERRORS = (ValueError, zipfile.BadZipFile, EOFError, OSError, zlib.error, NotImplementedError, RuntimeError)

# ``name/<i>`` members of an .npz: sample i of input ``name`` (ragged data, one array per sample)
RAGGED_KEY = re.compile(r"^(?P<name>.+)/(?P<index>\d+)$")


def _read_npy_rows(stream, max_rows: int | None, label: str, available: int) -> np.ndarray:
    """Read at most ``max_rows`` rows of a .npy stream without reading the rest.

    ``available`` is the size of the stream in bytes: a header declaring more data than that is
    refused before a buffer of the declared size is allocated.
    """
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    except (SyntaxError, tokenize.TokenError, TypeError) as exc:  # numpy tokenizes old headers
        raise InputError(f"{label} has a damaged .npy header: {describe_exception(exc, with_type=False)}") from exc
    if dtype.hasobject:
        raise InputError(f"{label} holds Python objects; edgeport reads numeric arrays only (no pickle)")
    if fortran and len(shape) > 1:
        raise InputError(f"{label} is stored in Fortran order; save it with np.ascontiguousarray")
    rows = shape[0] if shape else 1
    if max_rows is not None:
        rows = min(rows, max_rows)
    row_items = math.prod(shape[1:])  # Python ints: a crafted header must not overflow int64
    count = rows * row_items
    if count * dtype.itemsize > available:
        raise InputError(f"{label} is truncated: its header declares shape {list(shape)}, more than the file holds")
    buffer = stream.read(count * dtype.itemsize)
    if len(buffer) != count * dtype.itemsize:
        raise InputError(f"{label} is truncated")
    return np.frombuffer(buffer, dtype=dtype).reshape((rows, *shape[1:]) if shape else ())


def read_arrays(path: Path, max_rows: int | None) -> dict[str, np.ndarray]:
    """Read the arrays of a .npy file (as ``x``) or of a .npz archive (by member name), at most
    ``max_rows`` rows each (ragged members ``name/<i>``: samples ``i < max_rows``, whole).

    Returns ``{name: array}``; raises InputError on an invalid file, object arrays or no arrays.
    """
    if path.suffix == ".npy":
        try:
            with open(path, "rb") as f:
                return {"x": _read_npy_rows(f, max_rows, str(path), path.stat().st_size)}
        except (ValueError, EOFError) as exc:
            raise InputError(f"{path} is not a valid .npy file: {describe_exception(exc, with_type=False)}") from exc
    check_zip_archive(path, None)  # members are read partially: only bombs are refused here
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InputError(f"{path} is not a valid .npz file: {describe_exception(exc, with_type=False)}") from exc
    arrays = {}
    with archive:
        for info in archive.infolist():
            member = info.filename
            if not member.endswith(".npy"):
                continue
            ragged = RAGGED_KEY.match(member[:-4])
            if ragged and max_rows is not None and int(ragged["index"]) >= max_rows:
                continue  # a sample past --*_samples: never read
            try:
                with archive.open(info) as f:
                    # a ragged member is one whole sample: its first axis is no sample axis
                    rows = None if ragged else max_rows
                    arrays[member[:-4]] = _read_npy_rows(f, rows, f"{path}:{member}", info.file_size)
            except _MEMBER_ERRORS as exc:
                raise InputError(
                    f"{path}: member {member} is not a valid array: {describe_exception(exc, with_type=False)}"
                ) from exc
    if not arrays:
        raise InputError(f"{path} contains no arrays")
    return arrays


def group_ragged(arrays: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray | list[np.ndarray]]:
    """Gather ``name/0``, ``name/1``... members into one list of samples per name (in index order).

    Raises InputError when the indices of a name are not 0..n-1 or a name is also a plain array.
    """
    grouped: dict[str, np.ndarray | list[np.ndarray]] = {}
    ragged: dict[str, dict[int, np.ndarray]] = {}
    for key, array in arrays.items():
        match = RAGGED_KEY.match(key)
        if match:
            ragged.setdefault(match["name"], {})[int(match["index"])] = array
        else:
            grouped[key] = array
    for name, samples in ragged.items():
        if name in grouped:
            raise InputError(f"{path} holds both an array {name!r} and per-sample arrays '{name}/0'...; keep one")
        if sorted(samples) != list(range(len(samples))):
            missing = sorted(set(range(max(samples) + 1)) - set(samples))
            raise InputError(
                f"{path}: per-sample arrays of {name!r} skip index {missing[0]}",
                hint=f"name them {name}/0, {name}/1, ...",
            )
        grouped[name] = [samples[i] for i in range(len(samples))]
    return grouped
