"""What both pruning paths (channels and magnitude) share: the samples they learn from, the
fp32 reference outputs, the part of the accuracy budget that quantization leaves to pruning,
and the progress steps they report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeport.core.model import CanonicalModel, SourceModel
from edgeport.core.progress import Progress
from edgeport.core.registry import backend_class
from edgeport.data.dataset import Dataset
from edgeport.data.load import load_dataset
from edgeport.data.preprocess import parse_preprocess
from edgeport.options.groups import DataOptions, PruneOptions, SourceOptions
from edgeport.runtime.ort import OrtRunner
from edgeport.verify.metrics import accuracy_drop, compare

# The gate measures pruning and quantization together against the original, so pruning may
# spend only what quantization leaves: the drop of the *unpruned* model quantized the same way
# (ONNX Runtime's quantizer as a quick proxy), plus this margin for noise and for the pruned
# model being a little more sensitive. Where that cannot be measured (auto search, a saved
# plan, a failing quantizer) pruning gets this share of the budget.
RESERVE_MARGIN = 0.1
FALLBACK_SHARE = 0.5
SENSITIVITY_SAMPLES = 128


def calibration_samples(
    prune: str, options: DataOptions, data: Any, source: SourceModel, decisions: list[dict[str, str]]
) -> Dataset:
    """The samples pruning learns from: the calibration set (opened here when quantization did
    not need one), else the eval data or random inputs, with a decision saying so."""
    if data.calibration is not None:
        return data.calibration
    path = options.calibration_data
    if path is None:
        path = options.eval_data
        done = "used the eval data" if path else "used random inputs"
        decisions.append(
            {
                "asked": f"--prune {prune} without --calibration_data",
                "done": done,
                "why": "pruning ranks layers (and recovery trains) on calibration inputs; "
                + ("the accuracy then measured on the same samples may be optimistic" if path else "none were given"),
            }
        )
    return load_dataset(
        path,
        source.inputs,
        options.calibration_samples,
        parse_preprocess(options.preprocess),
        options.seed,
        64,
        data.static_batch,
        text_encoder=source.tokenize,
    )


def first_arrays(dataset: Dataset, count: int, batch: int, dynamic: bool) -> dict[str, np.ndarray]:
    """The first ``count`` samples as one array per input (whole batches of ``batch`` only
    when the model's batch is fixed: the rest cannot be fed)."""
    count = min(count, len(dataset))
    if not dynamic:
        count = max(batch, count - count % batch)
    parts = [dataset.batch(i, min(i + batch, count)) for i in range(0, count, batch)]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def run_arrays(
    run: Callable[[dict[str, np.ndarray]], list[np.ndarray]], arrays: dict[str, np.ndarray], batch: int
) -> list[np.ndarray]:
    """Run ``run(feeds) -> outputs`` over ``arrays`` in chunks of ``batch``; concatenate."""
    count = len(next(iter(arrays.values())))
    chunks = [run({k: v[i : i + batch] for k, v in arrays.items()}) for i in range(0, count, batch)]
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]


