"""A bundle's ``web/`` folder: edgeport's page (``page/``) and the vendored onnxruntime-web, so a
user can serve the bundle with any static server (with COOP/COEP headers) and open
``web/index.html?model=../model.onnx&data=../reference.npz``."""

from __future__ import annotations

import shutil
from pathlib import Path

from edgeport.formats.web.assets import BUILDS, vendor_into

PAGE_DIR = Path(__file__).resolve().parent / "page"
PAGE_FILES = ("index.html", "edgeport-web.mjs", "standalone.mjs", "control.mjs")


def write_web_folder(bundle: Path, backends: tuple[str, ...] = ("wasm",)) -> dict[str, int]:
    """Write ``bundle/web/`` (the page files and the onnxruntime-web files of ``backends``);
    return the size of every file written, by path relative to ``bundle``."""
    web = Path(bundle) / "web"
    web.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name in PAGE_FILES:
        shutil.copyfile(PAGE_DIR / name, web / name)
        sizes[f"web/{name}"] = (web / name).stat().st_size
    for name, size in vendor_into(bundle, tuple(b for b in backends if b in BUILDS)).items():
        sizes[f"web/ort/{name}"] = size
    return sizes
