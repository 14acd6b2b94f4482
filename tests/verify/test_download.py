"""Download sizes: gzip and brotli of every file of an artifact, and an honest "not measured"
when brotli is not installed."""

from __future__ import annotations

import gzip
import sys
import zipfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeport.verify.download import BROTLI_QUALITY, NOT_MEASURED, download_sizes
from tests.conftest import EXAMPLES


def _trained_weights(tmp_path):
    """The bundled Fashion-MNIST CNN's trained weights (a .pt2 is a zip), as one ONNX initializer
    with its data in an external file: real, not random, bytes."""
    with zipfile.ZipFile(EXAMPLES / "fashion_cnn.pt2") as archive:
        blobs = [archive.read(n) for n in archive.namelist() if "/data/" in n]
    raw = b"".join(blobs)
    weights = np.frombuffer(raw[: len(raw) // 4 * 4], np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [weights.size])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [weights.size])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], [numpy_helper.from_array(weights, "w")]
    )
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph), str(path), save_as_external_data=True, location="model.onnx.data")
    return path, weights.nbytes


def test_gzip_and_brotli_of_a_real_model_with_external_data(tmp_path):
    path, nbytes = _trained_weights(tmp_path)
    sizes = download_sizes(path)
    data = (tmp_path / "model.onnx.data").read_bytes()
    assert len(data) == nbytes > 500_000
    assert sizes["raw_bytes"] == path.stat().st_size + len(data)
    # Each file is compressed on its own, as a server sends it.
    expected_gzip = len(gzip.compress(path.read_bytes(), 9, mtime=0)) + len(gzip.compress(data, 9, mtime=0))
    assert sizes["gzip_bytes"] == expected_gzip < sizes["raw_bytes"]
    assert 0 < sizes["brotli_bytes"] < sizes["raw_bytes"] and sizes["brotli_quality"] == BROTLI_QUALITY


def test_without_brotli_the_figure_is_not_measured(tmp_path, monkeypatch):
    path, _ = _trained_weights(tmp_path)
    monkeypatch.setitem(sys.modules, "brotli", None)  # import brotli -> ImportError
    sizes = download_sizes(path)
    assert sizes["brotli_bytes"] == NOT_MEASURED == "not measured (pip install brotli)"
    assert sizes["brotli_quality"] is None and sizes["gzip_bytes"] < sizes["raw_bytes"]


def test_streaming_in_chunks_gives_the_same_sizes(tmp_path, monkeypatch):
    """Big external data files are compressed chunk by chunk: the figures do not depend on it."""
    from edgeport.verify import download

    path, _ = _trained_weights(tmp_path)
    whole = download_sizes(path)
    monkeypatch.setattr(download, "CHUNK", 4096)
    chunked = download_sizes(path)
    assert chunked["raw_bytes"] == whole["raw_bytes"] and chunked["gzip_bytes"] == whole["gzip_bytes"]
    assert abs(chunked["brotli_bytes"] - whole["brotli_bytes"]) <= 0.01 * whole["brotli_bytes"]
