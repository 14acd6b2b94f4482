"""The build config (``edgeport.yaml``): models x targets, validated with line numbers.

```yaml
version: 1
defaults: {eval_samples: 500, latency_runs: 100}   # convert options for every model x target
gates: {max_accuracy_drop: 1.0}                     # default gates of every target
regression: {accuracy_drop: 0.5, latency_pct: 20, size_pct: 5}   # tolerances vs --baseline
models:
  - name: fashion_cnn                  # default: the file's stem
    path: fashion_cnn.pt2              # relative to this file
    calibration_data: calib.npz
    eval_data: test.npz
    targets: [onnx-int8-x86]           # optional: a subset of the targets below
targets:
  - name: onnx-int8-x86                # default: <format>-<quantization>-<profile>
    format: onnx
    quantization: int8
    profile: x86-avx512-vnni
    gates: {max_accuracy_drop: 1.0, max_latency_ms: 2.0, max_size_mb: 1.0}
```

Any other key of a model, a target or ``defaults`` is a convert option (the CLI flags in
snake_case, e.g. ``input_shape``, ``preprocess``, ``io_dtype``, ``threads``); target options
override model options, which override ``defaults``. The file is parsed node by node
(``yaml.compose``) so every error names its line.
"""

from __future__ import annotations

import difflib
import re
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from edgeport.core.errors import EdgeportError, InputError
from edgeport.options.recipe import Recipe

CONFIG_VERSION = 1
TOP_KEYS = ("version", "output_dir", "defaults", "gates", "regression", "models", "targets")
GATE_KEYS = ("max_accuracy_drop", "max_latency_ms", "max_size_mb")
TOLERANCE_KEYS = ("accuracy_drop", "latency_pct", "size_pct")
# Tolerances used with --baseline when the config gives none: accuracy in percentage points,
# latency and size in percent of the baseline's figure.
DEFAULT_TOLERANCES = {"accuracy_drop": 0.5, "latency_pct": 20.0, "size_pct": 5.0}
# Recipe fields that the config sets in its own words (path, format, quantization, profile,
# gates) or that the build owns (output_dir): not accepted as free options.
_OWN_FIELDS = ("input_model", "output_format", "quantization", "optimize_for", "output_dir", "max_accuracy_drop")
OPTION_KEYS = tuple(f.name for f in fields(Recipe) if f.name not in _OWN_FIELDS)
MODEL_KEYS = ("name", "path", "targets", *OPTION_KEYS)
TARGET_KEYS = ("name", "format", "quantization", "profile", "gates", "regression", *OPTION_KEYS)
# Options that name files: relative values are resolved against the config file's folder.
PATH_OPTIONS = ("calibration_data", "eval_data", "precision_plan")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Target:
    """One target of the config: an output format, a quantization, a profile, gates."""

    name: str
    format: str
    quantization: str
    profile: str  # a profile name/alias, or an absolute path to a profile file
    options: dict[str, Any]
    gates: dict[str, float | None]
    tolerances: dict[str, float | None]
    line: int


@dataclass
class Model:
    """One model of the config: its source, its data and its options."""

    name: str
    path: str  # absolute file/folder path, or a module:factory reference
    options: dict[str, Any]
    targets: list[str] | None
    line: int


@dataclass
class Job:
    """One model x target: what ``edgeport.api.convert`` is called with, and its gates."""

    model: Model
    target: Target
    kwargs: dict[str, Any]  # convert() keyword arguments, without output_dir

    @property
    def id(self) -> str:
        """``<model>/<target>``: the target's name in summaries and its folder under out/."""
        return f"{self.model.name}/{self.target.name}"


@dataclass
class BuildConfig:
    """A validated config file: its models, targets and every model x target job."""

    path: Path
    output_dir: Path | None
    models: list[Model]
    targets: list[Target]
    jobs: list[Job] = field(default_factory=list)


