"""The device catalogue's schema (version 1): one real device, read from YAML and validated.

A device is what a user owns ("Pixel 8", "Jetson Orin Nano"); an engine profile
(``profiles/*.yaml``) is how one of its runtimes sees it. A device entry lists its SoC, CPU, GPU,
NPU, memory and OS versions, which engine profile runs each output format on each of its
accelerators (``engines``), the default accelerator per format, why an accelerator it has is not
reachable (``notes``), a few ``overrides`` of the engine profile, and a source URL per fact.

Validation errors are one line naming the file, the device, the field and the allowed values.
Unknown fields are refused, so a typo never falls back to a default silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeport.core.errors import InputError
from edgeport.core.registry import profile_sections
from edgeport.profiles.schema import COREML_TARGETS

SCHEMA_VERSION = 1
KINDS = ("phone", "tablet", "laptop", "desktop", "sbc", "gpu", "accelerator", "mac")
ARCHES = ("arm64", "x86-64")
CPU_FEATURES = (
    # Arm: NEON, sdot/udot, smmla (int8 matrix multiply), fp16 arithmetic, bf16, SVE, SVE2, SME.
    "neon", "dotprod", "i8mm", "fp16", "bf16", "sve", "sve2", "sme",
    # x86: AVX2, AVX-512 (F), AVX-512 VNNI, AVX-VNNI (VEX), AVX-512 BF16, AVX-512 FP16, AMX.
    "avx2", "avx512", "avx512-vnni", "avx-vnni", "avx512-bf16", "avx512-fp16", "amx",
)  # fmt: skip
GPU_APIS = ("metal", "opencl", "vulkan", "cuda", "directml", "opengl-es")
NPU_PRECISIONS = ("int8", "int16-activations", "fp16", "int4-weights")
ACCELERATORS = ("cpu", "gpu", "npu")
FORMATS = profile_sections()
OS_NAMES = (
    "iOS", "iPadOS", "macOS", "Android", "Windows", "Linux", "Ubuntu", "Raspberry Pi OS", "JetPack", "Mendel Linux",
)  # fmt: skip
OVERRIDE_FIELDS = ("coreml_minimum_deployment_target", "int16_activations", "gpu_int8")
DEVICE_FIELDS = (
    "id", "name", "aliases", "vendor", "kind", "year", "soc", "cpu", "gpu", "npu", "memory_gb", "os",
    "engines", "defaults", "notes", "overrides", "sources",
)  # fmt: skip
CPU_FIELDS = ("arch", "cores", "name", "features")
GPU_FIELDS = ("name", "apis", "cuda_compute_capability")
NPU_FIELDS = ("name", "generation", "precisions")
OS_FIELDS = ("name", "versions")
_SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_URL = re.compile(r"^https?://\S+$")
_VERSION = re.compile(r"^\d+(\.\d+)*$")


@dataclass(frozen=True)
class Cpu:
    """The device's CPU: architecture, core count, its cores' name and ISA features."""

    arch: str
    cores: int
    features: tuple[str, ...]
    name: str = ""


@dataclass(frozen=True)
class Gpu:
    """The device's GPU, the compute APIs it exposes and, for NVIDIA, its CUDA compute capability."""

    name: str
    apis: tuple[str, ...]
    cuda_compute_capability: str | None = None


@dataclass(frozen=True)
class Npu:
    """The device's NPU: name, generation and the precisions it computes in (empty: unpublished)."""

    name: str
    generation: str
    precisions: tuple[str, ...]


@dataclass(frozen=True)
class OsInfo:
    """The OS family and the major versions the device runs, oldest first."""

    name: str
    versions: tuple[str, ...]

    def newest(self) -> str:
        """Return the newest version the device runs."""
        return self.versions[-1]


@dataclass(frozen=True)
class Overrides:
    """Device facts that narrow or extend its engine profiles (None: the engine's value stands)."""

    coreml_minimum_deployment_target: str | None = None
    int16_activations: bool | None = None
    gpu_int8: bool | None = None


@dataclass(frozen=True)
class Device:
    """One real device of the catalogue (see ``edgeport devices show NAME``)."""

    id: str
    name: str
    vendor: str
    kind: str
    year: int
    soc: str
    cpu: Cpu | None
    gpu: Gpu | None
    npu: Npu | None
    memory_gb: float
    os: OsInfo
    # {accelerator: {format section: engine profile name}}
    engines: dict[str, dict[str, str]]
    # {format section: accelerator}
    defaults: dict[str, str]
    notes: dict[str, str] = field(default_factory=dict)
    overrides: Overrides = field(default_factory=Overrides)
    sources: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    file: str = ""

    def formats(self) -> tuple[str, ...]:
        """Return the format sections some accelerator of the device runs, in registry order."""
        return tuple(f for f in FORMATS if any(f in e for e in self.engines.values()))

    def accelerators(self, fmt: str) -> tuple[str, ...]:
        """Return the accelerators that run format section ``fmt`` (cpu, gpu, npu order)."""
        return tuple(a for a in ACCELERATORS if fmt in self.engines.get(a, {}))


