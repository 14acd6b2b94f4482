"""The shared timing loop (runtime/timing.py) and the local per-shape view over it (verify/latency.py)."""

from __future__ import annotations

import numpy as np

from edgeport.runtime.timing import first_samples, percentiles_ms, time_side_by_side
from edgeport.verify.latency import measure_over_samples, measure_side_by_side


class _Recorder:
    """A runner that records which batch sizes it ran, in order."""

    def __init__(self, log: list[tuple[str, int]], name: str) -> None:
        self.log, self.name = log, name

    def run(self, feeds):
        self.log.append((self.name, len(feeds["x"])))
        return [feeds["x"]]


def test_runners_alternate_after_a_warmup_on_every_sample():
    log: list[tuple[str, int]] = []
    runners = {"a": _Recorder(log, "a"), "b": _Recorder(log, "b")}
    feed_list = [{"x": np.zeros((n, 2))} for n in (1, 2, 3)]
    ticks: list[int] = []
    samples = time_side_by_side(runners, feed_list, runs=4, warmup=2, progress=ticks.append)
    warm = [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2), ("b", 3)]  # at least once per sample
    assert log[:6] == warm
    assert log[6:] == [("a", 1), ("b", 1), ("b", 2), ("a", 2), ("a", 3), ("b", 3), ("b", 1), ("a", 1)]
    assert [len(v) for v in samples.values()] == [4, 4] and ticks == [1] * 4


def test_per_shape_view_groups_the_same_runs():
    runners = {"reference": _Recorder([], "r"), "artifact": _Recorder([], "a")}
    feed_list = [{"x": np.zeros((1, 2))}, {"x": np.zeros((5, 2))}]
    latency, shapes = measure_over_samples(runners, feed_list, runs=6, warmup=1)
    assert list(latency) == ["reference", "artifact"] and latency["artifact"]["runs"] == 6
    assert [(s["shape"], s["runs"]) for s in shapes] == [("x 1x2", 3), ("x 5x2", 3)]
    assert {"reference_p50_ms", "artifact_p50_ms"} <= set(shapes[0])
    assert measure_side_by_side(runners, feed_list[0], 3, 1)["reference"]["runs"] == 3


def test_percentiles_and_first_samples():
    figures = percentiles_ms([2_000_000, 1_000_000, 3_000_000])
    assert (figures["p50_ms"], figures["min_ms"], figures["runs"]) == (2.0, 1.0, 3)
    assert figures["samples_ms"] == [2.0, 1.0, 3.0]
    cut = first_samples({"x": np.arange(12).reshape(3, 4), "sr": np.asarray(8000)}, 2, {"x": 1})
    assert cut["x"].shape == (3, 2) and cut["sr"] == 8000
