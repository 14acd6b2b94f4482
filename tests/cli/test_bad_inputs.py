"""The corpus of hostile and broken inputs (tests/data/bad, written by make_bad_inputs.py): each is
refused by ``convert.py`` with one line, exit code 2 or 4, no traceback, nothing written, in
bounded time and memory (the CLI runs as a subprocess under an address-space limit)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.data import make_bad_inputs

BAD = REPO / "tests" / "data" / "bad"
ADDRESS_SPACE_LIMIT = 3 << 30  # virtual memory: torch, onnxruntime and a small model fit in it
PEAK_RSS_LIMIT = 1 << 30
TIME_LIMIT_S = 120


@dataclass
class CliRun:
    """One finished CLI process: exit code, output, wall time and peak resident memory."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_bytes: int


def _limit_resources() -> None:  # runs in the child between fork and exec
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))


# Starts the CLI from a small fresh interpreter and reports the CLI's peak RSS from wait4. Not
# forked from pytest itself: a forked child's peak RSS starts at its parent's resident size
# (Linux copies the high-water mark with the address space), which grows as the session runs.
LAUNCHER = """
import json, os, resource, subprocess, sys, threading
limit, seconds, out, err, *command = sys.argv[1:]
with open(out, "w") as stdout, open(err, "w") as stderr:
    proc = subprocess.Popen(command, stdout=stdout, stderr=stderr,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit))))
    timer = threading.Timer(float(seconds), proc.kill)
    timer.start()
    _, status, usage = os.wait4(proc.pid, 0)
    timer.cancel()
print(json.dumps({"returncode": os.waitstatus_to_exitcode(status), "maxrss": usage.ru_maxrss * 1024}))
"""


