"""The one store behind every cache edgeport keeps across runs (whole CI targets, per-layer
sensitivities) and within one (the TFLite calibrated model), safe when several processes, or
several CI runners on one cache volume, share the folder.

Layout of a cache kind: ``<root>/<kind>/<key>/`` holds ``data`` (the payload: a file or a
folder) and ``meta.json`` (its sha256, size, when it was stored, what the caller said about it).

- **Atomic.** An entry is written into ``<root>/<kind>/.tmp-<key>.<pid>.<random>/`` and renamed
  into place, under an exclusive ``fcntl.flock`` on ``<root>/.locks/<kind>/<key>.lock``. Names
  starting with a dot are never read: a writer killed (even by SIGKILL) mid-write leaves only a
  temporary folder, which the next writer of that key or the next eviction removes. The kernel
  releases a dead process's flock, so nobody waits on it; every lock wait has a timeout, after
  which a read is a miss and a write is skipped.
- **Checked.** A read holds a shared lock and compares the payload's sha256 with ``meta.json``;
  a corrupted, truncated or half-restored entry is removed and reported as a note (the caller
  then rebuilds it).
- **Bounded.** ``$EDGEPORT_CACHE_MAX`` (default :data:`DEFAULT_CACHE_MAX`; ``4GB``, ``500MB``,
  ...) caps the shared folder. After each write the least recently used entries of every kind
  are removed until the total fits; a hit counts as a use (``meta.json``'s mtime), and an entry
  a reader holds is skipped.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.core.errors import InputError
from edgeport.core.hashing import sha256_path
from edgeport.core.limits import format_bytes, parse_memory

DEFAULT_CACHE_MAX = "10GB"
# The kinds of the shared cache folder (``edgeport cache info|clear`` and eviction look only at
# these, so a cache folder pointed at a folder holding other things never loses them).
KINDS = {
    "builds": "whole targets of `edgeport build`",
    "sensitivity": "per-layer sensitivities of --quantization auto",
}
LOCK_TIMEOUT_S = 120.0
META = "meta.json"
DATA = "data"
LOCKS = ".locks"
TMP = ".tmp-"
STORE_VERSION = 1
_POLL_S = 0.05


class CacheLockTimeout(TimeoutError):
    """A cache lock was not free within its timeout."""


def cache_limit() -> int:
    """The size limit of the shared cache folder in bytes: ``$EDGEPORT_CACHE_MAX``, else
    :data:`DEFAULT_CACHE_MAX`. Raises InputError for a value that is not a size."""
    value = os.environ.get("EDGEPORT_CACHE_MAX", "").strip() or DEFAULT_CACHE_MAX
    try:
        return parse_memory(value)
    except InputError:
        raise InputError(f"bad EDGEPORT_CACHE_MAX {value!r}", hint="e.g. 2GB, 500MB or a number of bytes") from None


def _check_key(key: str) -> str:
    if not key or not all(c.isalnum() or c in "-_" for c in key):
        raise ValueError(f"bad cache key {key!r}: letters, digits, '-' and '_' only")
    return key


def _open_lock_file(path: Path) -> int | None:
    """A descriptor of the lock file (created when missing), or None when the folder is read-only."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        try:
            return os.open(path, os.O_RDONLY)
        except OSError:
            return None


