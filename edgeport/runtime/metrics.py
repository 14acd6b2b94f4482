"""Serving metrics: a latency histogram and gauges in the Prometheus text exposition format.

Written by hand (the format is a few lines), so the base install needs nothing more; when
``prometheus_client`` is installed (the ``serve`` extra), :func:`prometheus_collector` exports
the same histograms through it while serving. numpy and the standard library only, like every
module of ``edgeport/runtime`` (the device harness ships them as they are).

Buckets: Prometheus' default buckets (5 ms to 10 s) put every call of a sub-millisecond model in
the first bucket, so :data:`LATENCY_BUCKETS_S` adds 0.1 ms to 2.5 ms steps below them and keeps
the defaults' 1-2.5-5 spacing above. Values are in seconds, Prometheus' base unit.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
LATENCY_METRIC = "edgeport_inference_latency_seconds"


def cumulative_counts(values_s: Iterable[float], buckets: tuple[float, ...] = LATENCY_BUCKETS_S) -> list[int]:
    """Return, per bucket bound and then +Inf, how many values are <= it (Prometheus' ``le``)."""
    ordered = np.sort(np.asarray(list(values_s), dtype=np.float64))
    return [int(np.searchsorted(ordered, bound, side="right")) for bound in buckets] + [int(ordered.size)]


def _number(value: float) -> str:
    """A sample value as Prometheus writes it (``+Inf``, ``1.0``, ``0.00025``)."""
    if value == float("inf"):
        return "+Inf"
    return repr(float(value))


def _labels(labels: dict[str, str], extra: dict[str, str] | None = None) -> str:
    """``{a="x",b="y"}`` with backslash, quote and newline escaped; empty without labels."""
    items = {**labels, **(extra or {})}
    if not items:
        return ""
    escaped = (f'{k}="{_escape(str(v))}"' for k, v in items.items())
    return "{" + ",".join(escaped) + "}"


def _escape(value: str) -> str:
    """A label value or HELP text with backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass
class LatencyHistogram:
    """A latency histogram of one label set: record calls, render them, export them.

    ``observe(seconds)`` adds one call; ``time()`` times a block; ``render()`` gives the text
    exposition; :func:`prometheus_collector` serves it through prometheus_client.
    """

    labels: dict[str, str] = field(default_factory=dict)
    name: str = LATENCY_METRIC
    help: str = "Inference latency per call (one session.run), in seconds."
    buckets: tuple[float, ...] = LATENCY_BUCKETS_S
    values: list[float] = field(default_factory=list)
    # Calls counted earlier (another process, a report's ``histogram_s``): cumulative counts per
    # bucket then +Inf, and their sum in seconds; added to what ``values`` holds.
    earlier_cumulative: list[int] | None = None
    earlier_sum: float = 0.0

    @classmethod
    def from_counts(
        cls, labels: dict[str, str], bounds: list[float], cumulative: list[int], sum_s: float
    ) -> LatencyHistogram:
        """A histogram of calls already counted into ``bounds`` (cumulative counts, +Inf last)."""
        if len(cumulative) != len(bounds) + 1:
            raise ValueError("cumulative counts need one entry per bound and one for +Inf")
        return cls(labels=labels, buckets=tuple(bounds), earlier_cumulative=list(cumulative), earlier_sum=sum_s)

    def observe(self, seconds: float) -> None:
        """Record one call of ``seconds``."""
        self.values.append(float(seconds))

    def observe_ns(self, samples_ns: Iterable[int]) -> None:
        """Record calls timed in nanoseconds (as ``runtime/timing.py`` measures them)."""
        self.values.extend(ns / 1e9 for ns in samples_ns)

    @contextmanager
    def time(self) -> Iterator[None]:
        """Time the ``with`` block as one call."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe(time.perf_counter() - start)

    @property
    def count(self) -> int:
        """The calls recorded."""
        return len(self.values) + (self.earlier_cumulative[-1] if self.earlier_cumulative else 0)

    @property
    def sum(self) -> float:
        """Their total time in seconds."""
        return float(sum(self.values)) + self.earlier_sum

    def cumulative(self) -> list[int]:
        """Calls <= each bucket bound, then the +Inf count (= :attr:`count`)."""
        counts = cumulative_counts(self.values, self.buckets)
        if self.earlier_cumulative:
            counts = [a + b for a, b in zip(counts, self.earlier_cumulative, strict=True)]
        return counts

    def samples(self) -> list[str]:
        """The ``_bucket``, ``_sum`` and ``_count`` lines, without HELP/TYPE."""
        bounds = [*self.buckets, float("inf")]
        lines = [
            f"{self.name}_bucket{_labels(self.labels, {'le': _number(b)})} {c}"
            for b, c in zip(bounds, self.cumulative(), strict=True)
        ]
        lines.append(f"{self.name}_sum{_labels(self.labels)} {_number(self.sum)}")
        lines.append(f"{self.name}_count{_labels(self.labels)} {self.count}")
        return lines

    def render(self) -> str:
        """This histogram alone in the text exposition format."""
        return render_exposition([self])


@dataclass
class Gauge:
    """One gauge sample (load time, peak memory) with its labels."""

    name: str
    help: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


def render_exposition(histograms: Iterable[LatencyHistogram], gauges: Iterable[Gauge] = ()) -> str:
    """Render histograms and gauges as one text exposition (version 0.0.4): HELP and TYPE once per
    metric name, then its samples per label set. Returns the text, ending with a newline."""
    families: dict[str, tuple[str, str, list[str]]] = {}
    for hist in histograms:
        families.setdefault(hist.name, ("histogram", hist.help, []))[2].extend(hist.samples())
    for gauge in gauges:
        families.setdefault(gauge.name, ("gauge", gauge.help, []))[2].append(
            f"{gauge.name}{_labels(gauge.labels)} {_number(gauge.value)}"
        )
    lines: list[str] = []
    for name, (kind, text, samples) in families.items():
        # HELP escapes only backslash and newline (the format's rule); label values also escape quotes.
        help_text = text.replace("\\", "\\\\").replace("\n", "\\n")
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]
    return "\n".join(lines) + "\n"


def prometheus_collector(histograms: list[LatencyHistogram]) -> Any:
    """Return a prometheus_client collector that serves ``histograms`` (read at each scrape), for
    ``prometheus_client.REGISTRY.register(...)``. Raises ImportError naming the extra without it."""
    try:
        from prometheus_client.core import HistogramMetricFamily
        from prometheus_client.registry import Collector
    except ImportError as exc:
        raise ImportError("prometheus_client is not installed: pip install 'edgeport[serve]'") from exc

    class _Collector(Collector):
        def collect(self) -> Iterator[Any]:
            by_name: dict[str, Any] = {}
            for hist in histograms:
                keys = sorted(hist.labels)
                family = by_name.get(hist.name)
                if family is None:
                    family = by_name[hist.name] = HistogramMetricFamily(hist.name, hist.help, labels=keys)
                bounds = [*(_number(b) for b in hist.buckets), "+Inf"]
                family.add_metric(
                    [hist.labels[k] for k in keys], list(zip(bounds, hist.cumulative(), strict=True)), hist.sum
                )
            yield from by_name.values()

    return _Collector()
