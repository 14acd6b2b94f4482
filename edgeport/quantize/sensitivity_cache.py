"""The per-layer sensitivity cache: results keyed by a content hash of the model, plan scheme,
format and data, in ``$EDGEPORT_CACHE_DIR`` (default ``~/.cache/edgeport``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx

from edgeport.core.cache import cache_root
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


def load_cached_sensitivity(path: Path) -> dict[str, LayerSensitivity] | None:
    """The cached sensitivity at ``path``, or None when absent or unreadable."""
    try:
        data = json.loads(path.read_text())
        return {name: LayerSensitivity(**entry) for name, entry in data.items()}
    except (OSError, ValueError, TypeError):
        return None


def store_cached_sensitivity(path: Path, sensitivity: dict[str, LayerSensitivity]) -> None:
    """Write the sensitivity to ``path`` atomically; a cache that cannot be written is skipped."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: v.as_dict() for k, v in sensitivity.items()}))
        tmp.replace(path)
    except OSError:
        pass
