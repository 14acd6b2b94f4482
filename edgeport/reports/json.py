"""``report.json``: writing, reading and checking the versioned report document."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from edgeport.core.errors import InputError

REPORT_SCHEMA = "edgeport.report"
REPORT_VERSION = 1
REQUIRED_SECTIONS = ("status", "model", "target", "decisions", "data", "fidelity", "latency", "size")
# Optional sections are null when their stage did not run. "pruning" (--prune): method,
# requested, budget (max_accuracy_drop, quantization_reserve, pruning_budget, metric), layers
# (per layer: channels kept or sparsity, measured sensitivity), attempts (each cut tried, its
# drop, its recovery), stages (original, pruned, pruned + quantized: params, nonzero_params,
# macs, bytes, gzip_bytes, latency_ms, speedup, top1, drop vs the original), what_it_buys.


def _json_safe(value: Any) -> Any:
    """Replace non-finite floats (which JSON cannot hold) with strings, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else "-inf" if value < 0 else "nan"
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def make_report(sections: dict[str, Any]) -> dict[str, Any]:
    """Return the report document: the schema header followed by ``sections``, JSON-safe."""
    missing = [s for s in REQUIRED_SECTIONS if s not in sections]
    if missing:
        raise ValueError(f"report is missing sections {missing}")
    return _json_safe({"schema": REPORT_SCHEMA, "schema_version": REPORT_VERSION, **sections})


def write_report(report: dict[str, Any], path: Path) -> None:
    """Write the report as indented JSON."""
    path.write_text(json.dumps(report, indent=2) + "\n")


def read_report(path: Path) -> dict[str, Any]:
    """Read and check a report.json; raise InputError when it is not an edgeport report."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read report {path}: {exc}") from exc
    if not isinstance(report, dict) or report.get("schema") != REPORT_SCHEMA:
        raise InputError(f"{path} is not an edgeport report.json")
    if report.get("schema_version") != REPORT_VERSION:
        raise InputError(
            f"{path} has report schema version {report.get('schema_version')}; this edgeport reads {REPORT_VERSION}"
        )
    return report
