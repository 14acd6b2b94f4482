"""Fidelity metrics: an artifact's outputs against the fp32 reference's (and labels)."""

from __future__ import annotations

from typing import Any

import numpy as np


def cosine_per_sample(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Return the cosine similarity of each sample (row after flattening all but axis 0)."""
    ref = reference.reshape(reference.shape[0], -1).astype(np.float64)
    cand = candidate.reshape(candidate.shape[0], -1).astype(np.float64)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    dots = np.sum(ref * cand, axis=1)
    # Two all-zero vectors are identical; one zero vector against a non-zero one is not.
    both_zero = (np.linalg.norm(ref, axis=1) == 0) & (np.linalg.norm(cand, axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.where(norms > 0, dots / norms, 0.0)
    return np.where(both_zero, 1.0, cosine)


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Return the signal-to-quantization-noise ratio in dB (inf when identical)."""
    ref = reference.astype(np.float64)
    noise = float(np.sum((ref - candidate.astype(np.float64)) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0:
        return float("inf")
    if signal == 0:
        return float("-inf")
    return 10.0 * float(np.log10(signal / noise))


def is_classifier_output(output: np.ndarray) -> bool:
    """True when an output looks like class scores: 2-D [N, classes] with more than one class."""
    return output.ndim == 2 and output.shape[1] > 1


def compare(
    reference: list[np.ndarray],
    candidate: list[np.ndarray],
    output_names: list[str],
    labels: np.ndarray | None = None,
    gate: Any = None,
) -> dict[str, Any]:
    """Compare artifact outputs with fp32 reference outputs (both concatenated over samples).

    Returns per-output cosine (mean/min), SQNR, max abs error and, for classifier-like first
    outputs, top-1 agreement and (with labels) both top-1 accuracies in percent. With a
    ``gate`` (:class:`edgeport.verify.gate.Gate`), also ``measures``: each output's figure on
    the measure the gate chose for it, and the worst one relative to its budget.
    """
    per_output = {}
    for name, ref, cand in zip(output_names, reference, candidate, strict=False):
        cosine = cosine_per_sample(ref, cand)
        per_output[name] = {
            "cosine_mean": float(np.mean(cosine)),
            "cosine_min": float(np.min(cosine)),
            "sqnr_db": sqnr_db(ref, cand),
            "max_abs_error": float(np.max(np.abs(ref.astype(np.float64) - cand.astype(np.float64)))),
        }
    result: dict[str, Any] = {"samples": int(reference[0].shape[0]), "outputs": per_output}
    first_ref, first_cand = reference[0], candidate[0]
    if is_classifier_output(first_ref):
        ref_top1, cand_top1 = first_ref.argmax(1), first_cand.argmax(1)
        result["top1_agreement"] = float(np.mean(ref_top1 == cand_top1) * 100)
        if labels is not None:
            labels = labels.reshape(-1)[: len(ref_top1)]
            result["reference_top1"] = float(np.mean(ref_top1 == labels) * 100)
            result["artifact_top1"] = float(np.mean(cand_top1 == labels) * 100)
    if gate is not None:
        result["measures"] = gate.assess(reference, candidate, output_names, labels)
        custom = result["measures"].get("custom")
        if custom:
            result["custom"] = custom
    return result


GATE_METRICS = ("auto", "top1", "cosine")


def accuracy_drop(metrics: dict[str, Any], metric: str = "auto") -> tuple[float, str]:
    """Return the accuracy drop in percentage points that the gate checks, and what it is.

    ``auto``: with labels, fp32 top-1 minus artifact top-1; without labels, for class
    scores, 100 - top-1 agreement; otherwise 100 * (1 - mean cosine) of the first output.
    ``cosine`` forces the cosine form (embeddings, features); ``top1`` needs class scores.
    Fidelity measured with a gate (``measures``, see :func:`compare`) gives the gate's figure:
    the worst output relative to its budget, in budget points.
    """
    if "measures" in metrics:
        return metrics["measures"]["drop"], metrics["measures"]["metric"]
    if metric == "cosine":
        first = next(iter(metrics["outputs"].values()))
        return 100.0 * (1.0 - first["cosine_mean"]), "100 x (1 - mean cosine) vs fp32"
    if metric == "top1" and "top1_agreement" not in metrics:
        from edgeport.core.errors import InputError

        raise InputError("--metric top1 needs a first output of class scores [N, classes]")
    if "artifact_top1" in metrics:
        return metrics["reference_top1"] - metrics["artifact_top1"], "top-1 accuracy drop vs fp32 (labels)"
    if "top1_agreement" in metrics:
        return 100.0 - metrics["top1_agreement"], "top-1 disagreement with fp32 (no labels)"
    first = next(iter(metrics["outputs"].values()))
    return 100.0 * (1.0 - first["cosine_mean"]), "100 x (1 - mean cosine) vs fp32 (no labels, not a classifier)"
