"""Where latency was measured, compared with the hardware the profile targets: the one place the
latency label's host qualifier is written.

A TFLite artifact for ``arm64-neon`` timed on an x86-64 host ran in the target's runtime (LiteRT
with XNNPACK) but not on the target's CPU. When the profile's CPU architecture (from its device,
or the engine profile's ``cpu_arch``) or its accelerator differs from this host's, the label says
so: "target runtime on this x86-64 host, not the device's Cortex-A76". A run on the device itself
(``edgeport verify BUNDLE --runner ssh://...``) needs no qualifier and gets none.
"""

from __future__ import annotations

import platform
from typing import Any

from edgeport.profiles.schema import DeviceProfile

ARCHES = {"x86_64": "x86-64", "amd64": "x86-64", "x64": "x86-64", "aarch64": "arm64", "arm64": "arm64"}
_ACCELERATOR_NAMES = {"gpu": "a GPU", "npu": "an NPU"}


def host_arch(machine: str | None = None) -> str:
    """Return the catalogue's name for this (or ``machine``'s) CPU architecture: arm64, x86-64 or the raw name."""
    machine = (machine if machine is not None else platform.machine()).lower()
    return ARCHES.get(machine, machine or "unknown")


def host_qualifier(
    cpu_arch: str | None,
    accelerator: str,
    device: dict[str, Any] | None,
    machine: str | None = None,
) -> str | None:
    """Return why a timing on this host is not the target's hardware, or None when it may be.

    ``cpu_arch`` and ``accelerator`` are the profile's; ``device`` its catalogue facts
    (``cpu_name``, ``accelerator_name``; None for an engine profile). ``machine`` defaults to
    this host's. An accelerator (gpu, npu) never runs on this host's CPU runtime; a CPU profile
    is qualified only when its architecture is known and differs from the host's.
    """
    arch = host_arch(machine)
    if accelerator != "cpu":
        name = (device or {}).get("accelerator_name")
        target = f"the device's {name}" if name else _ACCELERATOR_NAMES.get(accelerator, accelerator)
        return f"target runtime on this {arch} host's CPU, not {target}"
    if cpu_arch is None or cpu_arch == arch:
        return None
    name = (device or {}).get("cpu_name")
    target = f"the device's {name}" if name else f"an {cpu_arch} CPU"
    return f"target runtime on this {arch} host, not {target}"


def profile_qualifier(profile: DeviceProfile, machine: str | None = None) -> str | None:
    """:func:`host_qualifier` for a resolved profile (its device facts included)."""
    device = profile.as_dict().get("device")
    return host_qualifier(profile.cpu_arch, profile.accelerator, device, machine)


def qualify(label: str, qualifier: str | None) -> str:
    """Return ``label`` with the host qualifier appended when the label claims a measurement on
    the target's runtime; emulated and not-run labels already say they are not the device's."""
    if qualifier is None or not label.startswith("measured"):
        return label
    return f"{label}; {qualifier}"
