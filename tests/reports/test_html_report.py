"""report.html in a real browser: no console errors, the summary shows report.json's figures,
and a screenshot is kept as a test artifact (out/test-artifacts/report.png)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "out" / "test-artifacts"


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_report_renders_with_the_json_figures(example_int8, tmp_path):
    report_html = example_int8.bundle_dir / "report.html"
    assert report_html.stat().st_size < 2_000_000
    url = report_html.resolve().as_uri()
    dom = _chromium(["--enable-logging=stderr", "--v=0", "--dump-dom", url], tmp_path / "p1")
    assert dom.returncode == 0, dom.stderr[-1000:]
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    text = re.sub(r"<[^>]+>", " ", dom.stdout)
    r = example_int8.report
    for figure in (
        f"{r['fidelity']['reference_top1']:.2f}",
        f"{r['fidelity']['artifact_top1']:.2f}",
        f"{r['latency']['reference']['p50_ms']:.4f}",
        f"{r['latency']['artifact']['p50_ms']:.4f}",
        f"{r['latency']['speedup']:.2f}x",
        str(r["size"]["artifact_bytes"]),
    ):
        assert figure in text, figure
    assert r["status"] in text and r["target"]["profile"] in text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    result = _chromium(["--window-size=1100,2600", f"--screenshot={shot}", url], tmp_path / "p2")
    assert result.returncode == 0 and shot.stat().st_size > 20_000
