"""What the accuracy gate compares, per output, and how far an artifact is from its budget.

``--metric auto`` decides for each model output what to compare, from the graph (the op that
produces it) and the data (what its values look like), and says why:

- class scores (after Softmax/LogSoftmax/Sigmoid, or logits of a classifier head): top-1
  agreement with fp32, or the top-1 accuracy drop when labels are given;
- embeddings (rows of constant norm, pooled features, Hugging Face feature extraction): cosine;
- dense maps (segmentation, heat maps, detection score maps): IoU of the thresholded decisions;
- per-token scores ``[N, tokens, classes]``: per-position top-1 agreement;
- yes/no probabilities (a Sigmoid with one value per sample or position): agreement of the
  decisions at 0.5;
- integer outputs (class ids, indices): exact agreement;
- boxes and regression values: relative error (``100 x ||fp32 - artifact|| / ||fp32||``);
- class scores on random (synthetic) eval data: the cosine of each sample's deviation from
  fp32's mean output (``centered_cosine``). fp32's answers to noise are one input-independent
  vector plus a little: top-1 on them falls into a few classes with near-tie margins, and a plain
  cosine passes even a constant output (fashion CNN: constant 0.997, unrelated inputs 0.995);
- recurrent state outputs (an output that mirrors a state input): reported, not gated.

Every output gets a figure in its own units ("points") and a budget; the gate and the search
use the worst output relative to its budget. ``--metric`` may force one measure for every
output, set one per output (``name=measure,...``), or name the user's own evaluator
(``module:function`` or ``path/file.py:function``; see :mod:`edgeport.verify.evaluator`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from edgeport.core.errors import InputError
from edgeport.verify.evaluator import Evaluator, load_evaluator
from edgeport.verify.metrics import cosine_per_sample, sqnr_db

DEFAULT_BUDGET = 1.0  # points: 1 of top-1 with labels, else mean cosine >= 0.99, ...
# Default budget of each measure, in its own points. Thresholded maps flip a few border pixels and
# regression values carry int8's ~40 dB noise even when the model is fine, so they get two.
MEASURE_BUDGETS = {
    "labels": 1.0,
    "top1": 1.0,
    "token_top1": 1.0,
    "binary": 1.0,
    "cosine": 1.0,
    # Random inputs: int8 noise measured 0.3 (ONNX) to 1.7 (TFLite) points on the fashion CNN,
    # a layout bug 59, unrelated inputs or a constant output about 100.
    "centered_cosine": 5.0,
    "iou": 2.0,
    "rel_error": 2.0,
    "exact": 1.0,
}
MEASURES = (*MEASURE_BUDGETS, "none")
MEASURE_TEXT = {
    "labels": "top-1 accuracy drop vs fp32 (labels)",
    "top1": "top-1 disagreement with fp32",
    "token_top1": "per-position top-1 disagreement with fp32",
    "binary": "share of yes/no decisions (probability > 0.5) that differ from fp32",
    "cosine": "100 x (1 - mean cosine) vs fp32",
    "centered_cosine": "100 x (1 - mean cosine of the deviations from fp32's mean output) vs fp32",
    "iou": "100 x (1 - IoU of the thresholded map) vs fp32",
    "rel_error": "relative error vs fp32 (100 x ||fp32 - artifact|| / ||fp32||)",
    "exact": "share of values that differ from fp32",
    "none": "reported, not gated",
}
# Ops that pass an output's meaning through unchanged (walked back to find the op that made it).
_PASS_THROUGH = ("Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Cast", "Concat")
_PROBABILITY_OPS = ("Softmax", "LogSoftmax", "Sigmoid")
_POOLING_OPS = ("ReduceMean", "GlobalAveragePool", "GlobalMaxPool", "ReduceMax", "ReduceSum", "LpNormalization")
_LINEAR_OPS = ("Gemm", "MatMul", "Add")
_STATE_WORDS = re.compile(r"state|hidden|cell|present|past|cache|^h[n0]?$|^c[n0]?$", re.IGNORECASE)


@dataclass
class OutputMeasure:
    """What the gate compares on one output, its budget, and the evidence for that choice."""

    name: str
    measure: str  # one of MEASURES
    budget: float
    evidence: str
    weak: bool = False  # the evidence could point elsewhere: the decision names the flag that settles it

    @property
    def gated(self) -> bool:
        """Whether this output counts for the gate (state outputs are only reported)."""
        return self.measure != "none"


def _producer_op(model: onnx.ModelProto, output: str) -> str | None:
    """The op type that computes ``output``, looking through shape-only ops."""
    producers = {out: node for node in model.graph.node for out in node.output}
    node = producers.get(output)
    seen = 0
    while node is not None and node.op_type in _PASS_THROUGH and node.input and seen < 16:
        node = producers.get(node.input[0])
        seen += 1
    return node.op_type if node is not None else None


def _direct_producer(model: onnx.ModelProto, output: str) -> str | None:
    """The op type of the node that writes ``output`` itself."""
    return next((node.op_type for node in model.graph.node if output in node.output), None)


def _declared_shapes(values: Any) -> dict[str, list[Any]]:
    """Declared dims (int, or the symbolic name) of graph inputs or outputs, by name."""
    shapes = {}
    for value in values:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
    return shapes


def _state_input_for(model: onnx.ModelProto, output: str) -> str | None:
    """The graph input that ``output`` mirrors (a recurrent state fed back next call), if any:
    same declared shape, and a name that says state (``state``/``stateN``, ``h0``/``hn``, ...)."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = {k: v for k, v in _declared_shapes(model.graph.input).items() if k not in initializers}
    outputs = _declared_shapes(model.graph.output)
    shape = outputs.get(output)
    if shape is None or len(shape) < 2:
        return None
    for name, dims in inputs.items():
        if len(dims) != len(shape):
            continue
        same = all(a == b or isinstance(a, str) or isinstance(b, str) for a, b in zip(dims, shape, strict=True))
        stem_in, stem_out = (
            re.sub(r"[\W_]*(in|out|new|next|n|\d+)$", "", name),
            re.sub(r"[\W_]*(in|out|new|next|n|\d+)$", "", output),
        )
        named = bool(_STATE_WORDS.search(output) or _STATE_WORDS.search(name)) or (stem_in and stem_in == stem_out)
        if same and named and name != output:
            return name
    return None


