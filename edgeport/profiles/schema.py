"""The device profile schema (version 2): what one target runs, read from YAML and validated.

A profile describes a device the way its vendor runtime sees it: which output formats it runs
and with which runtime (``formats``), which precisions each op class runs natively and at what
relative cost (``op_classes``), the quantization details the hardware wants (``int8``,
``int8_dynamic``, ``int4_weight``, ``int16_activations``) and its ``constraints``.

Validation errors are one line naming the file, the field path (``op_classes.conv.int8``) and
the allowed values, so a user's own profile file fails with a message they can act on. The
validator is hand-written (no pydantic dependency); unknown fields are rejected so that a typo
never silently falls back to a default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgeport.core.errors import InputError, describe_exception
from edgeport.core.registry import profile_sections
from edgeport.core.sizes import parse_size
from edgeport.core.vocabulary import PRECISIONS, SCHEMES  # noqa: F401  (re-exported: the profile's vocabulary)

SCHEMA_VERSION = 2
OP_CLASSES = ("conv", "depthwise_conv", "matmul", "attention", "elementwise", "norm", "pooling", "other")
# The format sections a profile may have: one per registered output format (core/registry.py).
FORMATS = profile_sections()
FLOAT_COMPUTE = ("fp32", "fp16")
ACTIVATION_TYPES = ("uint8", "int8")
WEIGHT_TYPES = ("int8", "uint8")
# npu: NNAPI or a vendor NPU delegate (Edge TPU, Qualcomm QNN, MediaTek Neuron, NXP VX...).
TFLITE_DELEGATES = ("xnnpack", "gpu", "npu", "coreml")
COREML_COMPUTE_UNITS = ("CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE", "ALL")
# coremltools treats iOS N and macOS N-3 as the same model spec version (ct.target.iOS17 is
# ct.target.macOS14), so each target maps to one OS generation number here.
COREML_TARGETS = {
    "iOS15": 15,
    "macOS12": 15,
    "iOS16": 16,
    "macOS13": 16,
    "iOS17": 17,
    "macOS14": 17,
    "iOS18": 18,
    "macOS15": 18,
}
# The first OS generation whose Core ML runs each compressed scheme (coremltools docs,
# "Optimization: What's new": iOS16/macOS13 8-bit weight-only quantization; iOS17/macOS14
# activation quantization (W8A8); iOS18/macOS15 4-bit weights with per-block scales;
# iOS16/macOS13 per-tensor palettization, constexpr_lut_to_dense).
COREML_SCHEME_MIN_TARGET = {
    "int8-weight": 16,
    "int8": 17,
    "int4-weight": 18,
    "palettize-8": 16,
    "palettize-6": 16,
    "palettize-4": 16,
}

TOP_LEVEL_FIELDS = (
    "schema_version",
    "name",
    "description",
    "aliases",
    "formats",
    "unsupported_formats",
    "op_classes",
    "int8",
    "int8_dynamic",
    "int4_weight",
    "int16_activations",
    "constraints",
    "notes",
    "cpu_arch",
    "accelerator",
)
FORMAT_FIELDS = {
    "onnx": ("runtime", "schemes", "float_compute", "why_not", "execution_providers", "backend", "web_backend"),
    "tflite": ("runtime", "schemes", "float_compute", "why_not", "delegate"),
    "coreml": ("runtime", "schemes", "float_compute", "why_not", "compute_units", "minimum_deployment_target"),
}
INT8_FIELDS = (
    "activation_type",
    "weight_type",
    "per_channel",
    "reduce_range",
    "weight_symmetric",
    "activation_symmetric",
)
INT4_FIELDS = ("block_size", "symmetric")
CONSTRAINT_FIELDS = ("static_shapes_only", "full_integer_only", "memory_budget_mb", "fallback_ops", "max_size")
# Who runs a profile's ONNX artifacts: ONNX Runtime itself ("ort"), or onnxruntime-web in a
# browser ("web", with ``web_backend`` naming its execution provider).
ONNX_BACKENDS = ("ort", "web")
# What a profile's runtime computes on, so latency labels can say when this host is not that:
# the CPU architecture its kernels target (null: any CPU) and the accelerator (cpu, gpu, npu).
CPU_ARCHES = ("arm64", "x86-64")
ACCELERATORS = ("cpu", "gpu", "npu")
WEB_BACKENDS = ("wasm", "webgpu")


@dataclass(frozen=True)
class Int8Scheme:
    """How the device wants int8 tensors in ONNX QDQ form: signedness, granularity and range."""

    activation_type: str = "uint8"
    weight_type: str = "int8"
    per_channel: bool = True
    # Without VNNI, u8*s8 multiply-adds (vpmaddubsw) can saturate; 7-bit weights avoid that.
    reduce_range: bool = False
    weight_symmetric: bool = True
    # TensorRT needs zero points of 0 for activations too; CPUs do better with asymmetric uint8.
    activation_symmetric: bool = False


@dataclass(frozen=True)
class Int4WeightScheme:
    """Block-wise weight-only int4 (ORT MatMulNBits, Core ML per-block, TensorRT WoQ)."""

    block_size: int = 32
    symmetric: bool = True


@dataclass(frozen=True)
class Constraints:
    """What the device cannot do: dynamic shapes, float ops, big models, some op types."""

    static_shapes_only: bool = False
    full_integer_only: bool = False
    memory_budget_mb: int | None = None
    # ONNX op types the runtime typically leaves on the CPU (examples, not an exhaustive list).
    fallback_ops: tuple[str, ...] = ()
    # The default artifact size budget (bytes, external data included) when --max_size is not
    # given: a browser page downloads the artifact, so its profiles set one. None: no budget.
    max_size_bytes: int | None = None


@dataclass(frozen=True)
class OnnxRuntimeTarget:
    """The ONNX Runtime side of a profile (derived from ``formats.onnx``; CPU when absent)."""

    execution_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    # "ort": ONNX Runtime runs the artifact; "web": onnxruntime-web in a browser, with
    # ``web_backend`` its execution provider (wasm or webgpu). ``execution_providers`` then names
    # what ONNX Runtime in Python emulates it with here.
    backend: str = "ort"
    web_backend: str | None = None


@dataclass(frozen=True)
class FormatTarget:
    """One output format on this device: the runtime that runs it and the schemes it runs well.

    ``float_compute`` lists the float precisions the runtime computes in natively: a TFLite GPU
    delegate with precision loss allowed or the Neural Engine compute only in fp16 (``[fp16]``),
    an NPU in neither (``[]``). ``why_not`` maps a scheme it does not run to the device fact
    that explains why; resolution quotes it in the report's decisions.
    """

    name: str
    runtime: str
    schemes: tuple[str, ...]
    float_compute: tuple[str, ...] = ("fp32",)
    why_not: dict[str, str] = field(default_factory=dict)
    execution_providers: tuple[str, ...] = ()
    delegate: str | None = None
    compute_units: str | None = None
    minimum_deployment_target: str | None = None
    backend: str = "ort"
    web_backend: str | None = None

    def summary(self) -> str:
        """Return a one-line description: runtime plus the format-specific settings."""
        parts = [self.runtime]
        if self.backend != "ort":
            parts.append(f"backend {self.backend} ({self.web_backend})")
        if self.execution_providers:
            parts.append("providers " + ", ".join(self.execution_providers))
        if self.delegate:
            parts.append(f"delegate {self.delegate}")
        if self.compute_units:
            parts.append(f"compute units {self.compute_units}")
        if self.minimum_deployment_target:
            parts.append(f"minimum target {self.minimum_deployment_target}")
        return "; ".join(parts)


@dataclass(frozen=True)
class CatalogueDevice:
    """The real device a profile was resolved for (``--optimize_for "Pixel 8"``): the facts the
    report and the latency label cite. Engine profiles have none."""

    id: str
    name: str
    accelerator: str  # cpu, gpu or npu: the one this profile runs on
    accelerator_name: str  # "Arm Mali-G715 MC10", "Cortex-A76"...
    cpu_arch: str | None
    cpu_name: str


@dataclass(frozen=True)
class DeviceProfile:
    """One device as its runtime sees it (see ``edgeport profiles show NAME``).

    ``schemes`` is derived: every scheme that at least one format runs. ``onnxruntime`` is
    derived from ``formats.onnx`` (the CPU provider when the device has no ONNX runtime, so that
    local verification still has providers to use).
    """

    name: str
    description: str
    aliases: tuple[str, ...] = ()
    schemes: tuple[str, ...] = SCHEMES
    int8: Int8Scheme = field(default_factory=Int8Scheme)
    int8_dynamic: Int8Scheme = field(default_factory=Int8Scheme)
    onnxruntime: OnnxRuntimeTarget = field(default_factory=OnnxRuntimeTarget)
    notes: tuple[str, ...] = ()
    source: str = ""
    schema_version: int = SCHEMA_VERSION
    formats: dict[str, FormatTarget] = field(default_factory=dict)
    unsupported_formats: dict[str, str] = field(default_factory=dict)
    op_classes: dict[str, dict[str, float]] = field(default_factory=dict)
    int4_weight: Int4WeightScheme = field(default_factory=Int4WeightScheme)
    int16_activations: bool = False
    constraints: Constraints = field(default_factory=Constraints)
    cpu_arch: str | None = None
    accelerator: str = "cpu"
    device: CatalogueDevice | None = None

    def cost(self, op_class: str, precision: str) -> float | None:
        """Return the relative cost of ``op_class`` in ``precision`` (fp32 on a CPU = 1.0).

        ``precision`` is a precision name (``fp32``, ``int8``...; the scheme ``none`` is read as
        ``fp32``). Returns None when the device does not run that precision natively for that
        op class. Raises ValueError for an unknown op class or precision.
        """
        if op_class not in OP_CLASSES:
            raise ValueError(f"unknown op class {op_class!r}; known: {', '.join(OP_CLASSES)}")
        precision = "fp32" if precision == "none" else precision
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
        return self.op_classes.get(op_class, {}).get(precision)

    def as_dict(self) -> dict[str, Any]:
        """Return the profile as JSON-ready data (for the manifest and report)."""
        return asdict(self)


# --- validation helpers: each raises a one-line InputError naming file and field ----------------


def _fail(path: Path | str, field_name: str, message: str) -> InputError:
    return InputError(f"profile {path}: field '{field_name}': {message}")


def _mapping(path: Path | str, where: str, data: Any, allowed: tuple[str, ...] | None) -> dict:
    """Check that ``data`` is a mapping whose keys are all in ``allowed`` (None: any key)."""
    if not isinstance(data, dict):
        raise _fail(path, where, f"must be a mapping, got {type(data).__name__}")
    if allowed is not None:
        unknown = sorted(str(k) for k in set(data) - set(allowed))
        if unknown:
            prefix = f"{where}." if where else ""
            raise _fail(path, f"{prefix}{unknown[0]}", f"unknown field; allowed: {', '.join(allowed)}")
    return data


def _choice(path: Path | str, field_name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise _fail(path, field_name, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _bool(path: Path | str, field_name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, field_name, f"{value!r} must be true or false")
    return value


def _text(path: Path | str, field_name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, field_name, "required, a non-empty string")
    return value


def _strings(path: Path | str, field_name: str, value: Any, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        suffix = f" from {', '.join(allowed)}" if allowed else ""
        raise _fail(path, field_name, f"must be a list of strings{suffix}")
    if allowed is not None:
        for i, item in enumerate(value):
            _choice(path, f"{field_name}[{i}]", item, allowed)
    return tuple(value)


def _int8_scheme(path: Path | str, where: str, data: Any) -> Int8Scheme:
    if data is None:
        return Int8Scheme()
    data = _mapping(path, where, data, INT8_FIELDS)
    default = Int8Scheme()
    return Int8Scheme(
        activation_type=_choice(
            path, f"{where}.activation_type", data.get("activation_type", default.activation_type), ACTIVATION_TYPES
        ),
        weight_type=_choice(path, f"{where}.weight_type", data.get("weight_type", default.weight_type), WEIGHT_TYPES),
        per_channel=_bool(path, f"{where}.per_channel", data.get("per_channel", default.per_channel)),
        reduce_range=_bool(path, f"{where}.reduce_range", data.get("reduce_range", default.reduce_range)),
        weight_symmetric=_bool(
            path, f"{where}.weight_symmetric", data.get("weight_symmetric", default.weight_symmetric)
        ),
        activation_symmetric=_bool(
            path, f"{where}.activation_symmetric", data.get("activation_symmetric", default.activation_symmetric)
        ),
    )


def _int4_scheme(path: Path | str, data: Any) -> Int4WeightScheme:
    if data is None:
        return Int4WeightScheme()
    data = _mapping(path, "int4_weight", data, INT4_FIELDS)
    default = Int4WeightScheme()
    block = data.get("block_size", default.block_size)
    # MatMulNBits and Core ML per-block quantization take powers of two of at least 16.
    if isinstance(block, bool) or not isinstance(block, int) or block < 16 or block & (block - 1):
        raise _fail(path, "int4_weight.block_size", f"{block!r} must be a power of two >= 16 (e.g. 32, 64, 128)")
    return Int4WeightScheme(
        block_size=block, symmetric=_bool(path, "int4_weight.symmetric", data.get("symmetric", default.symmetric))
    )


def _constraints(path: Path | str, data: Any) -> Constraints:
    if data is None:
        return Constraints()
    data = _mapping(path, "constraints", data, CONSTRAINT_FIELDS)
    budget = data.get("memory_budget_mb")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0):
        raise _fail(path, "constraints.memory_budget_mb", f"{budget!r} must be a positive integer or null")
    max_size = data.get("max_size")
    if max_size is not None:
        try:
            max_size = parse_size(max_size, "size")
        except InputError as exc:
            message = f"{max_size!r} is not a size (e.g. 10MB, 500KB or bytes)"
            raise _fail(path, "constraints.max_size", message) from exc
    return Constraints(
        max_size_bytes=max_size,
        static_shapes_only=_bool(path, "constraints.static_shapes_only", data.get("static_shapes_only", False)),
        full_integer_only=_bool(path, "constraints.full_integer_only", data.get("full_integer_only", False)),
        memory_budget_mb=budget,
        fallback_ops=_strings(path, "constraints.fallback_ops", data.get("fallback_ops", [])),
    )


def _format(path: Path | str, name: str, data: Any) -> FormatTarget:
    where = f"formats.{name}"
    data = _mapping(path, where, data, FORMAT_FIELDS[name])
    schemes = _strings(path, f"{where}.schemes", data.get("schemes"), SCHEMES)
    if not schemes:
        raise _fail(path, f"{where}.schemes", f"must list at least one of {', '.join(SCHEMES)}")
    why_not = _mapping(path, f"{where}.why_not", data.get("why_not", {}), SCHEMES)
    for scheme, reason in why_not.items():
        _text(path, f"{where}.why_not.{scheme}", reason)
        if scheme in schemes:
            raise _fail(
                path,
                f"{where}.why_not.{scheme}",
                f"{scheme} is listed in {where}.schemes; explain only schemes it does not run",
            )
    target = FormatTarget(
        name=name,
        runtime=_text(path, f"{where}.runtime", data.get("runtime")),
        schemes=schemes,
        float_compute=_strings(path, f"{where}.float_compute", data.get("float_compute", ["fp32"]), FLOAT_COMPUTE),
        why_not=dict(why_not),
    )
    if name == "onnx":
        providers = _strings(path, f"{where}.execution_providers", data.get("execution_providers"))
        if not providers:
            raise _fail(path, f"{where}.execution_providers", "must be a non-empty list of provider names")
        backend, web_backend = _onnx_backend(path, where, data)
        return FormatTarget(
            **{**asdict(target), "execution_providers": providers, "backend": backend, "web_backend": web_backend}
        )
    if name == "tflite":
        delegate = _choice(path, f"{where}.delegate", data.get("delegate"), TFLITE_DELEGATES)
        return FormatTarget(**{**asdict(target), "delegate": delegate})
    units = _choice(path, f"{where}.compute_units", data.get("compute_units"), COREML_COMPUTE_UNITS)
    target_name = _choice(
        path, f"{where}.minimum_deployment_target", data.get("minimum_deployment_target"), tuple(COREML_TARGETS)
    )
    for scheme in schemes:
        needed = COREML_SCHEME_MIN_TARGET.get(scheme)
        if needed is not None and COREML_TARGETS[target_name] < needed:
            names = "/".join(k for k, v in COREML_TARGETS.items() if v == needed)
            raise _fail(
                path,
                f"{where}.schemes",
                f"Core ML runs {scheme} from {names} on; minimum_deployment_target is {target_name}",
            )
    return FormatTarget(**{**asdict(target), "compute_units": units, "minimum_deployment_target": target_name})


def _onnx_backend(path: Path | str, where: str, data: dict) -> tuple[str, str | None]:
    """Return ``formats.onnx``'s backend and web backend: ``web`` needs ``web_backend``, ``ort`` refuses it."""
    backend = _choice(path, f"{where}.backend", data.get("backend", "ort"), ONNX_BACKENDS)
    web_backend = data.get("web_backend")
    if backend == "web":
        return backend, _choice(path, f"{where}.web_backend", web_backend, WEB_BACKENDS)
    if web_backend is not None:
        raise _fail(path, f"{where}.web_backend", "applies only with backend: web")
    return backend, None


