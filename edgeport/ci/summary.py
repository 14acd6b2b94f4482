"""``summary.json``: one record per target (metrics read from its report.json, gates, regressions
against a baseline summary), the build's verdict, and the merge of several shards' summaries."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgeport.core.errors import InputError
from edgeport.core.version import __version__

SUMMARY_VERSION = 1
SUMMARY = "summary.json"
INDEX = "index.html"
_EPS = 1e-9


def report_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The figures gates and regressions look at, read from a bundle's report.json."""
    fidelity, latency, size, gate = report["fidelity"], report["latency"], report["size"], report["gate"]
    artifact = latency.get("artifact") or {}
    reference = latency.get("reference") or {}
    return {
        "scheme": report["target"]["scheme"],
        "profile": report["target"]["profile"],
        "accuracy_metric": gate["metric"],
        "accuracy_drop": gate["drop"],
        "reference_top1": fidelity.get("reference_top1"),
        "artifact_top1": fidelity.get("artifact_top1"),
        "top1_agreement": fidelity.get("top1_agreement"),
        "fidelity_emulated": bool(fidelity.get("emulated")),
        "latency_p50_ms": artifact.get("p50_ms"),
        "latency_p90_ms": artifact.get("p90_ms"),
        "reference_p50_ms": reference.get("p50_ms"),
        "speedup": latency.get("speedup"),
        "latency_measured": latency.get("measured"),
        "size_bytes": size["artifact_bytes"],
        "size_mb": size["artifact_bytes"] / 1e6,
        "built": report.get("created"),
    }


def _fmt(value: float | None, unit: str) -> str:
    return "not measured" if value is None else f"{value:.4g}{unit}"


def evaluate_gates(metrics: dict[str, Any], limits: dict[str, float | None]) -> list[dict[str, Any]]:
    """Check the target's gates; each result is ``{gate, limit, value, passed, message}``.

    ``passed`` is None when the figure was not measured on this host (Core ML latency off a
    Mac): the gate is reported as unchecked, not as passed.
    """
    checks = []
    for gate, value, unit in (
        ("max_accuracy_drop", metrics["accuracy_drop"], " pts"),
        ("max_latency_ms", metrics["latency_p50_ms"], " ms"),
        ("max_size_mb", metrics["size_mb"], " MB"),
    ):
        limit = limits.get(gate)
        if limit is None:
            continue
        if value is None:
            passed, message = None, f"{gate}: not checked, the figure was not measured here"
        else:
            passed = value <= limit + _EPS
            what = {"max_accuracy_drop": "accuracy drop", "max_latency_ms": "latency p50", "max_size_mb": "size"}[gate]
            message = f"{gate}: {what} {_fmt(value, unit)} {'<=' if passed else '>'} {_fmt(limit, unit)}"
        checks.append({"gate": gate, "limit": limit, "value": value, "passed": passed, "message": message})
    return checks


def evaluate_regressions(
    metrics: dict[str, Any], baseline: dict[str, Any] | None, tolerances: dict[str, float | None]
) -> list[dict[str, Any]]:
    """Compare with the baseline record of the same target; each result is
    ``{check, baseline, value, tolerance, passed, message}``. Accuracy compares the gate's drop
    in points, latency (p50) and size in percent of the baseline's figure."""
    if not baseline or not baseline.get("metrics"):
        return []
    old = baseline["metrics"]
    checks = []
    tol = tolerances.get("accuracy_drop")
    if (
        tol is not None
        and metrics["accuracy_drop"] is not None
        and old.get("accuracy_drop") is not None
        and old.get("accuracy_metric") == metrics["accuracy_metric"]
    ):
        delta = metrics["accuracy_drop"] - old["accuracy_drop"]
        passed = delta <= tol + _EPS
        checks.append(
            {
                "check": "accuracy",
                "baseline": old["accuracy_drop"],
                "value": metrics["accuracy_drop"],
                "tolerance": tol,
                "passed": passed,
                "message": f"accuracy drop {metrics['accuracy_drop']:.3f} pts vs {old['accuracy_drop']:.3f} in the "
                f"baseline ({delta:+.3f} pts, tolerance {tol:g})",
            }
        )
    for check, key, unit in (("latency", "latency_p50_ms", " ms"), ("size", "size_bytes", " bytes")):
        tol = tolerances.get(f"{check}_pct")
        new, before = metrics.get(key), old.get(key)
        if tol is None or new is None or not before:
            continue
        change = (new / before - 1) * 100
        passed = change <= tol + _EPS
        checks.append(
            {
                "check": check,
                "baseline": before,
                "value": new,
                "tolerance": tol,
                "passed": passed,
                "message": f"{check} {new:.4g}{unit} vs {before:.4g}{unit} in the baseline ({change:+.1f}%, "
                f"tolerance {tol:g}%)",
            }
        )
    return checks


