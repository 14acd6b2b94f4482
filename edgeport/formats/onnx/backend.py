"""The ONNX format backend: artifacts quantized by onnxruntime.quantization, run in ONNX Runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeport.core.contracts import Artifact, FormatBackend
from edgeport.core.plan import PrecisionPlan
from edgeport.core.runner_spec import RunnerSpec
from edgeport.formats.onnx.quantize import apply_plan
from edgeport.verify.evaluate import where_measured


class OnnxBackend(FormatBackend):
    """ONNX artifacts quantized by onnxruntime.quantization, run in ONNX Runtime."""

    format = "onnx"
    file_name = "model.onnx"
    kernel_profiler = "ONNX Runtime profiler"
    proxy_sensitivity = False  # its own builds are the ONNX Runtime ones

    def __init__(
        self,
        profile: Any = None,
        options: Any = None,
        canonical: Any = None,
        samples: dict | None = None,
        providers: list[str] | None = None,
    ) -> None:
        super().__init__(profile, options, canonical, samples)
        if providers is None:
            providers = list(profile.onnxruntime.execution_providers) if profile is not None else []
        self.providers = providers or ["CPUExecutionProvider"]

    def runner(self, path: Path) -> RunnerSpec:
        """How to run an ONNX file with the profile's execution providers."""
        return RunnerSpec("onnxruntime", str(path), {"providers": self.providers})

    def build(
        self,
        baseline: Path,
        plan: PrecisionPlan,
        out: Path,
        work: Path,
        calibration: Any,
        batch: int,
        progress=None,
    ) -> Artifact:
        """Apply ``plan`` to the fp32 ONNX ``baseline``; return the artifact written to ``out``."""
        notes = apply_plan(baseline, plan, out, work, calibration, batch, progress)
        return Artifact(out, self.runner(out), notes)

    def fp32_reference(self, baseline: Path, out_dir: Path, work: Path) -> tuple[RunnerSpec, Path | None]:
        """The fp32 model timed side by side with the artifact: the ONNX baseline itself."""
        return self.runner(baseline), None

    def measured_label(self, runner: Any) -> str:
        """Whether the artifact ran on the profile's providers or only on a stand-in."""
        return where_measured(tuple(self.providers), runner.providers)

    def check_ops(self, path: Path) -> dict[str, Any]:
        """ONNX nodes the profile's providers would not run (see formats/onnx/op_check.py)."""
        from edgeport.formats.onnx.op_check import check_onnx

        return check_onnx(path, self.profile)

    def profile_kernels(
        self, baseline: Path, artifact: Path, feeds: dict[str, Any], threads: int, layers: dict[str, list[str]]
    ) -> dict[str, Any] | None:
        """ONNX Runtime's profiler over the artifact and the baseline, per kernel and per layer."""
        from edgeport.formats.onnx.profiling import profile_section

        return profile_section(baseline, artifact, feeds, threads, layers)
