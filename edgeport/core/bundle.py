"""Bundles: an artifact's folder, written to a temporary folder and renamed into place, so
that no reader ever sees a half-written bundle, and a manifest with every file's sha256."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeport.core.errors import InputError
from edgeport.core.hashing import sha256_file, sha256_path

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


class BundleWriter:
    """Collects files in a hidden temporary folder beside ``final_dir``; ``commit`` renames it.

    Refuses to replace an existing folder that is not an edgeport bundle (the user's data).
    Use as a context manager: an exception (or Ctrl-C) removes the temporary folder.
    """

    def __init__(self, final_dir: Path) -> None:
        self.final_dir = final_dir
        if final_dir.exists() and (
            not final_dir.is_dir() or (any(final_dir.iterdir()) and not (final_dir / MANIFEST).is_file())
        ):
            raise InputError(
                f"output folder {final_dir} exists and is not an edgeport bundle; refusing to overwrite it",
                hint="choose another --output_dir or remove that folder",
            )
        try:
            final_dir.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.partial-", dir=final_dir.parent))
        except OSError as exc:
            raise InputError(f"cannot write to {final_dir.parent}: {exc.strerror}") from exc
        self.committed = False

    def __enter__(self) -> BundleWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        if not self.committed:
            with signals_deferred():  # a second Ctrl-C must not stop the cleanup half-way
                shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, name: str) -> Path:
        """Return where to write the bundle file ``name`` (inside the temporary folder)."""
        return self.tmp / name

    def file_hashes(self) -> dict[str, dict[str, Any]]:
        """Return ``{relative name: {sha256, bytes}}`` for every file written so far."""
        return {
            str(p.relative_to(self.tmp)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(self.tmp.rglob("*"))
            if p.is_file() and p.name != MANIFEST
        }

    def directory_hashes(self) -> dict[str, dict[str, Any]]:
        """Return ``{folder name: {sha256, files, bytes}}`` for each top-level folder (a Core ML
        ``.mlpackage`` is a folder): its files are also listed one by one under ``files``; this
        entry lets a check notice a file added to the folder, which no per-file hash can."""
        return {
            p.name: {
                "sha256": sha256_path(p),
                "files": sum(1 for f in p.rglob("*") if f.is_file()),
                "bytes": path_bytes(p),
            }
            for p in sorted(self.tmp.iterdir())
            if p.is_dir()
        }

    def commit(self, manifest: dict[str, Any]) -> Path:
        """Write ``manifest.json`` (with the files' hashes) and move the bundle into place."""
        manifest = {"manifest_version": MANIFEST_VERSION, **manifest, "files": self.file_hashes()}
        directories = self.directory_hashes()
        if directories:
            manifest["directories"] = directories
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        old = None
        with signals_deferred():  # the renames run to the end: never a bundle moved away and none in place
            if self.final_dir.exists():
                old = self.final_dir.with_name(f".{self.final_dir.name}.old-{self.tmp.name.rsplit('-', 1)[-1]}")
                self.final_dir.rename(old)
            self.tmp.rename(self.final_dir)
            self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final_dir


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back (delivered when the block ends) in the main thread, so that
    a cleanup or a rename sequence is never cut in half by an interrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def path_bytes(path: Path | str) -> int:
    """Size of a file, or the total size of the files in a folder (an ``.mlpackage``)."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def copy_path(source: Path | str, target: Path | str) -> None:
    """Copy a file or a folder (an ``.mlpackage``) to ``target``, replacing what is there."""
    source, target = Path(source), Path(target)
    if source.is_dir():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
    else:
        shutil.copyfile(source, target)
