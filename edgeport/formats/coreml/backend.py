"""The Core ML format backend (registered in :mod:`edgeport.core.registry`).

It converts from the PyTorch or TensorFlow/Keras source (coremltools has no ONNX frontend),
optionally with image-typed inputs (``--coreml_image_input``), compresses weights as
the plan says, reads the package back to record what it holds, and says how to run it: the
real Core ML runner on macOS, and on other hosts an *emulation* runner for fidelity with
latency, load time and memory "not run" (see :mod:`edgeport.formats.coreml.emulate`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeport.core.contracts import Artifact, FormatBackend
from edgeport.core.errors import InputError
from edgeport.core.model import CanonicalModel
from edgeport.core.plan import PrecisionPlan, uniform_plan
from edgeport.core.runner_spec import RunnerSpec
from edgeport.data.dataset import Dataset
from edgeport.data.preprocess import parse_preprocess
from edgeport.formats.coreml.convert import check_source
from edgeport.formats.coreml.export import coreml_target, export_coreml
from edgeport.formats.coreml.images import image_inputs
from edgeport.options.groups import CoreMLOptions
from edgeport.profiles.schema import DeviceProfile
from edgeport.runtime.coreml import can_predict

# Starts of the auto search, most compressed first: the 4-bit schemes, then one 8-bit scheme as
# the safe start when 4 bits lose too much (EfficientNet-Lite0: 4-bit top-1 agreement < 0.1).
FOUR_BIT = ("palettize-4", "int4-weight")
EIGHT_BIT = ("int8", "int8-weight", "palettize-8")
CALIBRATION_SAMPLES = 32  # W8A8 on macOS: coremltools runs Core ML once per sample


class CoreMLBackend(FormatBackend):
    """``.mlpackage`` (ML Program) artifacts converted by coremltools from the PyTorch source."""

    format = "coreml"
    file_name = "model.mlpackage"
    plan_variants = False  # auto: no graph-rewrite variants (they change the ONNX graph, not the source)
    # auto: the simulated per-layer sensitivity is used as is; measuring it would build and
    # emulate one package per layer.
    measure_sensitivity = False

    def __init__(
        self,
        profile: DeviceProfile,
        options: CoreMLOptions,
        canonical: CanonicalModel | None = None,
        samples: dict | None = None,
    ) -> None:
        # Conversion starts from the live source model that the canonical model keeps.
        super().__init__(profile, options, canonical, samples)
        self.target = coreml_target(profile)
        if canonical is None:
            raise InputError("the Core ML backend needs the source model (pass the CanonicalModel)")
        self.canonical = canonical
        self.output_names = [o.name for o in canonical.outputs]
        dynamic = all(spec.has_dynamic_batch for spec in canonical.inputs)
        first = canonical.inputs[0].shape[0] if canonical.inputs and canonical.inputs[0].shape else 1
        # Core ML gets a fixed batch (the Neural Engine needs static shapes); runners loop over samples.
        self.batch = 1 if dynamic else int(first)
        self.on_mac = can_predict()
        self.times_on_host = self.on_mac  # the auto search only times candidates where Core ML runs
        self.float_precision = "fp16" if "fp16" in self.target.float_compute else "fp32"
        self._converted: dict = {}
        self._onnx: dict[str, onnx.ModelProto] = {}
        check_source(canonical.source)  # before any work: Core ML converts from the framework source
        # Image-typed inputs: their scale/bias come from the same --preprocess the data path applies.
        self.images = (
            image_inputs(canonical.inputs, parse_preprocess(options.preprocess), self.batch)
            if options.coreml_image_input
            else {}
        )

    def _model(self, baseline: Path) -> onnx.ModelProto:
        key = str(baseline)
        if key not in self._onnx:
            self._onnx[key] = onnx.load(key)
        return self._onnx[key]

    def _samples(self, calibration: Dataset | None) -> list[dict[str, np.ndarray]] | None:
        if calibration is None or not self.on_mac:
            return None
        count = min(len(calibration), CALIBRATION_SAMPLES)
        return [calibration.batch(i, i + self.batch) for i in range(0, count - self.batch + 1, self.batch)]

    def build(
        self,
        baseline: Path,
        plan: PrecisionPlan,
        out: Path,
        work: Path,
        calibration: Dataset | None,
        batch: int,
        progress=None,
    ) -> Artifact:
        """Convert the source to ``out`` (.mlpackage) following ``plan``; check the package; on
        hosts without Core ML also write its emulation model. Returns the Artifact."""
        from edgeport.formats.coreml.emulate import build_emulation

        model = self._model(baseline)
        export = export_coreml(
            self.canonical.source,
            model,
            plan,
            self.profile,
            out,
            self.output_names,
            self.batch,
            self._converted,
            self._samples(calibration),
            self.images,
        )
        facts = export.facts()
        notes = [f"Core ML conversion route: {export.route}", *export.notes]
        emulation = None
        if not self.on_mac:
            fp32_nodes = {
                node
                for name, layer in plan.layers.items()
                if export.applied.get(name) == "fp32"
                for node in layer.nodes
            }
            path = work / f"{out.name.removesuffix('.mlpackage')}.emulated.onnx"
            emulated = build_emulation(
                baseline,
                out,
                facts["weights"],
                export.compute_precision == "fp16",
                fp32_nodes,
                path,
                {name: image.facts() for name, image in self.images.items()},
            )
            facts["emulation"] = {k: v for k, v in emulated.items() if k != "how"}
            emulation = RunnerSpec(
                "coreml-emulated",
                str(path),
                {"package": out.name, "how": emulated["how"], "not_run": self.not_run_reason()},
            )
        artifact = Artifact(out, RunnerSpec("coreml", str(out), export.runner_kwargs()), notes, facts)
        artifact.emulation = emulation
        return artifact

    def fp32_reference(self, baseline: Path, out_dir: Path, work: Path) -> tuple[RunnerSpec, Path | None]:
        """An uncompressed package of the same model in the profile's widest float precision, so a
        Mac times like with like (Core ML both)."""
        plan = uniform_plan(self._model(baseline), "none", self.profile)
        precision = "fp32" if "fp32" in self.target.float_compute else "fp16"
        path = out_dir / f"baseline_{precision}.mlpackage"
        export = export_coreml(
            self.canonical.source, self._model(baseline), plan, self.profile, path, self.output_names, self.batch,
            self._converted, images=self.images,
        )  # fmt: skip
        return RunnerSpec("coreml", str(path), export.runner_kwargs()), path

    def measured_label(self, runner: Any) -> str:
        """Where the timing ran: Core ML on this Mac with the profile's compute units."""
        return f"measured on the target's runtime (Core ML, compute units {self.target.compute_units}, this Mac)"

    def not_run_reason(self) -> str:
        """Why latency, load time and memory are not measured on this host."""
        return (
            "not run: Core ML runs only on macOS and this host is not a Mac; "
            "run `edgeport verify BUNDLE --runner ssh://user@mac` for the device's figures"
        )

    def auto_schemes(self, have_calibration: bool) -> list[str]:
        """The all-compressed schemes the auto search may start from, most compressed first: the
        profile's 4-bit Core ML schemes and its first 8-bit one (each costs a build and an evaluation)."""
        del have_calibration  # weight compression needs no calibration; W8A8 (macOS) uses what there is
        runs = [s for s in FOUR_BIT if s in self.target.schemes]
        runs += [s for s in EIGHT_BIT if s in self.target.schemes][:1]
        if not runs:
            raise InputError(
                f"profile {self.profile.name} runs no compressed Core ML scheme (--quantization auto)",
                hint=f"it runs: {', '.join(self.target.schemes)}",
            )
        return runs

    def check_ops(self, path: Path) -> dict[str, Any]:
        """Core ML ops that the profile's compute units would not run where meant (op_check.py)."""
        from edgeport.formats.coreml.op_check import check_coreml

        return check_coreml(path, self.profile)
