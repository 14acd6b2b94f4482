"""``report.html``: a self-contained page (no network) rendered only from report.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from markupsafe import escape

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if value is None:
        return "—"
    return str(value)


def _num(value: Any) -> str:
    """A count with thousands separators (parameters, MACs, bytes); "—" when unknown."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:,.0f}"
    return "—" if value is None else str(value)


def pareto_svg(points: list[dict[str, Any]], width: int = 520, height: int = 260) -> str:
    """Return an inline SVG scatter of search points: x = measured speedup, y = accuracy drop
    (points; lower is better). The chosen point is drawn larger. No scripts, no network."""
    usable = [
        p for p in points if isinstance(p.get("speedup"), (int, float)) and isinstance(p.get("drop"), (int, float))
    ]
    if not usable:
        return ""
    pad = 40
    xs = [p["speedup"] for p in usable]
    ys = [p["drop"] for p in usable]
    x_lo, x_hi = min(xs + [1.0]), max(xs + [1.0])
    y_lo, y_hi = min(ys + [0.0]), max(ys + [0.0])
    x_span, y_span = (x_hi - x_lo) or 1.0, (y_hi - y_lo) or 1.0

    def sx(v: float) -> float:
        return pad + (v - x_lo) / x_span * (width - 2 * pad)

    def sy(v: float) -> float:
        return height - pad - (v - y_lo) / y_span * (height - 2 * pad)

    parts = [
        f'<svg width="{width}" height="{height}" role="img">',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#888"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#888"/>',
        f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle" font-size="12">speedup vs fp32 (x)</text>',
        f'<text x="12" y="{height / 2}" font-size="12" transform="rotate(-90 12,{height / 2})" '
        'text-anchor="middle">accuracy drop (points)</text>',
        f'<text x="{pad}" y="{height - pad + 14}" font-size="10">{x_lo:.2f}</text>',
        f'<text x="{width - pad}" y="{height - pad + 14}" font-size="10" text-anchor="end">{x_hi:.2f}</text>',
        f'<text x="{pad - 4}" y="{height - pad}" font-size="10" text-anchor="end">{y_lo:.2f}</text>',
        f'<text x="{pad - 4}" y="{pad + 4}" font-size="10" text-anchor="end">{y_hi:.2f}</text>',
    ]
    front = sorted(pareto_front(usable), key=lambda p: p["speedup"])
    if len(front) > 1:
        path = " ".join(f"{sx(p['speedup']):.1f},{sy(p['drop']):.1f}" for p in front)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#4078c0" stroke-dasharray="4 3"/>')
    for p in usable:
        chosen = p.get("chosen", False)
        color = "#1a7f37" if p.get("feasible") else "#cf222e"
        parts.append(
            f'<circle cx="{sx(p["speedup"]):.1f}" cy="{sy(p["drop"]):.1f}" r="{7 if chosen else 4}" '
            f'fill="{color}" fill-opacity="0.8"><title>{p.get("kept_float_count", 0)} layer(s) in float: '
            f"drop {p['drop']:.3f}, {p['speedup']:.2f}x</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def bars_svg(values: dict[str, float], unit: str = "ms", width: int = 520, limit: int = 14) -> str:
    """Horizontal bars for ``{label: value}`` (largest first, at most ``limit``), inline SVG."""
    items = sorted(values.items(), key=lambda kv: -kv[1])[:limit]
    if not items:
        return ""
    top = max(v for _, v in items) or 1.0
    row, label_w = 18, 170
    parts = [f'<svg width="{width}" height="{row * len(items) + 4}" role="img">']
    for i, (label, value) in enumerate(items):
        y = i * row + 2
        bar = (width - label_w - 90) * value / top
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 12}" font-size="11" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{bar:.1f}" height="{row - 5}" fill="#4078c0"/>'
            f'<text x="{label_w + bar + 4:.1f}" y="{y + 12}" font-size="11">{value:.4g} {unit}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def histogram_svg(series: dict[str, list[float]], width: int = 520, height: int = 180, bins: int = 30) -> str:
    """Overlaid latency histograms (one colour per series) on a shared ms axis, inline SVG.
    The axis stops at the 99th percentile of all samples so rare stalls do not flatten it."""
    usable = {k: np.asarray(v, float) for k, v in series.items() if v}
    if not usable:
        return ""
    everything = np.concatenate(list(usable.values()))
    lo, hi = float(everything.min()), float(np.percentile(everything, 99))
    if hi <= lo:
        hi = lo + 1e-6
    edges = np.linspace(lo, hi, bins + 1)
    counts = {k: np.histogram(np.clip(v, lo, hi), edges)[0] / len(v) for k, v in usable.items()}
    peak = max(float(c.max()) for c in counts.values()) or 1.0
    pad, colors = 30, ("#8c959f", "#1a7f37", "#cf222e")
    bar_w = (width - 2 * pad) / bins
    parts = [
        f'<svg width="{width}" height="{height}" role="img">',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#888"/>',
        f'<text x="{pad}" y="{height - 10}" font-size="10">{lo:.3f} ms</text>',
        f'<text x="{width - pad}" y="{height - 10}" font-size="10" text-anchor="end">{hi:.3f} ms (p99)</text>',
    ]
    for index, (name, count) in enumerate(counts.items()):
        color = colors[index % len(colors)]
        for b, c in enumerate(count):
            h = (height - 2 * pad) * float(c) / peak
            parts.append(
                f'<rect x="{pad + b * bar_w:.1f}" y="{height - pad - h:.1f}" width="{bar_w - 1:.1f}" '
                f'height="{h:.1f}" fill="{color}" fill-opacity="0.55"/>'
            )
        parts.append(
            f'<text x="{width - pad}" y="{14 + 14 * index}" font-size="11" text-anchor="end" '
            f'fill="{color}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def throughput_svg(
    points: list[dict[str, Any]], chosen: dict[str, Any] | None = None, width: int = 520, height: int = 260
) -> str:
    """Return an inline SVG of batch tuning's points: x = the artifact's p50 latency per call (ms),
    y = throughput (inferences/s), one line per thread count through its batches in order, each
    point labelled with its batch; the chosen point is drawn larger. Skipped points are not drawn."""
    usable = [p for p in points if isinstance((p.get("artifact") or {}).get("throughput_per_s"), (int, float))]
    if not usable:
        return ""
    pad, colors = 44, ("#4078c0", "#1a7f37", "#cf222e", "#8250df", "#bf8700")
    xs = [p["artifact"]["p50_ms"] for p in usable]
    ys = [p["artifact"]["throughput_per_s"] for p in usable]
    x_hi, y_hi = max(xs) * 1.05, max(ys) * 1.1

    def sx(v: float) -> float:
        return pad + v / x_hi * (width - 2 * pad)

    def sy(v: float) -> float:
        return height - pad - v / y_hi * (height - 2 * pad)

    parts = [
        f'<svg width="{width}" height="{height}" role="img">',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#888"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#888"/>',
        f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle" font-size="12">p50 latency per call (ms)</text>',
        f'<text x="12" y="{height / 2}" font-size="12" transform="rotate(-90 12,{height / 2})" '
        'text-anchor="middle">throughput (inferences/s)</text>',
        f'<text x="{pad}" y="{height - pad + 14}" font-size="10">0</text>',
        f'<text x="{width - pad}" y="{height - pad + 14}" font-size="10" text-anchor="end">{x_hi:.3g}</text>',
        f'<text x="{pad - 4}" y="{pad + 4}" font-size="10" text-anchor="end">{y_hi:.3g}</text>',
    ]
    for index, threads in enumerate(sorted({p["threads"] for p in usable})):
        color = colors[index % len(colors)]
        line = sorted((p for p in usable if p["threads"] == threads), key=lambda p: p["batch"])
        path = " ".join(f"{sx(p['artifact']['p50_ms']):.1f},{sy(p['artifact']['throughput_per_s']):.1f}" for p in line)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}"/>')
        parts.append(
            f'<text x="{width - pad}" y="{14 + 14 * index}" font-size="11" text-anchor="end" fill="{color}">'
            f"{threads} thread(s)</text>"
        )
        for p in line:
            x, y = sx(p["artifact"]["p50_ms"]), sy(p["artifact"]["throughput_per_s"])
            big = bool(chosen) and (p["batch"], p["threads"]) == (chosen.get("batch"), chosen.get("threads"))
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{7 if big else 3.5}" fill="{color}"><title>batch '
                f"{p['batch']}, {threads} thread(s): {p['artifact']['throughput_per_s']:.0f}/s, p50 "
                f"{p['artifact']['p50_ms']:.4g} ms, p99 {p['artifact']['p99_ms']:.4g} ms</title></circle>"
                f'<text x="{x + 5:.1f}" y="{y - 5:.1f}" font-size="9">{p["batch"]}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def pareto_front(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The points no other point beats on both speedup (higher) and drop (lower)."""
    usable = [p for p in points if isinstance(p.get("speedup"), (int, float))]
    return [
        p
        for p in usable
        if not any(
            q["speedup"] >= p["speedup"]
            and q["drop"] <= p["drop"]
            and (q["speedup"], q["drop"]) != (p["speedup"], p["drop"])
            for q in usable
        )
    ]


def render_html(report: dict[str, Any]) -> str:
    """Return the HTML page for ``report`` (the parsed report.json)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True, undefined=jinja2.ChainableUndefined
    )
    env.filters["fmt"] = _fmt
    env.filters["num"] = _num
    env.globals["pareto_svg"] = pareto_svg
    env.globals["bars_svg"] = bars_svg
    env.globals["histogram_svg"] = histogram_svg
    env.globals["throughput_svg"] = throughput_svg
    return env.get_template("report.html.j2").render(r=report)


def write_html(report: dict[str, Any], path: Path) -> None:
    """Render ``report`` and write it to ``path``."""
    path.write_text(render_html(report))
