"""The onnxruntime-web files a page needs, pinned, from the npm registry at build time.

Nothing is fetched from a CDN when a page runs: :func:`ensure_ort_web` finds the dist files (from
``$EDGEPORT_ORT_WEB``, the edgeport cache, or ``npm pack`` once) and :func:`vendor_into` copies
them into a bundle's ``web/ort/`` folder.

Only two builds are kept out of the package's ~60 dist files (34 MB packed):

- ``wasm``: ``ort.wasm.min.mjs`` + ``ort-wasm-simd-threaded.{mjs,wasm}`` (~14.9 MB), the
  WebAssembly backend alone (SIMD, threads when the page is cross-origin isolated);
- ``webgpu``: ``ort.webgpu.min.mjs`` + ``ort-wasm-simd-threaded.asyncify.{mjs,wasm}``
  (~28.9 MB), the WebGPU execution provider, whose wasm also holds the CPU kernels.

A page importing one build never loads the other's wasm, so a bundle vendors only the backends
it targets.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from edgeport.core.cache import cache_root
from edgeport.core.errors import InputError

ORT_WEB_VERSION = "1.31.1"  # newest stable onnxruntime-web on npm (2026-12); Python ORT here is 1.32.0
PACKAGE = "onnxruntime-web"
# backend -> (the ES module the page imports, the files it loads beside it)
BUILDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "wasm": ("ort.wasm.min.mjs", ("ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")),
    "webgpu": (
        "ort.webgpu.min.mjs",
        ("ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm"),
    ),
}
MANIFEST = "edgeport-ort-web.json"  # written last: a folder with it is complete
NPM_TIMEOUT_S = 300.0
_HINT = "install node/npm (apt-get install npm) or set EDGEPORT_ORT_WEB to an onnxruntime-web folder or .tgz"


def dist_files(backends: tuple[str, ...] = tuple(BUILDS)) -> list[str]:
    """Return the dist file names the given backends need (ES module first, then its wasm)."""
    names: list[str] = []
    for backend in backends:
        if backend not in BUILDS:
            raise InputError(f"unknown onnxruntime-web backend {backend!r}", hint=f"one of {', '.join(BUILDS)}")
        module, extra = BUILDS[backend]
        names += [n for n in (module, *extra) if n not in names]
    return names


def _complete(folder: Path) -> bool:
    """Whether ``folder`` holds every dist file with the size its manifest records (a cheap check:
    no hashing, so a cached lookup stays a few stat calls)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        sizes = manifest["sizes"]
        return manifest.get("version") == ORT_WEB_VERSION and all(
            (folder / name).stat().st_size == sizes[name] for name in dist_files()
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _safe_extract(tgz: Path, dest: Path) -> Path:
    """Extract ``package/dist/<needed files>`` of an npm tarball into ``dest``; return ``dest``.
    Only regular files with the expected names are read, so a hostile archive cannot write
    outside ``dest`` (no paths, links or devices are honoured)."""
    wanted = {f"package/dist/{name}": name for name in dist_files()}
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tgz, "r:gz") as archive:
            for member in archive:
                name = wanted.get(member.name)
                if name is None or not member.isfile():
                    continue
                source = archive.extractfile(member)
                if source is None:
                    continue
                with source, open(dest / name, "wb") as out:
                    shutil.copyfileobj(source, out)
    except (OSError, tarfile.TarError) as exc:
        raise InputError(f"cannot read the onnxruntime-web archive {tgz}: {exc}", hint=_HINT) from None
    missing = [n for n in dist_files() if not (dest / n).is_file()]
    if missing:
        raise InputError(f"the onnxruntime-web archive {tgz} lacks {', '.join(missing)}", hint=_HINT)
    return dest


def _write_manifest(folder: Path) -> None:
    sizes = {name: (folder / name).stat().st_size for name in dist_files()}
    (folder / MANIFEST).write_text(json.dumps({"package": PACKAGE, "version": ORT_WEB_VERSION, "sizes": sizes}) + "\n")


def _env_folder(value: str) -> Path | None:
    """``$EDGEPORT_ORT_WEB`` as a folder of dist files (a ``dist/`` or an unpacked package is
    accepted too); None when it is a ``.tgz`` file. Raises InputError when it is neither."""
    path = Path(value).expanduser()
    if path.is_file() and path.name.endswith((".tgz", ".tar.gz")):
        return None
    for folder in (path, path / "dist", path / "package" / "dist"):
        if all((folder / n).is_file() for n in dist_files()):
            return folder
    raise InputError(
        f"EDGEPORT_ORT_WEB={value} holds no onnxruntime-web dist files ({dist_files()[0]} ...)", hint=_HINT
    )


