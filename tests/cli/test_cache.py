"""The shared cache under concurrency, end to end: two ``edgeport build`` runs on one cache
folder at once (a CI cache volume shared by two runners) both succeed and leave one intact
entry per target; a corrupted entry is rebuilt with the reason in the summary;
``edgeport cache info|clear``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgeport.cli.main import main
from edgeport.core.cache_store import CacheStore, entries, partials, usage
from tests.conftest import REPO

# quantization auto: one target fills both kinds of the cache (the bundle, the sensitivity).
CONFIG = """\
version: 1
defaults:
  calibration_samples: 16
  eval_samples: 16
  latency_runs: 3
  warmup_runs: 1
models:
  - name: tiny
    path: tiny.onnx
    calibration_data: data.npz
    eval_data: data.npz
targets:
  - name: onnx-auto
    format: onnx
    quantization: auto
    profile: x86-avx2
"""


def tiny_project(root: Path) -> Path:
    """A conv + linear ONNX model, its data and the config above (no torch: seconds to build)."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "w2"], ["y"], transB=1),
    ]
    weights = [
        numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32), "w1"),
        numpy_helper.from_array((rng.standard_normal((4, 8)) * 0.3).astype(np.float32), "w2"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(root / "tiny.onnx"))
    np.savez(root / "data.npz", x=rng.standard_normal((32, 3, 16, 16)).astype(np.float32))
    (root / "edgeport.yaml").write_text(CONFIG)
    return root / "edgeport.yaml"


def build_process(config: Path, out: Path, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "edgeport.cli.main", "build", str(config), "-o", str(out), "--cache", str(cache)]
    return subprocess.Popen(command + ["--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def valid_entries(cache: Path, kind: str) -> list[str]:
    """The keys of ``kind`` under ``cache`` that pass the store's sha256 check."""
    store = CacheStore(cache, kind, limit=None)
    keys = []
    for item in entries(cache, (kind,)):
        with store.open(item.key) as found:
            if found is not None:
                keys.append(item.key)
    return keys


@pytest.fixture(scope="module")
def concurrent(tmp_path_factory) -> dict:
    """Two builds of one config started at once on one cache folder."""
    root = tmp_path_factory.mktemp("shared-cache")
    config, cache = tiny_project(root), root / "cache"
    processes = [build_process(config, root / f"out{i}", cache) for i in (1, 2)]
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    return {"root": root, "config": config, "cache": cache, "codes": [p.returncode for p in processes], "out": outputs}


def test_two_builds_on_one_cache_both_succeed_with_one_entry_per_target(concurrent):
    assert concurrent["codes"] == [0, 0], concurrent["out"]
    for i in (1, 2):
        summary = json.loads((concurrent["root"] / f"out{i}" / "summary.json").read_text())
        assert [t["status"] for t in summary["targets"]] == ["passed"]
    cache = concurrent["cache"]
    builds = valid_entries(cache, "builds")
    assert len(builds) == 1 and usage(cache)["builds"]["entries"] == 1
    assert builds[0] == summary["targets"][0]["key"]
    sensitivity = valid_entries(cache, "sensitivity")
    assert sensitivity and len(sensitivity) == usage(cache)["sensitivity"]["entries"]  # every one intact
    assert partials(cache) == []


def test_a_corrupted_entry_is_rebuilt_with_the_reason(concurrent, tmp_path):
    cache = concurrent["cache"]
    (key,) = valid_entries(cache, "builds")
    model = cache / "builds" / key / "data" / "model.onnx"
    raw = bytearray(model.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    model.write_bytes(bytes(raw))
    process = build_process(concurrent["config"], tmp_path / "out", cache)
    assert process.communicate(timeout=600)[0] is not None and process.returncode == 0
    (target,) = json.loads((tmp_path / "out" / "summary.json").read_text())["targets"]
    assert target["outcome"] == "built" and target["status"] == "passed"
    assert "does not match its sha256" in target["rebuild_reason"]
    assert valid_entries(cache, "builds") == [key]  # stored again, intact


def cli(*args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    return result.exit_code, result.output


def test_cache_info_and_clear(tmp_path):
    cache = tmp_path / "cache"
    CacheStore(cache, "builds", limit=None).put_bytes("b1", b"b" * 3000)
    for key in ("s1", "s2"):
        CacheStore(cache, "sensitivity", limit=None).put_bytes(key, b"s" * 100)
    code, output = cli("cache", "info", "--cache", cache, env={"EDGEPORT_CACHE_MAX": "2GB"})
    assert code == 0, output
    assert f"cache folder: {cache}" in output
    assert any(line.split()[:3] == ["builds", "1", "entries"] and "2.93 KB" in line for line in output.splitlines())
    assert any(line.split()[:3] == ["sensitivity", "2", "entries"] for line in output.splitlines())
    assert "limit 2 GB (EDGEPORT_CACHE_MAX=2GB)" in output
    code, output = cli("cache", "info", "--cache", cache, env={"EDGEPORT_CACHE_MAX": "lots"})
    assert code == 2 and "bad EDGEPORT_CACHE_MAX 'lots'" in output
    code, output = cli("cache", "clear", "--cache", cache, "--kind", "sensitivity")
    assert code == 0 and "removed 2 entries (200 bytes)" in output
    assert usage(cache)["builds"]["entries"] == 1 and usage(cache)["sensitivity"]["entries"] == 0
    code, output = cli("cache", "clear", "--cache", cache)
    assert code == 0 and "removed 1 entries" in output and usage(cache)["builds"]["entries"] == 0
    code, output = cli("cache", "clear", "--kind", "nothing", "--cache", cache)
    assert code == 2