def _constant_norm(values: np.ndarray) -> bool:
    """Rows of (nearly) one norm: L2-normalized embeddings. One row alone counts when its
    norm is 1 (the reference samples of ragged data can be a single sentence)."""
    rows = values.reshape(values.shape[0], -1).astype(np.float64)
    norms = np.linalg.norm(rows, axis=1)
    if len(norms) == 0 or norms.mean() == 0:
        return False
    if len(norms) == 1:
        return abs(float(norms[0]) - 1.0) < 1e-3
    return float(norms.std() / norms.mean()) < 1e-3


def decide_measure(
    model: onnx.ModelProto, name: str, sample: np.ndarray, *, labels: bool, output_kind: str | None, first_scores: bool
) -> OutputMeasure:
    """Choose the measure of output ``name`` from the graph and ``sample`` (its fp32 values on a
    few inputs, batch axis first). ``labels``: the eval data has labels (they go to the first
    class-score output, ``first_scores``). ``output_kind``: what the source said its outputs are
    (``embedding`` for Hugging Face feature extraction). Returns the OutputMeasure."""
    producer = _producer_op(model, name)
    state_of = _state_input_for(model, name)
    after = f" (computed by {producer})" if producer else ""

    def made(measure: str, evidence: str, weak: bool = False) -> OutputMeasure:
        if measure == "top1" and labels and first_scores:
            measure, evidence = "labels", evidence + "; labels given: the task's top-1 accuracy"
        return OutputMeasure(name, measure, MEASURE_BUDGETS.get(measure, 0.0), evidence, weak)

    if state_of is not None:
        return made("none", f"recurrent state: mirrors input {state_of!r} (fed back next call)")
    if sample.dtype.kind in "iub":
        return made("exact", f"integer output ({sample.dtype}): ids or indices, compared exactly")
    if output_kind == "embedding":
        return made("cosine", "embeddings: the source is a feature extractor")
    ndim = sample.ndim
    if producer == "Sigmoid" and ndim in (2, 3) and sample.shape[-1] == 1:
        return made("binary", f"yes/no probabilities {list(sample.shape[1:])}{after}: decisions at 0.5")
    if producer in _PROBABILITY_OPS and ndim == 2 and sample.shape[1] > 1:
        return made("top1", f"class scores: {sample.shape[1]} values per sample{after}")
    if ndim == 2 and sample.shape[1] > 1 and _constant_norm(sample):
        return made("cosine", f"embeddings: rows of constant norm ({sample.shape[1]} values){after}")
    if ndim == 2 and sample.shape[1] > 1 and producer in _POOLING_OPS:
        return made("cosine", f"pooled features ({sample.shape[1]} values){after}")
    if ndim == 2 and sample.shape[1] > 1 and producer in _LINEAR_OPS:
        weak = sample.shape[1] >= 128  # a projection head of that width is as likely an embedding
        return made("top1", f"logits of a classifier head ({sample.shape[1]} classes){after}", weak)
    if ndim == 3 and producer in _PROBABILITY_OPS and sample.shape[2] > 1:
        return made("token_top1", f"per-token class scores [N, {sample.shape[1]}, {sample.shape[2]}]{after}")
    if ndim == 3 and 4 <= sample.shape[2] <= 7 and producer not in _LINEAR_OPS:
        return made("rel_error", f"boxes or values [N, {sample.shape[1]}, {sample.shape[2]}]{after}")
    if ndim == 3 and producer in _LINEAR_OPS and 1 < sample.shape[2] < 64:
        return made("token_top1", f"per-token logits [N, {sample.shape[1]}, {sample.shape[2]}]{after}", weak=True)
    if ndim == 3 and _direct_producer(model, name) == "Concat":
        # Detection heads concatenate decoded boxes and scores ([N, 4 + classes, anchors] in YOLO).
        return made("rel_error", f"boxes and scores concatenated {list(sample.shape[1:])}")
    if ndim == 3 and sample.shape[2] >= 64:
        return made("cosine", f"per-token features [N, {sample.shape[1]}, {sample.shape[2]}]{after}")
    if ndim == 4 and min(sample.shape[2:]) >= 4 and min(sample.shape[1], sample.shape[3]) <= 32:
        # Probabilities, or one channel, are decisions; several raw channels may be features.
        weak = producer not in _PROBABILITY_OPS and min(sample.shape[1], sample.shape[3]) > 1
        return made("iou", f"dense map {list(sample.shape[1:])}{after}", weak)
    if ndim == 4 and min(sample.shape[2:]) >= 4:
        return made("cosine", f"feature maps {list(sample.shape[1:])}{after}", weak=True)
    if ndim == 2 and sample.shape[1] > 1:
        return made("top1", f"{sample.shape[1]} values per sample{after}: taken for class scores", weak=True)
    return made("rel_error", f"values {list(sample.shape[1:])}{after}")


