"""The extra format's backend: the fp32 ONNX model, copied (a plan other than fp32 is refused)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from edgeport.core.contracts import Artifact, FormatBackend
from edgeport.core.errors import ConversionError
from edgeport.core.runner_spec import RunnerSpec


class CopyBackend(FormatBackend):
    """Writes the baseline ONNX file as ``model.copy.onnx``; runs it in ONNX Runtime."""

    format = "onnx-copy"
    file_name = "model.copy.onnx"

    def runner(self, path: Path) -> RunnerSpec:
        return RunnerSpec("onnxruntime", str(path))

    def build(self, baseline, plan, out, work, calibration, batch, progress=None) -> Artifact:
        if plan.scheme != "none":
            raise ConversionError(f"onnx-copy writes fp32 only, not {plan.scheme}")
        shutil.copyfile(baseline, out)
        return Artifact(Path(out), self.runner(Path(out)), ["copied the fp32 ONNX model"])

    def fp32_reference(self, baseline: Path, out_dir: Path, work: Path) -> tuple[RunnerSpec, Path | None]:
        return self.runner(baseline), None

    def measured_label(self, runner: Any) -> str:
        return "measured on ONNX Runtime, this host"

    def check_ops(self, path: Path) -> dict[str, Any]:
        import onnx

        ops: dict[str, int] = {}
        for node in onnx.load(str(path)).graph.node:
            ops[node.op_type] = ops.get(node.op_type, 0) + 1
        return {"ops": ops, "flagged": []}
