"""The shipped device entries: breadth, and each entry's engines agree with its own facts."""

from __future__ import annotations

import pytest

from edgeport.profiles import shipped_profiles
from edgeport.profiles.devices.catalogue import DATA_DIR, load_catalogue, read_device_file
from edgeport.profiles.devices.schema import Device

DEVICES = load_catalogue()
PROFILES = shipped_profiles()
# The helper files written as data only (more_*.yaml): every accelerator they list is either used by
# an engine or explained in a note.
MORE = [d for path in sorted(DATA_DIR.glob("more_*.yaml")) for d in read_device_file(path)]


def _engines(device: Device) -> list[tuple[str, str, str]]:
    return [(acc, fmt, name) for acc, formats in device.engines.items() for fmt, name in formats.items()]


def test_catalogue_has_110_devices_across_the_groups() -> None:
    assert len(DEVICES) >= 110
    wanted = {
        "iphone-12", "iphone-16-pro", "ipad-air-m1", "ipad-pro-m4", "macbook-air-m1", "macbook-pro-16-m4-max",
        "galaxy-s22-exynos", "galaxy-s25", "pixel-6", "pixel-9-pro", "vivo-x100-pro", "poco-f5",
        "raspberry-pi-400", "jetson-xavier-nx", "jetson-agx-orin-64gb", "radxa-rock-5b", "coral-dev-board-mini",
        "core-i7-8700", "core-ultra-7-258v", "xeon-platinum-8480-plus", "ryzen-7-8840u", "epyc-9654",
        "rtx-2060", "rtx-3090", "tesla-t4", "a100-80gb", "h100",
    }  # fmt: skip
    assert wanted <= set(DEVICES)


@pytest.mark.parametrize("device", DEVICES.values(), ids=lambda d: d.id)
def test_every_engine_is_a_shipped_profile_that_runs_the_format(device: Device) -> None:
    for acc, fmt, name in _engines(device):
        assert name in PROFILES, (device.id, acc, fmt, name)
        assert fmt in PROFILES[name].formats, f"{device.id}: {name} does not run {fmt}"


@pytest.mark.parametrize("device", DEVICES.values(), ids=lambda d: d.id)
def test_cpu_engine_matches_the_isa(device: Device) -> None:
    for fmt, name in device.engines.get("cpu", {}).items():
        features = set(device.cpu.features)
        if name == "arm64-neon":
            assert device.cpu.arch == "arm64" and "dotprod" in features, (device.id, fmt)
        elif name == "x86-avx512-vnni":
            assert device.cpu.arch == "x86-64" and features & {"avx512-vnni", "avx-vnni"}, (device.id, fmt)
        elif name == "x86-avx2":
            assert "avx2" in features and not features & {"avx512-vnni", "avx-vnni"}, (device.id, fmt)
        else:
            assert name == "generic-cpu", (device.id, fmt, name)
    if device.cpu and device.cpu.arch == "arm64" and "dotprod" not in device.cpu.features:
        assert set(device.engines.get("cpu", {}).values()) <= {"generic-cpu"}, device.id


@pytest.mark.parametrize("device", DEVICES.values(), ids=lambda d: d.id)
def test_accelerator_engines_match_the_hardware(device: Device) -> None:
    names = {name for _, _, name in _engines(device)}
    if "nvidia-tensorrt" in names:
        capability = device.gpu.cuda_compute_capability
        assert capability is not None, device.id
        # TensorRT's int8 needs compute capability 6.1 or later.
        major, minor = (int(p) for p in capability.split("."))
        assert device.overrides.gpu_int8 is ((major, minor) >= (6, 1)), device.id
    if "android-gpu" in names:
        assert device.overrides.gpu_int8 is False, device.id  # the LiteRT GPU delegate runs float only
    if "qualcomm-htp" in names:
        assert device.npu.generation.startswith("HTP v") and device.overrides.int16_activations, device.id
    if "apple-ane" in names:
        assert "Neural Engine" in device.npu.name, device.id
    if device.npu is not None and device.npu.name.startswith("Apple Neural Engine"):
        # W8A8 runs on the Neural Engine from A17 Pro / M4 on (coremltools "Quantization: Performance").
        newer = device.npu.generation.startswith(("A17", "A18", "M4"))
        assert ("int8" in device.npu.precisions) is newer, device.id


@pytest.mark.parametrize("device", MORE, ids=lambda d: d.id)
def test_unused_accelerators_are_explained(device: Device) -> None:
    for acc in ("gpu", "npu"):
        if getattr(device, acc) is not None and not device.engines.get(acc):
            assert acc in device.notes, f"{device.id}: its {acc} runs no engine and has no note"
    assert device.sources, device.id
