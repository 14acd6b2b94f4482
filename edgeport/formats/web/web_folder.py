"""A bundle's ``web/`` folder: edgeport's page (``page/``) and the vendored onnxruntime-web, so a
user can serve the bundle with any static server (with COOP/COEP headers) and open
``web/index.html?model=../model.onnx&data=../reference.npz``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edgeport.formats.web.assets import BUILDS, vendor_into

PAGE_DIR = Path(__file__).resolve().parent / "page"
PAGE_FILES = ("index.html", "edgeport-web.mjs", "standalone.mjs", "control.mjs")


def write_web_folder(bundle: Path, backends: tuple[str, ...] = ("wasm",), model: str = "model.onnx") -> dict[str, int]:
    """Write ``bundle/web/`` (the page files, the onnxruntime-web files of ``backends`` and
    ``config.json``: the page's defaults, ``../<model>``, ``../reference.npz`` and the first
    backend); return the size of every file written, by path relative to ``bundle``."""
    web = Path(bundle) / "web"
    web.mkdir(parents=True, exist_ok=True)
    config = {"model": f"../{model}", "data": "../reference.npz", "backend": backends[0] if backends else "wasm"}
    (web / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    sizes = {"web/config.json": (web / "config.json").stat().st_size}
    for name in PAGE_FILES:
        shutil.copyfile(PAGE_DIR / name, web / name)
        sizes[f"web/{name}"] = (web / name).stat().st_size
    for name, size in vendor_into(bundle, tuple(b for b in backends if b in BUILDS)).items():
        sizes[f"web/ort/{name}"] = size
    return sizes