def target_failures(record: dict[str, Any]) -> list[str]:
    """One line per failed gate, regression or error of a target record, each naming the target."""
    lines = []
    if record["status"] == "error":
        lines.append(f"{record['id']}: error: {record.get('error')}")
    for gate in record.get("gates", []):
        if gate["passed"] is False:
            lines.append(f"{record['id']}: gate {gate['message']}")
    for check in record.get("regressions", []):
        if check["passed"] is False:
            lines.append(f"{record['id']}: regression {check['message']}")
    return lines


def judge(record: dict[str, Any]) -> None:
    """Set ``record['status']`` from its gates and regressions (an error stays an error)."""
    if record["status"] == "error":
        return
    failed = any(g["passed"] is False for g in record["gates"]) or any(
        r["passed"] is False for r in record["regressions"]
    )
    record["status"] = "failed" if failed else "passed"


def finalize(summary: dict[str, Any]) -> dict[str, Any]:
    """Fill the summary's counts, failures, warnings and verdict from its target records."""
    records = summary["targets"]
    failures = [line for record in records for line in target_failures(record)]
    failures += summary.get("missing", [])
    warnings = [
        f"{record['id']}: gate {gate['message']}"
        for record in records
        for gate in record.get("gates", [])
        if gate["passed"] is None
    ]
    summary["counts"] = {
        "targets": len(records),
        "built": sum(1 for r in records if r.get("outcome") == "built"),
        "cached": sum(1 for r in records if r.get("outcome") == "cached"),
        "passed": sum(1 for r in records if r["status"] == "passed"),
        "failed": sum(1 for r in records if r["status"] == "failed"),
        "error": sum(1 for r in records if r["status"] == "error"),
    }
    summary["failures"] = failures
    summary["warnings"] = warnings
    summary["passed"] = not failures
    return summary


def new_summary(config: str | None, config_sha256: str | None, **fields: Any) -> dict[str, Any]:
    """An empty summary (records are appended to ``targets``)."""
    return {
        "summary_version": SUMMARY_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "edgeport": __version__,
        "config": config,
        "config_sha256": config_sha256,
        **fields,
        "targets": [],
    }


def read_summary(path: Path | str) -> dict[str, Any]:
    """Read a summary.json (or a folder holding one); raises InputError when it is not one."""
    path = Path(path)
    if path.is_dir():
        path = path / SUMMARY
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"cannot read summary {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise InputError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("summary_version") != SUMMARY_VERSION or "targets" not in data:
        raise InputError(
            f"{path} is not an edgeport build summary (version {SUMMARY_VERSION})",
            hint="pass the summary.json written by `edgeport build`",
        )
    data["_path"] = str(path.resolve())
    return data


