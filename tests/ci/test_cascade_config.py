"""edgeport.yaml: ``cascade:`` per target reaches the job in one spelling (one cache key per
variant), and a cascade with buckets is refused at its line."""

from __future__ import annotations

from edgeport.ci.cache import cache_key, key_inputs
from edgeport.ci.config import load_config
from tests.ci.project import ONE_MODEL, refusal, write_project

CONFIG = (
    ONE_MODEL
    + """
targets:
  - name: small
    format: onnx
    quantization: int8
    profile: generic-cpu
  - name: cascade
    format: onnx
    quantization: int8
    profile: generic-cpu
    cascade: fp32
  - name: cascade-upper
    format: onnx
    quantization: int8
    profile: generic-cpu
    cascade: FP32
  - name: cascade-threshold
    format: onnx
    quantization: int8
    profile: generic-cpu
    cascade: fp32
    cascade_threshold: 0.8
"""
)


def test_cascade_reaches_the_job_and_its_cache_key(tmp_path):
    jobs = {job.target.name: job for job in load_config(write_project(tmp_path, CONFIG)).jobs}
    assert jobs["cascade"].kwargs["cascade"] == "fp32" and jobs["cascade-upper"].kwargs["cascade"] == "fp32"
    keys = {name: cache_key(key_inputs(job)) for name, job in jobs.items()}
    assert keys["cascade"] != keys["small"]  # each variant is cached on its own
    assert keys["cascade"] == keys["cascade-upper"]
    assert keys["cascade-threshold"] not in (keys["cascade"], keys["small"])


def test_cascade_with_buckets_is_refused_at_its_line(tmp_path):
    text = CONFIG.replace("    cascade: FP32\n", "    cascade: fp32\n    buckets: seq=16,32\n", 1)
    message = refusal(tmp_path, text)
    assert "cascade-upper" in message and "buckets" in message
