"""Shape buckets (issue 18): one static-shape artifact per size of one dynamic axis, all built
from the run's one precision plan (the search ran once, on the dynamic model), each verified on
the eval samples whose natural length falls in it, and the manifest's selection rule.

The layout (which inputs and outputs carry the axis, the mask, the padding values) is read
from the canonical model; the rule itself is served by ``edgeport.runtime.bundle``, which this
step also uses to verify, so the check runs the code a server runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeport.core.errors import InputError
from edgeport.core.model import CanonicalModel, TensorSpec
from edgeport.data.dataset import Dataset
from edgeport.options.buckets import BucketSpec
from edgeport.runtime.bundle import Buckets

RULE = "smallest bucket that fits"


@dataclass(frozen=True)
class Layout:
    """Where the bucketed axis sits: ``dim`` is the model's dim name, ``buckets`` the rule
    (sizes, files, inputs/outputs by axis position, padding values, mask) the manifest holds."""

    dim: str
    buckets: Buckets

    def manifest(self) -> dict[str, Any]:
        """Return the manifest's ``buckets`` section (read back by Buckets.from_manifest)."""
        rule = self.buckets
        ids = [name for name in rule.inputs if name != rule.mask]
        return {
            "axis": rule.axis,
            "dim": self.dim,
            "sizes": rule.sizes,
            "files": rule.files,
            "inputs": rule.inputs,
            "outputs": rule.outputs,
            "pads": rule.pads,
            "padding_value": rule.pads.get(ids[0], 0.0) if ids else 0.0,
            "mask_input": rule.mask,
            "rule": RULE,
        }


def match_dim(axis: str, inputs: list[TensorSpec]) -> str:
    """Return the inputs' dynamic dim named ``axis``, or the one dim it is a prefix of (``seq``
    for ``sequence``); raise InputError naming the dynamic dims otherwise."""
    names = list(dict.fromkeys(d for spec in inputs for d in spec.shape if isinstance(d, str) and d != "batch"))
    if axis in names:
        return axis
    prefixed = [name for name in names if name.startswith(axis)]
    if len(prefixed) == 1:
        return prefixed[0]
    dims = f"dynamic dims: {', '.join(names) or 'none (the inputs have static shapes)'}"
    if axis == "image":  # both spatial dims at once: not built (every image dataset here has one size)
        raise InputError(
            "--buckets image=... (height and width together) is not supported yet",
            hint=f"bucket one named dim instead; {dims}",
        )
    raise InputError(f"--buckets axis {axis!r} is not a dynamic dim of the model's inputs", hint=dims)


def pad_token_id(source_path: str | Path) -> int:
    """The pad token id of a Hugging Face folder's config.json, else 0 (what BERT-like models pad with)."""
    config = Path(source_path) / "config.json"
    if not config.is_file():
        return 0
    try:
        value = json.loads(config.read_text()).get("pad_token_id")
    except (OSError, ValueError):
        return 0
    return int(value) if isinstance(value, int) else 0


def resolve_layout(spec: BucketSpec, canonical: CanonicalModel) -> Layout:
    """Read the bucket layout of ``canonical`` for ``spec``: the affected inputs and outputs and
    the axis each holds it at, the mask input (a name with ``mask``) and the padding values."""
    dim = match_dim(spec.axis, canonical.inputs)
    inputs = {s.name: s.shape.index(dim) for s in canonical.inputs if dim in s.shape}
    outputs = {s.name: s.shape.index(dim) for s in canonical.outputs if dim in s.shape}
    mask = next((name for name in inputs if "mask" in name.lower()), None)
    pad_id = pad_token_id(canonical.source.path)
    # Token ids pad with the tokenizer's pad id; the mask and every other input (token types) with 0.
    pads = {name: float(pad_id if "input_ids" in name else 0) for name in inputs}
    files = [f"model_{spec.axis}{size}.onnx" for size in spec.sizes]
    return Layout(dim, Buckets(spec.axis, list(spec.sizes), files, inputs, outputs, pads, mask))


def fix_dim(model: onnx.ModelProto, dim: str, size: int) -> onnx.ModelProto:
    """Return a copy of ``model`` whose dim named ``dim`` is ``size`` wherever it appears
    (inputs, outputs, value infos), so the runtime plans one static shape."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    graph = fixed.graph
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for d in value.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param == dim:
                d.Clear()
                d.dim_value = size
    return fixed


def fit_rows(array: np.ndarray, axis: int, size: int, value: float) -> np.ndarray:
    """Cut ``array`` to ``size`` along ``axis``, or pad it there with ``value``."""
    if array.shape[axis] >= size:
        return np.take(array, np.arange(size), axis=axis)
    widths = [(0, 0)] * array.ndim
    widths[axis] = (0, size - array.shape[axis])
    return np.pad(array, widths, constant_values=np.asarray(value).astype(array.dtype))


def bucket_dataset(dataset: Dataset, layout: Layout, size: int) -> Dataset:
    """``dataset`` with its bucketed inputs cut or padded to ``size`` (the bucket's calibration
    set: a static-shape model is calibrated at its own shape)."""
    rule = layout.buckets
    loader = dataset._loader

    def load(start: int, stop: int) -> dict[str, np.ndarray]:
        raw = dict(loader(start, stop))
        for name, axis in rule.inputs.items():
            if name in raw:
                raw[name] = fit_rows(np.asarray(raw[name]), axis, size, rule.pads.get(name, 0.0))
        return raw

    specs = [
        replace(s, shape=[size if d == layout.dim else d for d in s.shape]) if s.name in rule.inputs else s
        for s in dataset.specs
    ]
    return Dataset(
        specs,
        len(dataset),
        load,
        None,
        f"{dataset.description} at {layout.dim} {size}",
        dataset.synthetic,
        dataset.preprocess,
        keys=dataset.keys,  # rows of one loader call keep sharing one raw shape
    )
