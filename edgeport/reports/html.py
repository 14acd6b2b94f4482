"""``report.html``: a self-contained page (no network) rendered only from report.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if value is None:
        return "—"
    return str(value)


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


def render_html(report: dict[str, Any]) -> str:
    """Return the HTML page for ``report`` (the parsed report.json)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True, undefined=jinja2.ChainableUndefined
    )
    env.filters["fmt"] = _fmt
    env.globals["pareto_svg"] = pareto_svg
    return env.get_template("report.html.j2").render(r=report)


def write_html(report: dict[str, Any], path: Path) -> None:
    """Render ``report`` and write it to ``path``."""
    path.write_text(render_html(report))
