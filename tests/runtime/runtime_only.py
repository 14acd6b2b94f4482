"""Run a script in a fresh venv that holds only numpy, onnxruntime and edgeport's wheel installed
with ``--no-deps`` (tests/packaging/fresh.py), as a server or a device with just the runtime."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.packaging.fresh import fresh_env, run

# What the conversion stack would bring: the venv must not even have it to import.
ABSENT = ("torch", "onnx", "tensorflow", "onnxscript", "coremltools", "ai_edge_litert", "yaml", "click", "rich")
PROBE = """
import importlib.util, json, sys
print(json.dumps({"present": [m for m in sys.argv[1:] if importlib.util.find_spec(m)], "prefix": sys.prefix}))
"""


def run_in_runtime_venv(venv: Path, script: str, args: list, folder: Path) -> dict[str, Any]:
    """Check that ``venv`` has none of ABSENT, then run ``script`` (written to ``folder``) there
    with ``args``, from ``folder`` so this checkout is not on the path; return its stdout as JSON
    (the script prints one JSON object)."""
    python = venv / "bin" / "python"
    probe = run([python, "-c", PROBE, *ABSENT], folder, fresh_env())
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert found["present"] == [] and Path(found["prefix"]) == venv, found
    (folder / "serve.py").write_text(script)
    done: subprocess.CompletedProcess = run([python, folder / "serve.py", *args], folder, fresh_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
