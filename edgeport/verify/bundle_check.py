"""``edgeport verify``: re-check a bundle here or on a device and write a new report beside the old.

The files are checked against the manifest's sha256 and sizes first (nothing runs or is
written when one differs). Then the artifact, and the fp32 model it was timed against, run on
the bundle's reference inputs (``reference.npz``), locally or over SSH (``remote.py``);
fidelity is recomputed against the stored fp32 outputs and latency is measured side by side.
The result is a new ``report.verify-<where>-<timestamp>.json`` and ``.html``: the original
report plus a ``verification`` section. The bundle's own files are never modified.
"""

from __future__ import annotations

import html
import json
import os
import platform
import re
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.core.errors import ConversionError, InputError, describe_exception
from edgeport.core.model import TensorSpec, batch_axes
from edgeport.core.registry import RUNTIMES, runtime_entry, runtime_for_file
from edgeport.core.runner_spec import RunnerSpec
from edgeport.profiles.hardware import host_qualifier, qualify
from edgeport.reports.html import render_html
from edgeport.reports.json import make_report, read_report
from edgeport.runtime.host import host_description
from edgeport.runtime.timing import first_samples
from edgeport.verify.gate import gate_from_report
from edgeport.verify.latency import measure_side_by_side
from edgeport.verify.manifest import check_files, load_manifest
from edgeport.verify.metrics import compare

REFERENCE_FILE = "reference.npz"
REPORT_FILE = "report.json"
DEFAULT_WARMUP = 10


def _listed(manifest: dict[str, Any], name: str | None, what: str) -> str:
    if not name or (name not in manifest["files"] and name not in (manifest.get("directories") or {})):
        raise InputError(f"the manifest does not list the {what} ({name}); cannot verify it")
    return name


