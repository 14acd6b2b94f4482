"""This host, described for reports: OS, CPU model, cores and the CPU features that matter to
the runtimes. Standard library only (numpy's version is read where it is reported): the device
harness ships this file to other machines and describes them with :func:`device_description`."""

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


def cpu_model() -> tuple[str, str | None]:
    """Return the CPU's model name (/proc/cpuinfo's ``model name``, else the platform's processor
    or machine) and an ARM board's hardware or model line (None when there is none)."""
    cpu = platform.processor() or platform.machine()
    hardware = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip().lower(), value.strip()
            if key == "model name" and value:
                cpu = value
                break
            # ARM boards: "Hardware : BCM2835", "Model : Raspberry Pi 4" (x86's "model" is a number)
            if key in ("hardware", "model") and value and not value.isdigit():
                hardware = value
    except OSError:
        pass
    return cpu, hardware


def host_description() -> dict[str, Any]:
    """Return a short description of this machine (OS, CPU, core count)."""
    return {
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpu": cpu_model()[0],
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "cpu_flags": sorted(f for f in cpu_flags() if f in _INTERESTING_FLAGS),
    }


def _os_name() -> str:
    """Return the OS with the distribution's or macOS's name when known (``Debian ... (Linux 6.1)``)."""
    os_name = f"{platform.system()} {platform.release()}"
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = f"{line.split('=', 1)[1].strip().strip(chr(34))} ({os_name})"
    except OSError:
        pass
    if platform.system() == "Darwin":
        os_name = f"macOS {platform.mac_ver()[0]} ({os_name})"
    return os_name


def device_description() -> dict[str, Any]:
    """Return this machine as the device harness reports it: :func:`host_description` with its
    hostname, the distribution's name in ``os``, numpy's version and an ARM board's ``chip``."""
    import numpy as np  # the harness checked it is there; this module stays importable without it

    description = {"hostname": platform.node(), **host_description(), "os": _os_name(), "numpy": np.__version__}
    hardware = cpu_model()[1]
    if hardware:
        description["chip"] = hardware
    return description
