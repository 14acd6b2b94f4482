"""The batch tuning curve in report.html: throughput against p50 latency, one line per thread count."""

from __future__ import annotations

from edgeport.reports.html import throughput_svg


def _point(batch: int, threads: int, p50: float) -> dict:
    return {
        "batch": batch,
        "threads": threads,
        "artifact": {"p50_ms": p50, "p99_ms": 1.5 * p50, "throughput_per_s": batch / p50 * 1000},
    }


def test_one_line_per_thread_count_and_the_chosen_point_larger():
    points = [_point(1, 1, 0.2), _point(8, 1, 1.0), _point(1, 2, 0.15), _point(8, 2, 0.7)]
    points.append({"batch": 32, "threads": 1, "skipped": "fixed batch"})
    svg = throughput_svg(points, {"batch": 8, "threads": 2})
    assert svg.count("<polyline") == 2 and svg.count("<circle") == 4  # the skipped point is not drawn
    assert svg.count('r="7"') == 1 and "batch 8, 2 thread(s): 11429/s" in svg
    assert "1 thread(s)</text>" in svg and "2 thread(s)</text>" in svg


def test_nothing_measured_draws_nothing():
    assert throughput_svg([{"batch": 4, "threads": 1, "skipped": "x"}]) == ""
