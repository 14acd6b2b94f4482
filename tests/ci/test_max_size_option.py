"""edgeport.yaml takes max_size like any per-model or per-target option (it is a Recipe field)."""

from __future__ import annotations

from edgeport.ci.config import load_config

CONFIG = """\
version: 1
defaults:
  max_size: 10MB
models:
  - name: small
    path: model.onnx
    max_size: 2000000
targets:
  - name: wasm-auto
    format: onnx
    quantization: auto
    profile: wasm
  - name: cpu-int8
    format: onnx
    quantization: int8
    profile: x86-avx2
    max_size: 500KB
"""


def test_max_size_reaches_each_jobs_convert_arguments(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"")
    path = tmp_path / "edgeport.yaml"
    path.write_text(CONFIG)
    jobs = {job.target.name: job.kwargs for job in load_config(path).jobs}
    # A number of bytes is kept as text, as --max_size takes it; a target's value wins over the model's.
    assert jobs["wasm-auto"]["max_size"] == "2000000"
    assert jobs["cpu-int8"]["max_size"] == "500KB"
