"""Host detection: which shipped profile describes the machine edgeport runs on."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_flags() -> set[str]:
    """Return the host CPU's feature flags (from /proc/cpuinfo on Linux; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def detect_host_profile() -> tuple[str, str]:
    """Return ``(profile name, reason)`` for the host: the shipped profile that matches its CPU."""
    machine = platform.machine().lower()
    flags = cpu_flags()
    if machine in ("x86_64", "amd64"):
        if "avx512_vnni" in flags or "avx_vnni" in flags:
            vnni = "avx512_vnni" if "avx512_vnni" in flags else "avx_vnni"
            return "x86-avx512-vnni", f"x86-64 CPU with {vnni} (int8 dot products)"
        if "avx2" in flags:
            return "x86-avx2", "x86-64 CPU with avx2 and no VNNI"
        return "generic-cpu", "x86-64 CPU without avx2"
    if machine in ("arm64", "aarch64"):
        if platform.system() == "Darwin":
            return "generic-cpu", "Apple silicon CPU (ONNX Runtime CPU provider)"
        return "generic-cpu", f"{machine} CPU"
    return "generic-cpu", f"{machine or 'unknown'} CPU"