def _channel_axis(values: np.ndarray) -> int:
    """The class axis of a 4-D map: 1 (NCHW) unless the last axis is the smaller one (NHWC)."""
    return 3 if values.shape[3] < values.shape[1] else 1


def _map_decisions(values: np.ndarray) -> np.ndarray:
    """Per-pixel decisions of a dense map: the argmax class, or the thresholded single channel
    (0.5 for probabilities, 0 for logits)."""
    axis = _channel_axis(values) if values.ndim == 4 else None
    if axis is not None and values.shape[axis] > 1:
        return values.argmax(axis=axis)
    finite = values[np.isfinite(values)]
    probabilities = finite.size and finite.min() >= 0.0 and finite.max() <= 1.0
    return values > (0.5 if probabilities else 0.0)


def map_iou(reference: np.ndarray, candidate: np.ndarray) -> float:
    """IoU (0..1) of the thresholded decisions of two dense maps; mean over classes for
    multi-class maps (classes absent from both count as agreeing)."""
    ref, cand = _map_decisions(reference), _map_decisions(candidate)
    if ref.dtype == bool:
        union = np.logical_or(ref, cand).sum()
        return 1.0 if union == 0 else float(np.logical_and(ref, cand).sum() / union)
    scores = []
    for cls in np.union1d(np.unique(ref), np.unique(cand)):
        a, b = ref == cls, cand == cls
        scores.append(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())
    return float(np.mean(scores)) if scores else 1.0


def relative_error(reference: np.ndarray, candidate: np.ndarray) -> float:
    """``||fp32 - artifact|| / ||fp32||`` over the whole output (0 for identical outputs)."""
    ref = reference.astype(np.float64)
    noise = float(np.linalg.norm(ref - candidate.astype(np.float64)))
    signal = float(np.linalg.norm(ref))
    return 0.0 if noise == 0 else (noise / signal if signal else float("inf"))


