"""``edgeport build``: select the config's targets (``--only``, ``--shard``), reuse cached
bundles, build the rest in parallel child processes (``--jobs``), apply gates and regression
checks, and write ``summary.json`` + ``index.html``.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeport.ci.cache import BuildCache, cache_key, input_digests, key_inputs
from edgeport.ci.config import BuildConfig, Job, load_config
from edgeport.ci.summary import (
    apply_baseline,
    evaluate_gates,
    finalize,
    judge,
    new_summary,
    read_summary,
    report_metrics,
    write_summary,
)
from edgeport.core.cache import cache_root
from edgeport.core.errors import InputError
from edgeport.core.hashing import sha256_file

POLL_S = 0.2


@dataclass
class BuildOptions:
    """The flags of ``edgeport build``."""

    only: list[str] = field(default_factory=list)
    jobs: int = 1
    shard: tuple[int, int] | None = None
    baseline: Path | None = None
    cache: Path | None = None
    use_cache: bool = True
    rebuild: bool = False
    output_dir: Path | None = None
    timeout: float | None = None


def parse_shard(value: str | None) -> tuple[int, int] | None:
    """Parse ``--shard I/N`` (1 <= I <= N); raises InputError otherwise."""
    if not value:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise InputError(f"bad --shard {value!r}", hint="write I/N with 1 <= I <= N, e.g. --shard 2/3")
    return int(match.group(1)), int(match.group(2))


def select_jobs(config: BuildConfig, only: list[str], shard: tuple[int, int] | None) -> list[Job]:
    """The jobs to build: those matching any ``--only`` pattern (model, target or model/target;
    shell wildcards), then shard ``I/N``'s stable slice: the I-th of every N jobs in id order,
    so the slices are balanced and do not depend on the order of the file."""
    jobs = sorted(config.jobs, key=lambda j: j.id)
    if only:
        jobs = [
            j
            for j in jobs
            if any(fnmatch.fnmatchcase(name, p) for p in only for name in (j.id, j.model.name, j.target.name))
        ]
        if not jobs:
            ids = ", ".join(j.id for j in sorted(config.jobs, key=lambda j: j.id))
            raise InputError(f"--only {' '.join(only)} matches no target", hint=f"targets: {ids}")
    if shard:
        index, count = shard
        jobs = jobs[index - 1 :: count]
    return jobs


def artifact_digest(bundle: Path) -> str | None:
    """The sha256 of the bundle's artifact (a file, or a folder such as an .mlpackage) from its manifest."""
    try:
        manifest = json.loads((bundle / "manifest.json").read_text())
        name = manifest["artifact"]
        if name in manifest.get("directories", {}):
            return manifest["directories"][name]["sha256"]
        return manifest["files"][name]["sha256"]
    except (OSError, ValueError, KeyError):
        return None


class Display:
    """Live state of the targets: a table redrawn in place on a terminal, one line per event
    otherwise (CI logs), nothing when quiet."""

    def __init__(self, ids: list[str], quiet: bool = False) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.quiet = quiet
        self.states: dict[str, list[Any]] = {i: ["queued", None, ""] for i in ids}  # state, start, detail
        self.live = None
        if not quiet and self.console.is_terminal and ids:
            from rich.live import Live

            self.live = Live(get_renderable=self._table, console=self.console, refresh_per_second=4, transient=False)
            self.live.start()

    def _table(self):
        from rich.table import Table

        table = Table(box=None, show_header=False, pad_edge=False)
        colors = {"running": "cyan", "passed": "green", "cached": "green", "failed": "red", "error": "magenta"}
        for target_id, (state, start, detail) in self.states.items():
            elapsed = f"{time.perf_counter() - start:.0f} s" if state == "running" and start else ""
            color = colors.get(state, "dim")
            table.add_row(f"[{color}]{state:>7}[/]", target_id, elapsed, f"[dim]{detail}[/]")
        return table

    def update(self, target_id: str, state: str, detail: str = "") -> None:
        """Set a target's state (queued, running, cached, passed, failed, error) and show it."""
        start = time.perf_counter() if state == "running" else self.states[target_id][1]
        self.states[target_id] = [state, start, detail]
        if self.quiet or self.live is not None:
            return
        counts = {s: sum(1 for v in self.states.values() if v[0] == s) for s in ("running", "queued")}
        done = len(self.states) - counts["running"] - counts["queued"]
        self.console.print(
            f"[{done}/{len(self.states)} done, {counts['running']} running] {state} {target_id}"
            + (f": {detail}" if detail else ""),
            highlight=False,
            soft_wrap=True,
        )

    def close(self) -> None:
        """Stop the live table (its last state stays on screen)."""
        if self.live is not None:
            self.live.stop()
            self.live = None


