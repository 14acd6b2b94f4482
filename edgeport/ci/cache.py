"""Whole-target cache: a target's bundle is stored under a key hashed from everything that
shapes it, and reused when nothing of that changed.

The key covers: the model's bytes (file or folder; the ``.py`` file of a factory or a model
class, not the modules that file imports), the custom-op files and libraries (``custom_ops``,
``custom_op_library``), the eval data, the calibration data only when the
resolved scheme calibrates (so a new calibration file rebuilds the int8 targets and not the
fp16 ones), a re-applied precision plan, the profile file's bytes, every other convert option,
the edgeport version **and a digest of its code** (a development install keeps one version
number across edits), the versions of the libraries that convert and run models, and the
Python version, OS and machine. Gates on latency and size are not in the key: they are applied
to the stored report, so changing them re-evaluates without rebuilding.

Layout: ``<cache>/builds/<key>/data/`` (the bundle as written) and ``meta.json`` (its sha256,
and what was built, when, its status), written by ``core/cache_store.py``. The cache folder
is ``--cache``, else ``$EDGEPORT_CACHE_DIR``, else ``~/.cache/edgeport`` (the sensitivity
cache of ``--quantization auto`` lives there too).
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from edgeport.ci.config import Job
from edgeport.core.cache_store import DATA, CacheStore
from edgeport.core.hashing import sha256_file, sha256_path
from edgeport.core.version import __version__, installed_versions
from edgeport.ops import custom_ops_fingerprint

CACHE_VERSION = 2  # 2: entries of core/cache_store.py (data/ + meta.json)
# Distributions whose version can change an artifact or its measured figures.
LIBRARIES = (
    "torch",
    "onnx",
    "onnxruntime",
    "onnxslim",
    "onnxscript",
    "onnx-ir",
    "onnxconverter-common",
    "onnx-graphsurgeon",
    "numpy",
    "protobuf",
    "ml_dtypes",
    "tensorflow",
    "tensorflow-cpu",
    "keras",
    "tf-keras",
    "tf2onnx",
    "onnx2tf",
    "ai-edge-litert",
    "coremltools",
    "transformers",
    "optimum",
    "optimum-onnx",
)


@functools.cache
def code_digest() -> str:
    """sha256 of edgeport's own files (code, profiles, templates; not edgeport/ci/), computed once per process."""
    root = Path(__file__).resolve().parent.parent  # the edgeport package
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        # edgeport/ci/ (this build layer) writes no bundle file: its edits keep the cache valid
        # (a change in what the key covers bumps CACHE_VERSION instead).
        if path.is_file() and path.suffix in (".py", ".yaml", ".j2") and path.relative_to(root).parts[0] != "ci":
            digest.update(str(path.relative_to(root)).encode())
            digest.update(sha256_file(path).encode())
    return digest.hexdigest()


@functools.cache
def library_versions() -> dict[str, str]:
    """Installed versions of the libraries in :data:`LIBRARIES` (absent ones left out)."""
    return {name: version for name, version in installed_versions(LIBRARIES).items() if version is not None}


@functools.cache
def _file_hash(path: str, mtime_ns: int, size: int) -> str:
    # Keyed by mtime and size too: a file edited during a long-lived process is hashed again.
    return sha256_path(path)


def content_hash(path: str | Path) -> str:
    """sha256 of a file or folder (memoized per path, mtime and size within one process)."""
    path = Path(path)
    stat = path.stat()
    return _file_hash(str(path), stat.st_mtime_ns, stat.st_size)


def _calibrates(job: Job) -> bool:
    """Whether the target reads the calibration data: the same rule as the pipeline's
    ``_open_data`` (a calibrated scheme, ``auto``, or a re-applied precision plan)."""
    from edgeport.core.plan import CALIBRATED_SCHEMES
    from edgeport.profiles import resolve_profile, resolve_scheme

    if job.kwargs.get("precision_plan"):
        return True
    profile, _ = resolve_profile(job.kwargs["optimize_for"])
    scheme = resolve_scheme(profile, job.kwargs["quantization"], job.kwargs["output_format"]).scheme
    return scheme in (*CALIBRATED_SCHEMES, "auto")