def centered_cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean cosine of ``reference - m`` and ``candidate - m`` per sample, ``m`` the mean of the
    reference over its samples: what of the output depends on the input. One sample alone has no
    mean to remove: its plain cosine."""
    ref = reference.reshape(reference.shape[0], -1).astype(np.float64)
    cand = candidate.reshape(candidate.shape[0], -1).astype(np.float64)
    if len(ref) < 2:
        return float(np.mean(cosine_per_sample(ref, cand)))
    mean = ref.mean(axis=0, keepdims=True)
    return float(np.mean(cosine_per_sample(ref - mean, cand - mean)))


def measure_value(measure: str, reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """The figure of one output: (drop in points, the value it comes from, e.g. agreement in %)."""
    if measure == "top1":
        agreement = float(np.mean(reference.argmax(1) == candidate.argmax(1)) * 100)
        return 100.0 - agreement, agreement
    if measure == "token_top1":
        agreement = float(np.mean(reference.argmax(-1) == candidate.argmax(-1)) * 100)
        return 100.0 - agreement, agreement
    if measure == "binary":
        agreement = float(np.mean((reference > 0.5) == (candidate > 0.5)) * 100)
        return 100.0 - agreement, agreement
    if measure == "cosine":
        if reference.ndim == 3:  # per token, then averaged: one bad token is not hidden by its sentence
            flat = (reference.reshape(-1, reference.shape[-1]), candidate.reshape(-1, candidate.shape[-1]))
            cosine = float(np.mean(cosine_per_sample(*flat)))
        else:
            cosine = float(np.mean(cosine_per_sample(reference, candidate)))
        return 100.0 * (1.0 - cosine), cosine
    if measure == "centered_cosine":
        cosine = centered_cosine(reference, candidate)
        return 100.0 * (1.0 - cosine), cosine
    if measure == "iou":
        iou = map_iou(reference, candidate)
        return 100.0 * (1.0 - iou), iou
    if measure == "rel_error":
        error = relative_error(reference, candidate) * 100.0
        return error, error
    if measure == "exact":
        same = float(np.mean(reference == candidate) * 100) if reference.shape == candidate.shape else 0.0
        return 100.0 - same, same
    raise ValueError(f"no figure for measure {measure!r}")


@dataclass
class Gate:
    """The gate of one run: a measure and budget per output, or the user's evaluator."""

    measures: list[OutputMeasure]
    budget: float  # the budget in the report's units: the user's, or DEFAULT_BUDGET
    evaluator: Evaluator | None = None
    decisions: list[dict[str, str]] = field(default_factory=list)

    def assess(
        self,
        reference: list[np.ndarray],
        candidate: list[np.ndarray],
        output_names: list[str],
        labels: np.ndarray | None,
    ) -> dict[str, Any]:
        """Figures of ``candidate`` against the fp32 ``reference`` (outputs concatenated over
        samples): per output (or the evaluator's), and the worst relative to its budget.

        Returns ``{"outputs": {name: {...}}, "worst": name, "drop": points, "budget_use": ratio,
        "metric": text}`` where ``drop`` is in budget points (``budget_use x budget``).
        """
        if self.evaluator is not None:
            return self._assess_evaluator(reference, candidate, output_names, labels)
        by_name = dict(zip(output_names, zip(reference, candidate, strict=False), strict=False))
        outputs: dict[str, dict[str, Any]] = {}
        worst: str | None = None
        worst_use = -1.0
        for measure in self.measures:
            ref, cand = by_name[measure.name]
            entry: dict[str, Any] = {"measure": measure.measure, "evidence": measure.evidence, "gated": measure.gated}
            entry["sqnr_db"] = sqnr_db(ref, cand) if ref.dtype.kind == "f" else None
            if measure.gated:
                if measure.measure == "labels" and labels is not None:
                    flat = labels.reshape(-1)[: len(ref)]
                    ref_acc = float(np.mean(ref.argmax(1) == flat) * 100)
                    cand_acc = float(np.mean(cand.argmax(1) == flat) * 100)
                    drop, value = ref_acc - cand_acc, cand_acc
                    entry.update({"reference_top1": ref_acc, "artifact_top1": cand_acc})
                else:
                    drop, value = measure_value("top1" if measure.measure == "labels" else measure.measure, ref, cand)
                use = drop / measure.budget if measure.budget > 0 else (0.0 if drop <= 0 else float("inf"))
                entry.update({"value": value, "drop": drop, "budget": measure.budget, "budget_use": use})
                if worst is None or (use, drop) > (worst_use, outputs[worst]["drop"]):
                    worst, worst_use = measure.name, use
            outputs[measure.name] = entry
        if worst is None:  # nothing gated (every output a state): compare them all by cosine
            return {"outputs": outputs, "worst": None, "drop": 0.0, "budget_use": 0.0, "metric": "no gated output"}
        chosen = next(m for m in self.measures if m.name == worst)
        text = MEASURE_TEXT[chosen.measure]
        if len(self.measures) > 1:
            text += f" of output {worst!r} (worst of {sum(m.gated for m in self.measures)} gated outputs)"
        if chosen.budget != self.budget:
            text += f"; {outputs[worst]['drop']:.3f} of its {chosen.budget:g}-point budget"
        # In the report's budget points: a measure with a budget of its own is scaled to the report's.
        raw = outputs[worst]["drop"]
        scaled = raw * self.budget / chosen.budget if chosen.budget > 0 and self.budget > 0 else raw
        return {
            "outputs": outputs,
            "worst": worst,
            "drop": scaled,
            "budget_use": worst_use,
            "metric": text,
        }

    def _assess_evaluator(
        self, reference: list[np.ndarray], candidate: list[np.ndarray], names: list[str], labels: np.ndarray | None
    ) -> dict[str, Any]:
        assert self.evaluator is not None
        ref = dict(zip(names, reference, strict=False))
        cand = dict(zip(names, candidate, strict=False))
        ref_score = self.evaluator.score(ref, ref, labels)
        cand_score = self.evaluator.score(cand, ref, labels)
        drop = (ref_score - cand_score) if self.evaluator.higher_is_better else (cand_score - ref_score)
        use = drop / self.budget if self.budget > 0 else (0.0 if drop <= 0 else float("inf"))
        entry = {
            "measure": "custom",
            "evaluator": self.evaluator.name,
            "reference_score": ref_score,
            "artifact_score": cand_score,
            "higher_is_better": self.evaluator.higher_is_better,
            "drop": drop,
            "budget": self.budget,
            "budget_use": use,
        }
        return {
            "outputs": {},
            "custom": entry,
            "worst": None,
            "drop": drop,
            "budget_use": use,
            "metric": f"{self.evaluator.name} (your evaluator): drop from fp32's {ref_score:.4g}",
        }


