"""The routing rules of a bundle (issue 18, model routing), with numpy only. A bundle may hold a
small and a large model and one rule:

- ``confidence`` (the cascade): the small model answers a sample when its confidence (the max
  softmax probability of its class-score output) is at least the threshold; the large model
  answers the rest;
- ``size``: an input whose size (the attention mask's sum for text, else the number of elements
  of the routed input per sample) is above the threshold goes to the small model, the rest to
  the large one (long inputs cost the most, so they gain the most from the small model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeport.core.errors import InputError

MEASURE = "max softmax"
NOT_SCORES = "cascade needs a classifier's scores"
CONFIDENCE, SIZE = "confidence", "size"
RULES = (CONFIDENCE, SIZE)
# How the size rule measures a sample: the mask's count of real positions, or the elements of
# the routed input per sample (the product of its non-batch dims).
MASK_SUM, ELEMENTS = "mask sum", "elements"


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


def sample_sizes(feeds: dict[str, np.ndarray], name: str, measure: str) -> np.ndarray:
    """Return the size of each sample of ``feeds`` (batch-first) as int64: with ``MASK_SUM`` the
    count of non-zero mask positions of input ``name`` (its real length), else the number of
    elements of ``name`` per sample. Raises InputError when the input is missing."""
    if name not in feeds:
        raise InputError(f"size routing reads input {name!r}, which the feeds do not hold")
    array = np.asarray(feeds[name])
    if array.ndim == 0:
        raise InputError(f"size routing needs a batch axis on input {name!r}")
    if measure == MASK_SUM:
        return np.count_nonzero(array.reshape(array.shape[0], -1), axis=1).astype(np.int64)
    return np.full(array.shape[0], int(np.prod(array.shape[1:])), dtype=np.int64)


@dataclass(frozen=True)
class Cascade:
    """The manifest's ``cascade`` section: the two bundle files, the rule and its threshold;
    ``output`` is the class-score output the confidence rule reads, ``input``/``axis`` the input
    (and its variable axis) the size rule reads, ``measure`` how the rule scores a sample."""

    small: str
    large: str
    threshold: float
    rule: str = CONFIDENCE
    output: str | None = None
    input: str | None = None
    axis: int | None = None
    measure: str = MEASURE

    @classmethod
    def from_manifest(cls, section: dict[str, Any]) -> Cascade:
        """Read the manifest's ``cascade`` section (no ``rule``: the confidence rule, as bundles
        written before the size rule); raise InputError when it is malformed."""
        rule = str(section.get("rule", CONFIDENCE)) if isinstance(section, dict) else ""
        if rule not in RULES:
            raise InputError(f"manifest.json: cascade rule {rule!r} is unknown (rules: {', '.join(RULES)})")
        try:
            size = rule == SIZE
            built = cls(
                str(section["small"]),
                str(section["large"]),
                float(section["threshold"]),
                rule,
                None if size else str(section["output"]),
                str(section["input"]) if size else None,
                int(section["axis"]) if size and section.get("axis") is not None else None,
                str(section.get("measure", MASK_SUM if size else MEASURE)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"manifest.json: malformed cascade section ({exc})") from exc
        allowed = (MASK_SUM, ELEMENTS) if size else (MEASURE,)
        if built.measure not in allowed:
            raise InputError(f"manifest.json: cascade rule {rule!r} with measure {built.measure!r} is unknown")
        return built

    def escalate(self, scores: np.ndarray) -> np.ndarray:
        """Return a bool per sample of ``scores``: True where the large model must answer."""
        return confidence(scores) < self.threshold

    def to_large(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The size rule: a bool per sample of ``feeds``, True where the large model answers
        (the sample's size is at most the threshold)."""
        assert self.input is not None, "the size rule names its input"
        return sample_sizes(feeds, self.input, self.measure) <= self.threshold


def take_rows(feeds: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """Return the samples ``rows`` of every input (batch-first)."""
    return {name: np.asarray(array)[rows] for name, array in feeds.items()}
