"""``edgeport verify`` on damaged bundles.

Fuzzing (tests/fuzz_files.py): manifest.json with values replaced or bytes mutated, and
reference.npz mutated, with arrays changed or dropped, or another kind of file, with the
manifest's hash made to match. Only success or an EdgeportError with exit 2, 3 or 4.

Faults (issue #21, point 6), each one line and a non-zero exit from the CLI: a missing
``web/`` folder the manifest lists files in, a missing reference.npz, a manifest of a newer
schema (naming the edgeport that wrote it), an unreadable file, a bundle folder the new report
cannot be written to.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeport.core.bundle import MANIFEST_VERSION
from edgeport.core.errors import EdgeportError
from edgeport.core.hashing import sha256_file
from edgeport.verify.bundle_check import verify_bundle
from tests import fuzz_files
from tests.conftest import REPO


@pytest.fixture(scope="module")
def seed_bundle(tmp_path_factory) -> Path:
    return fuzz_files.make_bundle(tmp_path_factory.mktemp("fuzz_bundle"))


@pytest.fixture
def bundle(seed_bundle, tmp_path) -> Path:
    """A private copy of the bundle, in a folder any user may enter (for the permission tests)."""
    tmp_path.chmod(0o755)
    return Path(shutil.copytree(seed_bundle, tmp_path / "bundle"))


def test_manifests_verify_or_are_refused(seed_bundle):
    fuzz_files.fuzz_manifests(seed_bundle, fuzz_files.strict, 250)


def test_reference_files_verify_or_are_refused(seed_bundle):
    fuzz_files.fuzz_references(seed_bundle, fuzz_files.strict, 250)


def _cli(bundle: Path, drop_root: bool = False) -> subprocess.CompletedProcess:
    """``edgeport verify bundle`` in a child process. With ``drop_root`` and run as root, the
    child loses root's power to read and write anything (so file permissions hold for it)."""
    command = [sys.executable, "-c", "from edgeport.cli.main import main; main()", "verify", str(bundle), "--runs", "1"]
    if drop_root and os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: file permissions cannot be tested")
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *command]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def _one_line(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode not in (0, 1), result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _rewrite_manifest(bundle: Path, change) -> None:
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_a_missing_web_folder_is_one_line(bundle):
    (bundle / "web").mkdir()
    for name in ("index.html", "model.js"):
        (bundle / "web" / name).write_text(name)

    def list_web(manifest):
        for name in ("index.html", "model.js"):
            path = bundle / "web" / name
            manifest["files"][f"web/{name}"] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}

    _rewrite_manifest(bundle, list_web)
    shutil.rmtree(bundle / "web")
    line = _one_line(_cli(bundle), "web/", "missing", "2 files")
    assert "exit" not in line and "internal" not in line


def test_a_missing_reference_is_one_line(bundle):
    (bundle / "reference.npz").unlink()
    _one_line(_cli(bundle), "reference.npz", "missing")


def test_a_reference_the_manifest_does_not_list_is_one_line(bundle):
    (bundle / "reference.npz").unlink()
    _rewrite_manifest(bundle, lambda m: m["files"].pop("reference.npz"))
    _one_line(_cli(bundle), "reference.npz")


def test_a_manifest_of_a_newer_schema_names_its_edgeport(bundle):
    def newer(manifest):
        manifest["manifest_version"] = MANIFEST_VERSION + 1
        manifest["edgeport"] = "9.9.0"

    _rewrite_manifest(bundle, newer)
    result = _cli(bundle)
    assert result.returncode == 2
    _one_line(result, "edgeport 9.9.0", f"manifest version {MANIFEST_VERSION + 1}", "upgrade")


def test_a_manifest_without_a_version_is_read_as_version_1(bundle):
    _rewrite_manifest(bundle, lambda m: m.pop("manifest_version"))
    section = verify_bundle(bundle, runs=1, warmup=0)
    assert section["files_checked"] >= 5


def test_the_manifest_states_its_schema_version(seed_bundle):
    assert json.loads((seed_bundle / "manifest.json").read_text())["manifest_version"] == MANIFEST_VERSION


@pytest.mark.parametrize("name", ["model.onnx", "reference.npz", "manifest.json"])
def test_an_unreadable_file_is_one_line(bundle, name):
    (bundle / name).chmod(0)
    _one_line(_cli(bundle, drop_root=True), name, "permission denied")


def test_an_unwritable_bundle_folder_is_one_line_and_nothing_runs(bundle):
    bundle.chmod(0o555)
    try:
        result = _cli(bundle, drop_root=True)
    finally:
        bundle.chmod(0o755)
    _one_line(result, "cannot write the verification report", "permission denied")
    assert not list(bundle.glob("*report.verify-*"))


def test_the_fault_messages_are_edgeport_errors(bundle):
    (bundle / "reference.npz").write_bytes(b"not an archive")
    _rewrite_manifest(
        bundle,
        lambda m: m["files"].update({"reference.npz": {"sha256": sha256_file(bundle / "reference.npz"), "bytes": 14}}),
    )
    with pytest.raises(EdgeportError) as info:
        verify_bundle(bundle, runs=1, warmup=0)
    assert info.value.exit_code == 2 and "reference.npz" in info.value.one_line()