def _parse_overrides(spec: str) -> dict[str, str]:
    """``name=measure,name2=measure`` -> {name: measure}."""
    overrides = {}
    for item in spec.split(","):
        name, _, measure = item.strip().rpartition("=")
        if not name or measure not in MEASURES:
            raise InputError(
                f"bad --metric item {item!r}", hint=f"write output=measure with a measure of {', '.join(MEASURES)}"
            )
        overrides[name] = measure
    return overrides


def is_evaluator_spec(metric: str) -> bool:
    """Whether ``--metric`` names the user's evaluator (``module:function`` or ``file.py:function``)."""
    return "=" not in metric and ":" in metric


def validate_metric(metric: str | Callable) -> None:
    """Raise InputError (exit 2) for a ``--metric`` that is neither a measure, overrides nor an
    evaluator reference; the evaluator itself is loaded later, when the run starts."""
    if callable(metric) or metric in ("auto", *MEASURES) or is_evaluator_spec(metric):
        return
    if "=" in metric:
        _parse_overrides(metric)
        return
    raise InputError(
        f"unknown --metric {metric!r}",
        hint="choose auto, one of " + ", ".join(MEASURES[:-1]) + ", output=measure items, "
        "or your evaluator as module:function / file.py:function",
    )


def _on_random_inputs(measure: OutputMeasure) -> OutputMeasure:
    """The measure of class scores when the eval data is random: :func:`centered_cosine`."""
    why = (
        f"{measure.evidence}; the eval data is random: fp32's top-1 on noise falls into a few classes with "
        "near-tie margins, and a plain cosine passes even a constant output, so the deviations from fp32's "
        "mean output are compared (pass --eval_data for top-1 on real samples)"
    )
    return OutputMeasure(measure.name, "centered_cosine", MEASURE_BUDGETS["centered_cosine"], why)