@dataclass
class _Running:
    job: Job
    process: subprocess.Popen
    result_path: Path
    log: Any
    started: float


def _record(job: Job, key: str | None, inputs: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": job.id,
        "model": job.model.name,
        "target": job.target.name,
        "format": job.target.format,
        "quantization": job.target.quantization,
        "profile": Path(job.target.profile).name,
        "status": "error",
        "outcome": None,
        "key": key,
        "inputs": input_digests(inputs) if inputs else None,
        "bundle": None,
        "log": None,
        "seconds": None,
        "artifact_sha256": None,
        "reproducible": None,
        "rebuild_reason": None,
        "error": None,
        "metrics": None,
        "gates": [],
        "regressions": [],
        "baseline": None,
        "limits": {"gates": job.target.gates, "tolerances": job.target.tolerances},
    }


def _rebuild_reason(record: dict[str, Any], previous: dict[str, Any] | None) -> str:
    """Which key parts changed since the previous build of this target in the same folder."""
    if not previous or not previous.get("inputs") or not record.get("inputs"):
        return "not in the cache"
    changed = [k for k, v in record["inputs"].items() if previous["inputs"].get(k) != v]
    return f"changed: {', '.join(changed)}" if changed else "not in the cache"


def _fill_from_bundle(record: dict[str, Any], bundle: Path, out_dir: Path) -> None:
    report = json.loads((bundle / "report.json").read_text())
    record["bundle"] = os.path.relpath(bundle, out_dir)
    record["metrics"] = report_metrics(report)
    record["gates"] = evaluate_gates(record["metrics"], record["limits"]["gates"])
    record["artifact_sha256"] = artifact_digest(bundle)
    record["status"] = "passed"
    judge(record)


