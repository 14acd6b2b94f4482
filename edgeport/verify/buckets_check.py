"""Shape buckets checked sample by sample (issue 18): each sample, cut to its natural length, is
routed by the manifest's rule through ``edgeport.runtime.bundle`` (the code a server runs) and its
outputs are compared with fp32's on the real positions. The conversion checks its eval data this
way (``pipeline/bucket_build.py``); ``edgeport verify`` re-runs the bucket files on the bundle's
reference samples against the stored fp32 outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeport.runtime.bundle import Buckets, DeployedModel, load_bundle
from edgeport.verify.metrics import cosine_per_sample


def natural_inputs(feeds: dict[str, np.ndarray], rule: Buckets, length: int) -> dict[str, np.ndarray]:
    """``feeds`` (one sample) with every bucketed input cut to ``length`` along its axis."""
    return {n: np.take(a, np.arange(length), axis=rule.inputs[n]) if n in rule.inputs else a for n, a in feeds.items()}


def compare_sample(
    got: dict[str, np.ndarray], expected: dict[str, np.ndarray], rule: Buckets, length: int
) -> tuple[float, float]:
    """(lowest cosine, largest absolute difference) over the outputs of one sample; outputs that
    carry the bucketed axis are compared on their first ``length`` (real) positions only."""
    cosines, diffs = [], []
    for name, want in expected.items():
        have = got[name]
        if name in rule.outputs:
            axis = rule.outputs[name]
            want, have = (np.take(x, np.arange(min(length, x.shape[axis])), axis=axis) for x in (want, have))
        cosines.append(float(cosine_per_sample(want.reshape(1, -1), have.reshape(1, -1))[0]))
        diffs.append(float(np.max(np.abs(have.astype(np.float64) - want), initial=0.0)))
    return min(cosines), max(diffs)


def bucket_line(size: int, file: str, pairs: list[tuple[float, float]]) -> dict[str, Any]:
    """One bucket's figures: the samples it served, their cosine (min, mean) and largest difference."""
    cosines = [c for c, _ in pairs]
    return {
        "size": size,
        "file": file,
        "samples": len(pairs),
        "cosine_min": round(min(cosines), 6) if cosines else None,
        "cosine_mean": round(float(np.mean(cosines)), 6) if cosines else None,
        "max_abs_diff": round(max(d for _, d in pairs), 6) if cosines else None,
    }


def rerun_buckets(
    bundle_dir: Path,
    feeds: dict[str, np.ndarray],
    stored: list[np.ndarray],
    names: list[str],
    axes: dict[str, int | None],
    threads: int,
) -> dict[str, Any]:
    """Route each reference sample (``feeds``, batch axes ``axes``) through the bundle's buckets
    and compare with the stored fp32 outputs (sample-first); return per bucket its samples, cosine
    and largest difference, and the count longer than the largest bucket (not run)."""
    deployed: DeployedModel = load_bundle(bundle_dir, threads=threads)
    rule = deployed.buckets
    assert rule is not None, "rerun_buckets needs a bundle with buckets"
    found: dict[int, list[tuple[float, float]]] = {size: [] for size in rule.sizes}
    too_long = 0
    for index in range(len(stored[0])):
        row = {n: a if axes.get(n) is None else np.take(a, [index], axis=axes[n]) for n, a in feeds.items()}
        length = rule.natural_length(row)
        if length > rule.sizes[-1]:
            too_long += 1
            continue
        got = deployed.run(natural_inputs(row, rule, length))
        expected = {name: array[index : index + 1] for name, array in zip(names, stored, strict=True)}
        found[rule.sizes[rule.choose(length)]].append(compare_sample(got, expected, rule, length))
    return {
        "axis": rule.axis,
        "buckets": [bucket_line(size, file, found[size]) for size, file in zip(rule.sizes, rule.files, strict=True)],
        "longer_than_largest": too_long,
        "compared_with": "the stored fp32 outputs, on each sample's real positions",
    }
