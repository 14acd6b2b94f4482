"""``index.html`` of a build: one self-contained page (no network) linking every target's report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from edgeport.reports.html import TEMPLATE_DIR


def render_index(summary: dict[str, Any]) -> str:
    """Return the HTML page for a build summary (the data of summary.json)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True, undefined=jinja2.ChainableUndefined
    )
    return env.get_template("build_index.html.j2").render(s=summary)


def write_index(summary: dict[str, Any], path: Path) -> None:
    """Write the build's index.html to ``path`` (written beside, then renamed)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render_index(summary))
    tmp.replace(path)
