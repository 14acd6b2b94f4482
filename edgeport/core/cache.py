"""Where edgeport caches what it may reuse across runs (CI builds, per-layer sensitivities);
``core/cache_store.py`` keeps the entries (atomic, locked, hash-checked, size-capped)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(option: str | Path | None = None) -> Path:
    """The cache folder: ``option`` (``--cache``), else ``$EDGEPORT_CACHE_DIR``, else ``~/.cache/edgeport``."""
    if option:
        return Path(option).expanduser().resolve()
    env = os.environ.get("EDGEPORT_CACHE_DIR")
    return Path(env).expanduser().resolve() if env else Path.home() / ".cache" / "edgeport"
