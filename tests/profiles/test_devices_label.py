"""The latency label's host qualifier (profiles/hardware.py): said when the target's CPU
architecture or accelerator is not this host's, never for a run on the device."""

from __future__ import annotations

import pytest
import yaml

from edgeport.core.errors import InputError
from edgeport.profiles import PROFILE_DIR, load_profile_file, resolve_profile
from edgeport.profiles.hardware import host_arch, host_qualifier, profile_qualifier, qualify

MEASURED = "measured on the target's runtime (LiteRT, XNNPACK, this host)"


def test_device_cpu_on_another_architecture() -> None:
    pi5, _ = resolve_profile("raspberry-pi-5", "tflite")
    assert profile_qualifier(pi5, "x86_64") == "target runtime on this x86-64 host, not the device's Cortex-A76"
    label = qualify(MEASURED, profile_qualifier(pi5, "x86_64"))
    assert label == f"{MEASURED}; target runtime on this x86-64 host, not the device's Cortex-A76"
    # On an arm64 host the architecture agrees: no qualifier.
    assert profile_qualifier(pi5, "aarch64") is None


def test_engine_profile_without_device() -> None:
    neon, _ = resolve_profile("arm64-neon", "tflite")
    assert profile_qualifier(neon, "x86_64") == "target runtime on this x86-64 host, not an arm64 CPU"
    vnni, _ = resolve_profile("x86-avx512-vnni", "onnx")
    assert profile_qualifier(vnni, "x86_64") is None
    assert profile_qualifier(vnni, "arm64") == "target runtime on this arm64 host, not an x86-64 CPU"
    generic, _ = resolve_profile("generic-cpu", "onnx")
    assert profile_qualifier(generic, "x86_64") is None  # any CPU: this one is one


def test_accelerators_are_never_this_hosts_cpu() -> None:
    pixel, _ = resolve_profile("Pixel 8", "tflite")
    assert profile_qualifier(pixel, "x86_64") == (
        "target runtime on this x86-64 host's CPU, not the device's Arm Mali-G715 MC10"
    )
    trt, _ = resolve_profile("cuda", "onnx")
    assert profile_qualifier(trt, "aarch64") == "target runtime on this arm64 host's CPU, not a GPU"


def test_only_measured_labels_are_qualified() -> None:
    emulated = "emulated: ran LiteRT with XNNPACK on this host's CPU; the target's gpu delegate is not available"
    assert qualify(emulated, "target runtime on this x86-64 host, not an arm64 CPU") == emulated
    assert qualify(MEASURED, None) == MEASURED
    # An old manifest without the fields: no qualifier, as before.
    assert host_qualifier(None, "cpu", None, "x86_64") is None
    assert host_arch("AMD64") == "x86-64" and host_arch("aarch64") == "arm64"


def test_engine_profile_hardware_fields_are_validated(tmp_path) -> None:
    data = yaml.safe_load((PROFILE_DIR / "arm64-neon.yaml").read_text())
    assert load_profile_file(PROFILE_DIR / "arm64-neon.yaml").cpu_arch == "arm64"
    for field, value, allowed in (("cpu_arch", "riscv", "arm64, x86-64"), ("accelerator", "tpu", "cpu, gpu, npu")):
        path = tmp_path / f"{field}.yaml"
        path.write_text(yaml.safe_dump({**data, field: value}))
        with pytest.raises(InputError) as info:
            load_profile_file(path)
        assert f"field '{field}'" in info.value.one_line() and allowed in info.value.one_line()