def key_inputs(job: Job) -> dict[str, Any]:
    """Everything the target's bundle depends on, as JSON-ready data (see the module doc).

    Files are represented by their content hashes, not their paths, so that the same checkout
    in another folder (another CI runner) hits the same cache entries.
    """
    from edgeport.ci.config import _resolve_reference
    from edgeport.profiles import resolve_profile

    kwargs = dict(job.kwargs)
    inputs: dict[str, Any] = {}
    model_ref, model_file, factory = _resolve_reference(Path("/"), kwargs.pop("input_model"))
    inputs["model"] = content_hash(model_file) if model_file else model_ref
    if factory:
        inputs["model_factory"] = factory
    if model_file is None:
        # An importable package.module:factory: hash the module's source file when it can be found.
        import importlib.util

        try:
            spec = importlib.util.find_spec(model_ref.rpartition(":")[0])
        except (ImportError, ValueError):
            spec = None
        inputs["model_module"] = content_hash(spec.origin) if spec and spec.origin else None
    model_class = kwargs.pop("model_class", None)
    if model_class:
        ref, file, name = _resolve_reference(Path("/"), model_class)
        inputs["model_class"] = [content_hash(file), name] if file else ref
    profile, _ = resolve_profile(kwargs.pop("optimize_for"))
    inputs["profile"] = {"name": profile.name, "sha256": content_hash(profile.source) if profile.source else None}
    calibration = kwargs.pop("calibration_data", None)
    inputs["calibration_data"] = content_hash(calibration) if calibration and _calibrates(job) else None
    for name in ("eval_data", "precision_plan"):
        value = kwargs.pop(name, None)
        inputs[name] = content_hash(value) if value else None
    # The op modules' and custom-op libraries' bytes: an edited op rebuilds the targets using it.
    op_specs, op_libraries = kwargs.pop("custom_ops", None) or [], kwargs.pop("custom_op_library", None) or []
    inputs["custom_ops"] = custom_ops_fingerprint(op_specs, op_libraries) if op_specs or op_libraries else None
    inputs["options"] = kwargs
    inputs["edgeport"] = {"version": __version__, "code": code_digest()}
    inputs["libraries"] = library_versions()
    inputs["platform"] = {
        "python": ".".join(map(str, sys.version_info[:2])),
        "system": platform.system(),
        "machine": platform.machine(),
    }
    inputs["cache_version"] = CACHE_VERSION
    return inputs


def cache_key(inputs: dict[str, Any]) -> str:
    """The hex sha256 of :func:`key_inputs`' canonical JSON."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def input_digests(inputs: dict[str, Any]) -> dict[str, str]:
    """Short digests of each key part, stored in summary.json to say what changed on a rebuild."""
    return {
        name: hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]
        for name, value in inputs.items()
    }


class BuildCache:
    """The bundle store, kind ``builds`` of the shared cache store (``core/cache_store.py``:
    atomic entries under a lock, checked by their sha256, least recently used evicted over
    ``$EDGEPORT_CACHE_MAX``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.entries = CacheStore(root, "builds")
        self.builds = self.entries.folder
        # Why an entry found under a key was not used (corrupted, truncated): the target's rebuild reason.
        self.problems: dict[str, str] = {}

    def entry_dir(self, key: str) -> Path:
        """The folder of one cache entry."""
        return self.entries.entry(key)

    def lookup(self, key: str) -> dict[str, Any] | None:
        """The entry stored under ``key`` (what :meth:`store` was given) when present and intact,
        else None. An entry whose files do not match their sha256 (a cache restored partly by a
        CI system, a disk error, a build killed mid-copy) is removed; why is in ``problems``."""
        notes: list[str] = []
        with self.entries.open(key, notes) as found:
            entry = None if found is None else found[1]
        if notes:
            self.problems[key] = "; ".join(notes)
        return entry

    def restore(self, key: str, target: Path) -> dict[str, Any] | None:
        """Copy the cached bundle of ``key`` to ``target`` (see :func:`place_bundle`) while holding
        the entry, so that no other build replaces or evicts it meanwhile; its entry, or None
        (nothing copied) when the key is not in the cache intact."""
        notes: list[str] = []
        with self.entries.open(key, notes) as found:
            if found is not None:
                place_bundle(found[0], target)
        if notes:
            self.problems[key] = "; ".join(notes)
        return None if found is None else found[1]

    def bundle(self, key: str) -> Path:
        """The cached bundle folder of ``key``."""
        return self.entry_dir(key) / DATA

    def store(self, key: str, bundle: Path, entry: dict[str, Any]) -> None:
        """Copy ``bundle`` into the cache under ``key`` with ``entry``; the entry appears at once
        (written beside, then renamed, under the key's lock) so a concurrent reader never sees
        half of it, and two builds of one key leave one entry."""
        self.entries.put(key, lambda path: shutil.copytree(bundle, path), info=entry)


def same_bundle(a: Path, b: Path) -> bool:
    """Whether two bundle folders hold the same manifest and files (cheap check before a copy)."""
    try:
        if sha256_file(a / "manifest.json") != sha256_file(b / "manifest.json"):
            return False
        manifest = json.loads((a / "manifest.json").read_text())
        return all(sha256_file(b / name) == info["sha256"] for name, info in manifest["files"].items())
    except (OSError, ValueError, KeyError):
        return False


def place_bundle(source: Path, target: Path) -> bool:
    """Copy the bundle ``source`` to ``target`` (replacing an older bundle there) unless ``target``
    already holds the same bundle. Returns True when it copied."""
    if target.exists() and same_bundle(source, target):
        return False
    if target.exists() and (not target.is_dir() or (any(target.iterdir()) and not (target / "manifest.json").exists())):
        from edgeport.core.errors import InputError

        raise InputError(f"{target} exists and is not an edgeport bundle; refusing to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        shutil.copytree(source, tmp / "bundle")
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{tmp.name.rsplit('-', 1)[-1]}")
            target.rename(old)
        (tmp / "bundle").rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True