def choose_gate(
    model: onnx.ModelProto,
    output_names: list[str],
    samples: list[np.ndarray],
    *,
    metric: str | Callable,
    budget: float | None,
    labels: bool,
    output_kind: str | None = None,
    allow_pickle: bool = False,
    synthetic: bool = False,
) -> Gate:
    """Decide the gate of a run: a measure per output (by evidence, or as ``metric`` forces), or
    the user's evaluator. ``samples`` are the fp32 outputs on a few reference inputs; ``budget``
    the user's ``--max_accuracy_drop`` (None: each measure's default). ``synthetic``: the eval
    data is random, so class scores are compared by :func:`centered_cosine`, not top-1 (unless
    ``metric`` names a measure). Returns the Gate with one decision line per output (the
    evidence, and for weak evidence the flag that settles it).
    """
    display_budget = DEFAULT_BUDGET if budget is None else budget
    if callable(metric) or (isinstance(metric, str) and is_evaluator_spec(metric)):
        evaluator = load_evaluator(metric)
        direction = "higher" if evaluator.higher_is_better else "lower"
        decision = {
            "asked": f"--metric {evaluator.reference}",
            "done": f"your evaluator {evaluator.name} ({direction} is better)",
            "why": f"the gate and the search use the drop of its score from fp32's, budget {display_budget} "
            "in its own units",
        }
        return Gate([], display_budget, evaluator, [decision])
    forced = metric if metric in MEASURES else None
    overrides = _parse_overrides(metric) if "=" in metric else {}
    unknown = sorted(set(overrides) - set(output_names))
    if unknown:
        raise InputError(f"--metric names no output {unknown[0]!r}", hint=f"outputs: {', '.join(output_names)}")
    measures, decisions = [], []
    first_scores_taken = False
    for name, sample in zip(output_names, samples, strict=False):
        sample = np.asarray(sample)
        measure = decide_measure(
            model, name, sample, labels=labels, output_kind=output_kind, first_scores=not first_scores_taken
        )
        asked = overrides.get(name) or forced
        if synthetic and not asked and measure.measure == "top1":
            measure = _on_random_inputs(measure)
        if asked:
            why = f"--metric {metric}" + ("" if asked == measure.measure else f" (the evidence said {measure.measure})")
            if asked in ("top1", "labels", "token_top1") and sample.ndim < 2:
                raise InputError(f"--metric {asked} needs class scores; output {name!r} has shape {list(sample.shape)}")
            if asked == "top1" and labels and not first_scores_taken:
                asked = "labels"
            measure = OutputMeasure(name, asked, MEASURE_BUDGETS.get(asked, 0.0), why)
        if measure.measure in ("top1", "labels"):
            first_scores_taken = True
        if budget is not None and measure.gated:
            measure.budget = budget
        measures.append(measure)
        why = measure.evidence
        if measure.weak:
            other = "cosine" if measure.measure in ("top1", "token_top1", "iou") else "top1"
            why += f"; weak evidence: pass --metric {name}={other} (or --metric your_module:function) if it is not"
        done = f"{MEASURE_TEXT[measure.measure]}" + (f", budget {measure.budget:g}" if measure.gated else "")
        decisions.append({"asked": f"--metric {metric} for output {name!r}", "done": done, "why": why})
    if measures and not any(m.gated for m in measures):
        # Only state outputs: nothing else to judge the model by, so they are gated after all.
        for measure in measures:
            measure.measure = "cosine"
            measure.budget = display_budget if budget is not None else MEASURE_BUDGETS["cosine"]
        decisions.append(
            {
                "asked": f"--metric {metric}",
                "done": "every output compared by cosine",
                "why": "all outputs look like recurrent state, and a gate needs at least one",
            }
        )
    return Gate(measures, display_budget, None, decisions)


def gate_from_report(report: dict[str, Any]) -> Gate | None:
    """The per-output measures and budgets a bundle's report.json was gated with, to compare a
    re-run of the bundle the same way (``edgeport verify``); None for reports without them
    (older bundles, or a user's evaluator, which is not part of the bundle)."""
    measured = ((report.get("fidelity") or {}).get("measures") or {}).get("outputs")
    if not measured:
        return None
    measures = [
        OutputMeasure(name, entry["measure"], float(entry.get("budget") or 0.0), entry.get("evidence", ""))
        for name, entry in measured.items()
    ]
    budget = (report.get("gate") or {}).get("max_accuracy_drop")
    return Gate(measures, DEFAULT_BUDGET if budget is None else float(budget))


__all__ = ["Gate", "OutputMeasure", "choose_gate", "validate_metric", "DEFAULT_BUDGET", "MEASURES"]
