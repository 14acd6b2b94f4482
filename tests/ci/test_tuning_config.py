"""edgeport.yaml: per-target tuning options are read like the other options and are in the cache key."""

from __future__ import annotations

from edgeport.ci.cache import cache_key, key_inputs
from edgeport.ci.config import load_config
from tests.ci.project import ONE_MODEL, refusal, write_project

CONFIG = (
    ONE_MODEL
    + """
targets:
  - name: latency
    format: onnx
    quantization: none
    profile: generic-cpu
  - name: throughput
    format: onnx
    quantization: none
    profile: generic-cpu
    objective: throughput
    batch_sizes: [1, 8, 32]
    threads: "1,2"
    max_latency_ms: 4
  - name: same-grid-other-spelling
    format: onnx
    quantization: none
    profile: generic-cpu
    objective: throughput
    batch_sizes: "1,8,32"
    threads: [1, 2]
    max_latency_ms: 4.0
"""
)


def test_tuning_options_reach_the_job_and_its_cache_key(tmp_path):
    jobs = {job.target.name: job for job in load_config(write_project(tmp_path, CONFIG)).jobs}
    tuned = jobs["throughput"].kwargs
    assert (tuned["objective"], tuned["batch_sizes"], tuned["threads"], tuned["max_latency_ms"]) == (
        "throughput", [1, 8, 32], [1, 2], 4.0,
    )  # fmt: skip
    keys = {name: key_inputs(job) for name, job in jobs.items()}
    assert keys["throughput"]["options"]["batch_sizes"] == [1, 8, 32]
    assert cache_key(keys["latency"]) != cache_key(keys["throughput"])
    # The same grid spelled another way is the same variant: the same key.
    same = {k: v for k, v in keys["same-grid-other-spelling"].items()}
    assert cache_key(same) == cache_key(keys["throughput"])


def test_a_bad_grid_names_its_line(tmp_path):
    assert "threads" in refusal(tmp_path, CONFIG.replace('threads: "1,2"', "threads: [1, two]"))
