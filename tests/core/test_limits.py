"""Resource limits: ``--max_memory`` (and its default) refuses a model or input that would not fit
before it is loaded; zip archives and array headers cannot make edgeport allocate what they declare."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from edgeport.api import convert
from edgeport.cli.main import main
from edgeport.core import limits
from edgeport.core.errors import InputError
from edgeport.core.model import TensorSpec
from edgeport.data import Preprocess, load_dataset
from tests.conftest import EXAMPLES, REPO

VALID_ONNX = REPO / "tests" / "data" / "bad" / "valid.onnx"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("4GB", 4 << 30), ("512MB", 512 << 20), ("1.5G", 3 << 29), ("800k", 800 << 10), ("2 GiB", 2 << 30), (4096, 4096)],
)
def test_parse_memory(text, expected):
    assert limits.parse_memory(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1GB", "0", "4XB", ""])
def test_bad_max_memory_is_exit_2(text, tmp_path):
    result = CliRunner().invoke(main, ["convert", "--input_model", str(VALID_ONNX), "--max_memory", text or " "])
    assert result.exit_code == 2 and "--max_memory" in result.stderr


def test_default_limit_is_a_share_of_available_memory_capped_by_ulimit(monkeypatch):
    import psutil

    available = psutil.virtual_memory().available
    assert 0 < limits.default_memory_limit() <= available
    monkeypatch.setattr(limits.resource, "getrlimit", lambda which: (1 << 30, 1 << 30))
    assert limits.default_memory_limit() == int((1 << 30) * limits.DEFAULT_SHARE_OF_AVAILABLE)


def test_model_over_max_memory_fails_early_and_writes_nothing(tmp_path):
    out = tmp_path / "bundle"
    result = CliRunner().invoke(
        main,
        ["convert", "--input_model", str(EXAMPLES / "fashion_cnn.pt2"), "--max_memory", "2MB"]
        + ["--output_dir", str(out)],
    )
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert "fashion_cnn.pt2" in line and "over the memory limit of 2 MB" in line and "--max_memory" in line
    assert "load model" not in result.stderr  # refused before loading started
    assert not out.exists()


def test_max_memory_through_the_api_and_a_budget_that_fits(tmp_path):
    with pytest.raises(InputError, match="over the memory limit"):
        convert(str(VALID_ONNX), quantization="none", max_memory="1k", output_dir=str(tmp_path / "a"))
    result = convert(
        str(VALID_ONNX), quantization="none", max_memory="1GB", output_dir=str(tmp_path / "b"), latency_runs=5
    )
    assert result.report["status"] == "passed"
    assert result.bundle_dir.joinpath("manifest.json").is_file()


def _zip_of_zeros(path, member_bytes: int) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", bytes(member_bytes))


def test_zip_expanding_far_beyond_its_size_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "deflated.npz"
    _zip_of_zeros(path, 8 << 20)  # 8 MB of zeros: about 8 KB on disk
    limits.check_zip_archive(path, None)  # under ZIP_BOMB_MIN_BYTES: fine
    with pytest.raises(InputError, match="over the memory limit"):
        limits.check_zip_archive(path, 4 << 20)
    monkeypatch.setattr(limits, "ZIP_BOMB_MIN_BYTES", 1 << 20)
    with pytest.raises(InputError, match="zip bomb-like archive: .* expanding to 8 MB"):
        limits.check_zip_archive(path, None)


def test_array_header_declaring_more_than_the_file_holds_is_refused(tmp_path):
    """A .npy header can declare 10^12 rows in a few bytes: refused before a buffer is allocated."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 4)})
    for name in ("x.npy", "x.npz"):
        path = tmp_path / name
        if name.endswith(".npy"):
            path.write_bytes(header.getvalue() + bytes(64))
        else:
            with zipfile.ZipFile(path, "w") as archive:
                archive.writestr("x.npy", header.getvalue() + bytes(64))
        with pytest.raises(InputError, match="truncated"):
            load_dataset(str(path), [TensorSpec("x", ["batch", 4])], None, Preprocess())
