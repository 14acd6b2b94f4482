"""This host seen through the catalogue: its CPU features in the catalogue's words, and the
catalogue device it is, when it is one (``edgeport profiles detect``).

On arm64 Linux the features come from /proc/cpuinfo's ``Features`` line, and from the kernel's
hwcaps (``getauxval(AT_HWCAP)``/``AT_HWCAP2``) when that line is missing (some containers and
emulators show no /proc/cpuinfo). The bit numbers are Linux's
``arch/arm64/include/uapi/asm/hwcap.h``. The pure functions take text and numbers, so they are
tested with sample values on any host.
"""

from __future__ import annotations

import ctypes
import platform
import re
from collections.abc import Iterable
from pathlib import Path

from edgeport.profiles.devices.schema import Device
from edgeport.profiles.hardware import host_arch
from edgeport.runtime.host import cpu_model

# Linux /proc/cpuinfo names -> the catalogue's cpu.features words.
LINUX_TO_CATALOGUE = {
    "asimd": "neon",
    "asimddp": "dotprod",
    "i8mm": "i8mm",
    "asimdhp": "fp16",
    "bf16": "bf16",
    "sve": "sve",
    "sve2": "sve2",
    "sme": "sme",
    "avx2": "avx2",
    "avx512f": "avx512",
    "avx512_vnni": "avx512-vnni",
    "avx_vnni": "avx-vnni",
    "avx512_bf16": "avx512-bf16",
    "avx512_fp16": "avx512-fp16",
    "amx_int8": "amx",
}
# arm64 AT_HWCAP and AT_HWCAP2 bits (Linux uapi hwcap.h), by their /proc/cpuinfo names.
HWCAP_BITS = {"fp": 0, "asimd": 1, "fphp": 9, "asimdhp": 10, "asimddp": 20, "sve": 22}
HWCAP2_BITS = {"sve2": 1, "svei8mm": 9, "svebf16": 12, "i8mm": 13, "bf16": 14, "sme": 23}
AT_HWCAP, AT_HWCAP2 = 16, 26


def decode_hwcaps(hwcap: int, hwcap2: int) -> set[str]:
    """Return the /proc/cpuinfo feature names set in arm64 ``AT_HWCAP``/``AT_HWCAP2`` values."""
    found = {name for name, bit in HWCAP_BITS.items() if hwcap >> bit & 1}
    return found | {name for name, bit in HWCAP2_BITS.items() if hwcap2 >> bit & 1}


def read_hwcaps() -> set[str]:
    """Return this arm64 Linux host's hwcap features (empty elsewhere or when libc has no getauxval)."""
    if platform.system() != "Linux" or host_arch() != "arm64":
        return set()
    try:
        getauxval = ctypes.CDLL(None).getauxval
    except (OSError, AttributeError):
        return set()
    getauxval.restype = ctypes.c_ulong
    getauxval.argtypes = [ctypes.c_ulong]
    return decode_hwcaps(getauxval(AT_HWCAP), getauxval(AT_HWCAP2))


def catalogue_features(flags: Iterable[str]) -> tuple[str, ...]:
    """Return the catalogue feature words for Linux CPU flags, sorted."""
    return tuple(sorted({LINUX_TO_CATALOGUE[f] for f in flags if f in LINUX_TO_CATALOGUE}))


def host_strings() -> list[str]:
    """Return what names this machine: the CPU model, an ARM board's Hardware/Model line and the
    device-tree model (Raspberry Pi, Jetson)."""
    cpu, hardware = cpu_model()
    strings = [cpu] + ([hardware] if hardware else [])
    try:
        strings.append(Path("/proc/device-tree/model").read_text(errors="replace").strip("\x00\n "))
    except OSError:
        pass
    return [s for s in strings if s]


def _key(text: str) -> str:
    """Lower-case alphanumerics of ``text``, without (R)/(TM) marks, for substring matching."""
    text = re.sub(r"\((r|tm|c)\)", "", text.lower())
    return re.sub(r"[^a-z0-9]", "", text)


def closest_device(strings: Iterable[str], arch: str, devices: dict[str, Device]) -> tuple[Device | None, str]:
    """Return the catalogue device whose name, alias or SoC appears in the host's ``strings``
    (the longest such name wins; the CPU architecture must agree) and the name that matched.

    Returns ``(None, "")`` when no device matches.
    """
    haystack = " ".join(_key(s) for s in strings)
    best: tuple[int, Device | None, str] = (0, None, "")
    for device in devices.values():
        if device.cpu is None or device.cpu.arch != arch:
            continue
        soc = re.sub(r"\(.*?\)", "", device.soc)  # "Intel Core Ultra 7 155H (Meteor Lake)" -> the model
        for name in (device.name, *device.aliases, soc):
            key = _key(name)
            # Short keys ("M2") would match anything; a name needs some length to count.
            if len(key) >= 6 and key in haystack and len(key) > best[0]:
                best = (len(key), device, name)
    return best[1], best[2]


def describe_match(device: Device | None, matched: str, features: tuple[str, ...], strings: list[str]) -> str:
    """Return the line ``profiles detect`` prints about the catalogue: the device, or none."""
    if device is None:
        what = "; ".join(strings) or "unknown CPU"
        return f"device: none of the catalogue's devices matches this host ({what})"
    line = f"device: {device.name} ({device.id}; matched {matched!r})"
    missing = [f for f in device.cpu.features if f not in features] if device.cpu and features else []
    if missing:
        line += f"; the catalogue lists features this host does not show: {', '.join(missing)}"
    return line
