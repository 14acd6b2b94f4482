"""Core ML export: the PyTorch or TensorFlow/Keras source -> an ML Program ``.mlpackage``, with the
precision plan mapped onto coremltools' weight compression, and a structural check of what was
really written.

The steps live in their own modules: conversion (:mod:`~edgeport.formats.coreml.convert`),
matching plan layers to Core ML weights (:mod:`~edgeport.formats.coreml.match`), compression
(:mod:`~edgeport.formats.coreml.compress`) and reading the package back
(:mod:`~edgeport.formats.coreml.inspect`). After saving, the per-layer ``applied`` precisions
come from the package as read back, never from the in-memory program.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeport.core.errors import ConversionError, InputError
from edgeport.core.hashing import sha256_path
from edgeport.core.model import SourceModel
from edgeport.core.plan import PrecisionPlan
from edgeport.core.reproducible import canonicalize_mlpackage
from edgeport.formats.coreml.compress import compress_weights, quantize_activations
from edgeport.formats.coreml.convert import convert_source
from edgeport.formats.coreml.images import ImageInput
from edgeport.formats.coreml.inspect import inspect_package
from edgeport.formats.coreml.match import WeightMatch, applied_precisions, fp32_selector, match_layers
from edgeport.formats.coreml.tools import import_coremltools, quiet
from edgeport.profiles.schema import DeviceProfile, FormatTarget
from edgeport.runtime.coreml import can_predict


@dataclass
class CoreMLExport:
    """What one Core ML export wrote and what the package really holds."""

    path: Path
    route: str
    compute_precision: str  # "fp16" or "fp32": the model's default compute precision
    compute_units: str
    deployment_target: str
    input_names: list[str]
    output_names: list[str]
    applied: dict[str, str] = field(default_factory=dict)  # layer -> precision found in the package
    not_expressible: dict[str, str] = field(default_factory=dict)  # layer -> why the plan was not followed
    matches: list[WeightMatch] = field(default_factory=list)
    structure: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    image_inputs: dict[str, ImageInput] = field(default_factory=dict)

    def runner_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the Core ML runner (and the device harness): names, compute units
        and the image inputs' scale/bias (the runner turns model inputs back into pixels)."""
        kwargs: dict[str, Any] = {
            "compute_units": self.compute_units,
            "input_names": self.input_names,
            "output_names": self.output_names,
        }
        if self.image_inputs:
            kwargs["image_inputs"] = {name: image.facts() for name, image in self.image_inputs.items()}
        return kwargs

    def facts(self) -> dict[str, Any]:
        """JSON-ready facts for the manifest and the report."""
        return {
            "route": self.route,
            "compute_precision": self.compute_precision,
            "compute_units": self.compute_units,
            "minimum_deployment_target": self.deployment_target,
            "applied": self.applied,
            "not_expressible": self.not_expressible,
            "weights": {m.onnx_node: asdict(m) for m in self.matches},
            "structure": self.structure,
            "image_inputs": {name: image.facts() for name, image in self.image_inputs.items()},
            "package_sha256": sha256_path(self.path),
        }


def coreml_target(profile: DeviceProfile) -> FormatTarget:
    """Return the profile's ``formats.coreml``; InputError when the profile does not run Core ML."""
    target = profile.formats.get("coreml")
    if target is None:
        raise InputError(
            f"profile {profile.name} does not run Core ML",
            hint="use --optimize_for metal or ane, or a profile file with a formats.coreml section",
        )
    return target