class _Doc:
    """The parsed YAML as plain data, with the line of every node (keyed by its path)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: dict[tuple, int] = {}

    def error(self, where: tuple, message: str, hint: str | None = None) -> InputError:
        """An InputError ``<file>:<line>: <dotted path>: <message>`` for the node at ``where``."""
        line = self.line(where)
        dotted = _dotted(where)
        return InputError(f"{self.path}:{line}: {dotted + ': ' if dotted else ''}{message}", hint=hint)

    def line(self, where: tuple) -> int:
        """The line of the node at ``where`` (or of its nearest parent that has one)."""
        while where not in self.lines and where:
            where = where[:-1]
        return self.lines.get(where, 1)


def _dotted(where: tuple) -> str:
    text = ""
    for part in where:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _compose(doc: _Doc, text: str) -> Any:
    """Parse YAML text into plain data, recording each node's line and refusing duplicate keys."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise InputError(f"{doc.path}:{line}: not valid YAML: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"{doc.path}: not valid YAML: {exc}") from exc
    if root is None:
        raise InputError(f"{doc.path}:1: the file is empty", hint="see examples/ci/edgeport.yaml")
    constructor = yaml.SafeLoader("")

    def plain(node: yaml.Node, where: tuple) -> Any:
        doc.lines[where] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            constructor.flatten_mapping(node)  # YAML merge keys (<<: *anchor) are handy in CI files
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    doc.lines[(*where, str(key))] = key_node.start_mark.line + 1
                    raise doc.error((*where, str(key)), f"keys must be strings, got {key!r}")
                if key in result:
                    doc.lines[(*where, key)] = key_node.start_mark.line + 1
                    raise doc.error((*where, key), "duplicate key")
                result[key] = plain(value_node, (*where, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [plain(item, (*where, i)) for i, item in enumerate(node.value)]
        return constructor.construct_object(node, deep=True)

    return plain(root, ())


def _check_keys(doc: _Doc, where: tuple, data: Any, allowed: tuple[str, ...], what: str) -> dict[str, Any]:
    """Check that ``data`` is a mapping whose keys are in ``allowed``; return it."""
    if not isinstance(data, dict):
        raise doc.error(where, f"{what} must be a mapping, got {_type_name(data)}")
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"
            raise doc.error((*where, key), f"unknown key {key!r} in {what}", hint=hint)
    return data


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", type(None): "nothing (null)"}.get(type(value), type(value).__name__)


_HINTS = typing.get_type_hints(Recipe)


def _check_option(doc: _Doc, where: tuple, key: str, value: Any) -> Any:
    """Check one convert option's type against the Recipe field; return the value to pass on."""
    if key in ("input_shape", "input_dtype", "custom_ops", "custom_op_library"):
        if isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return value
        raise doc.error(where, f"{key} must be a string or a list of strings, got {_type_name(value)}")
    if key in ("threads", "batch_sizes", "thread_sweep"):  # one count, "1,2" or [1, 2] (Recipe parses it)
        ok = isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
        if ok or (isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            return value
        raise doc.error(where, f"{key} must be an integer, a comma list or a list of integers, got {value!r}")
    hint = _HINTS[key]
    args = typing.get_args(hint) or (hint,)
    if value is None:
        if type(None) in args:
            return None
        raise doc.error(where, f"{key} needs a value")
    if bool in args:
        if isinstance(value, bool):
            return value
        raise doc.error(where, f"{key} must be true or false, got {value!r}")
    if int in args:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise doc.error(where, f"{key} must be an integer, got {value!r}")
    if float in args:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise doc.error(where, f"{key} must be a number, got {value!r}")
    if str in args:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # search_budget: 12
        raise doc.error(where, f"{key} must be a string, got {_type_name(value)}")
    return value


def _numbers(doc: _Doc, where: tuple, data: Any, allowed: tuple[str, ...], what: str) -> dict[str, float | None]:
    """A mapping of non-negative numbers (or null, to switch one off)."""
    data = _check_keys(doc, where, data, allowed, what)
    result: dict[str, float | None] = {}
    for key, value in data.items():
        if value is None:
            result[key] = None
        elif isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            result[key] = float(value)
        else:
            raise doc.error((*where, key), f"must be a number >= 0 (or null to switch it off), got {value!r}")
    return result


def _resolve_file(base: Path, value: str) -> str:
    """``value`` relative to ``base`` unless absolute (``~`` expanded)."""
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _resolve_reference(base: Path, value: str) -> tuple[str, str | None, str | None]:
    """Resolve a model path or a ``file.py:name`` / ``package.module:name`` reference.

    Returns ``(value to pass on, the file it reads or None, the factory name or None)``:
    relative files are resolved against ``base``; ``package.module:name`` is kept as is.
    """
    module, sep, name = value.rpartition(":")
    if sep and module.endswith(".py"):
        file = _resolve_file(base, module)
        return f"{file}:{name}", file, name
    if sep and module and "/" not in module and "\\" not in module and len(module) > 1:
        return value, None, name  # importable package.module:factory: nothing to resolve
    file = _resolve_file(base, value)
    return file, file, None


def _options(doc: _Doc, where: tuple, data: dict[str, Any], base: Path) -> dict[str, Any]:
    """The convert options among ``data``'s keys, type-checked, with file paths resolved."""
    result = {}
    for key in OPTION_KEYS:
        if key not in data:
            continue
        value = _check_option(doc, (*where, key), key, data[key])
        if key in PATH_OPTIONS and isinstance(value, str):
            value = _resolve_file(base, value)
            if not Path(value).exists():
                raise doc.error((*where, key), f"{key} not found: {data[key]} (looked at {value})")
        if key == "model_class" and isinstance(value, str):
            value = _resolve_reference(base, value)[0]
        if key in ("custom_ops", "custom_op_library"):
            value = _resolve_op_files(doc, (*where, key), key, value, base)
        result[key] = value
    return result


def _resolve_op_files(doc: _Doc, where: tuple, key: str, value: str | list[str], base: Path) -> list[str]:
    """custom_ops/custom_op_library items with their files resolved against the config's folder
    (an importable module name of custom_ops stays as it is); a missing file is an error."""
    from edgeport.ops import split_specs

    items = []
    for item in split_specs(value):
        if key == "custom_op_library" or item.endswith(".py") or "/" in item or "\\" in item:
            item = _resolve_file(base, item)
            if not Path(item).exists():
                raise doc.error(where, f"{key} not found: {item}")
        items.append(item)
    return items


def _name(doc: _Doc, where: tuple, value: Any, what: str) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise doc.error(
            where, f"{what} name {value!r} is not a valid folder name", hint="letters, digits, '.', '_' and '-'"
        )
    return value


def _parse_model(doc: _Doc, where: tuple, data: Any, base: Path) -> Model:
    data = _check_keys(doc, where, data, MODEL_KEYS, "a model")
    if "path" not in data:
        raise doc.error(where, "a model needs a path", hint="path: my_model.pt2 (relative to the config file)")
    if not isinstance(data["path"], str):
        raise doc.error((*where, "path"), f"path must be a string, got {_type_name(data['path'])}")
    path, file, factory = _resolve_reference(base, data["path"])
    if file is not None and not Path(file).exists():
        raise doc.error((*where, "path"), f"model not found: {data['path']} (looked at {file})")
    default_name = factory or Path(path).stem
    name = _name(doc, (*where, "name"), data.get("name", default_name), "model")
    targets = data.get("targets")
    if targets is not None and not (isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
        raise doc.error((*where, "targets"), "targets must be a list of target names")
    return Model(name, path, _options(doc, where, data, base), targets, doc.line(where))


def _parse_target(doc: _Doc, where: tuple, data: Any, base: Path, gates: dict, tolerances: dict) -> Target:
    from edgeport.core.registry import format_names
    from edgeport.options.recipe import QUANTIZATIONS
    from edgeport.profiles import resolve_profile, resolve_scheme

    data = _check_keys(doc, where, data, TARGET_KEYS, "a target")
    for key in ("format", "quantization", "profile"):
        if key not in data:
            raise doc.error(where, f"a target needs {key!r}", hint="format: onnx, quantization: int8, profile: cpu")
        if not isinstance(data[key], str):
            raise doc.error((*where, key), f"{key} must be a string, got {_type_name(data[key])}")
    fmt, quantization = data["format"].lower(), data["quantization"].lower()
    if fmt not in format_names():
        raise doc.error(
            (*where, "format"),
            f"format {fmt!r} is not available in this edgeport",
            hint=f"available: {', '.join(format_names())}",
        )
    if quantization not in QUANTIZATIONS:
        raise doc.error(
            (*where, "quantization"),
            f"unknown quantization {quantization!r}",
            hint=f"one of {', '.join(QUANTIZATIONS)}",
        )
    profile = data["profile"]
    if profile.endswith((".yaml", ".yml")) or "/" in profile or "\\" in profile:
        profile = _resolve_file(base, profile)
    try:
        resolved, _ = resolve_profile(profile)
        resolve_scheme(resolved, quantization, fmt)
    except InputError as exc:
        raise doc.error((*where, "profile"), exc.message, hint=exc.hint) from exc
    name = _name(
        doc, (*where, "name"), data.get("name", f"{fmt}-{quantization}-{Path(data['profile']).stem}"), "target"
    )
    target_gates = {**gates, **_numbers(doc, (*where, "gates"), data.get("gates", {}), GATE_KEYS, "gates")}
    target_tolerances = {
        **tolerances,
        **_numbers(doc, (*where, "regression"), data.get("regression", {}), TOLERANCE_KEYS, "regression"),
    }
    return Target(
        name,
        fmt,
        quantization,
        profile,
        _options(doc, where, data, base),
        target_gates,
        target_tolerances,
        doc.line(where),
    )


def _list(doc: _Doc, data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list) or not value:
        raise doc.error((key,), f"{key!r} must be a non-empty list", hint="see examples/ci/edgeport.yaml")
    return value


def load_config(path: Path | str) -> BuildConfig:
    """Read and validate a build config; return it with one Job per model x target.

    Raises InputError whose message starts ``<file>:<line>:`` for any problem in the file
    (unknown key, wrong type, missing model or data file, unknown profile, a scheme the
    profile cannot run, an option value convert would refuse).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read build config {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    doc = _Doc(path)
    data = _check_keys(doc, (), _compose(doc, text), TOP_KEYS, "the config")
    base = path.resolve().parent
    version = data.get("version", CONFIG_VERSION)
    if version != CONFIG_VERSION:
        raise doc.error(
            ("version",), f"unsupported config version {version!r}", hint=f"this edgeport reads {CONFIG_VERSION}"
        )
    defaults = _check_keys(doc, ("defaults",), data.get("defaults", {}), OPTION_KEYS, "defaults")
    default_options = _options(doc, ("defaults",), defaults, base)
    gates = _numbers(doc, ("gates",), data.get("gates", {}), GATE_KEYS, "gates")
    tolerances = {
        **DEFAULT_TOLERANCES,
        **_numbers(doc, ("regression",), data.get("regression", {}), TOLERANCE_KEYS, "regression"),
    }
    output_dir = data.get("output_dir")
    if output_dir is not None and not isinstance(output_dir, str):
        raise doc.error(("output_dir",), "output_dir must be a string")

    models = [_parse_model(doc, ("models", i), m, base) for i, m in enumerate(_list(doc, data, "models"))]
    targets = [
        _parse_target(doc, ("targets", i), t, base, gates, tolerances)
        for i, t in enumerate(_list(doc, data, "targets"))
    ]
    for what, items, key in (("model", models, "models"), ("target", targets, "targets")):
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            if item.name in seen:
                raise doc.error((key, i), f"two {what}s are named {item.name!r}", hint="give each a distinct name")
            seen[item.name] = i
    target_names = [t.name for t in targets]
    config = BuildConfig(path, _resolve_file(base, output_dir) if output_dir else None, models, targets)
    for i, model in enumerate(models):
        for name in model.targets or []:
            if name not in target_names:
                raise doc.error(
                    ("models", i, "targets"), f"unknown target {name!r}", hint=f"targets: {', '.join(target_names)}"
                )
        for j, target in enumerate(targets):
            if model.targets is not None and target.name not in model.targets:
                continue
            kwargs = {
                "input_model": model.path,
                "output_format": target.format,
                "quantization": target.quantization,
                "optimize_for": target.profile,
                "max_accuracy_drop": target.gates.get("max_accuracy_drop"),
                **default_options,
                **model.options,
                **target.options,
            }
            try:  # the checks convert() would make, now, with the line of the target
                from edgeport.options.recipe import parse_input_dtypes, parse_input_shapes

                options = {k: v for k, v in kwargs.items() if k not in ("input_shape", "input_dtype")}
                recipe = Recipe(
                    **options,
                    input_shape=parse_input_shapes(kwargs.get("input_shape")),
                    input_dtype=parse_input_dtypes(kwargs.get("input_dtype")),
                )
            except EdgeportError as exc:
                # Point at the line that set the option the message names (--calibration_samples ...):
                # the target's, else the model's, else the defaults'; the target's own line otherwise.
                flag = re.search(r"--(\w+)", exc.message)
                where: tuple = ("targets", j)
                if flag:
                    for candidate in (("targets", j, flag[1]), ("models", i, flag[1]), ("defaults", flag[1])):
                        if candidate in doc.lines:
                            where = candidate
                            break
                raise doc.error(where, f"{model.name} x {target.name}: {exc.message}", hint=exc.hint) from exc
            # One spelling per grid ("1,2", [1, 2]) so the cache key of a variant does not depend on it.
            if "threads" in kwargs:
                kwargs["threads"] = recipe.thread_sweep or recipe.threads
            if kwargs.get("batch_sizes") is not None:
                kwargs["batch_sizes"] = recipe.batch_sizes
            if kwargs.get("buckets") is not None:
                kwargs["buckets"] = recipe.buckets  # "seq=32,16" and "seq=16,32" are one variant
            if kwargs.get("cascade") is not None:
                kwargs["cascade"] = recipe.cascade  # "FP32" and "fp32" are one variant
            config.jobs.append(Job(model, target, kwargs))
    return config
