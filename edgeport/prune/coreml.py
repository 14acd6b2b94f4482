"""What pruning does for Core ML, which converts from the PyTorch source rather than the ONNX
model: the magnitude-pruned weights zeroed in a copy of the source module too, and the size
coremltools' sparse weight storage would make of a magnitude-pruned package (measured, not
applied)."""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import onnx

from edgeport.core.bundle import path_bytes
from edgeport.core.model import SourceModel
from edgeport.prune.context import PruneContext
from edgeport.prune.magnitude import WeightLayer, masks_by_initializer
from edgeport.prune.measure import gzip_size


def coreml_sparse_storage(package: Path) -> dict[str, Any]:
    """Measure what coremltools' sparse weight storage (bit mask + non-zero values, decoded by
    Core ML at load time) makes of a magnitude-pruned package: it is written to a temporary copy,
    not applied to the artifact, whose fidelity was verified as it is. Returns the sizes."""
    try:
        import coremltools as ct
        import coremltools.optimize.coreml as cto

        model = ct.models.MLModel(str(package), skip_model_load=True)
        # Threshold 1e-12: only the exact zeros pruning wrote; tensors under 30% zeros stay dense.
        op = cto.OpThresholdPrunerConfig(threshold=1e-12, minimum_sparsity_percentile=0.3, weight_threshold=256)
        sparse = cto.prune_weights(model, config=cto.OptimizationConfig(global_config=op))
        with tempfile.TemporaryDirectory(prefix="edgeport-sparse-") as name:
            target = Path(name) / "sparse.mlpackage"
            sparse.save(str(target))
            sparse_bytes, sparse_gzip = path_bytes(target), gzip_size(target)
    except Exception as exc:  # coremltools refuses some compressed packages; say so
        return {"measured": False, "why": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    dense = path_bytes(package)
    return {
        "measured": True,
        "applied": False,
        "dense_bytes": dense,
        "sparse_bytes": sparse_bytes,
        "sparse_gzip_bytes": sparse_gzip,
        "why": "measured on a copy with coremltools.optimize.coreml.prune_weights (threshold pruner on the zeros); "
        "not applied to the verified artifact; whether sparse weights also run faster depends on the Apple "
        "device and OS and cannot be measured here (Core ML predicts only on macOS)",
    }


def masked_source(
    ctx: PruneContext, model: onnx.ModelProto, layers: list[WeightLayer]
) -> tuple[SourceModel, str | None]:
    """Core ML converts from the PyTorch source, not the ONNX model: zero the same weights in a
    copy of the source module (matched by parameter name and shape). Other formats: unchanged.
    Returns the source to convert from and a note for the report (None when unchanged)."""
    source = ctx.canonical.source
    if ctx.options.output_format != "coreml" or source.framework != "pytorch" or source.live_model is None:
        return source, None
    import torch

    from edgeport.frontends.torch import make_torch_runner

    masks = masks_by_initializer(model, layers)
    live = copy.deepcopy(source.live_model)
    exported = isinstance(live, torch.export.ExportedProgram)
    tensors = dict(live.state_dict) if exported else dict(live.state_dict())
    matched = 0
    with torch.no_grad():
        for name, mask in masks.items():
            tensor = tensors.get(name)
            if tensor is None:
                continue
            keep = torch.from_numpy(mask)
            if tuple(tensor.shape) != tuple(keep.shape) and tuple(tensor.shape) == tuple(keep.T.shape):
                keep = keep.T
            if tuple(tensor.shape) == tuple(keep.shape):
                tensor.mul_(keep.to(tensor.dtype))
                matched += 1
    module = live.module() if exported else live
    runner = make_torch_runner(module, [s.name for s in source.inputs])
    note = (
        f"Core ML converts from the PyTorch source: the same weights were zeroed there ({matched} of {len(masks)} "
        "tensors matched by name)"
    )
    return dataclasses.replace(source, live_model=live, run=runner, notes=[]), note
