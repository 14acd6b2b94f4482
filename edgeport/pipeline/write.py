"""Write one run's last bundle files (the reference samples, report.json and report.html) and
commit the bundle with its manifest, so it appears whole or not at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeport.core import quiet
from edgeport.core.bundle import BundleWriter
from edgeport.pipeline.prepare import Normalized
from edgeport.reports.html import write_html
from edgeport.reports.json import write_report


def save_reference(
    path: Path,
    feeds: dict[str, np.ndarray],
    output_names: list[str],
    outputs: list[np.ndarray],
    labels: np.ndarray | None,
) -> None:
    """Write reference.npz: ``inputs/<name>``, the source's ``outputs/<name>``, and ``labels``."""
    arrays = {f"inputs/{k}": v for k, v in feeds.items()}
    arrays.update({f"outputs/{name}": v for name, v in zip(output_names, outputs, strict=True)})
    if labels is not None:
        arrays["labels"] = labels[: len(next(iter(feeds.values())))]
    np.savez_compressed(path, **arrays)


def write_bundle(
    writer: BundleWriter,
    reference_feeds: dict[str, np.ndarray],
    normalized: Normalized,
    labels: np.ndarray | None,
    report: dict[str, Any],
    manifest: dict[str, Any],
) -> Path:
    """Write reference.npz (the reference feeds, the source's outputs on them
    and the eval labels), report.json and report.html into ``writer``, then commit it with
    ``manifest``. Returns the committed bundle folder.

    When the CLI captured the libraries' output (:mod:`edgeport.core.quiet`), the log goes in
    too as ``logs/runtime.log`` (listed in the manifest like every file)."""
    save_reference(
        writer.path("reference.npz"), reference_feeds, normalized.output_names, normalized.reference_outputs, labels
    )
    write_report(report, writer.path("report.json"))
    write_html(report, writer.path("report.html"))
    quiet.copy_log(writer.path(quiet.BUNDLE_LOG))
    bundle = writer.commit(manifest)
    quiet.discard_failure_log()  # a failed attempt that was retried: its log is in the bundle's
    return bundle