def _expected(precision: str, target: FormatTarget, on_mac: bool) -> tuple[str, str | None]:
    """What a planned precision becomes in Core ML on this host, and why when it is not that."""
    if precision in ("fp32", "none"):
        if "fp32" in target.float_compute:
            return "fp32", None
        return "fp16", f"{target.runtime} computes in fp16 only (formats.coreml.float_compute)"
    if precision == "int8":
        if "int8" not in target.schemes:  # a re-applied plan made for another profile
            why = target.why_not.get("int8") or "the profile's Core ML schemes do not include int8 activations"
            return "int8-weight", f"int8 activations: {why.strip()}; the weights are int8, the activations fp16"
        if on_mac:
            return "int8", None
        return "int8-weight", (
            "int8 activations (W8A8) need coremltools' calibration, which runs the model with Core ML "
            "(macOS only); the weights are int8, the activations fp16"
        )
    if precision == "int8-dynamic":
        return "int8-weight", "Core ML has no dynamic activation quantization; the weights are int8"
    if precision == "int16":
        return "fp16", "Core ML has no 16-bit integer activations; kept in fp16"
    return precision, None


def _expectations(plan: PrecisionPlan, target: FormatTarget, on_mac: bool) -> tuple[dict[str, str], dict[str, str]]:
    """``{layer: precision Core ML will hold}`` and ``{layer: why not the plan's}`` on this host."""
    expected: dict[str, str] = {}
    not_expressible: dict[str, str] = {}
    for name, layer in plan.layers.items():
        expected[name], why = _expected(layer.precision, target, on_mac)
        if why:
            not_expressible[name] = why
    return expected, not_expressible


def _fp16_compute(plan: PrecisionPlan, target: FormatTarget, expected: dict[str, str], fp32_layers: set[str]) -> bool:
    """Whether the model's default compute precision is fp16 (else fp32)."""
    if "fp16" not in target.float_compute:
        return False
    if "fp32" not in target.float_compute:
        return True  # the Neural Engine: fp16 only
    # fp16 compute unless the plan is fp32 throughout (then an fp32 model, no op excluded)
    return plan.scheme != "none" and not (expected and len(fp32_layers) == len(expected))


def _share_constants(matches: list[WeightMatch], expected: dict[str, str], not_expressible: dict[str, str]) -> None:
    """Layers whose weight is a constant another layer matched first hold that layer's precision:
    coremltools stores identical weights once. Updates ``expected`` and ``not_expressible``."""
    first_by_const: dict[str, WeightMatch] = {}
    for match in matches:
        first = first_by_const.setdefault(match.const, match)
        if first.layer != match.layer and expected[first.layer] != expected[match.layer]:
            not_expressible[match.layer] = (
                f"it shares its weight constant with {first.layer} (coremltools stores identical weights once), "
                f"so it holds {expected[first.layer]}"
            )
            expected[match.layer] = expected[first.layer]