def write_summary(summary: dict[str, Any], out_dir: Path) -> Path:
    """Write ``summary.json`` and ``index.html`` into ``out_dir``; return the summary's path."""
    from edgeport.ci.index import write_index

    out_dir.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in summary.items() if not k.startswith("_")}
    path = out_dir / SUMMARY
    tmp = path.with_name(f".{SUMMARY}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    write_index(data, out_dir / INDEX)
    return path


def apply_baseline(summary: dict[str, Any], baseline: dict[str, Any] | None) -> None:
    """(Re)compute every record's regressions against ``baseline`` and its status."""
    by_id = {r["id"]: r for r in baseline["targets"]} if baseline else {}
    for record in summary["targets"]:
        if record["status"] == "error" or not record.get("metrics"):
            continue
        base = by_id.get(record["id"])
        record["regressions"] = evaluate_regressions(record["metrics"], base, record["limits"]["tolerances"])
        record["baseline"] = "compared" if base else ("not in the baseline" if baseline else None)
        judge(record)
    if baseline:
        summary["baseline"] = baseline.get("_path")


def merge_summaries(paths: list[Path], out_dir: Path, baseline: Path | None = None) -> dict[str, Any]:
    """Join shard summaries into one under ``out_dir`` (bundle links made relative to it).

    Refuses (InputError) summaries of different configs or the same target in two of them;
    a shard missing from a set (``--shard 2/3`` absent) is a failure of the merged verdict.
    Returns the merged summary (also written with its index.html).
    """
    if not paths:
        raise InputError("nothing to merge", hint="edgeport merge shard1/summary.json shard2/summary.json -o out/")
    out_dir = out_dir.resolve()
    shards = [read_summary(p) for p in paths]
    configs = {s.get("config_sha256") for s in shards}
    if len(configs) > 1:
        raise InputError(
            "these summaries come from different config files (config_sha256 differs)",
            hint="merge the shards of one build",
        )
    merged = new_summary(shards[0].get("config"), shards[0].get("config_sha256"), merged_from=[])
    seen: dict[str, str] = {}
    counts = {s["shard"]["count"] for s in shards if s.get("shard")}
    for shard in shards:
        source_dir = Path(shard["_path"]).parent
        merged["merged_from"].append({"summary": shard["_path"], "shard": shard.get("shard")})
        for record in shard["targets"]:
            if record["id"] in seen:
                raise InputError(
                    f"target {record['id']} is in both {seen[record['id']]} and {shard['_path']}",
                    hint="merge each shard once",
                )
            seen[record["id"]] = shard["_path"]
            record = dict(record)
            for key in ("bundle", "log"):
                if record.get(key):
                    record[key] = os.path.relpath(source_dir / record[key], out_dir)
            merged["targets"].append(record)
    missing = []
    for count in sorted(counts):
        present = {s["shard"]["index"] for s in shards if s.get("shard") and s["shard"]["count"] == count}
        missing += [
            f"shard {i}/{count} is missing: its targets are not in this verdict"
            for i in range(1, count + 1)
            if i not in present
        ]
    merged["missing"] = missing
    merged["targets"].sort(key=lambda r: r["id"])
    if baseline is not None:
        apply_baseline(merged, read_summary(baseline))
    else:
        merged["baseline"] = next((s.get("baseline") for s in shards if s.get("baseline")), None)
    finalize(merged)
    write_summary(merged, out_dir)
    return merged


def markdown(summary: dict[str, Any], report_url: str | None = None) -> str:
    """The summary as a Markdown table (for a CI job page: GitHub's step summary, a GitLab note)."""

    def cell(value: Any, spec: str, unit: str = "") -> str:
        return "–" if value is None else f"{value:{spec}}{unit}"

    verdict = "passed" if summary["passed"] else "**FAILED**"
    counts = summary["counts"]
    lines = [
        f"### edgeport build: {verdict}",
        "",
        f"{counts['targets']} targets: {counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors; "
        f"{counts['built']} built, {counts['cached']} reused from the cache."
        + (f" [Report (index.html)]({report_url})" if report_url else ""),
        "",
        "| target | status | accuracy | drop (pts) | latency p50 (ms) | size (MB) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for record in summary["targets"]:
        m = record.get("metrics") or {}
        accuracy = (
            cell(m.get("artifact_top1"), ".2f", "% top-1")
            if m.get("artifact_top1") is not None
            else cell(m.get("top1_agreement"), ".2f", "% agree")
        )
        lines.append(
            f"| {record['id']} | {record['status']} | {accuracy} | {cell(m.get('accuracy_drop'), '.3f')} | "
            f"{cell(m.get('latency_p50_ms'), '.4f')} | {cell(m.get('size_mb'), '.3f')} |"
        )
    if summary["failures"]:
        lines += ["", "Failures:", ""] + [f"- {line}" for line in summary["failures"]]
    if summary["warnings"]:
        lines += ["", "Not checked:", ""] + [f"- {line}" for line in summary["warnings"]]
    return "\n".join(lines) + "\n"


def append_markdown(summary: dict[str, Any], path: Path, report_url: str | None = None) -> None:
    """Append :func:`markdown` to ``path`` (``$GITHUB_STEP_SUMMARY`` is appended to by every step)."""
    with open(path, "a") as f:
        f.write(markdown(summary, report_url))
