"""Data loading: partial reads, layouts, preprocessing, image folders, bad data."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgeport.api import convert
from edgeport.core.errors import InputError
from edgeport.core.model import TensorSpec
from edgeport.data import load_dataset, parse_preprocess
from edgeport.data.npz import read_arrays
from tests.conftest import EXAMPLES

NCHW = [TensorSpec("x", ["batch", 3, 4, 4])]


def test_npz_reads_only_the_rows_asked_for(tmp_path):
    path = tmp_path / "big.npz"
    np.savez(path, x=np.arange(1000 * 48, dtype=np.float32).reshape(1000, 3, 4, 4), y=np.arange(1000))
    arrays = read_arrays(path, 7)
    assert arrays["x"].shape == (7, 3, 4, 4) and arrays["y"].shape == (7,)
    np.testing.assert_array_equal(arrays["x"][6].ravel(), np.arange(6 * 48, 7 * 48))
    dataset = load_dataset(str(path), NCHW, 10, parse_preprocess(None))
    assert len(dataset) == 10 and dataset.labels.tolist() == list(range(10))
    batches = list(dataset.batches(4))
    assert [len(b["x"]) for b in batches] == [4, 4, 2]


def test_npy_is_memory_mapped_and_sliced(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.ones((50, 3, 4, 4), np.float32))
    assert len(load_dataset(str(path), NCHW, 20, parse_preprocess(None))) == 20


def test_nhwc_uint8_becomes_scaled_nchw_with_mean_std(tmp_path):
    path = tmp_path / "nhwc.npz"
    pixels = np.full((2, 4, 4, 3), 255, np.uint8)
    pixels[..., 1] = 0
    np.savez(path, x=pixels)
    dataset = load_dataset(str(path), NCHW, None, parse_preprocess("mean=0.5,0.5,0.5;std=0.5,0.5,0.5"))
    batch = dataset.batch(0, 2)["x"]
    assert batch.shape == (2, 3, 4, 4) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[:, 0], 1.0)
    np.testing.assert_allclose(batch[:, 1], -1.0)
    assert "NHWC data transposed to the model's NCHW" in dataset.describe()["applied"]


def test_preprocess_parsing_errors():
    assert parse_preprocess("scale=1/255;resize=8x6;layout=nhwc").resize == (8, 6)
    with pytest.raises(InputError, match="unknown key"):
        parse_preprocess("gamma=2")
    with pytest.raises(InputError, match="bad value"):
        parse_preprocess("scale=abc")
    with pytest.raises(InputError, match="std must not be 0"):
        parse_preprocess("std=0")


def test_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="no pickle"):
        load_dataset(str(path), NCHW, None, parse_preprocess(None))


def test_image_folder_with_class_subfolders_matches_the_npz(tmp_path):
    """The same 60 Fashion-MNIST test images as PNG files in class folders give the same accuracy."""
    data = np.load(EXAMPLES / "fashion_mnist_test_1k.npz")
    picks = np.concatenate([np.flatnonzero(data["y"] == c)[:6] for c in range(10)])
    folder = tmp_path / "images"
    names = [f"class_{c}" for c in range(10)]  # sorted order == label order
    for i in picks:
        target = folder / names[data["y"][i]]
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data["x"][i]).save(target / f"{i:04d}.png")
    npz = tmp_path / "same.npz"
    np.savez(npz, x=data["x"][picks], y=data["y"][picks])
    common = dict(quantization="none", optimize_for="cpu", latency_runs=5, warmup_runs=1)
    from_folder = convert(
        str(EXAMPLES / "fashion_cnn.pt2"), eval_data=str(folder), output_dir=str(tmp_path / "a"), **common
    )
    from_npz = convert(str(EXAMPLES / "fashion_cnn.pt2"), eval_data=str(npz), output_dir=str(tmp_path / "b"), **common)
    assert from_folder.report["fidelity"]["samples"] == 60
    assert from_folder.report["fidelity"]["reference_top1"] == from_npz.report["fidelity"]["reference_top1"]
    assert from_folder.report["fidelity"]["reference_top1"] > 70.0
    assert "10 classes from folder names" in from_folder.report["data"]["eval"]["source"]


def test_empty_image_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        load_dataset(str(tmp_path / "empty"), NCHW, None, parse_preprocess(None))
