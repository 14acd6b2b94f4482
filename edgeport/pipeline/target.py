"""What one run aims at: the device profile, the quantization scheme, where the bundle goes and
how much memory it may use, resolved from the recipe before anything is loaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeport.core import limits
from edgeport.options.recipe import Recipe
from edgeport.profiles import resolve_profile, resolve_scheme
from edgeport.profiles.schema import DeviceProfile


@dataclass
class Target:
    """The resolved target of one run."""

    profile: DeviceProfile
    scheme: str  # the scheme the profile runs for the asked quantization ("auto" stays "auto")
    output_dir: Path
    memory_limit: int  # bytes


def model_display_name(input_model: str) -> str:
    """Return a short model name for folder names: the file stem or the factory's name."""
    path = Path(input_model)
    if path.exists():
        return path.stem
    return input_model.rpartition(":")[2] or path.stem


def default_output_dir(recipe: Recipe, profile: DeviceProfile) -> Path:
    """Return ``out/<model>-<format>-<quantization>-<profile>``."""
    scheme = "fp32" if recipe.quantization == "none" else recipe.quantization
    return Path("out") / f"{model_display_name(recipe.input_model)}-{recipe.output_format}-{scheme}-{profile.name}"


def resolve_target(recipe: Recipe, decisions: list[dict[str, str]]) -> Target:
    """Resolve the profile and scheme (recording both choices in ``decisions``), the output folder
    and the memory limit, and check the input model's size against that limit.

    Returns the Target; raises InputError for an unknown profile, an unsupported scheme or an input
    model too large for the memory limit.
    """
    profile, why_profile = resolve_profile(recipe.optimize_for, recipe.output_format)
    decisions.append({"asked": f"--optimize_for {recipe.optimize_for}", "done": profile.name, "why": why_profile})
    resolution = resolve_scheme(profile, recipe.quantization, recipe.output_format)
    if resolution.decision:
        decisions.append(resolution.decision)
    output_dir = Path(recipe.output_dir) if recipe.output_dir else default_output_dir(recipe, profile)
    memory_limit = limits.memory_limit(recipe.max_memory)
    limits.check_input_model(recipe.input_model, memory_limit)  # before anything is loaded
    return Target(profile, resolution.scheme, output_dir, memory_limit)
