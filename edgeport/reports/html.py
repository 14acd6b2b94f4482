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


def render_html(report: dict[str, Any]) -> str:
    """Return the HTML page for ``report`` (the parsed report.json)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True, undefined=jinja2.ChainableUndefined
    )
    env.filters["fmt"] = _fmt
    return env.get_template("report.html.j2").render(r=report)


def write_html(report: dict[str, Any], path: Path) -> None:
    """Render ``report`` and write it to ``path``."""
    path.write_text(render_html(report))