def _tarball_version(tgz: Path) -> str:
    """The version in an npm tarball's ``package/package.json`` ('' when unreadable)."""
    try:
        with tarfile.open(tgz, "r:gz") as archive:
            member = archive.extractfile("package/package.json")
            return str(json.loads(member.read()).get("version", "")) if member else ""
    except (OSError, KeyError, ValueError, tarfile.TarError):
        return ""


def _npm_pack(work: Path) -> Path:
    """Run ``npm pack onnxruntime-web@<version>`` in ``work``; return the tarball."""
    npm = shutil.which("npm")
    if npm is None:
        raise InputError(f"onnxruntime-web {ORT_WEB_VERSION} is not cached and npm is not installed", hint=_HINT)
    try:
        done = subprocess.run(
            [npm, "pack", f"{PACKAGE}@{ORT_WEB_VERSION}", "--silent"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise InputError(f"npm pack {PACKAGE}@{ORT_WEB_VERSION} took over {NPM_TIMEOUT_S:.0f} s", hint=_HINT) from None
    tarballs = sorted(work.glob("*.tgz"))
    if done.returncode != 0 or not tarballs:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError(f"npm pack {PACKAGE}@{ORT_WEB_VERSION} failed: {last}", hint=_HINT)
    return tarballs[0]


def cache_folder() -> Path:
    """Return the cache folder of the pinned version, ``<edgeport cache>/ort-web/<version>``."""
    return cache_root() / "ort-web" / ORT_WEB_VERSION


def ensure_ort_web() -> Path:
    """Return a folder holding the pinned onnxruntime-web dist files (:func:`dist_files`).

    Looks in ``$EDGEPORT_ORT_WEB`` (a folder or a ``.tgz``), then the edgeport cache, else runs
    ``npm pack`` once and stores the files in the cache (written beside, renamed into place, so
    concurrent callers never see half a folder). Raises InputError when none of these works.
    """
    env = os.environ.get("EDGEPORT_ORT_WEB", "").strip()
    if env:
        folder = _env_folder(env)
        if folder is not None:
            return folder  # the user's own files, used in place
        version = _tarball_version(Path(env).expanduser())
        if version != ORT_WEB_VERSION:
            raise InputError(
                f"EDGEPORT_ORT_WEB={env} is onnxruntime-web {version or '?'}, not {ORT_WEB_VERSION}", hint=_HINT
            )
    cached = cache_folder()
    if _complete(cached):
        return cached
    with tempfile.TemporaryDirectory(prefix="edgeport-ort-web-") as tmp:
        work = Path(tmp)
        tgz = Path(env).expanduser() if env else _npm_pack(work)
        return _store(_safe_extract(tgz, work / "dist"), cached)


def _store(found: Path, cached: Path) -> Path:
    """Move the extracted files ``found`` into ``cached`` atomically; return the folder to use."""
    _write_manifest(found)
    cached.parent.mkdir(parents=True, exist_ok=True)
    staging = cached.parent / f".tmp-{cached.name}.{os.getpid()}.{secrets.token_hex(4)}"
    shutil.copytree(found, staging)
    try:
        if cached.exists() and not _complete(cached):
            shutil.rmtree(cached, ignore_errors=True)
        with contextlib.suppress(OSError):  # another process renamed its copy first: keep that one
            staging.rename(cached)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not _complete(cached):
        raise InputError(f"could not store onnxruntime-web in {cached}", hint="check that the cache folder is writable")
    return cached


def vendor_into(folder: Path, backends: tuple[str, ...] = tuple(BUILDS)) -> dict[str, int]:
    """Copy the dist files of ``backends`` into ``folder/web/ort/``; return their sizes by name."""
    source = ensure_ort_web()
    target = Path(folder) / "web" / "ort"
    target.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name in dist_files(backends):
        shutil.copyfile(source / name, target / name)
        sizes[name] = (target / name).stat().st_size
    return sizes


if __name__ == "__main__":  # make's set-up: fetch once, so tests and conversions run offline
    print(ensure_ort_web())
