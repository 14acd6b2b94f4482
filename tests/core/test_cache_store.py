"""The shared cache store (core/cache_store.py): entries written atomically under a lock and
checked by their sha256 on read; a corrupted or truncated entry removed with a note; a writer
killed by SIGKILL mid-write leaves nothing trusted and blocks nobody; least-recently-used
eviction under EDGEPORT_CACHE_MAX; concurrent writers of one key leave one intact entry."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from edgeport.core.cache_store import (
    DATA,
    DEFAULT_CACHE_MAX,
    META,
    CacheStore,
    cache_limit,
    clear,
    evict,
    file_lock,
    partials,
    usage,
)
from edgeport.core.errors import InputError
from tests.conftest import REPO


def store(root: Path, kind: str = "sensitivity", **kwargs) -> CacheStore:
    kwargs.setdefault("limit", None)
    return CacheStore(root, kind, **kwargs)


def test_round_trip_of_a_file_and_a_folder(tmp_path):
    files = store(tmp_path)
    assert files.put_bytes("k1", b"payload", info={"what": "test"})
    assert files.get_bytes("k1") == b"payload"
    with files.open("k1") as found:
        assert found is not None and found[1] == {"what": "test"}
    meta = json.loads((files.entry("k1") / META).read_text())
    assert meta["size"] == 7 and len(meta["sha256"]) == 64
    folders = store(tmp_path, "builds")

    def fill(path: Path) -> None:
        (path / "sub").mkdir(parents=True)
        (path / "a.bin").write_bytes(b"a" * 100)
        (path / "sub" / "b.txt").write_text("b")

    assert folders.put("k2", fill, info={"id": "m/t"})
    with folders.open("k2") as found:
        assert (found[0] / "sub" / "b.txt").read_text() == "b"
    assert partials(tmp_path) == []  # nothing temporary left behind
    assert store(tmp_path).get_bytes("absent") is None
    with pytest.raises(ValueError):
        files.entry("../escape")


@pytest.mark.parametrize("damage", ["truncate", "flip", "extra file", "no meta", "bad meta", "no data"])
def test_a_damaged_entry_is_detected_removed_with_a_note_and_rebuilt(tmp_path, damage):
    folders = store(tmp_path, "builds")

    def fill(path: Path) -> None:
        path.mkdir()
        (path / "model.onnx").write_bytes(bytes(range(256)) * 8)

    folders.put("key", fill)
    entry = folders.entry("key")
    model = entry / DATA / "model.onnx"
    if damage == "truncate":
        with open(model, "r+b") as handle:
            handle.truncate(1000)
    elif damage == "flip":
        raw = bytearray(model.read_bytes())
        raw[500] ^= 0xFF
        model.write_bytes(bytes(raw))
    elif damage == "extra file":
        (entry / DATA / "stray.txt").write_text("x")
    elif damage == "no meta":
        (entry / META).unlink()
    elif damage == "bad meta":
        (entry / META).write_text('{"version": 1, "kind": "bui')
    else:
        (entry / DATA / "model.onnx").unlink()
    notes: list[str] = []
    with folders.open("key", notes) as found:
        assert found is None
    assert not entry.exists()  # removed: the next writer rebuilds it
    assert len(notes) == 1 and "builds entry key was not used" in notes[0] and "removed" in notes[0]
    assert folders.put("key", fill)
    with folders.open("key", notes) as found:
        assert found is not None and len(notes) == 1


def test_temporary_entries_are_never_read(tmp_path):
    files = store(tmp_path)
    files.put_bytes("real", b"ok")
    # A complete-looking entry under a temporary name (a writer killed just before its rename).
    os.rename(files.entry("real"), files.folder / ".tmp-k.123.abcd")
    assert files.get_bytes("k") is None and files.get_bytes("real") is None
    assert usage(tmp_path)["sensitivity"] == {"entries": 0, "bytes": 0, "partial": 1}
    files.put_bytes("k", b"new")  # the next writer of that key removes its leftover
    assert partials(tmp_path) == [] and files.get_bytes("k") == b"new"


KILLED_WRITER = """
import sys, time
from pathlib import Path
from edgeport.core.cache_store import CacheStore

root, ready = Path(sys.argv[1]), Path(sys.argv[2])

def fill(path):
    with open(path, "wb") as handle:
        handle.write(b"half" * 1000)
        handle.flush()
        ready.write_text("writing")
        time.sleep(600)

