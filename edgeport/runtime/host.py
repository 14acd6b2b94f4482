"""This host, described for reports: OS, CPU model, cores and the CPU features that matter to
the runtimes. Standard library only: the device harness ships this file to other machines."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

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


_INTERESTING_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "fphp", "sve")


def host_description() -> dict[str, Any]:
    """Return a short description of this machine (OS, CPU, core count)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "cpu_flags": sorted(f for f in cpu_flags() if f in _INTERESTING_FLAGS),
    }
