"""One candidate of ``--quantization auto``, measured: the plan built by the output format's
backend, run on the eval data against the fp32 ONNX model's outputs, and timed side by side
with fp32 in the same runtime where that runtime runs on this host. Each plan is measured once."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import onnx

from edgeport.core.errors import EdgeportError, describe_exception
from edgeport.core.plan import PrecisionPlan, uniform_plan
from edgeport.core.progress import Progress
from edgeport.core.sizes import artifact_bytes
from edgeport.data.dataset import Dataset
from edgeport.profiles.schema import DeviceProfile
from edgeport.quantize.search import SearchPoint
from edgeport.runtime.ort import OrtRunner
from edgeport.verify.evaluate import run_dataset
from edgeport.verify.gate import Gate
from edgeport.verify.latency import measure_side_by_side
from edgeport.verify.metrics import accuracy_drop, compare

SEARCH_LATENCY_RUNS = 40


class CandidateEvaluator:
    """Builds and measures the search's candidates (call it with a plan); holds the fp32
    reference outputs they are compared with and the runner of the fp32 baseline."""

    def __init__(
        self,
        baseline: Path,
        model: onnx.ModelProto,
        profile: DeviceProfile,
        *,
        backend: Any,
        eval_data: Dataset,
        calibration: Dataset | None,
        batch: int,
        dynamic: bool,
        latency_batch: int,
        threads: int,
        work: Path,
        progress: Progress,
        gate: Gate,
    ) -> None:
        self.baseline, self.model, self.profile, self.backend = baseline, model, profile, backend
        self.eval_data, self.calibration, self.batch, self.dynamic = eval_data, calibration, batch, dynamic
        self.threads, self.work, self.gate = threads, work, gate
        self.reference_runner = OrtRunner(baseline, threads)
        self.output_names = [o.name for o in model.graph.output]
        with progress.step("fp32 reference outputs for the search"):
            self.reference_outputs = run_dataset(self.reference_runner, eval_data, batch, dynamic)
            self.timing_reference = None
            # Candidates are timed only where the format's runtime runs (not Core ML off macOS).
            if backend.times_on_host:
                timing_spec, _ = backend.fp32_reference(baseline, work, work)
                self.timing_reference = timing_spec.open(threads)
        self.float_precision = backend.float_precision  # what a layer kept out of the scheme runs in
        labels = eval_data.labels
        self.labels = labels[: len(self.reference_outputs[0])] if labels is not None else None
        self.latency_feeds = eval_data.batch(0, latency_batch)
        self.cache: dict[str, SearchPoint] = {}
        self.counter = 0

    def __call__(self, plan: PrecisionPlan) -> SearchPoint:
        """Build, run and time ``plan`` (once: a plan seen before returns its point). A candidate
        that fails to build or run is a point with an infinite drop and a "failed" metric;
        the float model's failure is raised (it is the search's floor)."""
        float_precision = self.float_precision
        if plan.layers and all(layer.precision == float_precision for layer in plan.layers.values()):
            # Every layer in float is the float model itself, without quantize/dequantize leftovers.
            plan = uniform_plan(self.model, "none" if float_precision == "fp32" else float_precision, self.profile)
        key = plan.to_json()
        if key in self.cache:
            return self.cache[key]
        self.counter += 1
        path = self.work / f"candidate_{self.counter}{Path(self.backend.file_name).suffix}"
        try:
            artifact = self.backend.build(self.baseline, plan, path, self.work, self.calibration, self.batch)
            # An artifact that cannot run here (Core ML off macOS) is evaluated through its emulation, untimed.
            runner = (artifact.emulation or artifact.runner).open(self.threads)
            outputs = run_dataset(runner, self.eval_data, self.batch, self.dynamic)
        except (EdgeportError, RuntimeError, ValueError, OSError) as exc:
            if plan.scheme in ("none", float_precision):
                raise  # the float model is the search's floor: its failure is the run's
            # One candidate that a converter or runtime cannot build or run ends that candidate,
            # not the search: the other candidates, and the float model, remain.
            failure = f"{plan.scheme} candidate failed: {describe_exception(exc)}"
            self.cache[key] = SearchPoint(
                [], math.inf, False, None, None, None, {"scheme": plan.scheme, "failed": failure, "notes": [failure]}
            )
            return self.cache[key]
        point = self._measured(plan, artifact, runner, outputs)
        self.cache[key] = point
        return point

    def _measured(self, plan: PrecisionPlan, artifact: Any, runner: Any, outputs: list) -> SearchPoint:
        """The point of a built candidate: fidelity against the fp32 outputs, speedup (when it
        runs here), size, and the summary the report shows."""
        notes = artifact.notes
        fidelity = compare(self.reference_outputs, outputs, self.output_names, self.labels, self.gate)
        drop, metric = accuracy_drop(fidelity)
        speedup = None
        if self.timing_reference is not None and artifact.emulation is None:
            latency = measure_side_by_side(
                {"fp32": self.timing_reference, "candidate": runner}, self.latency_feeds, SEARCH_LATENCY_RUNS, 5
            )
            speedup = latency["fp32"]["p50_ms"] / latency["candidate"]["p50_ms"]
        summary = {k: fidelity[k] for k in ("top1_agreement", "artifact_top1", "reference_top1") if k in fidelity}
        first = next(iter(fidelity["outputs"].values()))
        summary.update(
            {
                "cosine_mean": first["cosine_mean"],
                "cosine_min": first["cosine_min"],
                "metric": metric,
                "outputs": {
                    name: {k: v for k, v in entry.items() if k in ("measure", "value", "drop", "budget")}
                    for name, entry in fidelity["measures"]["outputs"].items()
                },
                "scheme": plan.scheme,
                "notes": notes,
            }
        )
        return SearchPoint(
            [],
            drop,
            False,
            speedup,
            None,
            artifact_bytes(artifact.path),
            summary,
            artifact,
        )
