"""A bundle's ``manifest.json`` as ``edgeport verify`` reads it: the file, its schema version,
the types of the fields verify uses, and every listed file against its size and sha256.

Each problem is one line naming the file or field: a missing or unreadable file, a manifest
written by a newer edgeport, a missing folder (``web/``), a file that cannot be read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeport.core.bundle import MANIFEST, MANIFEST_VERSION
from edgeport.core.errors import InputError, describe_exception
from edgeport.core.hashing import sha256_file, sha256_path
from edgeport.core.version import __version__


def _unreadable(path: Path, exc: OSError) -> InputError:
    reason = "permission denied" if isinstance(exc, PermissionError) else exc.strerror or describe_exception(exc)
    return InputError(f"cannot read {path}: {reason}")


def load_manifest(bundle_dir: Path) -> dict[str, Any]:
    """Read ``manifest.json`` of ``bundle_dir``, check its schema version and the types of the
    fields verify uses; raise InputError (one line) when it is missing, unreadable, from a newer
    edgeport or malformed."""
    path = bundle_dir / MANIFEST
    if not bundle_dir.is_dir():
        raise InputError(f"{bundle_dir} is not a folder (give an edgeport bundle folder)")
    try:
        manifest = json.loads(path.read_bytes())
    except FileNotFoundError as exc:
        raise InputError(f"{bundle_dir} has no {MANIFEST}: not an edgeport bundle") from exc
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InputError(f"{path} is not valid JSON: {describe_exception(exc, with_type=False)}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict) or "runner" not in manifest:
        raise InputError(f"{path} is not an edgeport manifest (no files or runner)")
    check_version(path, manifest)
    check_fields(path, manifest)
    return manifest


def check_version(path: Path, manifest: dict[str, Any]) -> None:
    """Refuse a manifest of a newer schema than this edgeport reads, naming the edgeport that
    wrote it. A manifest without ``manifest_version`` predates the field: version 1."""
    version = manifest.get("manifest_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError(f"{path}: manifest_version {version!r} is not a schema version (1, 2, ...)")
    if version > MANIFEST_VERSION:
        writer = manifest.get("edgeport")
        by = f"edgeport {writer}" if isinstance(writer, str) and writer else "a newer edgeport"
        raise InputError(
            f"{path} was written by {by} (manifest version {version}); this edgeport {__version__} reads "
            f"manifest version {MANIFEST_VERSION}",
            hint="upgrade edgeport to verify this bundle",
        )


def _fail(path: Path, field: str, message: str) -> InputError:
    return InputError(f"{path}: field {field!r} {message}")


def _entries(path: Path, manifest: dict[str, Any], key: str, numbers: tuple[str, ...]) -> None:
    """``files``/``directories``: a mapping of relative names to ``{sha256: str, <numbers>: int}``."""
    entries = manifest.get(key)
    if entries is None and key == "directories":
        return
    if not isinstance(entries, dict):
        raise _fail(path, key, "must be a mapping of file names")
    for name, entry in entries.items():
        ok = isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
        ok = ok and all(isinstance(entry.get(n), int) and not isinstance(entry.get(n), bool) for n in numbers)
        if not name or not ok:
            raise _fail(path, f"{key}.{name}", f"must be {{sha256, {', '.join(numbers)}}}")


def _specs(path: Path, manifest: dict[str, Any], key: str) -> None:
    """``inputs``/``outputs``: a list of ``{name: str, shape: [int or str], dtype: str}``."""
    specs = manifest.get(key)
    if specs is None:
        return
    if not isinstance(specs, list):
        raise _fail(path, key, "must be a list of tensors")
    for i, spec in enumerate(specs):
        ok = isinstance(spec, dict) and isinstance(spec.get("name"), str) and isinstance(spec.get("dtype"), str)
        shape = spec.get("shape") if isinstance(spec, dict) else None
        ok = ok and isinstance(shape, list) and all(isinstance(d, int | str) and d is not True for d in shape)
        if not ok:
            raise _fail(path, f"{key}[{i}]", "must be {name, shape: [dims], dtype}")


def check_fields(path: Path, manifest: dict[str, Any]) -> None:
    """InputError naming the first field verify reads whose type is wrong."""
    _entries(path, manifest, "files", ("bytes",))
    _entries(path, manifest, "directories", ("files",))
    runner = manifest.get("runner")
    if not isinstance(runner, dict) or not isinstance(runner.get("kind"), str):
        raise _fail(path, "runner", "must be {kind, file, kwargs}")
    if not isinstance(runner.get("file"), str | None) or not isinstance(runner.get("kwargs"), dict | None):
        raise _fail(path, "runner", "must be {kind, file, kwargs}")
    if not isinstance(manifest.get("reference_for_timing"), str | None):
        raise _fail(path, "reference_for_timing", "must be a file name")
    _specs(path, manifest, "inputs")
    _specs(path, manifest, "outputs")


def _inside(root: Path, bundle_dir: Path, name: str, what: str) -> Path:
    """The listed ``name`` under ``bundle_dir``; InputError when it points outside the bundle."""
    try:
        path = (bundle_dir / name).resolve()
        path.exists()  # a name the file system refuses (too long, a NUL byte) fails here
    except (OSError, ValueError) as exc:
        raise InputError(f"manifest lists {what}{name!r}, not a usable file name; refusing it") from exc
    if Path(name).is_absolute() or ".." in Path(name).parts or not path.is_relative_to(root):
        raise InputError(f"manifest lists {what}{name!r}, outside the bundle; refusing it")
    return path


def _missing_folders(bundle_dir: Path, names: list[str]) -> None:
    """InputError for a top-level folder (``web/``) the manifest lists files in but that is gone."""
    folders: dict[str, int] = {}
    for name in names:
        parts = Path(name).parts
        if len(parts) > 1:
            folders[parts[0]] = folders.get(parts[0], 0) + 1
    for folder, count in sorted(folders.items()):
        if not (bundle_dir / folder).is_dir():
            raise InputError(
                f"bundle folder {folder}/ is missing from {bundle_dir} (the manifest lists {count} files in it)"
            )


def check_files(bundle_dir: Path, manifest: dict[str, Any]) -> int:
    """Check every file listed in the manifest against its size and sha256.

    Returns the number of files checked. Raises InputError naming the first file that is
    missing, unreadable, truncated/grown or changed, a missing folder, or a listed name that
    points outside the bundle.
    """
    root = bundle_dir.resolve()
    _missing_folders(bundle_dir, list(manifest["files"]))
    for name, expected in sorted(manifest["files"].items()):
        path = _inside(root, bundle_dir, name, "")
        if not path.is_file():
            raise InputError(f"bundle file {name} is missing from {bundle_dir} (the manifest lists it)")
        size = path.stat().st_size
        if size != expected.get("bytes"):
            raise InputError(
                f"bundle file {name} has {size} bytes, the manifest says {expected.get('bytes')}: truncated or changed"
            )
        try:
            digest = sha256_file(path)
        except OSError as exc:
            raise _unreadable(path, exc) from exc
        if digest != expected.get("sha256"):
            raise InputError(f"bundle file {name} does not match its sha256 in the manifest: changed or corrupt")
    # A folder artifact (.mlpackage): its files are checked above; its listing catches added files.
    for name, expected in sorted((manifest.get("directories") or {}).items()):
        path = _inside(root, bundle_dir, name, "folder ")
        if not path.is_dir():
            raise InputError(f"bundle folder {name} is missing from {bundle_dir} (the manifest lists it)")
        try:
            count = sum(1 for f in path.rglob("*") if f.is_file())
            digest = sha256_path(path)
        except OSError as exc:
            raise _unreadable(path, exc) from exc
        if count != expected.get("files") or digest != expected.get("sha256"):
            raise InputError(
                f"bundle folder {name} holds {count} files that do not match the manifest "
                f"({expected.get('files')} files, sha256 {str(expected.get('sha256'))[:12]}...): changed or corrupt"
            )
    return len(manifest["files"])
