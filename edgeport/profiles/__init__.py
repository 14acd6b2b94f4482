"""Device profiles: shipped YAML files, user profile files, aliases, host detection, resolution."""

from __future__ import annotations

from pathlib import Path

from edgeport.core.errors import InputError
from edgeport.profiles.detect import choose_profile, detect_host_profile
from edgeport.profiles.resolve import SchemeResolution, op_class, resolve_scheme
from edgeport.profiles.schema import DeviceProfile, load_profile_file

PROFILE_DIR = Path(__file__).resolve().parent
HOST_ALIASES = ("auto", "cpu")

__all__ = [
    "HOST_ALIASES",
    "PROFILE_DIR",
    "DeviceProfile",
    "SchemeResolution",
    "choose_profile",
    "detect_host_profile",
    "load_profile_file",
    "op_class",
    "resolve_profile",
    "resolve_scheme",
    "shipped_profiles",
]


def shipped_profiles() -> dict[str, DeviceProfile]:
    """Return every profile shipped with edgeport, by name (sorted by file name)."""
    profiles = {}
    for path in sorted(PROFILE_DIR.glob("*.yaml")):
        profile = load_profile_file(path)
        profiles[profile.name] = profile
    return profiles


def resolve_profile(name_or_path: str) -> tuple[DeviceProfile, str]:
    """Resolve ``--optimize_for`` (a profile name, an alias, ``auto``/``cpu`` or a YAML path).

    Returns the profile and a sentence saying how it was chosen (for the report's decisions).
    Raises InputError for an unknown name (listing the known ones) or a missing/invalid file.
    """
    value = name_or_path.strip()
    if value.endswith((".yaml", ".yml")) or "/" in value or "\\" in value:
        path = Path(value)
        if not path.is_file():
            raise InputError(f"profile file not found: {value}")
        profile = load_profile_file(path)
        return profile, f"user profile file {value} (profile {profile.name})"
    profiles = shipped_profiles()
    if value.lower() in HOST_ALIASES:
        detected, reason = detect_host_profile()
        return profiles[detected], f"--optimize_for {value} detected the host: {reason} -> {detected}"
    lowered = value.lower()
    for profile in profiles.values():
        if lowered == profile.name.lower() or lowered in (a.lower() for a in profile.aliases):
            return profile, f"--optimize_for {value} -> shipped profile {profile.name}"
    names = sorted(list(profiles) + [a for p in profiles.values() for a in p.aliases] + list(HOST_ALIASES))
    raise InputError(f"unknown device profile {value!r}", hint=f"known: {', '.join(names)}, or a .yaml path")