def _op_classes(path: Path | str, data: Any) -> dict[str, dict[str, float]]:
    data = _mapping(path, "op_classes", data, OP_CLASSES)
    missing = [c for c in OP_CLASSES if c not in data]
    if missing:
        raise _fail(path, f"op_classes.{missing[0]}", f"required; every op class needs costs: {', '.join(OP_CLASSES)}")
    table: dict[str, dict[str, float]] = {}
    for op_class in OP_CLASSES:
        costs = _mapping(path, f"op_classes.{op_class}", data[op_class], PRECISIONS)
        if not costs:
            raise _fail(path, f"op_classes.{op_class}", f"must give a cost for at least one of {', '.join(PRECISIONS)}")
        for precision, cost in costs.items():
            if isinstance(cost, bool) or not isinstance(cost, int | float) or not 0 < cost < float("inf"):
                raise _fail(path, f"op_classes.{op_class}.{precision}", f"{cost!r} must be a positive number")
        table[op_class] = {p: float(costs[p]) for p in PRECISIONS if p in costs}
    return table


def _check_consistency(path: Path | str, profile: DeviceProfile) -> None:
    """Cross-field checks: a format cannot list a scheme the op-class table never runs, etc."""
    native = {p for costs in profile.op_classes.values() for p in costs}
    for fmt in profile.formats.values():
        for scheme in fmt.schemes:
            # "none" always runs somewhere in float (the Neural Engine runs it in fp16).
            if scheme != "none" and scheme not in native:
                raise _fail(
                    path, f"formats.{fmt.name}.schemes", f"lists {scheme} but no op_classes entry has a {scheme} cost"
                )
        if profile.constraints.full_integer_only and set(fmt.schemes) - {"int8", "int16"}:
            raise _fail(
                path,
                f"formats.{fmt.name}.schemes",
                "constraints.full_integer_only is true, so the only allowed schemes are int8 and int16",
            )
        if "int16" in fmt.schemes and not profile.int16_activations:
            raise _fail(path, f"formats.{fmt.name}.schemes", "lists int16 but int16_activations is false")


