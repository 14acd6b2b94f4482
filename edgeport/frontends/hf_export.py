"""The ONNX export of a Hugging Face folder: optimum's ``main_export`` (offline), then the chosen
static dims written into the graph and the sentence-transformers pooling appended."""

from __future__ import annotations

import tempfile
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx

from edgeport.core.errors import ConversionError, describe_exception
from edgeport.core.model import Dim, TensorSpec
from edgeport.frontends.hf_folder import force_offline
from edgeport.frontends.hf_pooling import EMBEDDING_OUTPUT, Pooling, append_pooling
from edgeport.options.groups import SourceOptions


def fix_dims(model: onnx.ModelProto, specs: list[TensorSpec]) -> None:
    """Give the exported graph's inputs the chosen static dims (and its outputs the same named dims).

    optimum exports every text dim as symbolic (batch_size, sequence_length); edgeport names
    them ``batch`` and ``sequence`` when they stay dynamic, and writes the length in when it is
    fixed, so shape inference and the simplifier see static shapes.
    """
    values: dict[str, Dim] = {}
    by_name = {s.name: s for s in specs}
    for value in model.graph.input:
        spec = by_name.get(value.name)
        if spec is None:
            continue
        for dim, size in zip(value.type.tensor_type.shape.dim, spec.shape, strict=False):
            if dim.dim_param:
                values[dim.dim_param] = size
            if isinstance(size, int):
                dim.Clear()
                dim.dim_value = size
            else:
                dim.dim_param = size
    for value in model.graph.output:
        for dim in value.type.tensor_type.shape.dim:
            size = values.get(dim.dim_param) if dim.dim_param else None
            if isinstance(size, int):
                dim.Clear()
                dim.dim_value = size
            elif isinstance(size, str):
                dim.dim_param = size


def make_exporter(folder: Path, task: str, pooling: Pooling | None, specs: list[TensorSpec]):
    """Return ``to_onnx(feeds, options)``: optimum's main_export on the folder (offline), then fixed
    dims and pooling. ``options`` is the SourceOptions (its opset)."""

    def to_onnx(feeds: dict[str, np.ndarray], options: SourceOptions) -> tuple[onnx.ModelProto, str, list[str]]:
        import logging

        force_offline()
        from optimum.exporters.onnx import main_export

        for name in ("optimum", "transformers", "torch.onnx"):
            logging.getLogger(name).setLevel(logging.ERROR)
        with tempfile.TemporaryDirectory(prefix="edgeport-hf-") as out, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                main_export(
                    str(folder),
                    output=out,
                    task=task,
                    opset=options.opset,
                    device="cpu",
                    local_files_only=True,
                    do_validation=False,  # edgeport's own parity check follows, on the reference inputs
                    library_name="transformers",
                    trust_remote_code=False,
                )
            except Exception as exc:  # optimum and the torch exporter raise many unrelated types
                raise ConversionError(
                    f"optimum's ONNX export failed for task {task}: {describe_exception(exc)}",
                    hint="check --task (optimum lists the tasks each architecture exports) and --opset",
                ) from exc
            path = Path(out) / "model.onnx"
            if not path.is_file():
                written = sorted(p.name for p in Path(out).glob("*.onnx"))
                raise ConversionError(
                    f"task {task} exports several ONNX models ({', '.join(written)}); edgeport converts one model",
                    hint="choose a single-model task (e.g. feature-extraction, text-classification)",
                )
            model = onnx.load(str(path), load_external_data=True)
        fix_dims(model, specs)
        notes = []
        if pooling is not None:
            append_pooling(model, pooling)
            notes.append(
                f"sentence-transformers head folded into the graph: {pooling.mode} pooling"
                + (" + L2 normalisation" if pooling.normalize else "")
                + f" -> output {EMBEDDING_OUTPUT!r}"
            )
        version = metadata.version("optimum-onnx")
        return model, f"optimum-onnx {version} main_export (task {task}, opset {options.opset})", notes

    return to_onnx
