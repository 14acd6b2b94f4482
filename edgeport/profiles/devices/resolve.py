"""From a device (``--optimize_for "Pixel 8"``, ``pixel-8:gpu``) to the engine profile that runs
the requested format on it, narrowed by the device's own facts.

The device names an engine profile per accelerator and format; the default accelerator per
format is data too. The engine profile is then narrowed, never widened beyond what the engine
describes: Core ML's deployment target is capped by the device's newest OS (and schemes that need
a later target are dropped), an NPU drops schemes its precisions do not include, ``gpu_int8:
false`` drops int8 on the GPU and ``int16_activations`` sets the NPU's 16-bit activations. Every
dropped scheme gets a ``why_not`` that cites the device, so the scheme decision quotes it.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

from edgeport.core.errors import InputError
from edgeport.core.registry import format_entry
from edgeport.profiles.devices.schema import ACCELERATORS, Device
from edgeport.profiles.schema import (
    COREML_SCHEME_MIN_TARGET,
    COREML_TARGETS,
    SCHEMES,
    CatalogueDevice,
    DeviceProfile,
    FormatTarget,
    load_profile_file,
)

ENGINE_DIR = Path(__file__).resolve().parents[1]
APPLE_OSES = ("iOS", "iPadOS", "macOS")
# Core ML spec generations are numbered like iOS: macOS N is iOS N+3 up to macOS 15 (see
# profiles/schema.py COREML_TARGETS); from 2025 on both are numbered 26.
_MACOS_OFFSET_UNTIL = 15
NEWEST_COREML_GENERATION = max(COREML_TARGETS.values())
LABELS = {"cpu": "CPU", "gpu": "GPU", "npu": "NPU"}


def split_request(value: str) -> tuple[str, str | None]:
    """Split ``pixel-8:gpu`` into ``("pixel-8", "gpu")``; without a known suffix, ``(value, None)``."""
    name, sep, accel = value.rpartition(":")
    if sep and accel.strip().lower() in ACCELERATORS:
        return name.strip(), accel.strip().lower()
    return value.strip(), None


def engine_profile(name: str) -> DeviceProfile:
    """Return the shipped engine profile ``name`` (a file name under edgeport/profiles/).

    Raises InputError when no shipped profile has that name.
    """
    path = ENGINE_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in ENGINE_DIR.glob("*.yaml")))
        raise InputError(f"engine profile {name!r} is not shipped", hint=f"known: {known}")
    return _engine(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _engine(path: str, mtime_ns: int) -> DeviceProfile:
    """The engine profile at ``path`` as of ``mtime_ns`` (profiles are frozen: safe to share)."""
    return load_profile_file(path)


def coreml_generation(device: Device) -> int | None:
    """Return the Core ML spec generation of the device's newest OS (iOS numbering), None off Apple."""
    if device.os.name not in APPLE_OSES:
        return None
    major = int(device.os.newest().split(".")[0])
    if device.os.name == "macOS" and major <= _MACOS_OFFSET_UNTIL:
        return major + 3
    return major


def coreml_target_name(device: Device, generation: int) -> str:
    """Return the ``minimum_deployment_target`` name for ``generation`` in the device's OS family."""
    if device.os.name == "macOS":
        return f"macOS{generation - 3}"
    return f"iOS{generation}"


def _drop(fmt: FormatTarget, reasons: dict[str, str]) -> FormatTarget:
    """Return ``fmt`` without the schemes in ``reasons``, each explained in ``why_not``."""
    gone = {s: r for s, r in reasons.items() if s in fmt.schemes}
    if not gone:
        return fmt
    schemes = tuple(s for s in fmt.schemes if s not in gone)
    return replace(fmt, schemes=schemes, why_not={**fmt.why_not, **gone})


def _coreml(device: Device, fmt: FormatTarget) -> tuple[FormatTarget | None, str]:
    """Cap Core ML's deployment target by the device's newest OS; return the format (None when
    Core ML cannot run there) and a sentence on the target chosen."""
    newest = coreml_generation(device)
    if newest is None:
        return None, f"{device.name} runs {device.os.name}, and Core ML runs only on Apple OSes"
    wanted = COREML_TARGETS[fmt.minimum_deployment_target or "iOS16"]
    override = device.overrides.coreml_minimum_deployment_target
    if override is not None:
        wanted = COREML_TARGETS[override]
    if wanted > newest:
        if override is not None:
            raise InputError(
                f"device {device.id}: overrides.coreml_minimum_deployment_target {override} is above its "
                f"newest OS ({device.os.name} {device.os.newest()})",
                hint=f"file {device.file}",
            )
        wanted = newest
    oldest = min(COREML_TARGETS.values())
    if wanted < oldest:
        return None, (
            f"edgeport writes ML Programs, which need iOS15/macOS12; {device.name}'s newest OS is "
            f"{device.os.name} {device.os.newest()}"
        )
    target = coreml_target_name(device, min(wanted, NEWEST_COREML_GENERATION))
    os_text = f"{device.os.name} {device.os.newest()}"
    reasons = {
        scheme: f"Core ML runs {scheme} from iOS{needed}/macOS{needed - 3} on; {device.name}'s newest OS is "
        f"{os_text}, so the deployment target is {target}"
        for scheme, needed in COREML_SCHEME_MIN_TARGET.items()
        if needed > COREML_TARGETS[target]
    }
    narrowed = replace(_drop(fmt, reasons), minimum_deployment_target=target)
    return narrowed, f"Core ML deployment target {target} (newest OS {os_text})"