def _worker_env(cache_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["EDGEPORT_CACHE_DIR"] = str(cache_dir)  # the sensitivity cache of `auto` persists with the build cache
    env["PYTHONHASHSEED"] = "0"  # set/dict-of-str iteration order fixed in every worker (determinism)
    return env


def _start(job: Job, bundle: Path, log_path: Path, work: Path, env: dict[str, str]) -> _Running:
    spec_path = work / f"{job.model.name}__{job.target.name}.json"
    result_path = work / f"{job.model.name}__{job.target.name}.result.json"
    spec = {"kwargs": {**job.kwargs, "output_dir": str(bundle)}, "result": str(result_path)}
    spec_path.write_text(json.dumps(spec, indent=2))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w")  # noqa: SIM115  (closed when the process ends)
    # Its own temporary folder inside the build's: what a killed worker leaves there is removed
    # with the build's folder.
    tmp = work / f"{job.model.name}__{job.target.name}.tmp"
    tmp.mkdir(exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "edgeport.ci.worker", str(spec_path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**env, "TMPDIR": str(tmp)},
        start_new_session=True,  # its own process group: a timeout ends the converter children too
    )
    return _Running(job, process, result_path, log, time.perf_counter())


def _kill(running: _Running) -> None:
    try:
        os.killpg(running.process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    running.process.wait()


def _finish(running: _Running, timed_out: float | None) -> dict[str, Any]:
    running.log.close()
    if timed_out is not None:
        return {"status": "error", "message": f"timed out after {timed_out:g} s", "exit_code": 4}
    try:
        return json.loads(running.result_path.read_text())
    except (OSError, ValueError):
        code = running.process.returncode
        how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        return {"status": "error", "message": f"the build process {how} without a result (see its log)", "exit_code": 4}


def build(config_path: Path | str, options: BuildOptions, quiet: bool = False) -> dict[str, Any]:
    """Run a build; return its summary (also written as summary.json + index.html).

    Raises InputError for a bad config or flags before anything is built. Target failures do
    not raise: they are in the summary (``passed`` False, ``failures`` naming each target).
    """
    if options.jobs < 1:
        raise InputError("--jobs must be >= 1")
    config = load_config(config_path)
    jobs = select_jobs(config, options.only, options.shard)
    out_dir = (options.output_dir or config.output_dir or Path("out")).resolve()
    baseline = read_summary(options.baseline) if options.baseline else None
    previous_path = out_dir / "summary.json"
    previous: dict[str, Any] = {}
    if previous_path.is_file():
        try:
            previous = {r["id"]: r for r in read_summary(previous_path)["targets"]}
        except InputError:
            previous = {}
    cache_dir = cache_root(options.cache)
    cache = BuildCache(cache_dir)
    shard = {"index": options.shard[0], "count": options.shard[1]} if options.shard else None
    summary = new_summary(
        str(config.path),
        sha256_file(config.path),
        shard=shard,
        selected=len(jobs),
        only=options.only or None,
        jobs=options.jobs,
        cache_dir=str(cache_dir) if options.use_cache else None,
        baseline=None,
    )
    records: dict[str, dict[str, Any]] = {}
    display = Display([j.id for j in jobs], quiet)
    pending: deque[tuple[Job, dict[str, Any]]] = deque()
    started = time.perf_counter()
    try:
        for job in jobs:
            inputs = key_inputs(job)
            key = cache_key(inputs)
            record = records[job.id] = _record(job, key, inputs)
            bundle = out_dir / job.model.name / job.target.name
            t0 = time.perf_counter()
            entry = cache.restore(key, bundle) if options.use_cache and not options.rebuild else None
            if entry is not None:
                _fill_from_bundle(record, bundle, out_dir)
                record["outcome"], record["seconds"] = "cached", round(time.perf_counter() - t0, 3)
                record["built_seconds"] = entry.get("seconds")
                display.update(job.id, "cached", f"{record['status']}, reused from the cache")
            else:
                record["rebuild_reason"] = (
                    "--rebuild"
                    if options.rebuild
                    else cache.problems.get(key) or _rebuild_reason(record, previous.get(job.id))
                )
                pending.append((job, record))
        _run_pending(pending, options, out_dir, cache, display)
    finally:
        display.close()
    summary["targets"] = [records[j.id] for j in jobs]
    summary["seconds"] = round(time.perf_counter() - started, 3)
    apply_baseline(summary, baseline)
    finalize(summary)
    write_summary(summary, out_dir)
    summary["_out_dir"] = str(out_dir)
    return summary


def _run_pending(
    pending: deque[tuple[Job, dict[str, Any]]],
    options: BuildOptions,
    out_dir: Path,
    cache: BuildCache,
    display: Display,
) -> None:
    """Build the pending targets, at most ``options.jobs`` at a time, each in its own process."""
    if not pending:
        return
    env = _worker_env(cache.root)
    running: list[_Running] = []
    records = {job.id: record for job, record in pending}
    with tempfile.TemporaryDirectory(prefix="edgeport-build-") as work_name:
        work = Path(work_name)
        try:
            while pending or running:
                while pending and len(running) < options.jobs:
                    job, record = pending.popleft()
                    bundle = out_dir / job.model.name / job.target.name
                    log_path = out_dir / job.model.name / f"{job.target.name}.log"
                    record["log"] = os.path.relpath(log_path, out_dir)
                    running.append(_start(job, bundle, log_path, work, env))
                    display.update(job.id, "running", record["rebuild_reason"] or "")
                time.sleep(POLL_S)
                for item in list(running):
                    elapsed = time.perf_counter() - item.started
                    timed_out = options.timeout if options.timeout and elapsed > options.timeout else None
                    if timed_out is not None:
                        _kill(item)
                    elif item.process.poll() is None:
                        continue
                    running.remove(item)
                    result = _finish(item, timed_out)
                    record = records[item.job.id]
                    _collect(item.job, record, result, elapsed, out_dir, cache, options)
                    detail = f"{record['seconds']:.1f} s"
                    if record["status"] == "error":
                        detail += f": {record['error']}"
                    elif record["status"] == "failed":
                        detail += ": " + "; ".join(
                            g["message"] for g in record["gates"] + record["regressions"] if g["passed"] is False
                        )
                    display.update(item.job.id, record["status"], detail)
        except BaseException:
            for item in running:  # Ctrl-C or a bug here: end the children this build started
                _kill(item)
                item.log.close()
            raise


def _collect(
    job: Job,
    record: dict[str, Any],
    result: dict[str, Any],
    elapsed: float,
    out_dir: Path,
    cache: BuildCache,
    options: BuildOptions,
) -> None:
    """Fill a built target's record from its worker result and bundle; store it in the cache."""
    record["outcome"], record["seconds"] = "built", round(elapsed, 3)
    bundle = out_dir / job.model.name / job.target.name
    if result["status"] == "error":
        record["status"], record["error"] = "error", result["message"]
        for partial in bundle.parent.glob(f".{bundle.name}.partial-*"):  # a killed worker's half-written bundle
            shutil.rmtree(partial, ignore_errors=True)
        if (bundle / "manifest.json").is_file():
            # A bundle from an earlier build: not this build's result, so not left to be shipped.
            shutil.rmtree(bundle, ignore_errors=True)
        return
    _fill_from_bundle(record, bundle, out_dir)
    if options.use_cache and record["key"]:
        earlier = cache.lookup(record["key"])
        if earlier is not None and earlier.get("artifact_sha256"):
            # The same inputs were built before (--rebuild): was the artifact byte-identical?
            record["reproducible"] = earlier["artifact_sha256"] == record["artifact_sha256"]
        cache.store(
            record["key"],
            bundle,
            {
                "key": record["key"],
                "id": job.id,
                "status": result["status"],
                "seconds": record["seconds"],
                "artifact_sha256": record["artifact_sha256"],
                "stored": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )
