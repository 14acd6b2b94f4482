"""Host detection: which shipped profile describes the CPU edgeport runs on.

``--optimize_for auto`` and ``--optimize_for cpu`` both mean the host CPU: that is what ONNX
Runtime's CPU provider and the local verification run on. On Apple silicon they pick
``arm64-neon`` (the CPU cores), not ``apple-metal``/``apple-ane``: the GPU and the Neural Engine
are separate targets with other precisions, and a user asks for them by name.

``choose_profile(machine, system, flags)`` is the pure decision, testable with any flags;
``detect_host_profile()`` feeds it the real host's values.
"""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path

# macOS sysctl names -> the Linux /proc/cpuinfo flag names this module reasons with.
_DARWIN_FLAGS = {
    "hw.optional.arm.FEAT_DotProd": "asimddp",
    "hw.optional.neon": "asimd",
    "hw.optional.avx2_0": "avx2",
    "hw.optional.avx512vnni": "avx512_vnni",
}


def _darwin_flags() -> set[str]:
    """Return CPU flags on macOS from ``sysctl hw.optional`` (empty when sysctl fails)."""
    try:
        out = subprocess.run(["sysctl", "hw.optional"], capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    flags = set()
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in _DARWIN_FLAGS and value.strip() == "1":
            flags.add(_DARWIN_FLAGS[key.strip()])
    return flags


def parse_cpuinfo(text: str) -> set[str]:
    """Return the feature flags in a /proc/cpuinfo text (``flags`` on x86, ``Features`` on arm64)."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpu_flags(system: str | None = None) -> set[str]:
    """Return the host CPU's feature flags in Linux /proc/cpuinfo names (empty if unknown)."""
    system = system or platform.system()
    if system == "Darwin":
        return _darwin_flags()
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        return set()


def choose_profile(machine: str, system: str, flags: Iterable[str]) -> tuple[str, str]:
    """Return ``(profile name, reason)`` for a CPU described by machine, OS and feature flags.

    x86-64 with avx512_vnni or avx_vnni -> x86-avx512-vnni (VNNI's u8*s8 dot product is the
    fast int8 path); with avx2 -> x86-avx2; arm64 with the dot-product extension (asimddp;
    every Apple silicon chip has it) -> arm64-neon; anything else -> generic-cpu.
    """
    machine = (machine or "").lower()
    flags = set(flags)
    if machine in ("x86_64", "amd64", "x64"):
        for vnni in ("avx512_vnni", "avx_vnni"):
            if vnni in flags:
                return "x86-avx512-vnni", f"x86-64 CPU with {vnni} (u8*s8 int8 dot products)"
        if "avx2" in flags:
            return "x86-avx2", "x86-64 CPU with avx2 and no VNNI"
        if not flags:
            return "generic-cpu", "x86-64 CPU whose feature flags could not be read"
        return "generic-cpu", "x86-64 CPU without avx2"
    if machine in ("arm64", "aarch64", "armv8l"):
        if system == "Darwin":
            # All Apple silicon (M1 on) implements FEAT_DotProd; sysctl may be unavailable in a
            # sandbox, so macOS arm64 is arm64-neon even with empty flags.
            return "arm64-neon", (
                "Apple silicon CPU cores (NEON with dot product); for the GPU or the Neural Engine "
                "use --optimize_for metal or ane"
            )
        if "asimddp" in flags:
            return "arm64-neon", f"{machine} CPU with asimddp (sdot/udot int8 dot products)"
        if flags:
            return "generic-cpu", f"{machine} CPU without the dot-product extension (asimddp)"
        return "generic-cpu", f"{machine} CPU whose feature flags could not be read"
    return "generic-cpu", f"{machine or 'unknown'} CPU"


def detect_host_profile() -> tuple[str, str]:
    """Return ``(profile name, reason)`` for the host: the shipped profile that matches its CPU."""
    system = platform.system()
    return choose_profile(platform.machine(), system, cpu_flags(system))