@contextlib.contextmanager
def file_lock(path: Path, shared: bool = False, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold an flock on ``path`` for the block (shared or exclusive).

    Raises CacheLockTimeout after ``timeout`` seconds. A lock file removed while we waited (an
    entry evicted) is opened again, so two holders never lock two different files of one name.
    A shared lock in a read-only folder is no lock at all; an exclusive one raises OSError.
    """
    deadline = time.monotonic() + timeout
    mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
    while True:
        fd = _open_lock_file(path)
        if fd is None:
            if shared:
                yield
                return
            raise OSError(errno.EROFS, f"cannot create the lock file {path}")
        try:
            while True:
                try:
                    fcntl.flock(fd, mode)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise CacheLockTimeout(f"{path} is held by another process") from None
                    time.sleep(_POLL_S)
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                try:
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                return
        finally:
            os.close(fd)


def tree_size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (0 when absent)."""
    try:
        if path.is_file() or path.is_symlink():
            return path.lstat().st_size
        return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        return 0


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _short(key: str) -> str:
    return key if len(key) <= 16 else key[:12] + "..."


@dataclass
class CacheStore:
    """The entries of one kind under ``root``. ``limit``: the folder's size cap in bytes,
    :func:`cache_limit` when left out, None for no cap (a run's own work folder)."""

    root: Path
    kind: str
    limit: int | None | str = "env"
    timeout: float = LOCK_TIMEOUT_S

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        _check_key(self.kind)
        if self.limit == "env":
            self.limit = cache_limit()

    @property
    def folder(self) -> Path:
        """The kind's folder, ``<root>/<kind>``."""
        return self.root / self.kind

    def entry(self, key: str) -> Path:
        """The folder of one entry."""
        return self.folder / _check_key(key)

    def lock_path(self, key: str) -> Path:
        """The lock file of one entry."""
        return self.root / LOCKS / self.kind / f"{_check_key(key)}.lock"

    def _problem(self, folder: Path) -> tuple[str | None, dict[str, Any] | None]:
        """Why the entry ``folder`` cannot be trusted (None when it can), and its metadata."""
        try:
            meta = json.loads((folder / META).read_text())
        except FileNotFoundError:
            return "its integrity record (meta.json) is missing", None
        except (OSError, ValueError) as exc:
            return f"its integrity record is unreadable ({type(exc).__name__})", None
        if not isinstance(meta, dict) or meta.get("version") != STORE_VERSION or meta.get("kind") != self.kind:
            return "its integrity record is not this cache's", None
        data = folder / DATA
        if not data.exists():
            return "its data is missing", meta
        try:
            if sha256_path(data) != meta.get("sha256"):
                return "its content does not match its sha256 (corrupted or truncated)", meta
        except OSError as exc:
            return f"its data is unreadable ({exc.strerror or exc})", meta
        return None, meta

    def _drop(self, folder: Path) -> None:
        """Rename an entry out of sight, then delete it (a reader never sees half of it)."""
        hidden = folder.with_name(f"{TMP}{folder.name}.gone.{secrets.token_hex(4)}")
        try:
            folder.rename(hidden)
        except OSError:
            hidden = folder
        _remove(hidden)

    @contextlib.contextmanager
    def open(self, key: str, notes: list[str] | None = None) -> Iterator[tuple[Path, dict[str, Any]] | None]:
        """Yield ``(payload path, metadata)`` of an intact entry, held under a shared lock for the
        block (so nobody replaces or evicts it meanwhile), or None on a miss. An entry that fails
        its check is removed, with a note in ``notes``; a lock not free in time is a miss."""
        folder = self.entry(key)
        if not folder.exists():
            yield None
            return
        problem = None
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(file_lock(self.lock_path(key), shared=True, timeout=self.timeout))
            except CacheLockTimeout:
                if notes is not None:
                    notes.append(f"cache: the {self.kind} entry {_short(key)} was busy too long: not used")
                yield None
                return
            found = None
            if folder.exists():
                problem, meta = self._problem(folder)
                if problem is None and meta is not None:
                    found = (folder / DATA, meta.get("info") or {})
                    with contextlib.suppress(OSError):
                        os.utime(folder / META)  # the LRU clock: this hit is a use
            yield found
        if problem:  # removed under the exclusive lock, once the shared one is released
            self.discard(key, problem, notes)

    def get_bytes(self, key: str, notes: list[str] | None = None) -> bytes | None:
        """The payload file of ``key``, checked, or None."""
        with self.open(key, notes) as found:
            if found is None:
                return None
            try:
                return found[0].read_bytes()
            except OSError:
                return None

    def discard(self, key: str, reason: str, notes: list[str] | None = None, intact_too: bool = False) -> None:
        """Remove the entry ``key``, which failed a check (``reason``), and say so in ``notes``.
        An entry that passes its hash check meanwhile (a writer replaced it) stays, unless
        ``intact_too`` (the caller found the payload itself unusable)."""
        with contextlib.suppress(CacheLockTimeout, OSError), file_lock(self.lock_path(key), timeout=self.timeout):
            folder = self.entry(key)
            if folder.exists() and (intact_too or self._problem(folder)[0] is not None):
                self._drop(folder)
        if notes is not None:
            notes.append(f"cache: the {self.kind} entry {_short(key)} was not used: {reason}; removed and rebuilt")

    def put(
        self,
        key: str,
        fill: Callable[[Path], Any],
        info: dict[str, Any] | None = None,
        replace: bool = True,
        notes: list[str] | None = None,
    ) -> bool:
        """Store an entry: ``fill(path)`` writes the payload (a file or a folder) at ``path``.

        Written beside and renamed into place under the entry's lock; an intact entry already
        there is kept when ``replace`` is False. Returns whether the entry is now in the cache;
        a cache that cannot be written (full disk, read-only, lock busy) is skipped with a note.
        Then evicts the least recently used entries over the limit.
        """
        folder = self.entry(key)
        try:
            with file_lock(self.lock_path(key), timeout=self.timeout):
                for stale in self.folder.glob(f"{TMP}{key}.*"):  # a killed writer's: we hold its lock
                    _remove(stale)
                if folder.exists() and not replace and self._problem(folder)[0] is None:
                    return True
                stored = self._write(key, fill, info, notes)
        except CacheLockTimeout:
            stored = False
            if notes is not None:
                notes.append(f"cache: the {self.kind} entry {_short(key)} was busy too long: not stored")
        except OSError as exc:
            stored = False
            if notes is not None:
                notes.append(f"cache: could not store the {self.kind} entry {_short(key)}: {exc.strerror or exc}")
        if stored and isinstance(self.limit, int):
            evict(self.root, self.limit, timeout=self.timeout)
        return stored

    def put_bytes(self, key: str, payload: bytes, **kwargs: Any) -> bool:
        """Store ``payload`` as the file of ``key`` (see :meth:`put`)."""
        return self.put(key, lambda path: path.write_bytes(payload), **kwargs)

    def _write(
        self, key: str, fill: Callable[[Path], Any], info: dict[str, Any] | None, notes: list[str] | None
    ) -> bool:
        """Fill a temporary entry and rename it into place (the caller holds the entry's lock)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f"{TMP}{key}.{os.getpid()}.{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            fill(tmp / DATA)
            size = tree_size(tmp / DATA)
            if isinstance(self.limit, int) and size > self.limit:
                if notes is not None:
                    notes.append(
                        f"cache: the {self.kind} entry {_short(key)} ({format_bytes(size)}) is larger than "
                        f"EDGEPORT_CACHE_MAX ({format_bytes(self.limit)}): not stored"
                    )
                return False
            meta = {
                "version": STORE_VERSION,
                "kind": self.kind,
                "key": key,
                "sha256": sha256_path(tmp / DATA),
                "size": size,
                "stored": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "info": info or {},
            }
            (tmp / META).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
            final = self.entry(key)
            if final.exists():
                self._drop(final)
            tmp.rename(final)
            return True
        finally:
            if tmp.exists():
                _remove(tmp)


@dataclass
class _Entry:
    kind: str
    key: str
    path: Path
    used: int  # ns: meta.json's mtime, else the folder's
    size: int


def entries(root: Path, kinds: tuple[str, ...] | None = None) -> list[_Entry]:
    """Every entry of the known kinds under ``root`` (entries of an older layout included)."""
    found = []
    for kind in kinds or tuple(KINDS):
        try:
            children = list((Path(root) / kind).iterdir())
        except OSError:
            continue
        for path in children:
            if path.name.startswith("."):
                continue
            try:
                meta = json.loads((path / META).read_text())
                found.append(_Entry(kind, path.name, path, (path / META).stat().st_mtime_ns, int(meta["size"])))
            except (OSError, ValueError, KeyError, TypeError):
                with contextlib.suppress(OSError):
                    found.append(_Entry(kind, path.name, path, path.lstat().st_mtime_ns, tree_size(path)))
    return found


def partials(root: Path, kinds: tuple[str, ...] | None = None) -> list[Path]:
    """Temporary entries (being written, or left by a killed writer) of the known kinds."""
    found = []
    for kind in kinds or tuple(KINDS):
        with contextlib.suppress(OSError):
            found += [p for p in (Path(root) / kind).iterdir() if p.name.startswith(TMP)]
    return found


def _remove_entry(root: Path, item: _Entry, timeout: float) -> bool:
    """Remove one entry under its exclusive lock; False when someone holds it past ``timeout``."""
    lock = Path(root) / LOCKS / item.kind / f"{item.key}.lock"
    try:
        with file_lock(lock, timeout=timeout):
            if item.path.exists() or item.path.is_symlink():
                hidden = item.path.with_name(f"{TMP}{item.key}.gone.{secrets.token_hex(4)}")
                try:
                    item.path.rename(hidden)
                except OSError:
                    hidden = item.path
                _remove(hidden)
            with contextlib.suppress(OSError):
                lock.unlink()  # safe: a waiter re-opens a lock file that was removed
    except (CacheLockTimeout, OSError):
        return False
    return True


def _sweep_partials(root: Path, kinds: tuple[str, ...] | None = None) -> int:
    """Remove temporary entries whose writer is gone (its key's lock is free)."""
    removed = 0
    for path in partials(root, kinds):
        key = path.name[len(TMP) :].split(".", 1)[0]
        try:
            with file_lock(Path(root) / LOCKS / path.parent.name / f"{key}.lock", timeout=0):
                _remove(path)
                removed += 1
        except (CacheLockTimeout, OSError, ValueError):
            continue
    return removed


def evict(root: Path, limit: int, timeout: float = LOCK_TIMEOUT_S) -> list[str]:
    """Remove the least recently used entries of ``root`` until it holds at most ``limit`` bytes;
    entries held by a reader are skipped. Returns ``kind/key`` of each removed entry."""
    removed: list[str] = []
    try:
        with file_lock(Path(root) / LOCKS / "store.lock", timeout=timeout):
            _sweep_partials(root)
            found = sorted(entries(root), key=lambda e: (e.used, e.kind, e.key))
            total = sum(e.size for e in found)
            for item in found:
                if total <= limit:
                    break
                if _remove_entry(root, item, timeout=0):
                    total -= item.size
                    removed.append(f"{item.kind}/{item.key}")
    except (CacheLockTimeout, OSError):
        pass  # another process is evicting: it sees our entry too
    return removed


def usage(root: Path) -> dict[str, dict[str, int]]:
    """Per known kind: ``entries``, ``bytes`` and ``partial`` (temporary entries) under ``root``."""
    found = entries(root)
    loose = partials(root)
    return {
        kind: {
            "entries": sum(1 for e in found if e.kind == kind),
            "bytes": sum(e.size for e in found if e.kind == kind),
            "partial": sum(1 for p in loose if p.parent.name == kind),
        }
        for kind in KINDS
    }


def clear(root: Path, kinds: tuple[str, ...] | None = None, timeout: float = 10.0) -> tuple[int, int, int]:
    """Remove every entry of ``kinds`` (all known kinds by default) and the temporary entries of
    finished writers. Returns (entries removed, bytes freed, entries skipped because in use)."""
    removed = freed = busy = 0
    if not Path(root).is_dir():
        return removed, freed, busy
    with file_lock(Path(root) / LOCKS / "store.lock", timeout=timeout):
        for item in entries(root, kinds):
            if _remove_entry(root, item, timeout=timeout):
                removed, freed = removed + 1, freed + item.size
            else:
                busy += 1
        _sweep_partials(root, kinds)
    return removed, freed, busy