def _reference_spec(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The fp32 model timed side by side, as ``{kind, file, kwargs}`` (None when absent)."""
    name = manifest.get("reference_for_timing")
    if not name or (name not in manifest["files"] and name not in (manifest.get("directories") or {})):
        return None
    runner = manifest["runner"]
    kind = runtime_for_file(name)
    # The fp32 reference is exported like the artifact, so it takes the artifact's kwargs
    # (TFLite layouts and names; ONNX providers) when it runs in the same runtime.
    kwargs = dict(runner.get("kwargs") or {}) if kind == runner.get("kind") else {}
    return {"kind": kind, "file": name, "kwargs": kwargs}


# What numpy and zipfile raise on a damaged .npz (a bad zip, a damaged member, pickled data).
_NPZ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of the .npz file ``path`` (no pickles); InputError when it is not one."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":
                raise InputError(f"{REFERENCE_FILE} is not a .npz archive; cannot verify")
        with np.load(path, allow_pickle=False) as data:
            return {key: np.asarray(data[key]) for key in data.files}
    except FileNotFoundError as exc:
        raise InputError(f"{REFERENCE_FILE} is missing from {path.parent}; cannot verify") from exc
    except PermissionError as exc:
        raise InputError(f"cannot read {path}: permission denied") from exc
    except _NPZ_ERRORS as exc:
        raise InputError(f"{REFERENCE_FILE} is damaged: {describe_exception(exc, with_type=False)}") from exc


def _check_fits(array: np.ndarray, spec: dict[str, Any], what: str, dims: bool = True) -> None:
    """InputError when ``array`` does not have the rank (and, with ``dims``, the fixed dims) of
    the manifest's ``spec``, or holds no numbers."""
    shape = spec.get("shape")
    if not isinstance(shape, list):
        shape = list(array.shape)
    fixed = [d if isinstance(d, int) and dims else None for d in shape]
    if array.ndim != len(shape) or any(d is not None and d != a for d, a in zip(fixed, array.shape, strict=False)):
        raise InputError(
            f"{REFERENCE_FILE}: {what} has shape {list(array.shape)}, the manifest says {shape}; cannot verify"
        )
    if array.dtype.kind not in "biuf":
        raise InputError(f"{REFERENCE_FILE}: {what} holds {array.dtype} values, not numbers; cannot verify")


def load_reference(bundle_dir: Path, manifest: dict[str, Any]) -> tuple[dict, list[str], list, np.ndarray | None]:
    """Return (feeds by input name, output names, stored fp32 outputs, labels or None) from reference.npz.

    Raises InputError when the file is missing, damaged, or its arrays do not fit the manifest.
    """
    data = _read_npz(bundle_dir / REFERENCE_FILE)
    keys = list(data)
    inputs = [i for i in manifest.get("inputs") or [] if isinstance(i, dict)]
    outputs = [o for o in manifest.get("outputs") or [] if isinstance(o, dict)]
    input_names = [str(i.get("name")) for i in inputs] or [k.split("/", 1)[1] for k in keys if k.startswith("inputs/")]
    output_names = [str(o.get("name")) for o in outputs] or [
        k.split("/", 1)[1] for k in keys if k.startswith("outputs/")
    ]
    wanted = [f"inputs/{n}" for n in input_names] + [f"outputs/{n}" for n in output_names]
    missing = [k for k in wanted if k not in data]
    if missing or not output_names:
        raise InputError(f"{REFERENCE_FILE} lacks {missing[0] if missing else 'outputs'}; cannot verify")
    feeds = {name: data[f"inputs/{name}"] for name in input_names}
    stored = [data[f"outputs/{name}"] for name in output_names]
    for name, spec in zip(input_names, inputs, strict=False):
        _check_fits(feeds[name], spec, f"input {name!r}")
    for name, array, spec in zip(output_names, stored, outputs or [{}] * len(stored), strict=False):
        _check_fits(array, spec, f"output {name!r}", dims=False)
        if array.ndim == 0 or len(array) == 0:
            raise InputError(f"{REFERENCE_FILE}: output {name!r} holds no samples; cannot verify")
    labels = data.get("labels")
    if labels is not None and (labels.dtype.kind not in "biu" or labels.size < len(stored[0])):
        raise InputError(
            f"{REFERENCE_FILE}: labels must be integers, one per sample ({len(stored[0])}); "
            f"got {labels.size} of {labels.dtype}"
        )
    return feeds, output_names, stored, labels


def _run_once(runner: Any, spec: dict[str, Any], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run ``runner`` on the reference inputs; ConversionError (one line) when the runtime fails."""
    try:
        return runner.run(feeds)
    except Exception as exc:
        raise ConversionError(
            f"{spec['kind']} failed to run {spec['file']} on the bundle's reference inputs: "
            f"{describe_exception(exc, with_type=False)}"
        ) from exc


def _check_outputs(stored: list, produced: list, names: list[str], what: str) -> None:
    """InputError when the stored fp32 outputs and ``what``'s outputs differ in number or shape."""
    if len(produced) != len(stored):
        raise InputError(f"{REFERENCE_FILE} holds {len(stored)} outputs, the {what} returns {len(produced)}")
    for name, old, new in zip(names, stored, produced, strict=True):
        if np.shape(old) != np.shape(new):
            raise InputError(
                f"{REFERENCE_FILE}: output {name!r} has shape {list(np.shape(old))}, the {what} returns "
                f"{list(np.shape(new))}: the reference does not belong to this bundle"
            )


def _run_local(
    bundle_dir: Path,
    artifact: dict[str, Any],
    reference: dict[str, Any] | None,
    feeds: dict[str, np.ndarray],
    threads: int,
    runs: int,
    warmup: int,
    latency_batch: int,
    batch_axes: dict[str, int | None] | None = None,
) -> dict[str, Any]:
    specs = {"artifact": artifact} | ({"reference": reference} if reference else {})
    runners = {}
    for role, spec in specs.items():
        try:
            runners[role] = RunnerSpec(spec["kind"], str(bundle_dir / spec["file"]), spec["kwargs"]).open(threads)
        except ImportError as exc:
            package = runtime_entry(spec["kind"]).package
            raise InputError(
                f"{spec['kind']} is not installed here", hint=f"pip install {package}, or verify over ssh://"
            ) from exc
        except RuntimeError as exc:
            from edgeport.runtime.coreml import CoreMLUnavailable

            if isinstance(exc, CoreMLUnavailable):
                raise InputError(str(exc)) from exc
            raise ConversionError(f"{spec['kind']} cannot load {spec['file']}: {describe_exception(exc)}") from exc
        except Exception as exc:
            raise ConversionError(f"{spec['kind']} cannot load {spec['file']}: {describe_exception(exc)}") from exc
    outputs = _run_once(runners["artifact"], specs["artifact"], feeds)
    reference_outputs = _run_once(runners["reference"], specs["reference"], feeds) if reference else None
    latency_feeds = first_samples(feeds, latency_batch, batch_axes)
    timed = {"reference": runners["reference"]} if reference else {}
    timed["artifact"] = runners["artifact"]
    latency = measure_side_by_side(timed, latency_feeds, runs, warmup)
    runtime = runners["artifact"].describe()
    runtime.pop("host", None)
    device = host_description()
    device["hostname"] = platform.node()
    return {
        "target": "local",
        "device": device,
        "runtime": runtime,
        "latency": latency,
        "load_time_s": {role: r.load_seconds for role, r in runners.items()},
        "outputs": outputs,
        "reference_outputs": reference_outputs,
    }


def headline(fidelity: dict[str, Any] | None) -> tuple[str, float | None]:
    """Return the accuracy figure a table shows: (what it is, value).

    Artifact top-1 with labels, else top-1 agreement with fp32, else the first output's mean cosine.
    """
    fidelity = fidelity or {}
    if isinstance(fidelity.get("artifact_top1"), int | float):
        return "top-1 % (labels)", float(fidelity["artifact_top1"])
    if isinstance(fidelity.get("top1_agreement"), int | float):
        return "top-1 agreement with fp32 %", float(fidelity["top1_agreement"])
    first = next(iter((fidelity.get("outputs") or {}).values()), {})
    value = first.get("cosine_mean")
    return "mean cosine vs fp32", float(value) if isinstance(value, int | float) else None


def _label(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._")[:60] or "device"


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to a temporary name beside ``path`` and rename it into place."""
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def verification_html(section: dict[str, Any]) -> str:
    """Return an HTML fragment (escaped) showing the verification section: where, old vs new."""
    esc = html.escape
    device = section.get("device", {})
    rows = "".join(
        f"<tr><td>{esc(str(row['figure']))}</td><td>{esc(_fmt(row['before']))}</td>"
        f"<td>{esc(_fmt(row['after']))}</td></tr>"
        for row in section.get("table", [])
    )
    where = ", ".join(f"{esc(str(k))}: {esc(str(v))}" for k, v in device.items())
    runtime = section.get("runtime", {})
    return (
        '<section id="verification"><h2>Verification '
        f"({esc(str(section.get('runner')))}, {esc(str(section.get('created')))})</h2>"
        f"<p>Device: {where}</p><p>Runtime: {esc(str(runtime.get('runtime')))} {esc(str(runtime.get('version')))}, "
        f"{esc(str(section.get('threads')))} thread(s), {esc(str(section.get('runs')))} runs; "
        f"{esc(str(section.get('files_checked')))} files matched the manifest.</p>"
        f"<p>{esc(str(section.get('note', '')))}</p>"
        "<table><tr><th>figure</th><th>original report</th><th>this verification</th></tr>"
        f"{rows}</table></section>"
    )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def comparison_table(section: dict[str, Any]) -> list[dict[str, Any]]:
    """Return rows ``{figure, before, after}``: accuracy figure, p50 latencies and speedup."""
    before, after = section["previous"], section
    label, old_value = headline(before.get("fidelity"))
    _, new_value = headline(after.get("fidelity"))
    old_lat, new_lat = before.get("latency") or {}, after.get("latency") or {}
    old_samples = (before.get("fidelity") or {}).get("samples")
    new_samples = (after.get("fidelity") or {}).get("samples")
    return [
        {"figure": f"{label} (samples: {old_samples} -> {new_samples})", "before": old_value, "after": new_value},
        {
            "figure": "artifact p50 ms",
            "before": (old_lat.get("artifact") or {}).get("p50_ms"),
            "after": (new_lat.get("artifact") or {}).get("p50_ms"),
        },
        {
            "figure": "fp32 p50 ms",
            "before": (old_lat.get("reference") or {}).get("p50_ms"),
            "after": (new_lat.get("reference") or {}).get("p50_ms"),
        },
        {"figure": "speedup x", "before": old_lat.get("speedup"), "after": new_lat.get("speedup")},
        *_bucket_rows(before.get("buckets"), after.get("buckets")),
    ]


def _bucket_rows(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per bucket re-run: its lowest cosine in the original report (eval data) and now
    (the reference samples); none when the bucket files were not re-run."""
    if not after or not after.get("buckets"):
        return []
    old = {b["size"]: b for b in (before or {}).get("buckets") or []}
    return [
        {
            "figure": f"bucket {after['axis']}={b['size']} min cosine (samples: "
            f"{old.get(b['size'], {}).get('samples')} -> {b['samples']})",
            "before": old.get(b["size"], {}).get("cosine_min"),
            "after": b["cosine_min"],
        }
        for b in after["buckets"]
    ]


@dataclass
class _CheckedBundle:
    """What a bundle holds for verification, read after its files matched the manifest."""

    files_checked: int
    artifact: dict[str, Any]  # runner kind, file, kwargs
    reference: dict[str, Any] | None  # the fp32 timing reference's runner spec, if the bundle has one
    feeds: dict[str, np.ndarray]
    output_names: list[str]
    stored_outputs: list
    labels: np.ndarray | None
    old_report: dict[str, Any]
    latency_batch: int
    axes: dict[str, int | None]
    has_buckets: bool
    profile: dict[str, Any]  # the manifest's resolved profile (cpu_arch, accelerator, device)


def _read_bundle(bundle_dir: Path) -> _CheckedBundle:
    """Check every file against the manifest, then read the runner specs, the reference inputs
    and outputs and the original report. Raises InputError naming what is missing or wrong."""
    manifest = load_manifest(bundle_dir)
    files_checked = check_files(bundle_dir, manifest)
    run_spec = manifest["runner"]
    artifact = {
        "kind": run_spec.get("kind"),
        "file": _listed(manifest, run_spec.get("file"), "artifact"),
        "kwargs": dict(run_spec.get("kwargs") or {}),
    }
    if artifact["kind"] not in RUNTIMES:
        raise InputError(f"the manifest's runner kind {artifact['kind']!r} is not one of {', '.join(RUNTIMES)}")
    _listed(manifest, REFERENCE_FILE, "reference inputs")
    old_report = read_report(bundle_dir / _listed(manifest, REPORT_FILE, "report"))
    reference = _reference_spec(manifest)
    feeds, output_names, stored_outputs, labels = load_reference(bundle_dir, manifest)
    old_latency = old_report.get("latency") or {}
    latency_batch = int(old_latency.get("batch") or 1)
    # The batch may sit at any axis (a state [2, batch, 128]) or nowhere (a rank-0 sample rate).
    axes = batch_axes([TensorSpec(i["name"], list(i["shape"]), i["dtype"]) for i in manifest.get("inputs") or []])
    return _CheckedBundle(
        files_checked,
        artifact,
        reference,
        feeds,
        output_names,
        stored_outputs,
        labels,
        old_report,
        latency_batch,
        axes,
        bool(manifest.get("buckets")),
        manifest.get("profile") or {},
    )


# ``--runner browser`` runs an ONNX bundle in headless Chromium with onnxruntime-web: the
# backend the bundle was built for (browser-wasm, browser-webgpu), else wasm.
BROWSER_RUNNERS = ("browser", "browser-wasm", "browser-webgpu")


def in_browser(spec: dict[str, Any], runner: str) -> dict[str, Any]:
    """The runner spec ``spec`` (kind, file, kwargs) moved into the browser ``runner`` asks for;
    InputError for an artifact that is not ONNX."""
    kind = spec["kind"]
    if kind != "onnxruntime" and not kind.startswith("browser-"):
        raise InputError(f"--runner {runner} runs ONNX models in a browser; {spec['file']} runs in {kind}")
    if runner == "browser":
        runner = kind if kind.startswith("browser-") else "browser-wasm"
    return {**spec, "kind": runner, "kwargs": {"backend": runner.removeprefix("browser-")}}


def _run_bundle(
    bundle_dir: Path,
    bundle: _CheckedBundle,
    runner: str,
    threads: int,
    runs: int,
    warmup: int,
    ssh_options: list[str] | None,
    timeout: float | None,
) -> dict[str, Any]:
    """Run the artifact (and its fp32 reference) here, in a browser here, or over SSH; return
    what ran and measured."""
    if runner == "local" or runner in BROWSER_RUNNERS:
        artifact, reference = bundle.artifact, bundle.reference
        if runner != "local":
            artifact = in_browser(artifact, runner)
            reference = in_browser(reference, runner) if reference else None
        return _run_local(
            bundle_dir,
            artifact,
            reference,
            bundle.feeds,
            threads,
            runs,
            warmup,
            bundle.latency_batch,
            bundle.axes,
        )
    from edgeport.verify.remote import RUN_TIMEOUT_S, parse_target, run_remote

    target = parse_target(runner)
    reference = bundle.reference
    files = [bundle_dir / bundle.artifact["file"]] + ([bundle_dir / reference["file"]] if reference else [])
    return run_remote(
        target,
        bundle.artifact,
        reference,
        files,
        bundle.feeds,
        bundle.output_names,
        threads=threads,
        runs=runs,
        warmup=warmup,
        latency_batch=bundle.latency_batch,
        batch_axes=bundle.axes,
        ssh_options=ssh_options,
        timeout=timeout or RUN_TIMEOUT_S,
    )


def _verification_section(
    bundle: _CheckedBundle,
    ran: dict[str, Any],
    threads: int,
    runs: int,
    warmup: int,
    now: datetime,
    buckets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report's ``verification`` section: fidelity against the stored fp32 outputs (with
    the conversion's gate measures), latency side by side, the bucket files re-run (``buckets``)
    and the original report's figures."""
    old_report, reference = bundle.old_report, bundle.reference
    stored, names, labels = bundle.stored_outputs, bundle.output_names, bundle.labels
    gate = gate_from_report(old_report)  # the same per-output measures as the conversion's report
    _check_outputs(stored, ran["outputs"], names, "artifact")
    if ran.get("reference_outputs") is not None:
        _check_outputs(stored, ran["reference_outputs"], names, "fp32 reference")
    fidelity = compare(stored, [np.asarray(o) for o in ran["outputs"]], names, labels, gate)
    reference_fidelity = (
        compare(stored, [np.asarray(o) for o in ran["reference_outputs"]], names, labels, gate)
        if ran.get("reference_outputs") is not None
        else None
    )
    latency: dict[str, Any] = dict(ran["latency"])
    if "reference" in latency:
        latency["speedup"] = latency["reference"]["p50_ms"] / latency["artifact"]["p50_ms"]
    runtime = ran["runtime"]
    latency.update(
        {
            "runtime": f"{runtime.get('runtime')} {runtime.get('version', '')}".strip(),
            "reference_model": reference["file"] if reference else None,
            "threads": threads,
            "batch": bundle.latency_batch,
            "warmup": warmup,
        }
    )
    section: dict[str, Any] = {
        "created": now.isoformat(timespec="seconds"),
        "runner": ran["target"],
        "device": ran["device"],
        "runtime": runtime,
        "threads": threads,
        "runs": runs,
        "files_checked": bundle.files_checked,
        "fidelity": fidelity,
        "reference_fidelity": reference_fidelity,
        "latency": latency,
        "load_time_s": ran["load_time_s"],
        "previous": {
            "created": old_report.get("created"),
            "host": (old_report.get("environment") or {}).get("host"),
            "runtime": ((old_report.get("environment") or {}).get("runner") or {}).get("runtime"),
            "fidelity": old_report.get("fidelity"),
            "latency": old_report.get("latency") or {},
            "buckets": old_report.get("buckets"),
        },
        "buckets": buckets,
        "note": f"fidelity here is on the bundle's {fidelity['samples']} reference samples against the stored "
        "source-framework fp32 outputs; the original report's is on the whole eval set against fp32 ONNX",
    }
    section["table"] = comparison_table(section)
    return section


def _write_reports(
    bundle_dir: Path, old_report: dict[str, Any], section: dict[str, Any], where: str, now: datetime
) -> dict[str, Any]:
    """Write ``report.verify-<where>-<timestamp>.json``/``.html`` (a new name, never over an
    existing one) beside the original report; return the section with the paths written."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    base = f"report.verify-{where}-{stamp}"
    suffix = 1
    while (bundle_dir / f"{base}.json").exists() or (bundle_dir / f"{base}.html").exists():
        suffix += 1
        base = f"report.verify-{where}-{stamp}-{suffix}"
    sections = {k: v for k, v in old_report.items() if k not in ("schema", "schema_version")}
    report = make_report({**sections, "verification": section})
    page = render_html(report)
    fragment = verification_html(report["verification"])
    page = page.replace("</body>", fragment + "</body>", 1) if "</body>" in page else page + fragment
    json_path, html_path = bundle_dir / f"{base}.json", bundle_dir / f"{base}.html"
    try:
        _atomic_write(json_path, json.dumps(report, indent=2) + "\n")
        _atomic_write(html_path, page)
    except OSError as exc:
        json_path.unlink(missing_ok=True)
        raise InputError(f"cannot write the verification report in {bundle_dir}: {exc.strerror}") from exc
    result = dict(report["verification"])
    result["report_json"], result["report_html"] = str(json_path), str(html_path)
    return result


def verify_bundle(
    bundle_dir: Path,
    runner: str = "local",
    threads: int = 1,
    runs: int = 100,
    *,
    warmup: int = DEFAULT_WARMUP,
    ssh_options: list[str] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Verify a bundle here (``runner="local"``) or on a device (``ssh://user@host[:port][/python]``).

    Checks every file against the manifest (InputError, exit 2, naming the file, and nothing
    written, when one differs), runs the artifact and its fp32 timing reference on the
    reference inputs, recomputes fidelity against the stored fp32 outputs and latency side by
    side, and writes ``report.verify-<where>-<timestamp>.json``/``.html`` beside the original
    report (which is left untouched). Returns the ``verification`` section (it also holds
    ``report_json``/``report_html``, the paths written). Remote failures raise RemoteError.
    """
    bundle_dir = Path(bundle_dir)
    if threads < 1 or runs < 1 or warmup < 0:
        raise InputError("--threads and --runs must be at least 1")
    bundle = _read_bundle(bundle_dir)
    if not os.access(bundle_dir, os.W_OK | os.X_OK):  # before the runs: the report is written here
        raise InputError(
            f"cannot write the verification report in {bundle_dir}: permission denied",
            hint="make the folder writable, or verify a copy of the bundle",
        )
    ran = _run_bundle(bundle_dir, bundle, runner, threads, runs, warmup, ssh_options, timeout)
    buckets = None
    if bundle.has_buckets:
        if runner == "local":
            from edgeport.verify.buckets_check import rerun_buckets

            buckets = rerun_buckets(
                bundle_dir, bundle.feeds, bundle.stored_outputs, bundle.output_names, bundle.axes, threads
            )
        else:  # the remote harness and the page run one artifact: say so rather than imply more
            buckets = {
                "not_run": f"the bucket files are re-run by --runner local only; {runner} ran {bundle.artifact['file']}"
            }
    now = datetime.now(UTC)
    section = _verification_section(bundle, ran, threads, runs, warmup, now, buckets)
    runtime = section["latency"]["runtime"]
    if runner == "local" or runner in BROWSER_RUNNERS:
        where = f"{'local' if runner == 'local' else 'browser'}-{_label(platform.node())}"
        profile = bundle.profile
        qualifier = host_qualifier(profile.get("cpu_arch"), profile.get("accelerator", "cpu"), profile.get("device"))
        section["latency"]["measured"] = qualify(f"measured on this host ({runtime})", qualifier)
    else:
        where = _label(str(ran["device"].get("hostname") or ""))
        # The one run that needs no qualifier: the device itself, through the remote runner.
        section["latency"]["measured"] = f"measured on the device ({ran['device'].get('hostname')}, {runtime})"
    return _write_reports(bundle_dir, bundle.old_report, section, where, now)