def parse_profile(data: Any, path: Path | str) -> DeviceProfile:
    """Validate parsed YAML ``data`` from ``path`` and return the :class:`DeviceProfile`.

    Raises InputError naming the file, the field path and the allowed values on any schema
    violation (unknown field, wrong type, value outside its enumeration, bad schema_version).
    """
    if not isinstance(data, dict):
        raise InputError(f"profile {path}: must be a YAML mapping")
    # The version comes first: a file for another schema fails on that, not on its fields.
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise _fail(
            path,
            "schema_version",
            f"{version!r} is not supported; this edgeport reads {SCHEMA_VERSION} "
            "(see edgeport/profiles/*.yaml for the fields)",
        )
    _mapping(path, "", data, TOP_LEVEL_FIELDS)
    name = _text(path, "name", data.get("name"))
    description = _text(path, "description", data.get("description"))
    aliases = _strings(path, "aliases", data.get("aliases", []))
    notes = _strings(path, "notes", data.get("notes", []))
    formats_data = _mapping(path, "formats", data.get("formats"), FORMATS)
    if not formats_data:
        raise _fail(path, "formats", f"must describe at least one of {', '.join(FORMATS)}")
    formats = {name_: _format(path, name_, formats_data[name_]) for name_ in FORMATS if name_ in formats_data}
    unsupported = _mapping(path, "unsupported_formats", data.get("unsupported_formats", {}), FORMATS)
    for fmt_name, reason in unsupported.items():
        _text(path, f"unsupported_formats.{fmt_name}", reason)
        if fmt_name in formats:
            raise _fail(path, f"unsupported_formats.{fmt_name}", "is also described under formats")
    # The union of the formats' schemes, in the canonical order.
    schemes = tuple(s for s in SCHEMES if any(s in f.schemes for f in formats.values()))
    onnx = formats.get("onnx")
    profile = DeviceProfile(
        name=name,
        description=description,
        aliases=aliases,
        schemes=schemes,
        int8=_int8_scheme(path, "int8", data.get("int8")),
        int8_dynamic=_int8_scheme(path, "int8_dynamic", data.get("int8_dynamic")),
        onnxruntime=(
            OnnxRuntimeTarget(onnx.execution_providers, onnx.backend, onnx.web_backend) if onnx else OnnxRuntimeTarget()
        ),
        notes=notes,
        source=str(path),
        schema_version=SCHEMA_VERSION,
        formats=formats,
        unsupported_formats=dict(unsupported),
        op_classes=_op_classes(path, data.get("op_classes")),
        int4_weight=_int4_scheme(path, data.get("int4_weight")),
        int16_activations=_bool(path, "int16_activations", data.get("int16_activations", False)),
        constraints=_constraints(path, data.get("constraints")),
        cpu_arch=None if data.get("cpu_arch") is None else _choice(path, "cpu_arch", data["cpu_arch"], CPU_ARCHES),
        accelerator=_choice(path, "accelerator", data.get("accelerator", "cpu"), ACCELERATORS),
    )
    _check_consistency(path, profile)
    return profile


def load_profile_file(path: Path | str) -> DeviceProfile:
    """Read and validate one profile YAML file; return the :class:`DeviceProfile`.

    Raises InputError when the file cannot be read, is not YAML, or breaks the schema.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read profile {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"profile {path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"profile {path} is not valid YAML: {describe_exception(exc, with_type=False)}") from exc
    except RecursionError as exc:  # pathologically nested YAML
        raise InputError(f"profile {path} is nested too deeply to be a profile") from exc
    return parse_profile(data, path)
