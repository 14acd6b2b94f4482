"""The device profile schema (version 1): what one target runs, read from YAML and validated.

Validation errors name the file, the field and the allowed values, so a user's own profile
file fails with a message they can act on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgeport.errors import InputError, describe_exception

SCHEMA_VERSION = 1
ACTIVATION_TYPES = ("uint8", "int8")
WEIGHT_TYPES = ("int8", "uint8")
SCHEMES = ("none", "fp16", "int8", "int8-dynamic")


@dataclass(frozen=True)
class Int8Scheme:
    """How the device wants int8 tensors: signedness, granularity and range."""

    activation_type: str = "uint8"
    weight_type: str = "int8"
    per_channel: bool = True
    # Without VNNI, u8*s8 multiply-adds (vpmaddubsw) can saturate; 7-bit weights avoid that.
    reduce_range: bool = False


@dataclass(frozen=True)
class OnnxRuntimeTarget:
    """The ONNX Runtime side of a profile."""

    execution_providers: tuple[str, ...] = ("CPUExecutionProvider",)


@dataclass(frozen=True)
class DeviceProfile:
    """One device as its runtime sees it (see ``edgeport profiles show NAME``)."""

    name: str
    description: str
    aliases: tuple[str, ...] = ()
    schemes: tuple[str, ...] = SCHEMES
    int8: Int8Scheme = field(default_factory=Int8Scheme)
    int8_dynamic: Int8Scheme = field(default_factory=Int8Scheme)
    onnxruntime: OnnxRuntimeTarget = field(default_factory=OnnxRuntimeTarget)
    notes: tuple[str, ...] = ()
    source: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Return the profile as JSON-ready data (for the manifest and report)."""
        return asdict(self)


def _fail(path: Path | str, field_name: str, message: str) -> InputError:
    return InputError(f"profile {path}: field '{field_name}': {message}")


def _check_keys(path: Path | str, where: str, data: dict, allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise _fail(path, f"{where}{unknown[0]}", f"unknown field; allowed: {', '.join(sorted(allowed))}")


def _choice(path: Path | str, field_name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise _fail(path, field_name, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _bool(path: Path | str, field_name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, field_name, f"{value!r} must be true or false")
    return value


def _int8_scheme(path: Path | str, where: str, data: Any) -> Int8Scheme:
    if data is None:
        return Int8Scheme()
    if not isinstance(data, dict):
        raise _fail(path, where, "must be a mapping")
    _check_keys(path, f"{where}.", data, {"activation_type", "weight_type", "per_channel", "reduce_range"})
    default = Int8Scheme()
    return Int8Scheme(
        activation_type=_choice(
            path, f"{where}.activation_type", data.get("activation_type", default.activation_type), ACTIVATION_TYPES
        ),
        weight_type=_choice(path, f"{where}.weight_type", data.get("weight_type", default.weight_type), WEIGHT_TYPES),
        per_channel=_bool(path, f"{where}.per_channel", data.get("per_channel", default.per_channel)),
        reduce_range=_bool(path, f"{where}.reduce_range", data.get("reduce_range", default.reduce_range)),
    )


def parse_profile(data: Any, path: Path | str) -> DeviceProfile:
    """Validate parsed YAML ``data`` from ``path`` and return the :class:`DeviceProfile`.

    Raises InputError naming the file and field on any schema violation.
    """
    if not isinstance(data, dict):
        raise InputError(f"profile {path}: must be a YAML mapping")
    allowed = {
        "schema_version",
        "name",
        "description",
        "aliases",
        "schemes",
        "int8",
        "int8_dynamic",
        "onnxruntime",
        "notes",
    }
    _check_keys(path, "", data, allowed)
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise _fail(path, "schema_version", f"{version!r} is not supported; this edgeport reads {SCHEMA_VERSION}")
    for required in ("name", "description"):
        if not isinstance(data.get(required), str) or not data[required]:
            raise _fail(path, required, "required, a non-empty string")
    schemes = data.get("schemes", list(SCHEMES))
    if not isinstance(schemes, list) or not schemes:
        raise _fail(path, "schemes", f"must be a non-empty list of {', '.join(SCHEMES)}")
    for i, scheme in enumerate(schemes):
        _choice(path, f"schemes[{i}]", scheme, SCHEMES)
    ort = data.get("onnxruntime") or {}
    if not isinstance(ort, dict):
        raise _fail(path, "onnxruntime", "must be a mapping")
    _check_keys(path, "onnxruntime.", ort, {"execution_providers"})
    providers = ort.get("execution_providers", ["CPUExecutionProvider"])
    if not isinstance(providers, list) or not all(isinstance(p, str) for p in providers) or not providers:
        raise _fail(path, "onnxruntime.execution_providers", "must be a non-empty list of provider names")
    aliases = data.get("aliases", [])
    notes = data.get("notes", [])
    for key, value in (("aliases", aliases), ("notes", notes)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _fail(path, key, "must be a list of strings")
    return DeviceProfile(
        name=data["name"],
        description=data["description"],
        aliases=tuple(aliases),
        schemes=tuple(schemes),
        int8=_int8_scheme(path, "int8", data.get("int8")),
        int8_dynamic=_int8_scheme(path, "int8_dynamic", data.get("int8_dynamic")),
        onnxruntime=OnnxRuntimeTarget(tuple(providers)),
        notes=tuple(notes),
        source=str(path),
    )


def load_profile_file(path: Path) -> DeviceProfile:
    """Read and validate one profile YAML file; return the :class:`DeviceProfile`."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read profile {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"profile {path} is not valid YAML: {describe_exception(exc, with_type=False)}") from exc
    return parse_profile(data, path)
