"""edgeport.yaml: ``custom_ops`` per model reaches the job with its file resolved, and the op
file's bytes are in the target's cache key (an edited op rebuilds; an untouched one does not)."""

from __future__ import annotations

import pytest

from edgeport.ci.cache import cache_key, key_inputs
from edgeport.ci.config import load_config
from edgeport.core.errors import InputError
from tests.ci.project import write_project

CONFIG = """
version: 1
models:
  - name: plain
    path: model.onnx
  - name: with-ops
    path: model.onnx
    custom_ops: ops/my_ops.py
targets:
  - name: cpu
    format: onnx
    quantization: int8
    profile: generic-cpu
"""


def _keys(tmp_path) -> dict[str, str]:
    jobs = load_config(write_project(tmp_path, CONFIG)).jobs
    return {job.model.name: cache_key(key_inputs(job)) for job in jobs}


def test_custom_ops_file_is_resolved_and_hashed_into_the_key(tmp_path):
    (tmp_path / "ops").mkdir()
    op_file = tmp_path / "ops" / "my_ops.py"
    op_file.write_text("SCALE = 1.0\n")
    jobs = {job.model.name: job for job in load_config(write_project(tmp_path, CONFIG)).jobs}
    assert jobs["with-ops"].kwargs["custom_ops"] == [str(op_file)]
    assert "custom_ops" not in jobs["plain"].kwargs
    first = _keys(tmp_path)
    assert first["with-ops"] != first["plain"]
    assert _keys(tmp_path) == first  # nothing changed: the same keys
    op_file.write_text("SCALE = 2.0\n")  # the op's code changed
    second = _keys(tmp_path)
    assert second["with-ops"] != first["with-ops"]
    assert second["plain"] == first["plain"]


def test_a_missing_custom_ops_file_is_refused(tmp_path):
    with pytest.raises(InputError, match="custom_ops not found"):
        load_config(write_project(tmp_path, CONFIG))
