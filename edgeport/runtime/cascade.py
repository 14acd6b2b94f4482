"""The cascade rule of a bundle (issue 18, model routing), with numpy only: the small model
answers a sample when its confidence (the max softmax probability of its class-score output)
is at least the threshold; the large model answers the rest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeport.core.errors import InputError

MEASURE = "max softmax"
NOT_SCORES = "cascade needs a classifier's scores"


def confidence(scores: np.ndarray) -> np.ndarray:
    """Return the max softmax probability of each row of ``scores`` ([batch, classes]), as
    float64. Raises InputError (NOT_SCORES) for anything that is not a float [batch, >=2] array."""
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] < 2 or not np.issubdtype(scores.dtype, np.floating):
        raise InputError(f"{NOT_SCORES} ([batch, classes] floats; got {scores.dtype} {list(scores.shape)})")
    logits = scores.astype(np.float64)
    # Subtract the row maximum so exp never overflows; the max probability is 1 / sum(exp(z - max)).
    shifted = logits - logits.max(axis=1, keepdims=True)
    return 1.0 / np.exp(shifted).sum(axis=1)


@dataclass(frozen=True)
class Cascade:
    """The manifest's ``cascade`` section: the two bundle files, the class-score output the
    confidence is read from, and the threshold."""

    small: str
    large: str
    output: str
    threshold: float
    measure: str = MEASURE

    @classmethod
    def from_manifest(cls, section: dict[str, Any]) -> Cascade:
        """Read the manifest's ``cascade`` section; raise InputError when it is malformed."""
        try:
            rule = cls(
                str(section["small"]),
                str(section["large"]),
                str(section["output"]),
                float(section["threshold"]),
                str(section.get("measure", MEASURE)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"manifest.json: malformed cascade section ({exc})") from exc
        if rule.measure != MEASURE:
            raise InputError(f"manifest.json: cascade measure {rule.measure!r} is not {MEASURE!r}")
        return rule

    def escalate(self, scores: np.ndarray) -> np.ndarray:
        """Return a bool per sample of ``scores``: True where the large model must answer."""
        return confidence(scores) < self.threshold


def take_rows(feeds: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """Return the samples ``rows`` of every input (batch-first)."""
    return {name: np.asarray(array)[rows] for name, array in feeds.items()}
