"""Format backends: turn the fp32 ONNX model and a precision plan into an artifact, and say
how to run it (a RunnerSpec), what fp32 reference it is timed against, and whether that timing
happens on the target's runtime. The pipeline and the search talk to backends only here."""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeport.data import Dataset
from edgeport.errors import ConversionError, InputError
from edgeport.profiles.schema import DeviceProfile
from edgeport.quantize.plan import PrecisionPlan, uniform_plan
from edgeport.recipe import Recipe
from edgeport.verify.evaluate import where_measured
from edgeport.verify.runners import RunnerSpec


@dataclass
class Artifact:
    """A built artifact: its file, how to run it, notes, and format facts for the manifest."""

    path: Path
    runner: RunnerSpec
    notes: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    # Choices the build made that the report lists as decisions (asked / done / why).
    decisions: list[dict[str, str]] = field(default_factory=list)
    # When the artifact's runtime cannot run on this host (Core ML off macOS): a stand-in that
    # computes its outputs for an *emulated* fidelity; latency, load time and memory are not run.
    emulation: RunnerSpec | None = None


class OnnxBackend:
    """ONNX artifacts quantized by onnxruntime.quantization, run in ONNX Runtime."""

    format = "onnx"
    file_name = "model.onnx"

    def __init__(
        self, profile: DeviceProfile | None = None, recipe: Recipe | None = None, providers: list[str] | None = None
    ) -> None:
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
        calibration: Dataset | None,
        batch: int,
        progress=None,
    ) -> Artifact:
        """Apply ``plan`` to the fp32 ONNX ``baseline``; return the artifact written to ``out``."""
        from edgeport.quantize.onnx_apply import apply_plan

        notes = apply_plan(baseline, plan, out, work, calibration, batch, progress)
        return Artifact(out, self.runner(out), notes)

    def fp32_reference(self, baseline: Path, out_dir: Path, work: Path) -> tuple[RunnerSpec, Path | None]:
        """The fp32 model timed side by side with the artifact: the ONNX baseline itself."""
        return self.runner(baseline), None

    def measured_label(self, runner: Any) -> str:
        """Whether the artifact ran on the profile's providers or only on a stand-in."""
        return where_measured(tuple(self.providers), runner.providers)


class TFLiteBackend:
    """TFLite artifacts converted by onnx2tf + the TFLite converter, run in LiteRT; a
    TensorFlow/Keras source goes to the TFLite converter directly (same quantization after it).

    Two routes, and a build that fails on one tries the other: a TF source whose plan needs
    the ONNX graph rewritten (smoothing) goes through onnx2tf, and when onnx2tf fails on the
    model (seen: Keras max pooling, ``"tf.nn.max_pool"``) it is converted from the source
    directly without the rewrite; a TF source the TFLite converter refuses goes through onnx2tf.
    """

    format = "tflite"
    file_name = "model.tflite"
    needs_source = True  # backend_for passes the ModelBundle: TF sources skip onnx2tf
    takes_samples = True  # and sample inputs: their shapes fix dynamic image sizes

    def __init__(
        self, profile: DeviceProfile, recipe: Recipe, bundle: Any = None, samples: dict[str, Any] | None = None
    ) -> None:
        target = profile.formats.get("tflite")
        self.delegate = target.delegate if target is not None else None
        self.io_dtype = recipe.io_dtype
        self.tf_source: dict[str, Any] | None = None
        self.input_shapes: dict[str, list[int]] = {}
        self.decisions: list[dict[str, str]] = []  # fixed input sizes
        self.route_decisions: list[dict[str, str]] = []  # builds that fell back to the other route
        self._fp32_files: dict[tuple, tuple[Path, dict[str, Any]]] = {}  # baseline -> fp32 .tflite, runner kwargs
        if bundle is None:
            return
        self.input_shapes = static_shapes(bundle.inputs, samples or {})
        if bundle.source.framework == "tensorflow":
            from edgeport.converters.tf_tflite import tf_source_request

            inputs = [
                {"name": s.name, "shape": [d if isinstance(d, int) else None for d in s.shape], "dtype": s.dtype}
                for s in bundle.inputs
            ]
            self.tf_source = tf_source_request(bundle.source.path, bundle.source.form, inputs, recipe.allow_pickle)
        else:
            from edgeport.converters.onnx2tf_rewrites import spatial_dims_to_fix

            for name, shape in spatial_dims_to_fix(bundle.onnx_model, self.input_shapes).items():
                declared = next(s.shape for s in bundle.inputs if s.name == name)
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
        from edgeport.converters.tflite_out import export_tflite

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
        # Route fallbacks of earlier builds in this run (auto's other candidates) are reported too.
        decisions = self.decisions + self.route_decisions
        return Artifact(out, runner, notes + export.notes, facts, decisions=decisions)

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


# Plan details that rewrite the ONNX graph before conversion (edgeport/quantize/rewrites.py):
# expressible on the onnx2tf route only.
GRAPH_REWRITES = ("smoothing",)


def static_shapes(specs: list[Any], samples: dict[str, Any]) -> dict[str, list[int]]:
    """Return ``{input: shape}`` with each symbolic dim taken from the sample of that input
    (``samples``: arrays by input name), -1 where neither the spec nor a sample knows it."""
    shapes = {}
    for spec in specs:
        sample = samples.get(spec.name)
        sample_shape = list(getattr(sample, "shape", ()))
        shapes[spec.name] = [
            d if isinstance(d, int) else (int(sample_shape[i]) if len(sample_shape) == len(spec.shape) else -1)
            for i, d in enumerate(spec.shape)
        ]
    return shapes


def _coreml_backend(profile: DeviceProfile, recipe: Recipe, bundle: Any = None):
    """The Core ML backend (edgeport/coreml_backend.py), imported on first use: coremltools is heavy."""
    from edgeport.coreml_backend import CoreMLBackend

    return CoreMLBackend(profile, recipe, bundle)


_coreml_backend.needs_source = True  # type: ignore[attr-defined]  # converts from the PyTorch source

BACKENDS = {"onnx": OnnxBackend, "tflite": TFLiteBackend, "coreml": _coreml_backend}


def backend_for(profile: DeviceProfile, recipe: Recipe, bundle: Any = None, samples: dict[str, Any] | None = None):
    """Return the backend object for ``recipe.output_format``; backends that convert from the
    source model (``needs_source``) get the ModelBundle ``bundle``, and those that fix input
    sizes from data (``takes_samples``) also get ``samples`` (sample inputs by name)."""
    backend = BACKENDS.get(recipe.output_format)
    if backend is None:
        raise InputError(
            f"--output_format {recipe.output_format} is not implemented in this version of edgeport",
            hint=f"available: {', '.join(BACKENDS)}",
        )
    if getattr(backend, "takes_samples", False):
        return backend(profile, recipe, bundle, samples)
    if getattr(backend, "needs_source", False):
        return backend(profile, recipe, bundle)
    return backend(profile, recipe)