def _npu_reasons(device: Device) -> dict[str, str]:
    """Schemes the device's NPU does not compute (from ``npu.precisions``; empty: unpublished)."""
    npu = device.npu
    if npu is None or not npu.precisions:
        return {}
    runs = f"{device.name}'s {npu.name} ({npu.generation}) computes in {', '.join(npu.precisions)}"
    reasons = {}
    if "int8" not in npu.precisions:
        reasons.update({"int8": f"{runs}: no int8", "int8-dynamic": f"{runs}: no int8"})
    if "int16-activations" not in npu.precisions:
        reasons["int16"] = f"{runs}: no 16-bit activations"
    if "int4-weights" not in npu.precisions:
        reasons["int4-weight"] = f"{runs}: no 4-bit weights"
    return reasons


def _gpu_reasons(device: Device, engine: DeviceProfile) -> dict[str, str]:
    """Schemes the device's GPU does not run (``overrides.gpu_int8``)."""
    gpu_int8 = device.overrides.gpu_int8
    if gpu_int8 is None or device.gpu is None:
        return {}
    if gpu_int8 and not any("int8" in f.schemes for f in engine.formats.values()):
        raise InputError(
            f"device {device.id}: overrides.gpu_int8 is true but engine {engine.name} runs no int8 on the GPU",
            hint=f"file {device.file}",
        )
    if gpu_int8:
        return {}
    gpu = device.gpu
    capability = f", CUDA compute capability {gpu.cuda_compute_capability}" if gpu.cuda_compute_capability else ""
    why = f"{device.name}'s {gpu.name}{capability} runs no int8 activations (overrides.gpu_int8: false)"
    return {"int8": why, "int8-dynamic": why}


def _int16(device: Device, engine: DeviceProfile, accel: str) -> tuple[bool, dict[str, str]]:
    """The profile's int16_activations on this accelerator, and schemes to drop when it is off."""
    wanted = device.overrides.int16_activations
    if accel != "npu" or wanted is None:
        return engine.int16_activations, {}
    if wanted and not any("int16" in costs for costs in engine.op_classes.values()):
        raise InputError(
            f"device {device.id}: overrides.int16_activations is true but engine {engine.name} has no int16 kernels",
            hint=f"file {device.file}",
        )
    if wanted:
        return True, {}
    return False, {"int16": f"{device.name}'s NPU runs no 16-bit activations (overrides.int16_activations: false)"}


def device_facts(device: Device, accel: str) -> CatalogueDevice:
    """Return the facts a profile resolved for ``device`` on ``accel`` carries (report and labels)."""
    cpu_name = device.cpu.name if device.cpu else ""
    names = {
        "cpu": cpu_name or f"{device.soc} CPU",
        "gpu": device.gpu.name if device.gpu else "",
        "npu": device.npu.name if device.npu else "",
    }
    return CatalogueDevice(
        id=device.id,
        name=device.name,
        accelerator=accel,
        accelerator_name=names[accel],
        cpu_arch=device.cpu.arch if device.cpu else None,
        cpu_name=cpu_name,
    )


