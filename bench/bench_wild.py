"""Benchmark: models from the wild (bench/models_wild.py), each through edgeport with its
DEFAULT flags and beside the peers' defaults, on real data and on the task's own measure.

    .venv/bin/python bench/bench_wild.py [--only NAME[,NAME]] [--quick] [--runs 200]

Per model:

- edgeport: ``edgeport.convert(model, output_format="onnx", quantization="auto",
  optimize_for="cpu", eval_data=..., calibration_data=..., output_dir=tmp)``, no metric
  flag. The exit class (0 passed, 2 input, 3 gate, 4 conversion, 1 internal error) and its
  one-line message are recorded; from report.json: the gate metric edgeport chose, its
  decisions, fidelity, its own speedup (report["latency"]["speedup"]) and sizes. edgeport runs
  with a private folder as current directory; files it leaves there are counted
  (``cwd_leftovers``) and removed with the work folder.
- peers: ONNX Runtime's ``quantize_dynamic(in, out)`` and ``quantize_static(in, out,
  reader)`` with default arguments; when a call fails on the model as given, it is retried
  after ``quant_pre_process`` (recorded).
- every artifact (fp32, peers, edgeport's, also a failed one when it was kept) is run by this
  script on the model's evaluation samples as the model is really fed (natural lengths,
  streams with their own state) and scored on the task's measure against fp32; then all are
  timed side by side in one ONNX Runtime run (edgeport.verify.latency.measure_side_by_side:
  interleaved, warm-up, medians; 1 thread, spinning off) on a typical input.

Writes bench/results/wild.json (``--only`` merges into the existing file) and prints a
markdown table, also saved as bench/results/wild.md. Nothing is downloaded: ``make bench``
installs the model packages.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import traceback
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

from models_wild import MODELS, WildModel, run_each  # noqa: E402

from edgeport.runtime.host import host_description  # noqa: E402
from edgeport.runtime.ort import OrtRunner  # noqa: E402
from edgeport.verify.latency import measure_side_by_side  # noqa: E402

RESULTS = BENCH / "results" / "wild.json"
TABLE = BENCH / "results" / "wild.md"
EDGEPORT = "edgeport auto"
PEERS = ("ORT dynamic defaults", "ORT static defaults")


class FeedReader:
    """onnxruntime CalibrationDataReader over a list of feeds (batch 1 each)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = feeds
        self.it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        """Return the next feed, or None at the end."""
        return next(self.it, None)

    def rewind(self) -> None:
        """Start again from the first feed."""
        self.it = iter(self.feeds)


def _short(exc: BaseException) -> str:
    from edgeport.core.errors import describe_exception

    return describe_exception(exc)


