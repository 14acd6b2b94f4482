"""The fp32 side of one run: load the source, normalize it to the checked ONNX model, choose the
accuracy gate, and prune when asked; what quantization and export then start from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from edgeport.core import limits
from edgeport.core.model import CanonicalModel, SourceModel
from edgeport.core.plan import ensure_node_names
from edgeport.core.progress import Progress
from edgeport.frontends import ingest
from edgeport.frontends.normalize import normalize
from edgeport.options.recipe import Recipe
from edgeport.pipeline.data import EVAL_BATCH, DataPlan
from edgeport.profiles.schema import DeviceProfile
from edgeport.prune.stage import PruneResult, prune_stage
from edgeport.verify.gate import Gate, choose_gate


@dataclass
class Normalized:
    """The normalized fp32 model, the source's outputs on the reference feeds, and the gate."""

    canonical: CanonicalModel
    reference_outputs: list[np.ndarray]
    gate: Gate

    @property
    def output_names(self) -> list[str]:
        """The model's output names, in order."""
        return [o.name for o in self.canonical.outputs]


def load_source(
    recipe: Recipe, memory_limit: int, progress: Progress, decisions: list[dict[str, str]]
) -> tuple[SourceModel, onnx.ModelProto | None]:
    """Load ``recipe.input_model`` (adding the frontend's decisions) and refuse it when its inputs
    would not fit ``memory_limit``. Returns the SourceModel and, for ONNX sources, the ModelProto."""
    with progress.step("load model"):
        source, onnx_source = ingest(recipe.source)
    decisions += source.decisions
    limits.check_inputs(source.inputs, EVAL_BATCH, memory_limit)  # before data is made for them
    return source, onnx_source


def normalize_model(
    recipe: Recipe,
    source: SourceModel,
    onnx_source: onnx.ModelProto | None,
    data: DataPlan,
    reference_feeds: dict[str, np.ndarray],
    progress: Progress,
    decisions: list[dict[str, str]],
) -> Normalized:
    """Export or check the source as ONNX, tell the datasets its outputs, name its nodes and choose
    the accuracy gate (adding the decisions of both). Returns the Normalized model."""
    with progress.step("export to ONNX and check parity" if onnx_source is None else "check and simplify ONNX"):
        canonical, reference_outputs = normalize(source, onnx_source, reference_feeds, recipe.source)
    for dataset in (data.eval_data, data.calibration):
        if dataset is not None:
            dataset.set_outputs(canonical.outputs)  # outputs are joined over runs along their batch axis
    decisions += canonical.decisions
    ensure_node_names(canonical.onnx_model)  # plans and quantizers address nodes by name
    gate = choose_gate(
        canonical.onnx_model,
        [o.name for o in canonical.outputs],
        reference_outputs,
        metric=recipe.metric,
        budget=recipe.max_accuracy_drop,
        labels=data.eval_data.labels is not None,
        output_kind=source.output_kind,
        synthetic=data.eval_data.synthetic,
    )
    decisions += gate.decisions
    return Normalized(canonical, reference_outputs, gate)


def prune_model(
    recipe: Recipe,
    normalized: Normalized,
    reference_feeds: dict[str, np.ndarray],
    data: DataPlan,
    profile: DeviceProfile,
    scheme: str,
    decisions: list[dict[str, str]],
    out_dir: Path,
    progress: Progress,
) -> PruneResult | None:
    """Prune the normalized model as ``--prune`` says (writing pruned_fp32.onnx into ``out_dir``);
    None without ``--prune``. Quantization and export then start from the pruned model, while the
    fp32 reference for fidelity, latency and parity stays the original one."""
    if not recipe.prune:
        return None
    return prune_stage(
        recipe.pruning,
        recipe.data,
        recipe.source,
        normalized.canonical,
        reference_feeds,
        data,
        profile,
        scheme,
        decisions,
        out_dir,
        progress,
        normalized.gate,
    )
