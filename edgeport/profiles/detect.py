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
from collections.abc import Iterable

from edgeport.runtime.host import cpu_flags, parse_cpuinfo  # noqa: F401  (parse_cpuinfo: re-exported)


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
