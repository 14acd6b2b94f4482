"""Device resolution: every catalogue device, every format and accelerator it runs, every scheme
asked; the resolved scheme must be one that device's engine runs."""

from __future__ import annotations

import pytest

from edgeport.core.errors import InputError
from edgeport.profiles import resolve_profile, resolve_scheme
from edgeport.profiles.devices.catalogue import load_catalogue
from edgeport.profiles.devices.resolve import coreml_generation, device_profile, engine_profile
from edgeport.profiles.schema import COREML_SCHEME_MIN_TARGET, COREML_TARGETS, SCHEMES

DEVICES = load_catalogue()
CASES = [(d.id, f, a) for d in DEVICES.values() for f in d.formats() for a in d.accelerators(f)]


def test_cases_cover_the_catalogue() -> None:
    assert {c[0] for c in CASES} == set(DEVICES)
    assert len(CASES) >= 40


@pytest.mark.parametrize(("device_id", "fmt", "accel"), CASES)
def test_every_device_resolves_to_a_scheme_its_engine_runs(device_id: str, fmt: str, accel: str) -> None:
    device = DEVICES[device_id]
    profile, why = resolve_profile(f"{device_id}:{accel}", fmt)
    assert profile.device is not None and profile.device.id == device_id and profile.accelerator == accel
    assert device.name in why and device.engines[accel][fmt] in why
    target = profile.formats[fmt]
    engine = engine_profile(device.engines[accel][fmt])
    for asked in SCHEMES:
        try:
            resolve_scheme(engine, asked, fmt)
        except InputError:  # the engine itself has nothing near (palettize-8 on an int8-only NPU)
            with pytest.raises(InputError):
                resolve_scheme(profile, asked, fmt)
            continue
        resolution = resolve_scheme(profile, asked, fmt)
        assert resolution.scheme in target.schemes, (asked, resolution)
        if accel == "gpu" and device.overrides.gpu_int8 is not True:
            assert resolution.compute != "int8", (asked, resolution)  # no int8 activations on the GPU
        if accel == "npu" and device.npu and device.npu.precisions and "int8" not in device.npu.precisions:
            assert resolution.compute != "int8", (asked, resolution)
        if resolution.scheme == "int16":
            assert profile.int16_activations
    if fmt == "coreml":
        generation = COREML_TARGETS[target.minimum_deployment_target]
        assert generation <= coreml_generation(device)  # never above the device's newest OS
        assert all(COREML_SCHEME_MIN_TARGET.get(s, 0) <= generation for s in target.schemes)


def test_default_accelerator_and_names() -> None:
    for name in ("pixel-8", "Pixel 8", "PIXEL8", " pixel 8 "):
        profile, _ = resolve_profile(name, "tflite")
        assert profile.name == "pixel-8-gpu" and profile.formats["tflite"].delegate == "gpu"
    profile, _ = resolve_profile("pixel-8:cpu", "tflite")
    assert profile.formats["tflite"].delegate == "xnnpack" and profile.cpu_arch == "arm64"


def test_pixel_8_int8_decision_cites_the_tpu_and_the_gpu_delegate() -> None:
    profile, why = resolve_profile("Pixel 8", "tflite")
    assert "Tensor G3 TPU is not reachable through LiteRT's public delegates" in why
    resolution = resolve_scheme(profile, "int8", "tflite")
    assert (resolution.scheme, resolution.compute) == ("int8-weight", "fp16")
    assert "pixel-8" in resolution.decision["why"] and "GPU delegate" in resolution.decision["why"]


def test_coreml_target_is_capped_by_the_newest_os() -> None:
    # The iPhone X stops at iOS 16: apple-metal's macOS15 (iOS18-level) target drops to iOS16,
    # and 4-bit per-block weights (iOS18) go with it.
    profile, _ = resolve_profile("iPhone X", "coreml")
    target = profile.formats["coreml"]
    assert target.minimum_deployment_target == "iOS16" and "int4-weight" not in target.schemes
    resolution = resolve_scheme(profile, "int4-weight", "coreml")
    assert resolution.scheme == "int8-weight" and "newest OS is iOS 16" in resolution.decision["why"]
    # A Mac keeps macOS names; an iPhone on iOS 26 gets the engine's own target in iOS names.
    assert resolve_profile("macbook-air-m2:gpu", "coreml")[0].formats["coreml"].minimum_deployment_target == "macOS15"
    assert resolve_profile("iphone-15-pro:gpu", "coreml")[0].formats["coreml"].minimum_deployment_target == "iOS18"
    assert resolve_profile("iphone-15-pro", "coreml")[0].formats["coreml"].minimum_deployment_target == "iOS17"


def test_npu_precisions_narrow_the_engine() -> None:
    # The A16 Neural Engine has no int8 compute (W8A8 is accelerated from A17 Pro / M4 on).
    a16, _ = resolve_profile("iPhone 15", "coreml")
    a17, _ = resolve_profile("iPhone 15 Pro", "coreml")
    assert "int8" not in a16.formats["coreml"].schemes and "int8" in a17.formats["coreml"].schemes
    assert resolve_scheme(a17, "int8", "coreml").scheme == "int8"
    assert "A16" in resolve_scheme(a16, "int8", "coreml").decision["why"]


def test_gpu_int8_override() -> None:
    nano, _ = resolve_profile("Jetson Nano", "onnx")
    orin, _ = resolve_profile("Jetson Orin Nano", "onnx")
    assert "int8" not in nano.formats["onnx"].schemes and "int8" in orin.formats["onnx"].schemes
    assert "compute capability 5.3" in resolve_scheme(nano, "int8", "onnx").decision["why"]


def test_device_that_cannot_run_the_format() -> None:
    with pytest.raises(InputError, match="Core ML runs only on Apple devices and Pixel 8 runs Android"):
        resolve_profile("Pixel 8", "coreml")
    with pytest.raises(InputError, match="cannot run tflite on its npu: the Tensor G3 TPU"):
        resolve_profile("pixel-8:npu", "tflite")
    with pytest.raises(InputError, match="it has no npu"):
        resolve_profile("raspberry-pi-5:npu", "onnx")


def test_unknown_device_lists_close_matches() -> None:
    with pytest.raises(InputError) as info:
        resolve_profile("Pixle 8", "tflite")
    line = info.value.one_line()
    assert "\n" not in line and "did you mean 'Pixel 8'" in line and "arm64-neon" in line


def test_engine_profiles_resolve_as_before() -> None:
    profile, why = resolve_profile("arm64-neon", "tflite")
    assert profile.name == "arm64-neon" and profile.device is None and why.endswith("shipped profile arm64-neon")
    assert resolve_profile("metal")[0].name == "apple-metal"


def test_device_profile_keeps_only_formats_of_the_same_engine() -> None:
    device = DEVICES["jetson-orin-nano"]
    profile, _ = device_profile(device, "gpu", "onnx")
    assert set(profile.formats) == {"onnx"} and profile.accelerator == "gpu"
    assert "jetson-orin-nano" in profile.name
