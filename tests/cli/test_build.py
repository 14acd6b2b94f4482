"""``edgeport build`` / ``edgeport merge``: the bundled model x 3 targets, built once per module
and reused: the cache (second run rebuilds nothing, a new calibration file rebuilds exactly the
targets that read it, a profile change only its targets), gates and regressions (exit non-zero
naming the target), byte-identical rebuilds, config errors that name the line, shards + merge,
and a broken target that does not stop the others."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeport.ci.cache import cache_key, key_inputs
from edgeport.ci.config import load_config
from edgeport.cli.main import main
from edgeport.profiles import PROFILE_DIR
from tests.conftest import EXAMPLES

ONNX, TFLITE, COREML = "fashion_cnn/onnx-int8-x86", "fashion_cnn/tflite-int8-metal", "fashion_cnn/coreml-fp16-ane"

CONFIG = """\
version: 1
defaults:                 # small figures: this file must stay fast on 2 cores
  calibration_samples: 64
  eval_samples: 100
  latency_runs: 10
  warmup_runs: 2
gates:
  max_accuracy_drop: 5.0
regression: {{accuracy_drop: 0.5, latency_pct: null, size_pct: 5}}
models:
  - name: fashion_cnn
    path: fashion_cnn.pt2
    calibration_data: calib.npz
    eval_data: test.npz
targets:
  - name: onnx-int8-x86
    format: onnx
    quantization: int8
    profile: x86-avx512-vnni
    gates: {{max_size_mb: {onnx_size}}}
  - name: tflite-int8-metal
    format: tflite
    quantization: int8
    profile: metal
{coreml}"""
COREML_TARGET = """\
  - name: coreml-fp16-ane
    format: coreml
    quantization: fp16
    profile: ane