class PruneContext:
    """What both pruning methods need: data, reference outputs, budget and where to report."""

    def __init__(
        self,
        options: PruneOptions,
        data_options: DataOptions,
        source_options: SourceOptions,
        canonical: CanonicalModel,
        reference_feeds: dict[str, np.ndarray],
        data: Any,
        profile: Any,
        scheme: str,
        decisions: list[dict[str, str]],
        progress: Progress,
        gate: Any,
    ) -> None:
        self.options = options
        self.source_options = source_options  # the pruned model is exported again (channels)
        self.gate = gate  # edgeport.verify.gate.Gate: what the accuracy figures measure
        self.canonical: CanonicalModel = canonical
        self.reference_feeds = reference_feeds
        self.data = data
        self.decisions = decisions
        self.progress: Progress = progress
        self.names = [s.name for s in canonical.inputs]
        self.output_names = [o.name for o in canonical.outputs]
        self.run_batch = data.batch  # the batch the ONNX model takes (static models: their own)
        calibration = calibration_samples(options.prune or "", data_options, data, canonical.source, decisions)
        self.calibration = calibration
        self.sensitivity_inputs = first_arrays(calibration, SENSITIVITY_SAMPLES, data.static_batch, data.dynamic)
        self.eval_inputs = first_arrays(data.eval_data, len(data.eval_data), self.run_batch, data.dynamic)
        labels = data.eval_data.labels
        count = len(next(iter(self.eval_inputs.values())))
        self.labels = labels[:count] if labels is not None else None
        from edgeport.verify.gate import DEFAULT_BUDGET

        self.total_budget = options.max_accuracy_drop
        if self.total_budget is None and scheme == "auto":
            self.total_budget = DEFAULT_BUDGET
        with progress.step("pruning: fp32 reference outputs"):
            baseline = OrtRunner(canonical.onnx_model.SerializeToString(), options.threads)
            self.reference_eval = run_arrays(baseline.run, self.eval_inputs, self.run_batch)
            self.reference_sensitivity = run_arrays(baseline.run, self.sensitivity_inputs, data.static_batch)
        self.reserve, self.reserve_how = 0.0, "no quantization follows"
        if self.total_budget is not None and scheme != "none":
            with progress.step(f"pruning: what {scheme} costs the unpruned model (budget reserve)"):
                self.reserve, self.reserve_how = self._quantization_reserve(profile, scheme)
        self.budget = None if self.total_budget is None else max(0.0, self.total_budget - self.reserve)

    def _quantization_reserve(self, profile: Any, scheme: str) -> tuple[float, str]:
        """Points of the budget to leave for quantization, and how they were found."""
        import tempfile

        from edgeport.core.plan import uniform_plan

        fallback = (1 - FALLBACK_SHARE) * self.total_budget
        if scheme == "auto" or self.options.precision_plan:
            return fallback, f"{1 - FALLBACK_SHARE:.0%} of the budget left for the precision search"
        try:
            with tempfile.TemporaryDirectory(prefix="edgeport-reserve-") as name:
                work = Path(name)
                onnx.save(self.canonical.onnx_model, str(work / "fp32.onnx"))
                plan = uniform_plan(self.canonical.onnx_model, scheme, profile)
                backend_class("onnx")(profile).build(
                    work / "fp32.onnx", plan, work / "q.onnx", work, self.data.calibration, self.data.batch
                )
                runner = OrtRunner(work / "q.onnx", self.options.threads)
                drop, _, _ = self.drop(run_arrays(runner.run, self.eval_inputs, self.run_batch))
        except Exception as exc:  # any quantizer failure (EdgeportError included): a fixed share
            return fallback, f"{1 - FALLBACK_SHARE:.0%} of the budget ({type(exc).__name__} measuring {scheme})"
        return (
            min(self.total_budget, max(0.0, drop) + RESERVE_MARGIN),
            f"the unpruned model quantized {scheme} (ONNX Runtime) lost {drop:.2f} points; + {RESERVE_MARGIN} margin",
        )

    def drop(self, outputs: list[np.ndarray]) -> tuple[float, str, dict[str, Any]]:
        """Accuracy drop (gate metric, points) of ``outputs`` on the eval data against the original."""
        fidelity = compare(self.reference_eval, outputs, self.output_names, self.labels, self.gate)
        drop, metric = accuracy_drop(fidelity)
        return drop, metric, fidelity

    def fits(self, drop: float) -> bool:
        """Whether ``drop`` is within pruning's part of the budget (always, without a budget)."""
        return self.budget is None or drop <= self.budget + 1e-9


class progress_step:  # noqa: N801  (used like a function)
    """``ctx.progress.step`` with an optional total; yields the advance callback."""

    def __init__(self, ctx: PruneContext, label: str, total: int | None = None) -> None:
        self._manager = ctx.progress.step(label, total=total) if total else ctx.progress.step(label)

    def __enter__(self) -> Any:
        return self._manager.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self._manager.__exit__(*exc)
