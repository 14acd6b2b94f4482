"""The per-layer sensitivity cache: results keyed by a content hash of the model, plan scheme,
format and data, in ``$EDGEPORT_CACHE_DIR`` (default ``~/.cache/edgeport``), kind
``sensitivity`` of the shared cache store (``core/cache_store.py``: atomic entries under a lock,
checked by their sha256, least recently used evicted over ``$EDGEPORT_CACHE_MAX``).

An entry is named by a path ``<cache>/sensitivity/<key>.json``: the store keeps it in the folder
``<cache>/sensitivity/<key>/``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx

from edgeport.core.cache import cache_root
from edgeport.core.cache_store import CacheStore
from edgeport.core.plan import PrecisionPlan
from edgeport.quantize.sensitivity import LayerSensitivity

# Part of the cache key: a change in how sensitivity is computed must not reuse old entries.
SENSITIVITY_METHOD = "simulated; measured on the format's runtime, or ONNX Runtime as its proxy (v2)"


def sensitivity_cache_path(
    model: onnx.ModelProto, plan: PrecisionPlan, output_format: str, feeds: list[dict[str, np.ndarray]]
) -> Path:
    """Where the sensitivity of this model, plan scheme/details, format and data is cached
    (``$EDGEPORT_CACHE_DIR`` or ``~/.cache/edgeport``), keyed by a content hash."""
    digest = hashlib.sha256(model.SerializeToString())
    digest.update(
        json.dumps(
            [SENSITIVITY_METHOD, plan.scheme, plan.details, output_format, sorted(plan.layers)],
            sort_keys=True,
            default=str,
        ).encode()
    )
    for feed in feeds:
        for name in sorted(feed):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(feed[name]).tobytes())
    return cache_root() / "sensitivity" / f"{digest.hexdigest()}.json"


def _store(path: Path) -> tuple[CacheStore, str]:
    """The store and key of the entry named ``path`` (``<root>/<kind>/<key>.json``)."""
    return CacheStore(path.parent.parent, path.parent.name), path.stem


def load_cached_sensitivity(path: Path, notes: list[str] | None = None) -> dict[str, LayerSensitivity] | None:
    """The cached sensitivity named ``path``, or None when absent. An entry that fails its
    sha256 check or does not parse is removed, with a note in ``notes``."""
    store, key = _store(path)
    payload = store.get_bytes(key, notes)
    if payload is None:
        return None
    try:
        data = json.loads(payload)
        return {name: LayerSensitivity(**entry) for name, entry in data.items()}
    except (ValueError, TypeError, AttributeError) as exc:
        store.discard(key, f"unusable content ({type(exc).__name__})", notes, intact_too=True)
        return None


def store_cached_sensitivity(path: Path, sensitivity: dict[str, LayerSensitivity]) -> None:
    """Store the sensitivity under the name ``path`` (atomically, under a lock); a cache that
    cannot be written is skipped."""
    try:
        store, key = _store(path)
        payload = json.dumps({k: v.as_dict() for k, v in sensitivity.items()}).encode()
        store.put_bytes(key, payload)
    except OSError:
        pass
