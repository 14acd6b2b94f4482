"""What a web page downloads: an artifact's size raw, gzip-compressed and brotli-compressed.

Every file of the artifact counts (an ONNX model and its external data, an ``.mlpackage``'s
files), each compressed on its own, as a server sends each one. gzip is the standard library's
at level 9 (what ``gzip -9`` and most static-file servers' precompression write); brotli comes
from the ``brotli`` package (``pip install brotli``, the ``web`` extra) at quality
:data:`BROTLI_QUALITY`. Without that package the brotli figure is "not measured", never guessed.
"""

from __future__ import annotations

import importlib
import zlib
from pathlib import Path
from typing import Any

from edgeport.core.sizes import external_files

# Quality 11 (brotli's maximum, what precompressed assets often use) took 78 s for 20 MB of fp32
# weights and 21 s for 10 MB of int8 here: minutes for a 100 MB model. Quality 5 took 0.16 s and
# 0.31 s, within 0.7% (fp32) and 7% (int8) of quality 11's size, and is what servers compressing
# on the fly typically use (4-6): the figure is a slight overestimate of a quality-11 download.
BROTLI_QUALITY = 5
GZIP_LEVEL = 9
NOT_MEASURED = "not measured (pip install brotli)"


def artifact_files(path: Path | str) -> list[Path]:
    """Return the files a page downloads for artifact ``path``: the file and its external data,
    or every file of a folder."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    return [path, *external_files(path)]


def _brotli() -> Any | None:
    """The brotli module, or None when the package is not installed."""
    try:
        return importlib.import_module("brotli")
    except ImportError:
        return None


CHUNK = 1 << 24  # 16 MB: big models' external data is streamed through the compressors, never held whole


def _compressed(file: Path, brotli: Any | None) -> tuple[int, int, int | None]:
    """Return ``file``'s bytes raw, gzip-compressed and brotli-compressed (None without brotli),
    streaming it in chunks."""
    # wbits 31: the gzip container (header with mtime 0, CRC trailer), as gzip.compress writes it.
    gzip_stream = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    brotli_stream = brotli.Compressor(quality=BROTLI_QUALITY) if brotli is not None else None
    raw = gzipped = squeezed = 0
    with file.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            raw += len(chunk)
            gzipped += len(gzip_stream.compress(chunk))
            if brotli_stream is not None:
                squeezed += len(brotli_stream.process(chunk))
    gzipped += len(gzip_stream.flush())
    if brotli_stream is None:
        return raw, gzipped, None
    return raw, gzipped, squeezed + len(brotli_stream.finish())


def download_sizes(path: Path | str) -> dict[str, Any]:
    """Return the bytes of artifact ``path`` raw (``raw_bytes``), gzip level 9 (``gzip_bytes``)
    and brotli (``brotli_bytes``, or the string :data:`NOT_MEASURED` without the package), with
    the settings used (``gzip_level``, ``brotli_quality``). Each file is compressed on its own, as
    a server sends it."""
    brotli = _brotli()
    raw = gzipped = squeezed = 0
    for file in artifact_files(path):
        sizes = _compressed(file, brotli)
        raw, gzipped, squeezed = raw + sizes[0], gzipped + sizes[1], squeezed + (sizes[2] or 0)
    return {
        "raw_bytes": raw,
        "gzip_bytes": gzipped,
        "brotli_bytes": squeezed if brotli is not None else NOT_MEASURED,
        "gzip_level": GZIP_LEVEL,
        "brotli_quality": BROTLI_QUALITY if brotli is not None else None,
    }
