"""Fresh venvs for the packaging and runtime tests: the wheel built from this checkout, installed
from PyPI with ``-c constraints.txt`` into a venv that holds nothing else (about 15 s with a warm
pip cache). Tests skip, with the reason, when PyPI cannot be reached."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NETWORK_ERRORS = (
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "ConnectTimeoutError",
    "ReadTimeoutError",
)


def fresh_env() -> dict[str, str]:
    """This environment without what would put this checkout's edgeport before the installed one."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(args: list, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``args`` and return the finished process (text output captured)."""
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def build_wheel(root: Path) -> Path:
    """Build edgeport's wheel from a copy of this checkout (building writes build/ and
    *.egg-info next to pyproject.toml) into ``root/dist``; return the wheel's path."""
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "edgeport", source / "edgeport", ignore=shutil.ignore_patterns("__pycache__"))
    built = run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", root / "dist", source],
        root,
        fresh_env(),
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (root / "dist").glob("edgeport-*.whl")
    return wheel


def make_venv(root: Path, *installs: list) -> Path:
    """Create ``root/venv`` with no pip inside (the outer pip installs into it, 5-10x faster) and
    run one ``pip install -c constraints.txt`` per argument list in ``installs``; return the venv.
    Skips the test when PyPI cannot be reached."""
    venv = root / "venv"
    made = run([sys.executable, "-m", "venv", "--without-pip", venv], root, fresh_env())
    assert made.returncode == 0, made.stderr
    for arguments in installs:
        install = ["install", "-q", "--no-compile", "-c", REPO / "constraints.txt", *arguments]
        installed = run(
            [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", *install], root, fresh_env(), timeout=600
        )
        if installed.returncode != 0 and any(error in installed.stderr for error in NETWORK_ERRORS):
            pytest.skip(f"PyPI is not reachable: {installed.stderr.strip().splitlines()[-1]}")
        assert installed.returncode == 0, installed.stderr
    return venv


def runtime_only_venv(root: Path) -> Path:
    """A fresh venv with numpy and onnxruntime (and what onnxruntime itself requires) plus
    edgeport's wheel installed with ``--no-deps``: a server or device that serves bundles through
    ``edgeport.runtime`` and has none of the conversion stack. Returns the venv."""
    wheel = build_wheel(root)
    return make_venv(root, ["numpy", "onnxruntime"], ["--no-deps", wheel])
