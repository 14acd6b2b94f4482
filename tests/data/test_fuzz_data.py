"""Fuzzing the data loaders (hypothesis, derandomized, bounded): .npz/.npy files mutated, of odd
contents and ragged, image folders of odd, corrupt, truncated and empty images, .txt sentence
files of garbage, huge lines or nothing, and files of other kinds under each suffix. The only
allowed outcomes are success or an EdgeportError with exit 2, 3 or 4 (tests/fuzz_files.py).

EDGEPORT_FUZZ_EXAMPLES sets the examples per fuzzer (bench/fuzz_files.py runs a long profile).
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeport.core.errors import InputError
from edgeport.core.model import TensorSpec
from edgeport.data import load_dataset, parse_preprocess
from tests import fuzz_files


@pytest.mark.parametrize(("suffix", "examples"), [(".npz", 300), (".npy", 200)])
def test_mutated_array_files_load_or_are_refused(suffix, examples):
    fuzz_files.fuzz_array_bytes(suffix, fuzz_files.strict, examples)


def test_arrays_of_odd_contents_load_or_are_refused():
    fuzz_files.fuzz_array_contents(fuzz_files.strict, 300)


def test_image_folders_load_or_are_refused():
    fuzz_files.fuzz_image_folders(fuzz_files.strict, 200)


def test_text_files_load_or_are_refused():
    fuzz_files.fuzz_text(fuzz_files.strict, 200)


# The internal errors the fuzzing found, each now one line.

SPEC = [TensorSpec("x", ["batch", 1, 8, 8], "float32")]


def test_a_damaged_member_offset_is_one_line(tmp_path):
    data = bytearray(fuzz_files.SEEDS["npz"])
    central = data.rindex(b"PK\x01\x02")  # the first member's local header offset -> past the end
    data[central + 42 : central + 46] = (2**31).to_bytes(4, "little")
    path = tmp_path / "data.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="not a valid"):
        load_dataset(str(path), SPEC, None, parse_preprocess(None))


def test_a_0d_input_array_is_one_line(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x=np.float32(1.0))
    with pytest.raises(InputError, match="single value"):
        load_dataset(str(path), SPEC, None, parse_preprocess(None))


@pytest.mark.parametrize(("preprocess", "words"), [("mean=1,2,3", "3 values"), ("std=0.5,0.5", "2 values")])
def test_mean_or_std_of_the_wrong_length_is_one_line(tmp_path, preprocess, words):
    path = tmp_path / "data.npz"
    np.savez(path, x=np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(InputError, match=words):
        load_dataset(str(path), SPEC, None, parse_preprocess(preprocess)).batch(0, 2)


def test_mean_on_an_input_without_channels_is_one_line(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x=np.zeros((2,), np.float32))
    with pytest.raises(InputError):
        load_dataset(str(path), [TensorSpec("x", ["batch"], "float32")], None, parse_preprocess("mean=0.5"))


def test_a_damaged_npy_header_is_one_line(tmp_path):
    data = fuzz_files.SEEDS["npy"]
    header_end = data.index(b"}")
    path = tmp_path / "data.npy"
    path.write_bytes(data[:header_end].replace(b"'descr'", b"('descr'") + data[header_end:])
    with pytest.raises(InputError, match="not a valid .npy|damaged .npy header"):
        load_dataset(str(path), SPEC, None, parse_preprocess(None))


@pytest.mark.parametrize(
    "labels",
    [np.array(["a", "b"]), np.zeros((2, 0)), np.array([np.nan, 1.0]), np.int64(3)],
    ids=["strings", "empty-rows", "nan", "0-d"],
)
def test_bad_labels_are_one_line(tmp_path, labels):
    path = tmp_path / "data.npz"
    np.savez(path, x=np.zeros((2, 1, 8, 8), np.float32), y=labels)
    with pytest.raises(InputError, match="labels"):
        load_dataset(str(path), SPEC, None, parse_preprocess(None))


@pytest.mark.parametrize("dtype", ["U3", "V4", "M8[s]", "complex64"])
def test_inputs_that_are_not_numbers_are_one_line(tmp_path, dtype):
    path = tmp_path / "data.npz"
    np.savez(path, x=np.zeros((2, 1, 8, 8), dtype))
    with pytest.raises(InputError, match="not numbers"):
        load_dataset(str(path), SPEC, None, parse_preprocess(None))