def peer_quantize(kind: str, fp32: Path, out: Path, calib_feeds: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Run ORT's ``quantize_dynamic`` or ``quantize_static`` with default arguments.

    Tries the model as given first; on failure runs ``quant_pre_process`` and tries again, then
    ``quant_pre_process(skip_symbolic_shape=True)``.
    Returns ``{"path", "pre_processed", "error", "first_error", "seconds"}``.
    """
    from onnxruntime.quantization import quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    def call(src: Path) -> None:
        if kind == "dynamic":
            quantize_dynamic(str(src), str(out))
        else:
            quantize_static(str(src), str(out), FeedReader(calib_feeds))

    started = time.perf_counter()
    record: dict[str, Any] = {"path": None, "pre_processed": False, "error": None, "first_error": None}
    # ORT's symbolic shape inference leaves sym_shape_infer_temp.onnx in the current directory
    # when it fails: run it in a folder of the work directory.
    cwd = out.parent / f"{out.stem}_cwd"
    cwd.mkdir(exist_ok=True)
    with warnings.catch_warnings(), contextlib.chdir(cwd):
        warnings.simplefilter("ignore")
        try:
            call(fp32)
            record["path"] = out
        except Exception as exc:  # noqa: BLE001 - a peer's failure is a result
            record["first_error"] = _short(exc)
            pre = out.with_name(out.stem + "_pre.onnx")
            # ORT's recipe, then (when its symbolic shape inference gives up on a model) the same
            # without it: what its documentation tells a user to try next.
            for skip_symbolic in (False, True):
                try:
                    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=skip_symbolic)
                    call(pre)
                    record.update(path=out, pre_processed="skip_symbolic_shape" if skip_symbolic else True, error=None)
                    break
                except Exception as exc2:  # noqa: BLE001
                    record["error"] = _short(exc2)
    record["seconds"] = round(time.perf_counter() - started, 1)
    return record


def edgeport_auto(model: WildModel, work: Path) -> dict[str, Any]:
    """Run edgeport with its default flags (auto, cpu, no metric); return what happened.

    The current directory is the work folder during the run, so files edgeport leaves in
    the current directory are counted (``cwd_leftovers``) and removed with it.
    """
    from edgeport.api import convert
    from edgeport.core.errors import EdgeportError, GateFailed

    out_dir = work / "edgeport_bundle"
    cwd = work / "cwd"
    cwd.mkdir(exist_ok=True)
    before = set(os.listdir(tempfile.gettempdir()))
    record: dict[str, Any] = {"exit": 0, "outcome": "passed", "message": None}
    bundle: Path | None = None
    started = time.perf_counter()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = convert(
            str(model.path),
            output_format="onnx",
            quantization="auto",
            optimize_for="cpu",
            eval_data=str(model.eval_data),
            calibration_data=str(model.calibration_data),
            output_dir=str(out_dir),
        )
        bundle = Path(result.bundle_dir)
    except GateFailed as exc:
        record.update(exit=3, outcome="gate failed", message=exc.one_line())
        bundle = Path(exc.bundle_dir) if exc.bundle_dir else None
    except EdgeportError as exc:
        outcome = {2: "input error", 4: "conversion failed"}.get(exc.exit_code, "error")
        record.update(exit=exc.exit_code, outcome=outcome, message=exc.one_line())
    except Exception as exc:  # noqa: BLE001 - the CLI would print "internal error" and exit 1
        record.update(exit=1, outcome="internal error", message=f"internal error: {_short(exc)}")
        record["traceback_tail"] = traceback.format_exc().strip().splitlines()[-6:]
    finally:
        os.chdir(old)
    record["seconds"] = round(time.perf_counter() - started, 1)
    leftovers = sorted(os.listdir(cwd))
    record["cwd_leftovers"] = {"files": len(leftovers), "bytes": sum((cwd / f).stat().st_size for f in leftovers)}
    # New names in the system temp folder during the run: on a shared machine other processes
    # create some too, so this is a hint to check, not proof (cwd_leftovers is exact).
    new_tmp = sorted(set(os.listdir(tempfile.gettempdir())) - before - {work.name})
    record["new_entries_in_system_temp"] = new_tmp[:10]
    if bundle and (bundle / "report.json").exists():
        report = json.loads((bundle / "report.json").read_text())
        record["report"] = summarize_report(report)
        artifact = bundle / report["target"]["artifact"]
        record["artifact"] = artifact if artifact.exists() else None
    return record


def summarize_report(report: dict[str, Any]) -> dict[str, Any]:
    """Pick the figures of edgeport's report.json that the table needs (and the decisions)."""
    search = report.get("search") or {}
    chosen = search.get("chosen") or {}
    fidelity = report.get("fidelity") or {}
    return {
        "status": report.get("status"),
        "gate": report.get("gate"),
        "scheme": report.get("target", {}).get("scheme"),
        "decisions": report.get("decisions"),
        "fidelity": {k: v for k, v in fidelity.items() if k != "per_sample"},
        "speedup": (report.get("latency") or {}).get("speedup"),
        "size": report.get("size"),
        "search": {
            "base_scheme": search.get("base_scheme"),
            "kept_float_count": chosen.get("kept_float_count"),
            "points": len(search.get("points") or []),
        }
        if search
        else None,
        "data_notes": {k: v.get("applied") for k, v in (report.get("data") or {}).items() if isinstance(v, dict)},
    }


def evaluate(model: WildModel, configs: dict[str, Path], runs: int, warmup: int) -> dict[str, dict[str, Any]]:
    """Score every configuration on the task's measure against fp32, then time them side by side."""
    run = model.run or run_each
    rows: dict[str, dict[str, Any]] = {}
    runners = {}
    outputs = {}
    for name, path in configs.items():
        try:
            runner = OrtRunner(path, threads=1)
            outputs[name] = run(runner, model.feeds)
            runners[name] = runner
            rows[name] = {"size_bytes": path.stat().st_size}
        except Exception as exc:  # noqa: BLE001 - a model that does not load or run is a result
            rows[name] = {"run_error": _short(exc)}
    for name in outputs:
        rows[name]["task"] = model.score(outputs["fp32"], outputs[name])
    if len(runners) > 1:
        try:
            latency = measure_side_by_side(runners, model.latency_feed, runs, warmup)
            for name, figures in latency.items():
                rows[name]["p50_ms"] = figures["p50_ms"]
                rows[name]["speedup"] = latency["fp32"]["p50_ms"] / figures["p50_ms"]
        except Exception as exc:  # noqa: BLE001
            for name in runners:
                rows[name]["latency_error"] = _short(exc)
    fp32_bytes = rows["fp32"].get("size_bytes")
    for row in rows.values():
        if "size_bytes" in row and fp32_bytes:
            row["size_ratio"] = fp32_bytes / row["size_bytes"]
    return rows


def bench_model(name: str, runs: int, warmup: int) -> dict[str, Any]:
    """Build one model's data, run edgeport and the peers, score and time them all."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"wild_{name}_") as tmp:
        work = Path(tmp)
        model = MODELS[name](work)
        facts = model.describe()
        print(f"\n## {name}: {facts['kind']} - {facts['package']}, {facts['exporter']}", flush=True)
        ours = edgeport_auto(model, work)
        print(f"edgeport: exit {ours['exit']} ({ours['outcome']}) {ours['message'] or ''} [{ours['seconds']} s]")
        peers = {
            "ORT dynamic defaults": peer_quantize("dynamic", model.path, work / "ort_dynamic.onnx", model.calib_feeds),
            "ORT static defaults": peer_quantize("static", model.path, work / "ort_static.onnx", model.calib_feeds),
        }
        for peer, rec in peers.items():
            status = "ok" if rec["path"] else f"FAILED {rec['error']}"
            if rec["pre_processed"]:
                status += f" (after quant_pre_process; as given: {rec['first_error']})"
            print(f"{peer}: {status}")
        configs = {"fp32": model.path}
        configs.update({peer: rec["path"] for peer, rec in peers.items() if rec["path"]})
        if ours.get("artifact"):
            configs[EDGEPORT] = ours["artifact"]
        rows = evaluate(model, configs, runs, warmup)
    for peer, rec in peers.items():
        rows.setdefault(peer, {}).update(
            {k: rec[k] for k in ("pre_processed", "error", "first_error", "seconds") if rec[k] is not None}
        )
    ours.pop("artifact", None)
    rows.setdefault(EDGEPORT, {}).update({"exit": ours["exit"], "outcome": ours["outcome"]})
    return {
        "model": facts,
        "measure": model.measure,
        "higher_is_better": model.higher_is_better,
        "edgeport": ours,
        "configs": rows,
        "timing": {"runs": runs, "warmup": warmup},
        "seconds": round(time.perf_counter() - started, 1),
    }


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    """Return the results as a markdown table (one row per model)."""
    lines = [
        "| model | source tool / opset | edgeport: exit, metric chosen | task measure | edgeport | speedup | size | "
        "ORT dynamic | speedup | size | ORT static | speedup | size |",
        "|" + " --- |" * 13,
    ]
    for name, res in results.items():
        facts, ours, rows = res["model"], res["edgeport"], res["configs"]
        gate = (ours.get("report") or {}).get("gate") or {}
        chosen = f"exit {ours['exit']}" + (f", {gate.get('metric')}" if gate.get("metric") else "")
        if ours["exit"] != 0 and ours.get("message"):
            chosen += f": {ours['message'][:90]}"
        source = f"{facts['exporter'].split(' (')[0]} / {facts['opset']}"
        cells = [name, source, chosen.replace("|", "/"), res["measure"]]
        own = (ours.get("report") or {}).get("speedup")
        for config in (EDGEPORT, *PEERS):
            row = rows.get(config, {})
            if "task" in row:
                speed = _fmt(row.get("speedup"), ".2f") + "x"
                if config == EDGEPORT and own is not None:
                    speed += f" (report {own:.2f}x)"
                cells += [_fmt(row["task"]["value"]), speed, _fmt(row.get("size_ratio"), ".2f") + "x"]
            else:
                why = row.get("error") or row.get("run_error") or ("no artifact" if config == EDGEPORT else "-")
                cells += [f"failed: {str(why)[:60]}".replace("|", "/"), "-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    """Run the suite (or ``--only`` some models), print the table, save bench/results/wild.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated model names: " + ", ".join(MODELS))
    parser.add_argument("--quick", action="store_true", help="fewer timing runs (50, warm-up 10)")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    names = [n.strip() for n in args.only.split(",")] if args.only else list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; models: {', '.join(MODELS)}")
    runs, warmup = (50, 10) if args.quick else (args.runs, args.warmup)
    started = time.time()
    previous = json.loads(RESULTS.read_text()).get("models", {}) if RESULTS.exists() and args.only else {}
    results: dict[str, Any] = dict(previous)
    for name in names:
        try:
            results[name] = bench_model(name, runs, warmup)
        except Exception as exc:  # noqa: BLE001 - one model's setup failure must not stop the suite
            print(f"{name}: setup failed: {_short(exc)}")
            traceback.print_exc()
            continue
        with contextlib.suppress(Exception):
            print(markdown_table({name: results[name]}).splitlines()[-1], flush=True)
        save(results, runs, warmup, started)  # after every model: a long suite keeps what it measured
    table = markdown_table(results)
    print("\n" + table)
    print(f"\nsaved {RESULTS.relative_to(REPO)} and {TABLE.name} ({time.time() - started:.0f} s)")


def save(results: dict[str, Any], runs: int, warmup: int, started: float) -> None:
    """Write bench/results/wild.json and the markdown table bench/results/wild.md."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "models from the wild: edgeport --quantization auto with default flags vs ORT's "
                "quantize_dynamic/quantize_static defaults; task measure vs fp32 on real data; "
                "ONNX Runtime CPU, 1 thread, spinning off, interleaved runs",
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "runs_this_run": runs,
                "warmup_this_run": warmup,
                "models": results,
                "host": host_description(),
                "seconds_this_run": round(time.time() - started, 1),
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    TABLE.write_text(
        f"# Models from the wild ({datetime.now(UTC).date()})\n\n"
        "edgeport `--quantization auto` with default flags vs ORT's defaults. Task measure vs fp32 on real data "
        "(higher is better except relative error); speedup = fp32 p50 / artifact p50, timed side by side by "
        "bench/bench_wild.py, timing runs per model in wild.json (edgeport's own report figure in brackets); "
        "size = fp32 bytes / artifact bytes. "
        "Details and exact messages: wild.json.\n\n" + markdown_table(results) + "\n"
    )


if __name__ == "__main__":
    main()
