"""Models whose weights stay in external data files (big models, see frontends/normalize.py
``weights_folder``): saved by streaming each tensor's bytes, never loading them all."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import onnx

CHUNK = 64 << 20  # bytes copied at a time


def _entries(tensor: onnx.TensorProto) -> dict[str, str]:
    return {entry.key: entry.value for entry in tensor.external_data}


def save_with_external_data(
    model: onnx.ModelProto,
    folder: Path,
    path: Path,
    transforms: dict[str, Callable[[bytes], bytes]] | None = None,
) -> Path:
    """Save ``model`` (a graph whose weights lie in external files under ``folder``) as ``path``
    plus one data file ``<path name>.data`` beside it, copying each tensor's bytes in chunks.

    ``transforms``: per tensor name, a function applied to each chunk of its bytes (chunks are
    whole multiples of 8 bytes; e.g. float32 to float16). Returns the data file. The caller's model
    is left as it is (its references still point into ``folder``); only the graph, without
    weights, is copied in memory.
    """
    transforms = transforms or {}
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    from edgeport.frontends.normalize import WEIGHTS_FOLDER_KEY

    saved = copy.deepcopy(model)  # the graph only: its weights are references
    kept = [p for p in saved.metadata_props if p.key != WEIGHTS_FOLDER_KEY]  # a temporary folder's name
    del saved.metadata_props[:]
    saved.metadata_props.extend(kept)
    data_path = path.with_name(path.name + ".data")
    offset = 0
    with open(data_path, "wb") as out:
        for tensor in _get_all_tensors(saved):
            if not uses_external_data(tensor):
                continue
            info = _entries(tensor)
            source = folder / info["location"]
            start = int(info.get("offset") or 0)
            length = int(info["length"]) if info.get("length") else source.stat().st_size - start
            padding = -offset % 4096  # page-aligned, as onnx writes it, so ONNX Runtime can map it
            out.write(b"\0" * padding)
            offset += padding
            transform = transforms.get(tensor.name)
            written = 0
            with open(source, "rb") as src:
                src.seek(start)
                left = length
                while left:
                    chunk = src.read(min(CHUNK, left))
                    if not chunk:
                        raise OSError(f"{source}: external data of {tensor.name!r} ends early")
                    left -= len(chunk)
                    chunk = transform(chunk) if transform else chunk
                    out.write(chunk)
                    written += len(chunk)
            del tensor.external_data[:]
            for key, value in (("location", data_path.name), ("offset", str(offset)), ("length", str(written))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            offset += written
    onnx.save(saved, str(path))
    return data_path


def stub_external_weights(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, onnx.TensorProto]]:
    """A copy of ``model`` (a graph loaded without its external data) whose external initializers
    are data-less stubs (name, type, dims), for tools that only read shapes; and the originals by
    name, for :func:`restore_external_weights`. Small inline tensors (shapes, axes) stay."""
    from onnx.external_data_helper import uses_external_data

    light = copy.deepcopy(model)  # the graph only: its weights are references
    originals: dict[str, onnx.TensorProto] = {}
    for tensor in light.graph.initializer:
        if uses_external_data(tensor):
            originals[tensor.name] = copy.deepcopy(tensor)
            tensor.CopyFrom(onnx.TensorProto(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims))
    return light, originals


def restore_external_weights(model: onnx.ModelProto, originals: dict[str, onnx.TensorProto]) -> None:
    """Put the references of :func:`stub_external_weights` back in place of their stubs (in place)."""
    for tensor in model.graph.initializer:
        if tensor.name in originals:
            tensor.CopyFrom(originals[tensor.name])


def fp16_with_external_data(fp32_path: Path, out: Path) -> None:
    """fp16 (fp32 inputs and outputs) of a model whose weights lie in external data (a big model),
    never holding more than one chunk of them: onnxconverter-common converts the graph with
    data-less stubs for the weights, then each weight it turned to float16 is converted chunk by
    chunk into ``out``'s data file. Raises what the converter, onnx.checker or ORT raise."""
    import numpy as np
    from onnxconverter_common import float16

    light, originals = stub_external_weights(onnx.load(str(fp32_path), load_external_data=False))
    converted = float16.convert_float_to_float16(light, keep_io_types=True)
    del light
    halved = {
        t.name
        for t in converted.graph.initializer
        if t.name in originals
        and t.data_type == onnx.TensorProto.FLOAT16
        and originals[t.name].data_type == onnx.TensorProto.FLOAT
    }
    for tensor in converted.graph.initializer:
        if tensor.name in originals:
            data_type = tensor.data_type
            tensor.CopyFrom(originals[tensor.name])
            tensor.data_type = data_type

    def to_fp16(chunk: bytes) -> bytes:
        return float16.convert_np_to_float16(np.frombuffer(chunk, dtype=np.float32)).tobytes()

    save_with_external_data(converted, fp32_path.parent, out, {name: to_fp16 for name in halved})
    onnx.checker.check_model(str(out))  # by path: the checker reads the graph, not the weights
