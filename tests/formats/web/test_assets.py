"""onnxruntime-web's files: found in the cache, $EDGEPORT_ORT_WEB or npm, extracted safely,
vendored per backend, and a one-line InputError when none is there."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

import pytest

from edgeport.core.errors import InputError
from edgeport.formats.web import assets


def _tarball(path: Path, version: str, extra: dict[str, bytes] | None = None, links: tuple[str, ...] = ()) -> Path:
    """A fake npm tarball: package.json, every dist file (tiny), plus ``extra`` members and symlinks."""
    members = {"package/package.json": json.dumps({"version": version}).encode()}
    members |= {
        f"package/dist/{n}": f"// {n}\n".encode() for n in assets.dist_files() if f"package/dist/{n}" not in links
    }
    members |= extra or {}
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            archive.addfile(info)
    return path


def test_cached_lookup_is_fast_and_complete(ort_web_dir):
    start = time.perf_counter()
    again = assets.ensure_ort_web()
    assert time.perf_counter() - start < 0.5 and again == ort_web_dir
    sizes = {n: (again / n).stat().st_size for n in assets.dist_files()}
    assert sizes["ort-wasm-simd-threaded.wasm"] > 5e6 and sizes["ort-wasm-simd-threaded.asyncify.wasm"] > 5e6
    assert sizes["ort.wasm.min.mjs"] < 1e6  # the minified ES module, not the 6 MB debug builds


def test_vendor_into_copies_only_the_backends_asked(tmp_path, ort_web_dir):
    sizes = assets.vendor_into(tmp_path, ("wasm",))
    assert sorted(sizes) == sorted(assets.dist_files(("wasm",)))
    assert sorted(p.name for p in (tmp_path / "web" / "ort").iterdir()) == sorted(sizes)
    assert sum(sizes.values()) < 16e6


def test_tarball_from_env_is_extracted_safely_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPORT_CACHE_DIR", str(tmp_path / "cache"))
    evil = {"package/dist/../../escaped.txt": b"x", "/abs.txt": b"y"}
    monkeypatch.setenv("EDGEPORT_ORT_WEB", str(_tarball(tmp_path / "ok.tgz", assets.ORT_WEB_VERSION, evil)))
    folder = assets.ensure_ort_web()
    assert folder == tmp_path / "cache" / "ort-web" / assets.ORT_WEB_VERSION
    assert sorted(p.name for p in folder.iterdir()) == sorted([*assets.dist_files(), assets.MANIFEST])
    assert not list(tmp_path.rglob("escaped.txt")) and not Path("/abs.txt").exists()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".tmp-")]  # no staging left


def test_bad_sources_are_one_line_input_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPORT_CACHE_DIR", str(tmp_path / "cache"))
    cases = {
        "wrong version": _tarball(tmp_path / "old.tgz", "1.0.0"),
        "a symlink instead of a file": _tarball(
            tmp_path / "link.tgz", assets.ORT_WEB_VERSION, links=("package/dist/ort.wasm.min.mjs",)
        ),
        "an empty folder": tmp_path,
    }
    for case, source in cases.items():
        monkeypatch.setenv("EDGEPORT_ORT_WEB", str(source))
        with pytest.raises(InputError) as caught:
            assets.ensure_ort_web()
        assert "\n" not in caught.value.one_line() and caught.value.exit_code == 2, case
    # nothing cached and no npm on PATH
    monkeypatch.delenv("EDGEPORT_ORT_WEB")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(InputError) as caught:
        assets.ensure_ort_web()
    assert "npm is not installed" in caught.value.message and "EDGEPORT_ORT_WEB" in caught.value.hint