def _save(mlmodel, out: Path) -> None:
    """Save ``mlmodel`` to ``out`` through a partial copy, canonicalized, replacing what was there."""
    tmp = out.with_name(f".partial-{out.name}")  # coremltools wants the .mlpackage suffix
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with quiet():
            mlmodel.save(str(tmp))
        canonicalize_mlpackage(tmp)  # same model -> same bytes (edgeport/core/reproducible.py says why)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_back(
    out: Path, matches: list[WeightMatch], plan: PrecisionPlan, described: dict[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The saved package's structure (with each matched node's weight entry under ``"layers"``)
    and ``{layer: precision found}``."""
    structure = inspect_package(out)
    applied, found_by_node = applied_precisions(structure, matches, plan)
    for match in matches:
        found = found_by_node.get(match.onnx_node)
        if found is not None and match.onnx_node in described:
            found["compression"] = described[match.onnx_node]
    structure["layers"] = {m.onnx_node: found_by_node.get(m.onnx_node) for m in matches}
    return structure, applied


def _check_applied(
    plan: PrecisionPlan, expected: dict[str, str], applied: dict[str, str], not_expressible: dict[str, str]
) -> None:
    """Record in ``not_expressible`` each layer the package does not hold as expected."""
    for name in plan.layers:
        want = expected[name]
        got = applied.get(name)
        if got is None:
            not_expressible.setdefault(name, "its weight was not found in the saved package")
        elif got != want and name not in not_expressible:
            not_expressible[name] = f"the package holds {got}, the plan asked for {want} (coremltools did not apply it)"


def _image_notes(images: dict[str, ImageInput], structure: dict[str, Any]) -> list[str]:
    """One note per image input; ConversionError when the package does not take it as that image."""
    notes = []
    for image in images.values():
        held = next((i for i in structure["inputs"] if i["name"] == image.name), {})
        if held.get("type") != "imageType" or held.get("color_layout") != image.color_layout:
            raise ConversionError(f"the package's input {image.name!r} is not the {image.color_layout} image asked for")
        notes.append(
            f"Core ML image input {image.name!r}: 8-bit {image.color_layout} pixels, input = "
            f"{image.scale:.6g} x pixel + {[round(b, 6) for b in image.bias]} (from --preprocess {image.preprocess})"
        )
    return notes


def export_coreml(
    source: SourceModel,
    model: onnx.ModelProto,
    plan: PrecisionPlan,
    profile: DeviceProfile,
    out: Path,
    output_names: list[str],
    batch: int,
    converted: dict | None = None,
    calibration_samples: list[dict[str, np.ndarray]] | None = None,
    images: dict[str, ImageInput] | None = None,
) -> CoreMLExport:
    """Convert ``source`` to an ``.mlpackage`` at ``out`` following ``plan``; check what was written.

    ``model`` is the fp32 ONNX model the plan names (its weights identify the layers);
    ``converted`` is a cache of uncompressed conversions keyed by (fp16, fp32 layers), reused
    across the plans of a search (with the same ``images``: inputs given as Core ML image types).
    Returns the CoreMLExport with the per-layer ``applied`` precisions read back from the saved
    package. Raises ConversionError (exit 4) when no
    conversion route works or the package cannot be read back.
    """
    import_coremltools()
    target = coreml_target(profile)
    on_mac = can_predict()
    expected, not_expressible = _expectations(plan, target, on_mac)
    fp32_layers = {name for name, precision in expected.items() if precision == "fp32"}
    fp16 = _fp16_compute(plan, target, expected, fp32_layers)
    key = (fp16, frozenset(fp32_layers) if fp16 else frozenset())
    cache = converted if converted is not None else {}
    if key not in cache:
        keep = fp32_selector(model, plan, fp32_layers) if fp16 and fp32_layers else None
        cache[key] = convert_source(source, output_names, batch, target, fp16, keep, images)
    mlmodel, route, notes = cache[key]
    notes = list(notes)
    matches, missing = match_layers(mlmodel, model, plan)
    for name, why in missing.items():
        not_expressible.setdefault(name, why)
    _share_constants(matches, expected, not_expressible)
    compressed_plan = _plan_with(plan, expected)
    mlmodel, described = compress_weights(mlmodel, matches, compressed_plan, profile)
    if on_mac and any(p == "int8" for p in expected.values()) and calibration_samples:
        mlmodel = quantize_activations(mlmodel, matches, compressed_plan, calibration_samples)
    _save(mlmodel, out)
    structure, applied = _read_back(out, matches, plan, described)
    _check_applied(plan, expected, applied, not_expressible)
    notes.extend(_image_notes(images or {}, structure))
    return CoreMLExport(
        out,
        route,
        "fp16" if fp16 else "fp32",
        target.compute_units or "ALL",
        target.minimum_deployment_target or "iOS16",
        [i["name"] for i in structure["inputs"]],
        [o["name"] for o in structure["outputs"]],
        applied,
        not_expressible,
        matches,
        structure,
        notes,
        dict(images or {}),
    )


def _plan_with(plan: PrecisionPlan, precisions: dict[str, str]) -> PrecisionPlan:
    """A copy of ``plan`` with each layer's precision replaced by ``precisions[layer]``."""
    result = copy.deepcopy(plan)
    for name, layer in result.layers.items():
        layer.precision = precisions.get(name, layer.precision)
    return result
