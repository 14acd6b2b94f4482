"""Fidelity metrics on known values."""

from __future__ import annotations

import math

import numpy as np

from edgeport.verify.latency import percentiles_ms
from edgeport.verify.metrics import accuracy_drop, compare, cosine_per_sample, sqnr_db


def test_cosine_and_sqnr_known_values():
    reference = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    candidate = np.array([[1.0, 1.0], [0.0, 2.0], [0.0, 0.0]])
    np.testing.assert_allclose(cosine_per_sample(reference, candidate), [1 / math.sqrt(2), 1.0, 1.0])
    # signal 5, noise 1 -> 10*log10(5) dB
    assert math.isclose(sqnr_db(reference, candidate), 10 * math.log10(5.0))
    assert sqnr_db(reference, reference) == float("inf")


def test_compare_with_labels_and_gate_metric():
    reference = np.array([[3.0, 1.0], [0.0, 1.0], [2.0, 0.0], [0.0, 5.0]])
    candidate = np.array([[3.0, 1.0], [1.0, 0.0], [2.0, 0.0], [0.0, 5.0]])
    labels = np.array([0, 1, 1, 1])
    result = compare([reference], [candidate], ["logits"], labels)
    assert result["top1_agreement"] == 75.0
    assert result["reference_top1"] == 75.0 and result["artifact_top1"] == 50.0
    drop, metric = accuracy_drop(result)
    assert drop == 25.0 and "labels" in metric
    no_labels = compare([reference], [candidate], ["logits"])
    assert accuracy_drop(no_labels)[0] == 25.0


def test_non_classifier_gate_uses_cosine():
    reference = np.ones((4, 2, 3, 3))
    candidate = reference.copy()
    candidate[0, 0, 0, 0] = 0.0
    result = compare([reference], [candidate], ["features"])
    drop, metric = accuracy_drop(result)
    assert "cosine" in metric and 0 < drop < 1


def test_percentiles():
    stats = percentiles_ms([1_000_000, 2_000_000, 3_000_000, 4_000_000, 100_000_000])
    assert stats["p50_ms"] == 3.0 and stats["min_ms"] == 1.0 and stats["runs"] == 5
    assert stats["p99_ms"] > stats["p90_ms"] > stats["p50_ms"]
