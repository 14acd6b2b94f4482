"""The TFLite format backend: onnx2tf + the TFLite converter (or the TFLite converter straight
from a TensorFlow source), run in LiteRT."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

from edgeport.core.contracts import Artifact, FormatBackend
from edgeport.core.errors import ConversionError
from edgeport.core.extras import require_installed
from edgeport.core.plan import PrecisionPlan, uniform_plan
from edgeport.core.runner_spec import RunnerSpec
from edgeport.data.dataset import Dataset
from edgeport.formats.tflite.shapes import static_shapes
from edgeport.options.groups import TFLiteOptions

require_installed(("onnx2tf", "tensorflow", "ai_edge_litert"), "TFLite output", "tflite")

# Plan details that rewrite the ONNX graph before conversion (edgeport/quantize/rewrites.py):
# expressible on the onnx2tf route only.
GRAPH_REWRITES = ("smoothing",)


class TFLiteBackend(FormatBackend):
    """TFLite artifacts converted by onnx2tf + the TFLite converter, run in LiteRT; a
    TensorFlow/Keras source goes to the TFLite converter directly (same quantization after it).

    Two routes, and a build that fails on one tries the other: a TF source whose plan needs
    the ONNX graph rewritten (smoothing) goes through onnx2tf, and when onnx2tf fails on the
    model (seen: Keras max pooling, ``"tf.nn.max_pool"``) it is converted from the source
    directly without the rewrite; a TF source the TFLite converter refuses goes through onnx2tf.
    """

    format = "tflite"
    file_name = "model.tflite"
    weight_rounding = True  # GPTQ on the int8 .tflite (rounding.py)

    def __init__(
        self, profile: Any, options: TFLiteOptions, canonical: Any = None, samples: dict[str, Any] | None = None
    ) -> None:
        # canonical: TF sources skip onnx2tf; samples: their shapes fix dynamic image sizes
        super().__init__(profile, options, canonical, samples)
        target = profile.formats.get("tflite")
        self.delegate = target.delegate if target is not None else None
        self.io_dtype = options.io_dtype
        self.tf_source: dict[str, Any] | None = None
        self.input_shapes: dict[str, list[int]] = {}
        self.decisions: list[dict[str, str]] = []  # fixed input sizes
        self.route_decisions: list[dict[str, str]] = []  # builds that fell back to the other route
        self._fp32_files: dict[tuple, tuple[Path, dict[str, Any]]] = {}  # baseline -> fp32 .tflite, runner kwargs
        if canonical is None:
            return
        self.input_shapes = static_shapes(canonical.inputs, samples or {})
        if canonical.source.framework == "tensorflow":
            from edgeport.formats.tflite.from_tf import tf_source_request

            inputs = [
                {"name": s.name, "shape": [d if isinstance(d, int) else None for d in s.shape], "dtype": s.dtype}
                for s in canonical.inputs
            ]
            allow_pickle = options.allow_pickle
            self.tf_source = tf_source_request(canonical.source.path, canonical.source.form, inputs, allow_pickle)
        else:
            from edgeport.formats.tflite.custom_ops import has_tflite_custom_ops
            from edgeport.formats.tflite.onnx2tf_rewrites import spatial_dims_to_fix

            if has_tflite_custom_ops(canonical.onnx_model):
                # LiteRT here has no kernel for them: the search ranks by the cost model, untimed,
                # and evaluates candidates through their emulation (custom_emulation.py).
                self.times_on_host = False

            for name, shape in spatial_dims_to_fix(canonical.onnx_model, self.input_shapes).items():
                declared = next(s.shape for s in canonical.inputs if s.name == name)
                self.decisions.append(
                    {
                        "asked": f"TFLite from an ONNX model whose input {name!r} has dynamic dims {declared}",
                        "done": f"fixed to {['batch' if d < 0 else d for d in shape]}, the data's size, "
                        "before conversion: the .tflite takes only that size",
                        "why": "onnx2tf turns dynamic image sizes into TFLite files that fail to convert, "
                        "prepare or run (seen: XNNPACK 'failed to reshape', CONV_2D 'failed to prepare'); "
                        "pass --input_shape to choose another size",
                    }
                )

    def _export(
        self,
        source: Path,
        baseline: Path,
        plan: PrecisionPlan,
        out: Path,
        work: Path,
        calibration: Dataset | None,
        notes: list[str],
        decisions: list[dict[str, str]],
    ):
        """Export by the route that fits (see the class docstring), trying the other route when
        the first fails; return the TFLiteExport. Raises the first route's ConversionError when
        both fail."""
        from edgeport.formats.tflite.export import export_tflite

        def export(onnx_file: Path, route_plan: PrecisionPlan, tf_source: dict[str, Any] | None):
            return export_tflite(
                onnx_file,
                route_plan,
                out,
                work,
                calibration,
                io_dtype=self.io_dtype,
                tf_source=tf_source,
                input_shapes=self.input_shapes,
            )

        if self.tf_source is None:
            return export(source, plan, None)
        rewritten = source != baseline
        try:
            if rewritten:
                # Smoothing rewrites the ONNX graph, not the TF model: onnx2tf then.
                result = export(source, plan, None)
                notes.append("the plan's graph rewrites apply to the ONNX model: converted through onnx2tf")
                return result
            return export(baseline, plan, self.tf_source)
        except ConversionError as first:
            if rewritten:
                dropped = [k for k in GRAPH_REWRITES if plan.details.get(k)]
                fallback_plan = copy.deepcopy(plan)
                for key in dropped:
                    fallback_plan.details.pop(key, None)
                what = ", ".join(dropped)
                done = f"converted from the TensorFlow source by tf.lite.TFLiteConverter, without {what}"
                try:
                    result = export(baseline, fallback_plan, self.tf_source)
                except ConversionError:
                    raise first from None
                why = f"the onnx2tf route that {what} needs failed ({first.message})"
            else:
                done = "converted the ONNX export through onnx2tf"
                try:
                    result = export(source, plan, None)
                except ConversionError:
                    raise first from None
                why = f"tf.lite.TFLiteConverter failed on the TensorFlow source ({first.message})"
            notes.append(f"{done}: {why}")
            rewrites = [k for k in GRAPH_REWRITES if plan.details.get(k)]
            asked = f"TFLite {plan.scheme}" + (f" with {', '.join(rewrites)}" if rewrites else "")
            decision = {"asked": f"{asked} from a TensorFlow source", "done": done, "why": why}
            if decision not in decisions:
                decisions.append(decision)
            return result

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
        """Convert the fp32 ONNX ``baseline`` to TFLite following ``plan``; return the artifact.

        Raises ConversionError when no route converts the model.
        """
        from edgeport.quantize.rewrites import apply_rewrites

        notes: list[str] = []
        # Bias correction is measured on the int8 TFLite model itself (converters/tflite_bias.py).
        source = apply_rewrites(baseline, plan, work, calibration, notes, bias_correction=False)
        export = self._export(source, baseline, plan, out, work, calibration, notes, self.route_decisions)
        facts = export.to_dict()
        facts.pop("path", None)
        runner = RunnerSpec("litert", str(out), export.runner_kwargs())
        emulation = None
        if export.custom_ops:
            from edgeport.formats.tflite.custom_ops import custom_op_emulation

            facts["custom_ops"], emulation = custom_op_emulation(export.custom_ops, out, export.runner_kwargs())
        return Artifact(out, runner, notes + export.notes, facts, decisions=self.run_decisions(), emulation=emulation)

    def run_decisions(self) -> list[dict[str, str]]:
        """The fixed input sizes and every route fallback of this run's builds."""
        return self.decisions + self.route_decisions

    def fp32_reference(self, baseline: Path, out_dir: Path, work: Path) -> tuple[RunnerSpec, Path | None]:
        """An fp32 .tflite of the same model, so latency compares like with like (LiteRT both)."""
        import onnx

        from edgeport.profiles import resolve_profile

        path = out_dir / "baseline_fp32.tflite"
        stat = Path(baseline).stat()
        key = (str(Path(baseline).resolve()), stat.st_size, stat.st_mtime_ns)
        cached = self._fp32_files.get(key)
        if cached is not None and cached[0].is_file():
            # auto converted it already for its own timing: a copy, not a second conversion (10-20 s).
            if cached[0] != path:
                shutil.copyfile(cached[0], path)
            return RunnerSpec("litert", str(path), cached[1]), path
        profile, _ = resolve_profile("generic-cpu")
        plan = uniform_plan(onnx.load(str(baseline)), "none", profile)
        export = self._export(baseline, baseline, plan, path, work, None, [], self.route_decisions)
        self._fp32_files[key] = (path, export.runner_kwargs())
        return RunnerSpec("litert", str(path), export.runner_kwargs()), path

    def measured_label(self, runner: Any) -> str:
        """LiteRT with XNNPACK here is the target's runtime only for CPU (xnnpack) profiles; a
        file XNNPACK refused ran on LiteRT's reference kernels, and the label says so."""
        fallback = getattr(runner, "delegate_fallback", None)
        if fallback:
            return (
                f"measured on LiteRT without XNNPACK on this host (the XNNPACK delegate failed: {fallback}): "
                "LiteRT's own kernels, slower than XNNPACK, so the speedup understates the device's"
            )
        if self.delegate in (None, "xnnpack"):
            return "measured on the target's runtime (LiteRT, XNNPACK, this host)"
        return (
            f"emulated: ran LiteRT with XNNPACK on this host's CPU; the target's {self.delegate} delegate "
            "is not available here, so these figures are not the device's"
        )

    def check_ops(self, path: Path) -> dict[str, Any]:
        """TFLite ops and tensor types the profile's delegate would not run (formats/tflite/op_check.py)."""
        from edgeport.formats.tflite.op_check import check_tflite

        return check_tflite(path, self.profile)