def device_profile(device: Device, accel: str, section: str) -> tuple[DeviceProfile, list[str]]:
    """Return the engine profile ``device`` runs ``section`` with on ``accel``, narrowed by the
    device's facts, and sentences saying what was narrowed. Of the engine's formats, only those the
    device maps to that same engine on ``accel`` remain.

    Raises InputError when the device names an unknown engine or an override contradicts it.
    """
    names = device.engines[accel]
    engine = engine_profile(names[section])
    int16, int16_reasons = _int16(device, engine, accel)
    reasons = {**(_npu_reasons(device) if accel == "npu" else {}), **int16_reasons}
    if accel == "gpu":
        reasons.update(_gpu_reasons(device, engine))
    formats: dict[str, FormatTarget] = {}
    unsupported: dict[str, str] = {}
    said: list[str] = []
    for section, fmt in engine.formats.items():
        if names.get(section) != engine.name:
            others = [a for a in device.accelerators(section) if a != accel]
            where = f"; use {device.id}:{others[0]}" if others else ""
            unsupported[section] = f"{device.name}'s {accel} has no engine for {section}{where}"
            continue
        narrowed: FormatTarget | None = _drop(fmt, reasons)
        if section == "coreml":
            narrowed, sentence = _coreml(device, narrowed)
            said.append(sentence)
        if narrowed is None or not narrowed.schemes:
            unsupported[section] = f"{device.name}'s {accel} runs none of {engine.name}'s {section} schemes"
            continue
        formats[section] = narrowed
    schemes = tuple(s for s in SCHEMES if any(s in f.schemes for f in formats.values()))
    profile = replace(
        engine,
        name=f"{device.id}-{accel}",
        description=f"{device.name} {LABELS[accel]} through {engine.name}: {engine.description}",
        aliases=(),
        schemes=schemes,
        formats=formats,
        unsupported_formats={**engine.unsupported_formats, **unsupported},
        int16_activations=int16,
        notes=engine.notes + tuple(f"{device.name}: {note}" for note in device.notes.values()),
        cpu_arch=device.cpu.arch if device.cpu else engine.cpu_arch,
        accelerator=accel,
        device=device_facts(device, accel),
    )
    return profile, said


def _cannot_run(device: Device, section: str) -> InputError:
    """The one-line error for a device that has no engine for ``section``."""
    runs = "; ".join(
        f"{fmt} ({', '.join(f'{a}: {device.engines[a][fmt]}' for a in device.accelerators(fmt))})"
        for fmt in device.formats()
    )
    if section == "coreml" and device.os.name not in APPLE_OSES:
        why = f"Core ML runs only on Apple devices and {device.name} runs {device.os.name}"
    else:
        why = "its catalogue entry names no engine for it"
    return InputError(f"{device.name} cannot run {section} output: {why}", hint=f"it runs: {runs}")


def resolve_device(device: Device, accel: str | None, output_format: str | None) -> tuple[DeviceProfile, str]:
    """Return the profile ``device`` runs ``output_format`` with (on ``accel``, else the device's
    default accelerator for that format) and the sentence the report's decisions quote.

    ``output_format`` None (``edgeport profiles show``) takes the device's first format.
    Raises InputError when the device cannot run the format, or not on ``accel``.
    """
    formats = device.formats()
    section = format_entry(output_format).section(output_format) if output_format else formats[0]
    if section not in formats:
        raise _cannot_run(device, section)
    runs_on = device.accelerators(section)
    if accel is not None and accel not in runs_on:
        note = device.notes.get(accel)
        why = note or (f"it has no {accel}" if getattr(device, accel) is None else f"no engine runs {section} on it")
        raise InputError(
            f"{device.name} cannot run {section} on its {accel}: {why}",
            hint=f"{section} runs on: {', '.join(f'{device.id}:{a}' for a in runs_on)}",
        )
    chosen = accel or device.defaults[section]
    profile, said = device_profile(device, chosen, section)
    if section not in profile.formats:
        raise InputError(f"{device.name} cannot run {section} on its {chosen}: {profile.unsupported_formats[section]}")
    return profile, _why(device, chosen, section, accel is not None, profile, said)


def _why(device: Device, chosen: str, section: str, explicit: bool, profile: DeviceProfile, said: list[str]) -> str:
    """The decision sentence: device, SoC, accelerator and its engine, why this one, the others."""
    facts = profile.device
    assert facts is not None  # device_profile always sets it
    fmt = profile.formats[section]
    how = "asked for explicitly" if explicit else f"the device's default for {section}"
    parts = [
        f"device {device.name} ({device.soc}): {section} -> {LABELS[chosen]} ({facts.accelerator_name}) through "
        f"engine {device.engines[chosen][section]} ({fmt.summary()}): {how}"
    ]
    parts += [note for accel, note in device.notes.items() if accel != chosen]
    parts += said if section == "coreml" else []
    others = [a for a in device.accelerators(section) if a != chosen]
    if others:
        # The schemes each other accelerator runs, narrowed by the device as the chosen one was.
        runs = {a: device_profile(device, a, section)[0].formats.get(section) for a in others}
        parts.append(
            "also: "
            + ", ".join(
                f"{device.id}:{a} ({device.engines[a][section]}: {', '.join(runs[a].schemes) if runs[a] else '-'})"
                for a in others
            )
        )
    return "; ".join(parts)
