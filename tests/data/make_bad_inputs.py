"""Write the corpus of hostile and broken inputs (``tests/data/bad/``) that edgeport must refuse
with one clear line, exit code 2 or 4, nothing written and bounded memory and time.

Run ``python tests/data/make_bad_inputs.py`` to regenerate the committed files; the output is
byte-for-byte reproducible (fixed zip timestamps, models built with onnx.helper, no torch),
and ``tests/cli/test_bad_inputs.py`` checks that the committed corpus is what this script writes.
Every file is a few KB: the zip bomb expands to 1.2 GB only in the sizes it declares and
through 300 directory entries that share one 4 MB member.
"""

from __future__ import annotations

import copy
import io
import json
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent / "bad"
FIXED_TIME = (2024, 1, 1, 0, 0, 0)
INPUT_SHAPE = [1, 1, 8, 8]
OPSET = 18


def _model(nodes, inputs, outputs, initializers=(), opsets=None) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=opsets or [helper.make_opsetid("", OPSET)], producer_name="edgeport")
    model.ir_version = 9
    return model


def valid_model() -> onnx.ModelProto:
    """A small valid image classifier: Conv -> Relu -> Flatten -> Gemm (x [1,1,8,8] -> y [1,4])."""
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal((2, 1, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(np.zeros(2, np.float32), "conv_b"),
        numpy_helper.from_array(rng.standard_normal((4, 72)).astype(np.float32) * 0.1, "fc_w"),
        numpy_helper.from_array(np.zeros(4, np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], name="fc", transB=1),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, INPUT_SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        weights,
    )


def _io(shape_in, shape_out=None):
    return (
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape_in)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape_out or shape_in)],
    )


def custom_op_model() -> onnx.ModelProto:
    """A node of an unknown custom domain (com.example.evil) that no runtime implements."""
    inputs, outputs = _io(INPUT_SHAPE)
    node = helper.make_node("Exfiltrate", ["x"], ["y"], name="evil", domain="com.example.evil")
    return _model(
        [node], inputs, outputs, opsets=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.example.evil", 1)]
    )


def huge_dims_model() -> onnx.ModelProto:
    """An input declared as 10^9 x 10^9 x 10^9 floats (4 * 10^27 bytes) in a few bytes."""
    inputs, outputs = _io([10**9, 10**9, 10**9])
    return _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], inputs, outputs)


def cyclic_model() -> onnx.ModelProto:
    """a = x + b; b = Relu(a): a cycle, which no topological order can run."""
    inputs, outputs = _io(INPUT_SHAPE)
    nodes = [
        helper.make_node("Add", ["x", "b"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["b"], name="relu"),
        helper.make_node("Identity", ["a"], ["y"], name="out"),
    ]
    return _model(nodes, inputs, outputs)


def traversal_model() -> onnx.ModelProto:
    """The valid model with one initializer's data 'stored' at ../../etc/passwd (path traversal)."""
    model = valid_model()
    tensor = model.graph.initializer[3]  # fc_b
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../../../../../../etc/passwd"), ("offset", "0"), ("length", "16")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return model


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz archive with a fixed timestamp (np.savez stamps the current time)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array))
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", FIXED_TIME), member.getvalue(), zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def calibration_arrays() -> dict[str, bytes]:
    """Calibration sets for valid.onnx: NaN, inf (past the first rows), and a shape that does not fit."""
    rng = np.random.default_rng(1)
    nan = rng.standard_normal((16, *INPUT_SHAPE[1:])).astype(np.float32)
    nan[9, 0, 3, 3] = np.nan
    inf = rng.standard_normal((16, *INPUT_SHAPE[1:])).astype(np.float32)
    inf[12, 0, 0, 0] = np.inf
    wrong = rng.standard_normal((16, 3, 5, 5)).astype(np.float32)
    return {
        "nan_calibration.npz": _npz({"x": nan}),
        "inf_calibration.npz": _npz({"x": inf}),
        "wrong_shape_calibration.npz": _npz({"x": wrong}),
    }


def zip_bomb_keras(copies: int = 300, member_bytes: int = 4 << 20) -> bytes:
    """A ``.keras`` archive whose central directory lists the same 4 MB weights member ``copies``
    times (overlapping entries, the trick of non-recursive zip bombs): ~25 KB on disk, 1.2 GB to
    a naive extractor."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo("metadata.json", FIXED_TIME), json.dumps({"keras_version": "3.0.0"}))
        config = {"module": "keras", "class_name": "Sequential", "config": {"name": "bomb", "layers": []}}
        archive.writestr(zipfile.ZipInfo("config.json", FIXED_TIME), json.dumps(config))
        archive.writestr(zipfile.ZipInfo("model.weights.h5", FIXED_TIME), bytes(member_bytes), zipfile.ZIP_DEFLATED)
        weights = archive.filelist[-1]
        # The central directory is written on close from filelist: the extra entries all point
        # at the one member's data.
        archive.filelist.extend(copy.copy(weights) for _ in range(copies - 1))
    return buffer.getvalue()


PICKLE_MARKER = "pwned_by_pickle"


class _OpenOnUnpickle:
    """Unpickling this opens (creates) PICKLE_MARKER in the current directory: a harmless
    stand-in for the code a malicious checkpoint runs."""

    def __reduce__(self):
        return (open, (PICKLE_MARKER, "w"))


def malicious_pickle() -> bytes:
    """A checkpoint-named pickle whose loading would run code (create PICKLE_MARKER)."""
    return pickle.dumps({"state_dict": _OpenOnUnpickle()}, protocol=2)


def bit_flipped(data: bytes) -> bytes:
    """``data`` with bytes of the protobuf framing inverted (field tags and lengths near the start
    and in the middle), so that it no longer parses as a model."""
    flipped = bytearray(data)
    for position in (0, 1, 2, 3, len(data) // 2, len(data) // 2 + 1):
        flipped[position] ^= 0xFF
    return bytes(flipped)


def corpus() -> dict[str, bytes]:
    """Return ``{relative path: bytes}`` of every file of the corpus."""
    valid = valid_model().SerializeToString()
    files = {
        "valid.onnx": valid,  # the seed of the fuzz test and the model the data cases feed
        "truncated.onnx": valid[: len(valid) // 2],
        "bit_flipped.onnx": bit_flipped(valid),
        "empty.onnx": b"",
        "not_a_model/notes.txt": b"a folder with no model in it\n",
        "valid_onnx_with_wrong_suffix.txt": valid,
        "custom_op.onnx": custom_op_model().SerializeToString(),
        "huge_dims.onnx": huge_dims_model().SerializeToString(),
        "cyclic.onnx": cyclic_model().SerializeToString(),
        "traversal/model.onnx": traversal_model().SerializeToString(),
        "zip_bomb.keras": zip_bomb_keras(),
        "malicious_pickle.pt": malicious_pickle(),
    }
    files.update(calibration_arrays())
    return files


def write_corpus(folder: Path = HERE) -> list[Path]:
    """Write the corpus under ``folder``; return the paths written."""
    written = []
    for name, data in corpus().items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    for path in write_corpus(target):
        print(f"{path.stat().st_size:>8}  {path}")
