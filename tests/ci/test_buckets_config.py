"""edgeport.yaml: ``buckets:`` per target reaches the job in one spelling (one cache key), and a
bucketed non-ONNX target is refused at its line."""

from __future__ import annotations

from edgeport.ci.cache import cache_key, key_inputs
from edgeport.ci.config import load_config
from tests.ci.project import ONE_MODEL, refusal, write_project

CONFIG = (
    ONE_MODEL
    + """
targets:
  - name: dynamic
    format: onnx
    quantization: int8
    profile: generic-cpu
  - name: bucketed
    format: onnx
    quantization: int8
    profile: generic-cpu
    buckets: seq=16,32,64,128
  - name: bucketed-other-spelling
    format: onnx
    quantization: int8
    profile: generic-cpu
    buckets: "seq=128, 64,32,16"
"""
)


def test_buckets_reach_the_job_and_its_cache_key(tmp_path):
    jobs = {job.target.name: job for job in load_config(write_project(tmp_path, CONFIG)).jobs}
    assert jobs["bucketed"].kwargs["buckets"] == "seq=16,32,64,128"
    keys = {name: cache_key(key_inputs(job)) for name, job in jobs.items()}
    assert keys["bucketed"] != keys["dynamic"]
    assert keys["bucketed"] == keys["bucketed-other-spelling"]


def test_bucketed_tflite_target_is_refused_at_its_line(tmp_path):
    text = CONFIG.replace(
        "    format: onnx\n    quantization: int8\n    profile: generic-cpu\n    buckets: seq",
        "    format: tflite\n    quantization: int8\n    profile: generic-cpu\n    buckets: seq",
        1,
    )
    message = refusal(tmp_path, text)
    assert "buckets: onnx only for now" in message