"""


def write_config(project: Path, name: str = "edgeport.yaml", onnx_size: float = 10.0) -> Path:
    """Write the test config (Core ML only when its backend is installed) into ``project``."""
    path = project / name
    path.write_text(CONFIG.format(onnx_size=onnx_size, coreml=COREML_TARGET))
    return path


def run(*args: str | Path) -> tuple[int, str, float]:
    """Run ``edgeport ARGS`` in-process; return (exit code, output, seconds)."""
    start = time.perf_counter()
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output, time.perf_counter() - start


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def built(data: dict) -> set[str]:
    return {t["id"] for t in data["targets"] if t["outcome"] == "built"}


def artifact_hashes(out: Path) -> dict[str, str]:
    """sha256 of every file of every target's artifact (the model file, or each file of an .mlpackage)."""
    hashes = {}
    for record in summary(out)["targets"]:
        bundle = out / record["bundle"]
        artifact = bundle / json.loads((bundle / "manifest.json").read_text())["artifact"]
        files = sorted(p for p in artifact.rglob("*") if p.is_file()) if artifact.is_dir() else [artifact]
        for file in files:
            hashes[str(file.relative_to(out))] = hashlib.sha256(file.read_bytes()).hexdigest()
    return hashes


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A folder with the bundled model, its data and the config (copies: tests modify them)."""
    root = tmp_path_factory.mktemp("ci")
    shutil.copy(EXAMPLES / "fashion_cnn.pt2", root / "fashion_cnn.pt2")
    shutil.copy(EXAMPLES / "fashion_mnist_calib.npz", root / "calib.npz")
    shutil.copy(EXAMPLES / "fashion_mnist_test_1k.npz", root / "test.npz")
    write_config(root)
    return root


@pytest.fixture(scope="module")
def first(project) -> dict:
    """The first build (nothing cached): 3 targets built with 2 jobs."""
    out, cache = project / "out", project / "cache"
    code, output, seconds = run("build", project / "edgeport.yaml", "-o", out, "--cache", cache, "--jobs", 2)
    assert code == 0, output
    data = {"out": out, "cache": cache, "seconds": seconds, "summary": summary(out), "output": output}
    data["artifacts"] = artifact_hashes(out)
    return data


def test_first_build_writes_every_bundle_summary_and_index(first):
    data, out = first["summary"], first["out"]
    ids = {ONNX, TFLITE, COREML}
    assert {t["id"] for t in data["targets"]} == ids
    assert built(data) == ids and data["passed"] and data["counts"]["passed"] == len(ids)
    for record in data["targets"]:
        assert (out / record["bundle"] / "manifest.json").is_file()
        assert record["bundle"] == record["id"]  # out/<model>/<target>/
        assert record["metrics"]["size_bytes"] > 0 and record["artifact_sha256"]
    index = (out / "index.html").read_text()
    assert all(f'href="{i}/report.html"' in index for i in ids)
    assert "running" in first["output"] and "passed fashion_cnn/onnx-int8-x86" in first["output"]  # progress lines


def test_coreml_target_is_part_of_the_build(first):
    record = next(t for t in first["summary"]["targets"] if t["id"] == COREML)
    assert record["status"] == "passed" and record["metrics"]["latency_p50_ms"] is None  # not run off a Mac


def test_second_build_rebuilds_nothing_and_is_fast(project, first):
    code, output, seconds = run("build", project / "edgeport.yaml", "-o", first["out"], "--cache", first["cache"])
    assert code == 0, output
    data = summary(first["out"])
    assert built(data) == set() and data["counts"]["cached"] == len(data["targets"])
    assert seconds < 0.25 * first["seconds"], (seconds, first["seconds"])
    assert artifact_hashes(first["out"]) == first["artifacts"]  # the cached bundles, copied back unchanged
    print(f"first build {first['seconds']:.1f} s, second {seconds:.2f} s")


def test_rebuild_gives_byte_identical_artifacts(project, first, tmp_path):
    out = tmp_path / "again"
    code, output, _ = run(
        "build", project / "edgeport.yaml", "-o", out, "--cache", first["cache"], "--rebuild", "--jobs", 2
    )
    assert code == 0, output
    data = summary(out)
    assert built(data) == {t["id"] for t in data["targets"]}
    assert all(t["reproducible"] is True for t in data["targets"]), [
        (t["id"], t["reproducible"]) for t in data["targets"]
    ]
    assert artifact_hashes(out) == first["artifacts"]
    assert any(k.endswith("model.onnx") for k in first["artifacts"])
    assert any(k.endswith("model.tflite") for k in first["artifacts"])


def test_new_calibration_data_rebuilds_exactly_the_targets_that_read_it(project, first):
    calib = project / "calib.npz"
    original = calib.read_bytes()
    with np.load(calib) as data:
        arrays = {k: data[k] for k in data.files}
    np.savez(calib, **{k: v[::-1].copy() for k, v in arrays.items()})  # same samples, other order: new bytes
    try:
        code, output, _ = run("build", project / "edgeport.yaml", "-o", first["out"], "--cache", first["cache"])
        assert code == 0, output
        data = summary(first["out"])
        # Only calibrated schemes read the calibration set (metal's TFLite int8 is int8-weight there,
        # the Core ML target fp16): exactly those are rebuilt.
        calibrated = {t["id"] for t in data["targets"] if t["metrics"]["scheme"] in ("int8", "int16")}
        assert ONNX in calibrated
        assert built(data) == calibrated
        assert all("calibration_data" in t["rebuild_reason"] for t in data["targets"] if t["id"] in calibrated)
    finally:
        calib.write_bytes(original)
    code, output, _ = run("build", project / "edgeport.yaml", "-o", first["out"], "--cache", first["cache"])
    assert code == 0 and built(summary(first["out"])) == set()  # the original calibration: all cached again


def test_changed_profile_file_changes_only_its_targets_keys(project):
    profile = project / "my-cpu.yaml"
    shutil.copy(PROFILE_DIR / "x86-avx512-vnni.yaml", profile)
    config = project / "profile.yaml"
    config.write_text(write_config(project).read_text().replace("profile: x86-avx512-vnni", "profile: my-cpu.yaml"))
    before = {j.id: cache_key(key_inputs(j)) for j in load_config(config).jobs}
    profile.write_text(profile.read_text() + "\n# tuned\n")
    after = {j.id: cache_key(key_inputs(j)) for j in load_config(config).jobs}
    assert {i for i in before if before[i] != after[i]} == {ONNX}


def test_failing_gate_exits_nonzero_naming_the_target(project, first, tmp_path):
    config = write_config(project, "gate.yaml", onnx_size=0.001)
    out = tmp_path / "gate"
    code, output, _ = run("build", config, "-o", out, "--cache", first["cache"])
    assert code == 3, output
    assert "FAILED fashion_cnn/onnx-int8-x86: gate max_size_mb" in output
    assert "targets failed: fashion_cnn/onnx-int8-x86" in output.splitlines()[-1]
    data = summary(out)
    assert built(data) == set()  # size and latency gates are applied to the cached report
    assert [t["id"] for t in data["targets"] if t["status"] == "failed"] == [ONNX]
    assert len(data["failures"]) == 1 and data["failures"][0].startswith(f"{ONNX}: gate max_size_mb: size ")


def test_regression_against_a_baseline_fails_naming_the_target(project, first, tmp_path):
    baseline = json.loads((first["out"] / "summary.json").read_text())
    for record in baseline["targets"]:
        if record["id"] == TFLITE:
            record["metrics"]["size_bytes"] = int(record["metrics"]["size_bytes"] * 0.5)  # "it used to be half"
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline))
    out = tmp_path / "regressed"
    code, output, _ = run("build", project / "edgeport.yaml", "-o", out, "--cache", first["cache"], "--baseline", path)
    assert code == 3, output
    assert "FAILED fashion_cnn/tflite-int8-metal: regression size" in output
    data = summary(out)
    assert [t["id"] for t in data["targets"] if t["status"] == "failed"] == [TFLITE]
    onnx = next(t for t in data["targets"] if t["id"] == ONNX)
    assert {r["check"] for r in onnx["regressions"]} == {"accuracy", "size"}  # latency_pct: null switches it off
    assert all(r["passed"] for r in onnx["regressions"])


def test_shards_partition_the_targets_and_merge_joins_them(project, first, tmp_path):
    outs = []
    for index in (1, 2):
        out = tmp_path / f"shard{index}"
        code, output, _ = run(
            "build", project / "edgeport.yaml", "-o", out, "--cache", first["cache"], "--shard", f"{index}/2"
        )
        assert code == 0, output
        outs.append(out)
    ids = [{t["id"] for t in summary(o)["targets"]} for o in outs]
    assert not ids[0] & ids[1] and ids[0] | ids[1] == {t["id"] for t in first["summary"]["targets"]}
    assert all(len(i) >= 1 for i in ids)  # balanced: round-robin over the sorted ids
    merged = tmp_path / "merged"
    code, output, _ = run("merge", outs[0] / "summary.json", outs[1] / "summary.json", "-o", merged)
    assert code == 0, output
    data = summary(merged)
    assert data["passed"] and data["counts"]["targets"] == len(first["summary"]["targets"])
    for record in data["targets"]:
        assert (merged / record["bundle"] / "report.html").is_file()
    assert (merged / "index.html").is_file()
    code, output, _ = run("merge", outs[0] / "summary.json", "-o", tmp_path / "half")
    assert code != 0 and "shard 2/2 is missing" in output


def test_config_errors_name_the_line(project, tmp_path):
    cases = {
        "models:\n  - path: fashion_cnn.pt2\ntargets:\n  - format: onnx\n    quantization: int9\n    profile: cpu\n": (
            ":5:",
            "unknown quantization 'int9'",
        ),
        "models:\n  - path: fashion_cnn.pt2\n    eval_samples: many\ntargets:\n  - {format: onnx, quantization: int8,"
        " profile: cpu}\n": (":3:", "eval_samples must be an integer"),
        "models:\n  - path: fashion_cnn.pt2\ntargets:\n  - format: onnx\n    quantization: int8\n    profile: cpu\n"
        "    gatez: {}\n": (":7:", "did you mean 'gates'"),
        "models:\n  - path: missing.pt2\ntargets:\n  - {format: onnx, quantization: int8, profile: cpu}\n": (
            ":2:",
            "model not found",
        ),
        "models:\n  - path: fashion_cnn.pt2\n    calibration_samples: 0\ntargets:\n  - {format: onnx, quantization:"
        " int8, profile: cpu}\n": (":3:", "calibration_samples must be >= 1"),
        "models: [\ntargets:\n": (":3:", "not valid YAML"),
    }
    for text, (line, words) in cases.items():
        config = project / "bad.yaml"
        config.write_text(text)
        code, output, _ = run("build", config, "-o", tmp_path / "never")
        assert code == 2, output
        assert f"bad.yaml{line}" in output and words in output, output
        assert not (tmp_path / "never").exists()


def test_a_broken_target_is_reported_and_does_not_stop_the_others(project, first, tmp_path):
    (project / "broken.onnx").write_bytes(b"not an onnx model")
    config = project / "broken.yaml"
    config.write_text(
        write_config(project)
        .read_text()
        .replace("targets:\n", "  - name: broken\n    path: broken.onnx\n    targets: [onnx-int8-x86]\ntargets:\n", 1)
    )
    out = tmp_path / "broken"
    code, output, _ = run("build", config, "-o", out, "--cache", first["cache"], "--jobs", 2)
    assert code == 4, output
    data = summary(out)
    by_id = {t["id"]: t for t in data["targets"]}
    assert by_id["broken/onnx-int8-x86"]["status"] == "error" and by_id["broken/onnx-int8-x86"]["error"]
    assert (out / by_id["broken/onnx-int8-x86"]["log"]).is_file()
    assert all(t["status"] == "passed" for i, t in by_id.items() if i.startswith("fashion_cnn/"))
    assert "FAILED broken/onnx-int8-x86: error:" in output


def test_only_selects_targets_by_pattern(project, first, tmp_path):
    out = tmp_path / "only"
    code, output, _ = run(
        "build", project / "edgeport.yaml", "-o", out, "--cache", first["cache"], "--only", "fashion_cnn/onnx-*"
    )
    assert code == 0, output
    assert [t["id"] for t in summary(out)["targets"]] == [ONNX]
    code, output, _ = run("build", project / "edgeport.yaml", "-o", out, "--only", "nothing-like-this")
    assert code == 2 and "matches no target" in output


def test_example_ci_files_use_the_example_config():
    import yaml

    from tests.conftest import REPO

    ci = REPO / "examples" / "ci"
    assert {j.id for j in load_config(ci / "edgeport.yaml").jobs} == {ONNX, TFLITE, COREML}
    github = yaml.safe_load((ci / "github-actions.yml").read_text())
    shards = github["jobs"]["build"]["strategy"]["matrix"]["shard"]
    assert shards == list(range(1, int(github["env"]["SHARDS"]) + 1))
    runs = "\n".join(s.get("run", "") for job in github["jobs"].values() for s in job["steps"])
    assert "edgeport build examples/ci/edgeport.yaml --shard" in runs and "edgeport merge" in runs
    gitlab = yaml.safe_load((ci / "gitlab-ci.yml").read_text())
    assert gitlab["edgeport-build"]["parallel"] == 3
    assert "edgeport merge" in "\n".join(gitlab["edgeport-merge"]["script"])
