"""The conversion child's environment: it imports the same edgeport as the parent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import edgeport
from edgeport.formats.tflite.onnx2tf_run import _child_env


def test_child_pythonpath_starts_with_the_folder_holding_the_edgeport_package(tmp_path):
    """Without PYTHONPATH or an install pointing here, the child still imports this edgeport."""
    env = _child_env()
    root = Path(edgeport.__file__).resolve().parents[1]
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(root)
    env = {**env, "PYTHONPATH": env["PYTHONPATH"].split(os.pathsep)[0]}
    code = "import edgeport; print(edgeport.__file__)"
    child = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert child.returncode == 0, child.stderr
    assert Path(child.stdout.strip()).resolve() == Path(edgeport.__file__).resolve()
