"""Tensors between Python and the page, as bytes: feeds go as an .npz (the page reads .npz anyway),
outputs come back packed as ``[u32 header length][JSON header][raw bytes]`` (``packTensors`` in
``page/edgeport-web.mjs``), so no tensor value is ever written as JSON text."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from typing import Any

import numpy as np

from edgeport.core.errors import ConversionError

# numpy dtypes onnxruntime-web takes as input tensors (parseNpy in the page reads these)
PAGE_DTYPES = {
    "float32",
    "float16",
    "int64",
    "int32",
    "uint8",
    "int8",
    "bool",
    "float64",
    "uint64",
    "uint32",
    "int16",
    "uint16",
}


def feeds_npz(feed_list: list[dict[str, np.ndarray]]) -> bytes:
    """Return an uncompressed .npz holding ``feed_list[i][name]`` as ``"<i>/<name>.npy"``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index, feeds in enumerate(feed_list):
            for name, value in feeds.items():
                array = np.ascontiguousarray(value)
                if array.dtype.name not in PAGE_DTYPES:
                    raise ConversionError(
                        f"input {name!r} has dtype {array.dtype}, which onnxruntime-web does not take"
                    )
                if array.dtype.byteorder == ">":
                    array = array.astype(array.dtype.newbyteorder("<"))
                entry = io.BytesIO()
                np.lib.format.write_array(entry, array, allow_pickle=False)
                archive.writestr(f"{index}/{name}.npy", entry.getvalue())
    return buffer.getvalue()


def unpack(body: bytes) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Return the header and the arrays of a packed reply from the page."""
    if len(body) < 4:
        raise ConversionError("the page sent an empty tensor reply")
    (size,) = struct.unpack_from("<I", body, 0)
    header = json.loads(body[4 : 4 + size])
    data = memoryview(body)[4 + size :]
    arrays = []
    for entry in header["tensors"]:
        chunk = data[entry["offset"] : entry["offset"] + entry["nbytes"]]
        dtype = np.dtype(entry["dtype"])
        arrays.append(np.frombuffer(chunk, dtype=dtype).copy().reshape(entry["dims"]))
    return header, arrays