CacheStore(root, "sensitivity", limit=None).put("k", fill)
"""


def test_a_writer_killed_mid_write_leaves_nothing_trusted_and_blocks_nobody(tmp_path):
    files = store(tmp_path, timeout=0.3)
    files.put_bytes("k", b"the earlier entry")
    ready = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path), str(ready)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert child.poll() is None and time.monotonic() < deadline, "the writer did not start"
            time.sleep(0.05)
        notes: list[str] = []
        start = time.monotonic()
        assert files.get_bytes("k", notes) is None  # held by the writer: a miss after the timeout
        assert time.monotonic() - start < 5 and "busy" in notes[0]
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert len(partials(tmp_path)) == 1  # the half-written entry, under its temporary name
    start = time.monotonic()
    assert files.get_bytes("k") == b"the earlier entry"  # the kernel released the dead writer's lock
    assert time.monotonic() - start < 1
    assert files.put_bytes("k", b"rebuilt") and files.get_bytes("k") == b"rebuilt"
    assert partials(tmp_path) == []


def test_a_lock_times_out_instead_of_waiting_forever(tmp_path):
    lock = tmp_path / "x.lock"
    with file_lock(lock):
        start = time.monotonic()
        with pytest.raises(TimeoutError), file_lock(lock, timeout=0.2):
            pass
        assert time.monotonic() - start < 2
        with pytest.raises(TimeoutError), file_lock(lock, shared=True, timeout=0.1):
            pass
    with file_lock(lock, shared=True), file_lock(lock, shared=True, timeout=0.1):
        pass  # readers share


def test_size_limit_from_the_environment(monkeypatch):
    monkeypatch.delenv("EDGEPORT_CACHE_MAX", raising=False)
    assert cache_limit() == 10 << 30 and DEFAULT_CACHE_MAX == "10GB"
    monkeypatch.setenv("EDGEPORT_CACHE_MAX", "2GB")
    assert cache_limit() == 2 << 30
    monkeypatch.setenv("EDGEPORT_CACHE_MAX", "500mb")
    assert cache_limit() == 500 << 20
    monkeypatch.setenv("EDGEPORT_CACHE_MAX", "lots")
    with pytest.raises(InputError, match="EDGEPORT_CACHE_MAX"):
        cache_limit()


def test_least_recently_used_entries_are_evicted_first(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPORT_CACHE_MAX", "350")  # bytes: three 100-byte entries fit, four do not
    sens, builds = CacheStore(tmp_path, "sensitivity"), CacheStore(tmp_path, "builds")
    assert sens.limit == 350
    for key in ("a", "b"):
        sens.put_bytes(key, key.encode() * 100)
        time.sleep(0.05)
    builds.put_bytes("c", b"c" * 100)
    time.sleep(0.05)
    assert sens.get_bytes("a") is not None  # a hit: "a" is now more recent than "b" and "c"
    time.sleep(0.05)
    sens.put_bytes("d", b"d" * 100)  # 400 bytes: the least recently used ("b") goes
    assert [sens.entry(k).exists() for k in "abd"] == [True, False, True] and builds.entry("c").exists()
    time.sleep(0.05)
    sens.put_bytes("e", b"e" * 200)  # 500 bytes: "c" (another kind) then "a" go
    assert not builds.entry("c").exists() and not sens.entry("a").exists()
    assert sens.get_bytes("d") is not None and sens.get_bytes("e") is not None
    notes: list[str] = []
    assert not sens.put_bytes("huge", b"h" * 400, notes=notes)  # larger than the whole cache
    assert "larger than EDGEPORT_CACHE_MAX" in notes[0] and not sens.entry("huge").exists()
    assert usage(tmp_path)["sensitivity"]["bytes"] == 300


def test_an_entry_being_read_is_not_evicted(tmp_path):
    files = store(tmp_path)
    files.put_bytes("old", b"o" * 100)
    time.sleep(0.05)
    files.put_bytes("new", b"n" * 100)
    with files.open("old") as found:
        assert evict(tmp_path, 0) == ["sensitivity/new"]  # "old" is held by this reader: skipped
        assert found[0].read_bytes() == b"o" * 100
    assert evict(tmp_path, 0) == ["sensitivity/old"]


def test_clear_by_kind(tmp_path):
    store(tmp_path).put_bytes("s", b"s" * 10)
    store(tmp_path, "builds").put_bytes("b", b"b" * 20)
    assert clear(tmp_path, ("builds",)) == (1, 20, 0)
    assert usage(tmp_path)["sensitivity"]["entries"] == 1 and usage(tmp_path)["builds"]["entries"] == 0
    assert clear(tmp_path) == (1, 10, 0)
    assert clear(tmp_path / "absent") == (0, 0, 0) and not (tmp_path / "absent").exists()


def _hammer(root: str, worker: int) -> int:
    """Write and read one key many times; return how many reads saw an intact entry."""
    files = CacheStore(Path(root), "builds", limit=None)
    seen = 0
    for i in range(15):
        payload = f"{worker}-{i}".encode() * 2000

        def fill(path: Path, payload: bytes = payload) -> None:
            path.mkdir()
            (path / "part1").write_bytes(payload)
            (path / "part2").write_bytes(payload[::-1])

        assert files.put("shared", fill, notes=[])
        notes: list[str] = []
        with files.open("shared", notes) as found:
            if found is not None:
                assert (found[0] / "part1").read_bytes() == (found[0] / "part2").read_bytes()[::-1]
                seen += 1
        assert not [n for n in notes if "not used" in n], notes  # never a half-written entry
    return seen


def test_concurrent_writers_and_readers_of_one_key(tmp_path):
    with ProcessPoolExecutor(4) as pool:
        seen = list(pool.map(_hammer, [str(tmp_path)] * 4, range(4)))
    assert sum(seen) == 60
    # One entry, the last write (some worker's 15th: "N-14" x 2000, twice).
    assert usage(tmp_path)["builds"] == {"entries": 1, "bytes": 2 * len(b"0-14") * 2000, "partial": 0}
