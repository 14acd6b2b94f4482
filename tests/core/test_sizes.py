"""Sizes: the --max_size grammar, readable figures, and an artifact's bytes with its external data."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeport.core.errors import InputError
from edgeport.core.sizes import artifact_bytes, external_files, format_size, over_budget, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("10MB", 10_000_000),
        ("500KB", 500_000),
        ("1.5GB", 1_500_000_000),
        ("8MiB", 8 * 1024 * 1024),
        ("2kib", 2048),
        (" 10 mb ", 10_000_000),
        ("3M", 3_000_000),
        ("1234", 1234),
        ("1234B", 1234),
        (2048, 2048),
    ],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["ten", "10XB", "-1MB", "0", "0.4", "", "1e6", "10 MB extra", True, 0])
def test_bad_sizes_are_one_line_input_errors(text):
    with pytest.raises(InputError) as info:
        parse_size(text)
    message = info.value.one_line()
    assert "--max_size" in message and "\n" not in message


def test_format_and_how_close():
    assert format_size(812) == "812 B"
    assert format_size(45_200) == "45.2 KB"
    assert format_size(1_500_000) == "1.50 MB"
    assert over_budget(12_300_000, 10_000_000) == "12.3 MB against the 10.0 MB budget: 23% over"
    assert over_budget(8_000_000, 10_000_000) == "8.00 MB against the 10.0 MB budget: 20% under"


def test_artifact_bytes_counts_external_data(tmp_path):
    weight = numpy_helper.from_array(np.ones((256, 256), np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])
    model = helper.make_model(
        helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], [weight])
    )
    inline, split = tmp_path / "inline.onnx", tmp_path / "split.onnx"
    onnx.save(model, str(inline))
    onnx.save(model, str(split), save_as_external_data=True, location="split.onnx.data", size_threshold=0)
    data = tmp_path / "split.onnx.data"
    assert external_files(split) == [data] and external_files(inline) == []
    assert data.stat().st_size == 256 * 256 * 4
    assert artifact_bytes(split) == split.stat().st_size + data.stat().st_size
    assert artifact_bytes(inline) == inline.stat().st_size >= 256 * 256 * 4
