"""Device profiles: shipped YAML files, user profile files, aliases, host detection, resolution."""

from __future__ import annotations

import functools
from pathlib import Path

from edgeport.core.errors import InputError
from edgeport.profiles.detect import choose_profile, detect_host_profile
from edgeport.profiles.devices.catalogue import close_matches, files_stamp, find_device, load_catalogue
from edgeport.profiles.devices.resolve import resolve_device, split_request
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
    return dict(_shipped(files_stamp(sorted(PROFILE_DIR.glob("*.yaml")))))


@functools.lru_cache(maxsize=4)
def _shipped(stamp: tuple[tuple[str, int, int], ...]) -> dict[str, DeviceProfile]:
    """The profiles of the files in ``stamp``, read once (every device resolution asks for them)."""
    profiles = {}
    for path, _, _ in stamp:
        profile = load_profile_file(path)
        profiles[profile.name] = profile
    return profiles


def resolve_profile(name_or_path: str, output_format: str | None = None) -> tuple[DeviceProfile, str]:
    """Resolve ``--optimize_for``: a profile name, an alias, ``auto``/``cpu``, a YAML path, or a
    catalogue device (``pixel-8``, ``"Pixel 8"``, ``pixel-8:gpu``), which needs ``output_format``
    to pick its engine (None: the device's first format).

    Returns the profile and a sentence saying how it was chosen (for the report's decisions).
    Raises InputError for an unknown name (listing the known ones and the close device names),
    a missing/invalid file, or a device that cannot run the format.
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
    return _resolve_catalogue(value, output_format, profiles)


def _resolve_catalogue(
    value: str, output_format: str | None, profiles: dict[str, DeviceProfile]
) -> tuple[DeviceProfile, str]:
    """Resolve ``value`` as a catalogue device (with an optional ``:cpu``/``:gpu``/``:npu``)."""
    # The catalogue is read only for names that are no engine profile: a broken user device file
    # must not stop `--optimize_for arm64-neon`.
    devices = load_catalogue()
    name, accel = split_request(value)
    device = find_device(name, devices)
    if device is not None:
        profile, why = resolve_device(device, accel, output_format)
        return profile, why
    close = close_matches(name, devices)
    names = sorted(list(profiles) + [a for p in profiles.values() for a in p.aliases] + list(HOST_ALIASES))
    did_you_mean = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    raise InputError(
        f"unknown device profile {value!r}",
        hint=f"{did_you_mean}devices: edgeport devices list; profiles: {', '.join(names)}; or a .yaml path",
    )