def _fail(path: Path | str, device: str, field_name: str, message: str) -> InputError:
    where = f"device {device!r}: " if device else ""
    what = f"field '{field_name}': " if field_name else ""
    return InputError(f"device file {path}: {where}{what}{message}")


class _Checker:
    """Field checks for one device entry: every failure names the file, the device and the field."""

    def __init__(self, path: Path | str, device: str) -> None:
        self.path, self.device = path, device

    def fail(self, field_name: str, message: str) -> InputError:
        return _fail(self.path, self.device, field_name, message)

    def mapping(self, where: str, data: Any, allowed: tuple[str, ...]) -> dict:
        if not isinstance(data, dict):
            raise self.fail(where, f"must be a mapping with fields from {', '.join(allowed)}")
        unknown = sorted(str(k) for k in set(data) - set(allowed))
        if unknown:
            prefix = f"{where}." if where else ""
            raise self.fail(f"{prefix}{unknown[0]}", f"unknown field; allowed: {', '.join(allowed)}")
        return data

    def text(self, where: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, "required, a non-empty string")
        return value.strip()

    def choice(self, where: str, value: Any, allowed: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise self.fail(where, f"{value!r} is not one of {', '.join(allowed)}")
        return value

    def choices(self, where: str, value: Any, allowed: tuple[str, ...]) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(where, f"must be a list from {', '.join(allowed)}")
        return tuple(self.choice(f"{where}[{i}]", v, allowed) for i, v in enumerate(value))

    def positive(self, where: str, value: Any, kind: type = int) -> Any:
        ok = isinstance(value, kind | int) and not isinstance(value, bool) and value > 0
        if not ok:
            raise self.fail(where, f"{value!r} must be a positive {'integer' if kind is int else 'number'}")
        return value

    def boolean(self, where: str, value: Any) -> bool | None:
        if value is not None and not isinstance(value, bool):
            raise self.fail(where, f"{value!r} must be true, false or absent")
        return value


def _cpu(c: _Checker, data: Any) -> Cpu | None:
    if data is None:
        return None
    data = c.mapping("cpu", data, CPU_FIELDS)
    return Cpu(
        arch=c.choice("cpu.arch", data.get("arch"), ARCHES),
        cores=c.positive("cpu.cores", data.get("cores")),
        features=c.choices("cpu.features", data.get("features", []), CPU_FEATURES),
        name=c.text("cpu.name", data["name"]) if "name" in data else "",
    )


def _gpu(c: _Checker, data: Any) -> Gpu | None:
    if data is None:
        return None
    data = c.mapping("gpu", data, GPU_FIELDS)
    apis = c.choices("gpu.apis", data.get("apis"), GPU_APIS)
    capability = data.get("cuda_compute_capability")
    if capability is not None:
        if not re.fullmatch(r"\d+\.\d+", str(capability)):
            raise c.fail("gpu.cuda_compute_capability", f"{capability!r} must be major.minor, e.g. 8.7")
        if "cuda" not in apis:
            raise c.fail("gpu.cuda_compute_capability", "applies only to a GPU whose apis list cuda")
        capability = str(capability)
    return Gpu(name=c.text("gpu.name", data.get("name")), apis=apis, cuda_compute_capability=capability)


def _npu(c: _Checker, data: Any) -> Npu | None:
    if data is None:
        return None
    data = c.mapping("npu", data, NPU_FIELDS)
    return Npu(
        name=c.text("npu.name", data.get("name")),
        generation=c.text("npu.generation", data.get("generation")),
        precisions=c.choices("npu.precisions", data.get("precisions"), NPU_PRECISIONS),
    )


def _os(c: _Checker, data: Any) -> OsInfo:
    data = c.mapping("os", data, OS_FIELDS)
    name = c.choice("os.name", data.get("name"), OS_NAMES)
    versions = data.get("versions")
    if not isinstance(versions, list) or not versions:
        raise c.fail("os.versions", "must be a non-empty list of versions, oldest first (e.g. ['17', '18'])")
    texts = tuple(str(v) for v in versions)
    for i, v in enumerate(texts):
        if not _VERSION.match(v):
            raise c.fail(f"os.versions[{i}]", f"{v!r} must be a version number such as 17 or 12.4")
    keys = [tuple(int(p) for p in v.split(".")) for v in texts]
    if keys != sorted(keys):
        raise c.fail("os.versions", "must be listed oldest first")
    return OsInfo(name=name, versions=texts)


def _engines(c: _Checker, data: Any, has: dict[str, bool]) -> dict[str, dict[str, str]]:
    data = c.mapping("engines", data, ACCELERATORS)
    engines: dict[str, dict[str, str]] = {}
    for accel, formats in data.items():
        if not has[accel]:
            raise c.fail(f"engines.{accel}", f"the device has no {accel} (its {accel} field is null)")
        formats = c.mapping(f"engines.{accel}", formats, FORMATS)
        engines[accel] = {fmt: c.text(f"engines.{accel}.{fmt}", name) for fmt, name in formats.items()}
    if not any(engines.values()):
        raise c.fail("engines", "must name at least one engine profile, e.g. {cpu: {onnx: arm64-neon}}")
    return engines


def _defaults(c: _Checker, data: Any, engines: dict[str, dict[str, str]]) -> dict[str, str]:
    data = c.mapping("defaults", data or {}, FORMATS)
    defaults = {}
    for fmt in FORMATS:
        runs = [a for a in ACCELERATORS if fmt in engines.get(a, {})]
        if fmt not in data:
            if len(runs) > 1:
                raise c.fail(f"defaults.{fmt}", f"required: {fmt} runs on {', '.join(runs)}; name one")
            if runs:
                defaults[fmt] = runs[0]
            continue
        defaults[fmt] = c.choice(f"defaults.{fmt}", data[fmt], tuple(runs) or ("(no engine runs it)",))
    return defaults


def _sources(c: _Checker, data: Any, device: dict[str, Any]) -> dict[str, str]:
    if not isinstance(data, dict) or not data:
        raise c.fail("sources", "required: a mapping fact -> URL (cpu, gpu and npu need one when present)")
    for fact, url in data.items():
        if not isinstance(url, str) or not _URL.match(url):
            raise c.fail(f"sources.{fact}", f"{url!r} must be an http(s) URL")
    # Every accelerator fact must be checkable: a reviewer follows the URL.
    for fact in ("cpu", "gpu", "npu"):
        if device.get(fact) is not None and fact not in data:
            raise c.fail(f"sources.{fact}", f"required: the device has a {fact}; give the URL its facts come from")
    return {str(k): v for k, v in data.items()}


def _overrides(c: _Checker, data: Any) -> Overrides:
    data = c.mapping("overrides", data or {}, OVERRIDE_FIELDS)
    target = data.get("coreml_minimum_deployment_target")
    if target is not None:
        target = c.choice("overrides.coreml_minimum_deployment_target", target, tuple(COREML_TARGETS))
    return Overrides(
        coreml_minimum_deployment_target=target,
        int16_activations=c.boolean("overrides.int16_activations", data.get("int16_activations")),
        gpu_int8=c.boolean("overrides.gpu_int8", data.get("gpu_int8")),
    )


def parse_device(data: Any, path: Path | str) -> Device:
    """Validate one device entry ``data`` read from ``path`` and return the :class:`Device`.

    Raises InputError naming the file, the device, the field and the allowed values.
    """
    ident = data.get("id") if isinstance(data, dict) else None
    c = _Checker(path, ident if isinstance(ident, str) else "")
    data = c.mapping("", data, DEVICE_FIELDS)
    if not isinstance(ident, str) or not _SLUG.match(ident):
        raise c.fail("id", f"{ident!r} must be a lower-case slug such as pixel-8")
    year = data.get("year")
    if isinstance(year, bool) or not isinstance(year, int) or not 1990 <= year <= 2100:
        raise c.fail("year", f"{year!r} must be a year such as 2023")
    cpu, gpu, npu = _cpu(c, data.get("cpu")), _gpu(c, data.get("gpu")), _npu(c, data.get("npu"))
    if cpu is None and data.get("kind") not in ("gpu", "accelerator"):
        raise c.fail("cpu", "required (only a gpu or accelerator card may leave it null)")
    engines = _engines(c, data.get("engines"), {"cpu": cpu is not None, "gpu": gpu is not None, "npu": npu is not None})
    notes = c.mapping("notes", data.get("notes") or {}, ACCELERATORS)
    aliases = data.get("aliases", [])
    if not isinstance(aliases, list):
        raise c.fail("aliases", "must be a list of other names")
    return Device(
        id=ident,
        name=c.text("name", data.get("name")),
        vendor=c.text("vendor", data.get("vendor")),
        kind=c.choice("kind", data.get("kind"), KINDS),
        year=year,
        soc=c.text("soc", data.get("soc")),
        cpu=cpu,
        gpu=gpu,
        npu=npu,
        memory_gb=c.positive("memory_gb", data.get("memory_gb"), float),
        os=_os(c, data.get("os")),
        engines=engines,
        defaults=_defaults(c, data.get("defaults"), engines),
        notes={k: c.text(f"notes.{k}", v) for k, v in notes.items()},
        overrides=_overrides(c, data.get("overrides")),
        sources=_sources(c, data.get("sources"), data),
        aliases=tuple(c.text(f"aliases[{i}]", a) for i, a in enumerate(aliases)),
        file=str(path),
    )


def parse_device_file(data: Any, path: Path | str) -> list[Device]:
    """Validate a whole device file (``schema_version`` and a ``devices`` list); return its devices.

    Raises InputError naming the file (and the device and field) on any schema violation.
    """
    if not isinstance(data, dict) or set(data) - {"schema_version", "devices"}:
        raise _fail(path, "", "", "a device file is a mapping with schema_version and devices")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise _fail(path, "", "schema_version", f"{data.get('schema_version')!r} is not {SCHEMA_VERSION}")
    entries = data.get("devices")
    if not isinstance(entries, list) or not entries:
        raise _fail(path, "", "devices", "must be a non-empty list of device entries")
    return [parse_device(entry, path) for entry in entries]
