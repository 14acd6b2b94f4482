"""Bundles: an artifact's folder, written to a temporary folder and renamed into place, so
that no reader ever sees a half-written bundle, and a manifest with every file's sha256."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgeport.errors import InputError
from edgeport.hashing import sha256_file

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

    def commit(self, manifest: dict[str, Any]) -> Path:
        """Write ``manifest.json`` (with the files' hashes) and move the bundle into place."""
        manifest = {"manifest_version": MANIFEST_VERSION, **manifest, "files": self.file_hashes()}
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        old = None
        if self.final_dir.exists():
            old = self.final_dir.with_name(f".{self.final_dir.name}.old-{self.tmp.name.rsplit('-', 1)[-1]}")
            self.final_dir.rename(old)
        self.tmp.rename(self.final_dir)
        self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final_dir