def run_cli_bounded(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> CliRun:
    """Run ``convert.py args`` under the address-space limit and a wall-clock timeout (killed at
    TIME_LIMIT_S); return the run with the child's own peak RSS (from wait4)."""
    out, err = cwd / "cli.stdout", cwd / "cli.stderr"
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    start = time.monotonic()
    command = [sys.executable, str(REPO / "convert.py"), *args]
    launched = subprocess.run(
        [sys.executable, "-c", LAUNCHER, str(ADDRESS_SPACE_LIMIT), str(TIME_LIMIT_S), str(out), str(err), *command],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    status = json.loads(launched.stdout)
    return CliRun(status["returncode"], out.read_text(), err.read_text(), time.monotonic() - start, status["maxrss"])


def assert_refused(run: CliRun, exit_codes: tuple[int, ...], *phrases: str) -> str:
    """Check a refusal: the exit code, exactly one stderr line naming ``phrases``, no traceback,
    bounded time and memory. Returns the line."""
    lines = run.stderr.strip().splitlines()
    assert run.returncode in exit_codes, run.stderr
    assert len(lines) == 1 and lines[0].startswith("edgeport: error: "), run.stderr
    assert "Traceback" not in run.stderr
    for phrase in phrases:
        assert phrase in lines[0]
    assert run.seconds < TIME_LIMIT_S
    assert run.peak_rss_bytes < PEAK_RSS_LIMIT, f"peak RSS {run.peak_rss_bytes / 2**20:.0f} MB"
    return lines[0]


def assert_nothing_written(parent: Path, out: Path) -> None:
    """The output folder does not exist and no temporary bundle folder is left beside it."""
    assert not out.exists()
    assert not [p.name for p in parent.iterdir() if p.name.startswith(f".{out.name}.")]


CASES = {
    "truncated ONNX": (["truncated.onnx"], (2,), ["does not parse"]),
    "bit-flipped ONNX": (["bit_flipped.onnx"], (2,), ["does not parse"]),
    "empty file": (["empty.onnx"], (2,), ["empty (0 bytes)"]),
    "a directory": (["not_a_model"], (2,), ["is a directory but not a model folder"]),
    "wrong suffix": (["valid_onnx_with_wrong_suffix.txt"], (2,), ["unsupported file type '.txt'"]),
    "custom-domain op": (["custom_op.onnx"], (4,), ["custom op 'Exfiltrate'", "com.example.evil"]),
    "dims of 10^9": (["huge_dims.onnx"], (2,), ["declared shape [1000000000", "over the memory limit"]),
    "cyclic graph": (["cyclic.onnx"], (2,), ["not a valid ONNX model", "topologically sorted"]),
    "external data outside the folder": (["traversal/model.onnx"], (2,), ["etc/passwd", "path traversal"]),
    "zip bomb-like .keras": (["zip_bomb.keras"], (2,), ["zip bomb"]),
    "malicious pickle": (["malicious_pickle.pt"], (2,), ["could run arbitrary code", "--allow-pickle"]),
    "NaN calibration data": (["valid.onnx", "nan_calibration.npz"], (2,), ["sample 9", "NaN or infinite"]),
    "inf calibration data": (["valid.onnx", "inf_calibration.npz"], (2,), ["sample 12", "NaN or infinite"]),
    "calibration of the wrong shape": (
        ["valid.onnx", "wrong_shape_calibration.npz"],
        (2,),
        ["samples of shape [3, 5, 5] do not fit input 'x'"],
    ),
}


# Runs every case through the CLI in one process (one interpreter start instead of 13): the
# one-line message, exit code, time and resident memory of each, as JSON on stdout.
HARNESS = """
import json, sys, time, psutil
from click.testing import CliRunner
from edgeport.cli.main import main
results = {}
for case, args in json.loads(sys.argv[1]).items():
    start = time.monotonic()
    result = CliRunner().invoke(main, ["convert", *args])
    results[case] = {
        "exit_code": result.exit_code,
        "stderr": result.stderr,
        "uncaught": None if isinstance(result.exception, SystemExit | None) else repr(result.exception),
        "seconds": time.monotonic() - start,
        "rss": psutil.Process().memory_info().rss,
    }
print(json.dumps(results))
"""


def _case_args(case: str, out: Path) -> list[str]:
    files = CASES[case][0]
    args = ["--input_model", str(BAD / files[0]), "--output_dir", str(out), "--quiet"]
    if len(files) > 1:
        args += ["--quantization", "int8", "--calibration_data", str(BAD / files[1])]
    return args


@pytest.fixture(scope="session")
def corpus_runs(tmp_path_factory) -> tuple[Path, dict]:
    """Every case of CASES run once through the CLI in one bounded subprocess; returns the
    folder the bundles would have gone to and the results by case."""
    folder = tmp_path_factory.mktemp("bad-inputs")
    cases = {case: _case_args(case, folder / f"out{i}") for i, case in enumerate(CASES)}
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    completed = subprocess.run(
        [sys.executable, "-c", HARNESS, json.dumps(cases)],
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
        timeout=TIME_LIMIT_S * 2,
        preexec_fn=_limit_resources,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return folder, json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_with_one_line_and_nothing_written(case, corpus_runs):
    folder, results = corpus_runs
    result = results[case]
    _, exit_codes, phrases = CASES[case]
    assert result["uncaught"] is None
    run = CliRun(result["exit_code"], "", result["stderr"], result["seconds"], result["rss"])
    assert_refused(run, exit_codes, *phrases)
    assert run.seconds < 20  # each case is refused before anything heavy runs
    assert_nothing_written(folder, folder / f"out{list(CASES).index(case)}")
    assert not (folder / make_bad_inputs.PICKLE_MARKER).exists()  # no payload ran


@pytest.mark.parametrize("case", ["external data outside the folder", "zip bomb-like .keras", "dims of 10^9"])
def test_convert_py_refuses_hostile_inputs_under_limits(case, tmp_path):
    """The same refusals from a fresh ``convert.py`` process, its own peak memory measured."""
    out = tmp_path / "bundle"
    _, exit_codes, phrases = CASES[case]
    run = run_cli_bounded(_case_args(case, out), tmp_path)
    assert_refused(run, exit_codes, *phrases)
    assert_nothing_written(tmp_path, out)


def test_the_valid_seed_of_the_corpus_converts(tmp_path):
    """The corpus's valid model converts: the refusals above are about the damage, not the model."""
    out = tmp_path / "bundle"
    run = run_cli_bounded(
        ["--input_model", str(BAD / "valid.onnx"), "--output_dir", str(out), "--quiet", "--latency_runs", "5"],
        tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert (out / "model.onnx").is_file() and (out / "manifest.json").is_file()


def test_committed_corpus_is_what_the_script_writes(tmp_path):
    expected = make_bad_inputs.corpus()
    for name, data in expected.items():
        assert (BAD / name).read_bytes() == data, f"{name} is stale: run python tests/data/make_bad_inputs.py"
    committed = {str(p.relative_to(BAD)) for p in BAD.rglob("*") if p.is_file()}
    assert committed == set(expected)
    assert sum(len(d) for d in expected.values()) < 200_000
