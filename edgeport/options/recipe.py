"""The resolved options of one conversion (``Recipe``) and the parsing of shape/dtype flags."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from edgeport.core.errors import InputError
from edgeport.core.registry import format_names
from edgeport.ops.load import split_specs
from edgeport.options.groups import (
    GROUPS,
    BucketOptions,
    CascadeOptions,
    CoreMLOptions,
    DataOptions,
    PruneOptions,
    QuantizeOptions,
    RunOptions,
    SourceOptions,
    TFLiteOptions,
    TuneOptions,
    VerifyOptions,
    make_group,
)
from edgeport.profiles.schema import SCHEMES

# Formats whose backend exists today; the others are planned and refused with a clear message.
QUANTIZATIONS = ("none", "fp32", *SCHEMES[1:], "auto")  # "fp32" is an alias of "none"
DTYPES = ("float32", "float16", "int64", "int32", "uint8", "int8", "bool")
OBJECTIVES = ("latency", "throughput")
# The batch sizes swept with --objective throughput when --batch_sizes is not given.
DEFAULT_TUNE_BATCHES = (1, 2, 4, 8, 16, 32)


@dataclass
class InputShape:
    """A user-given input shape: ``name`` is None for positional (``1,3,224,224``)."""

    name: str | None
    dims: list[int]


@dataclass
class Recipe:
    """Everything one conversion needs, resolved from CLI flags or :func:`edgeport.convert` kwargs."""

    input_model: str
    output_format: str = "onnx"
    quantization: str = "int8"
    optimize_for: str = "cpu"
    calibration_data: str | None = None
    eval_data: str | None = None
    output_dir: str | None = None
    input_shape: list[InputShape] = field(default_factory=list)
    input_dtype: dict[str | None, str] = field(default_factory=dict)
    dynamic_batch: bool = False
    model_class: str | None = None
    allow_pickle: bool = False
    max_accuracy_drop: float | None = None
    preprocess: str | None = None
    calibration_samples: int = 256
    eval_samples: int | None = None
    # One count (evaluation and latency), or a comma list / list: the thread counts swept (issue 18);
    # __post_init__ keeps the first as ``threads`` and the whole list in ``thread_sweep``.
    threads: int | str | list[int] = 1
    latency_runs: int = 200
    warmup_runs: int = 20
    parity_rtol: float = 1e-3
    parity_atol: float = 1e-4
    opset: int = 18
    seed: int = 0
    # What the gate compares: auto (by evidence, per output), a measure for every output, output=measure
    # items, or the user's evaluator (module:function, file.py:function, or a callable from the API).
    metric: str | Callable[..., Any] = "auto"
    io_dtype: str = "float32"
    precision_plan: str | None = None
    search_budget: str | None = None
    # Hugging Face folders: the export task (default from config.json) and the fixed token length.
    task: str | None = None
    sequence_length: int | None = None
    # Pruning (edgeport/prune): "magnitude:0.5", "channels:0.3" or per-layer "name=ratio" items;
    # recovery by distillation from the original model for this many steps (channels only).
    prune: str | None = None
    finetune_steps: int = 0
    # Core ML: image-like inputs (4-D float, 1 or 3 channels) become Core ML image types (8-bit
    # pixels) with the scale/bias of --preprocess (edgeport.formats.coreml.images.image_inputs).
    coreml_image_input: bool = False
    # Memory budget of the conversion ("4GB", "512MB" or bytes); None: 80% of the available RAM
    # (edgeport.core.limits). A model or input that would need more is refused before it is loaded.
    max_memory: str | None = None
    # Size budget of the artifact ("10MB", "500KB" or bytes; external data included): the auto
    # search keeps only plans that fit, a uniform scheme over it fails the gate. None: the
    # profile's default budget (constraints.max_size; browser profiles set one), else none.
    max_size: str | None = None
    # Batch and thread tuning (edgeport/verify/tuning.py): "latency" measures batch 1 as always;
    # "throughput" sweeps batch_sizes x threads and recommends the point with the most
    # inferences/s whose artifact p99 per call meets max_latency_ms.
    objective: str = "latency"
    batch_sizes: str | list[int] | None = None
    max_latency_ms: float | None = None
    thread_sweep: list[int] = field(default_factory=list)
    # Shape buckets (issue 18): "seq=16,32,64,128" builds one static artifact per size of that
    # dynamic axis from the run's one precision plan; edgeport.runtime routes inputs to them.
    buckets: str | None = None
    # Cascade (issue 18, model routing): "fp32" makes the artifact the small model and the run's
    # fp32 baseline the large one; the small one answers when its max softmax probability is at
    # least cascade_threshold (None: picked on the calibration data under the accuracy budget).
    cascade: str | None = None
    cascade_threshold: float | None = None
    # Custom operators (issue 20, edgeport/ops): op modules or .py files that call register_op
    # (a comma list, repeatable; loading one executes it, as --model_class does), and compiled
    # custom-op libraries (.so) every ONNX Runtime session registers for the kept custom nodes.
    custom_ops: str | list[str] = field(default_factory=list)
    custom_op_library: str | list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.custom_ops = split_specs(self.custom_ops)
        self.custom_op_library = split_specs(self.custom_op_library)
        self.output_format = self.output_format.lower()
        self.quantization = "none" if self.quantization.lower() == "fp32" else self.quantization.lower()
        if self.output_format not in format_names():
            raise InputError(
                f"unknown --output_format {self.output_format!r}",
                hint=f"choose one of {', '.join(format_names())}",
            )
        if self.quantization not in QUANTIZATIONS:
            raise InputError(
                f"unknown --quantization {self.quantization!r}",
                hint=f"choose one of {', '.join(q for q in QUANTIZATIONS if q != 'fp32')}",
            )
        if self.io_dtype not in ("float32", "int8", "uint8"):
            raise InputError(f"unknown --io_dtype {self.io_dtype!r}", hint="choose float32, int8 or uint8")
        from edgeport.verify.gate import validate_metric

        validate_metric(self.metric)  # fail fast (exit 2); an evaluator is imported when the run starts
        if self.max_accuracy_drop is not None and self.max_accuracy_drop < 0:
            raise InputError("--max_accuracy_drop must be >= 0 (percentage points)")
        self._resolve_tuning()
        for name in ("calibration_samples", "latency_runs", "threads"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name} must be >= 1")
        if self.eval_samples is not None and self.eval_samples < 1:
            raise InputError("--eval_samples must be >= 1")
        if self.sequence_length is not None and self.sequence_length < 1:
            raise InputError("--sequence_length must be >= 1")
        if self.prune:
            from edgeport.options.prune_spec import parse_prune

            parse_prune(self.prune)  # fail fast (exit 2) on a malformed --prune
        if self.max_memory not in (None, ""):
            from edgeport.core.limits import parse_memory

            parse_memory(self.max_memory)  # fail fast (exit 2) on a malformed --max_memory
        if self.max_size not in (None, ""):
            from edgeport.core.sizes import parse_size

            parse_size(self.max_size)  # fail fast (exit 2) on a malformed --max_size
        self._resolve_buckets()
        self._resolve_cascade()
        if self.coreml_image_input and self.output_format != "coreml":
            raise InputError("--coreml_image_input applies to --output_format coreml only")
        if self.finetune_steps < 0:
            raise InputError("--finetune_steps must be >= 0")
        if self.finetune_steps and not self.prune:
            raise InputError(
                "--finetune_steps recovers a pruned model: it needs --prune", hint="e.g. --prune channels:0.3"
            )

    def _resolve_tuning(self) -> None:
        """Parse --threads/--batch_sizes lists and fill the throughput grid's default (in place)."""
        if self.objective not in OBJECTIVES:
            raise InputError(f"unknown --objective {self.objective!r}", hint="choose latency or throughput")
        counts = parse_int_list(self.threads, "threads")
        self.threads = counts[0]
        if len(counts) > 1:
            self.thread_sweep = counts
        self.thread_sweep = parse_int_list(self.thread_sweep, "threads") if self.thread_sweep else []
        if self.batch_sizes is not None:
            self.batch_sizes = parse_int_list(self.batch_sizes, "batch_sizes")
        elif self.objective == "throughput":
            self.batch_sizes = list(DEFAULT_TUNE_BATCHES)
        if self.max_latency_ms is not None and self.max_latency_ms <= 0:
            raise InputError("--max_latency_ms must be > 0")

    def _resolve_buckets(self) -> None:
        """Check --buckets and keep its canonical spelling (in place); ONNX only for now."""
        from edgeport.options.buckets import parse_buckets

        spec = parse_buckets(self.buckets)
        self.buckets = spec.text() if spec else None
        if spec and self.output_format != "onnx":
            raise InputError(
                f"buckets: onnx only for now (got --output_format {self.output_format})",
                hint="drop --buckets, or use --output_format onnx",
            )

    def _resolve_cascade(self) -> None:
        """Check --cascade and --cascade_threshold (in place, canonical spelling); ONNX only for now."""
        from edgeport.options.cascade import check_threshold, parse_cascade

        self.cascade = parse_cascade(self.cascade)
        self.cascade_threshold = check_threshold(self.cascade_threshold, self.cascade)
        if self.cascade and self.output_format != "onnx":
            raise InputError(
                f"cascade: onnx only for now (got --output_format {self.output_format})",
                hint="drop --cascade, or use --output_format onnx",
            )
        if self.cascade and self.buckets:
            # The runtime would have to route twice (size, then confidence): not built yet.
            raise InputError("--cascade and --buckets together are not supported yet", hint="use one of them")

    def options_for(self, stage: str) -> Any:
        """Return the frozen option group of ``stage`` (a key of ``edgeport.options.groups.GROUPS``)."""
        if stage not in GROUPS:
            raise KeyError(f"no option group {stage!r}; groups: {', '.join(GROUPS)}")
        return make_group(GROUPS[stage], self)

    def format_options(self) -> Any:
        """Return the option group of the output format (e.g. TFLiteOptions), or None when the
        format has no options of its own (ONNX)."""
        return make_group(GROUPS[self.output_format], self) if self.output_format in GROUPS else None

    @property
    def source(self) -> SourceOptions:
        """The frontends' options (loading and normalizing the model)."""
        return make_group(SourceOptions, self)

    @property
    def data(self) -> DataOptions:
        """The calibration/evaluation data options."""
        return make_group(DataOptions, self)

    @property
    def quantize(self) -> QuantizeOptions:
        """The quantization options (scheme, plan, search budget, size budget)."""
        return make_group(QuantizeOptions, self)

    @property
    def pruning(self) -> PruneOptions:
        """The pruning options (named ``pruning``: ``prune`` is the user's --prune value)."""
        return make_group(PruneOptions, self)

    @property
    def verify(self) -> VerifyOptions:
        """The verification options (latency runs, parity tolerances, the gate)."""
        return make_group(VerifyOptions, self)

    @property
    def tuning(self) -> TuneOptions:
        """The batch and thread tuning options (objective, grid, latency target)."""
        return make_group(TuneOptions, self)

    @property
    def bucketing(self) -> BucketOptions:
        """The shape-bucket options (the axis and its sizes)."""
        return make_group(BucketOptions, self)

    @property
    def cascading(self) -> CascadeOptions:
        """The cascade options (the large model, a forced threshold)."""
        return make_group(CascadeOptions, self)

    @property
    def run(self) -> RunOptions:
        """The options the pipeline decides with (target, output folder, memory budget)."""
        return make_group(RunOptions, self)

    @property
    def tflite(self) -> TFLiteOptions:
        """TFLite's own options."""
        return make_group(TFLiteOptions, self)

    @property
    def coreml(self) -> CoreMLOptions:
        """Core ML's own options."""
        return make_group(CoreMLOptions, self)

    def as_dict(self) -> dict[str, Any]:
        """Return the recipe as JSON-ready data (for the manifest and the report)."""
        data = asdict(self)
        data["input_shape"] = [f"{s.name}:" if s.name else "" for s in self.input_shape]
        data["input_shape"] = [
            (f"{s.name}:" if s.name else "") + ",".join(str(d) for d in s.dims) for s in self.input_shape
        ]
        data["input_dtype"] = {k or "*": v for k, v in self.input_dtype.items()}
        if callable(self.metric):
            data["metric"] = f"{getattr(self.metric, '__module__', '?')}:{getattr(self.metric, '__name__', '?')}"
        return data


def default_of(name: str) -> Any:
    """The default of option ``name``: written once, in Recipe's fields; the CLI and the API read it."""
    for item in fields(Recipe):
        if item.name == name:
            if item.default is not MISSING:
                return item.default
            if item.default_factory is not MISSING:
                return item.default_factory()
            raise KeyError(f"option {name!r} has no default")
    raise KeyError(f"no option {name!r}")


def parse_int_list(value: int | str | list[int] | tuple[int, ...], flag: str) -> list[int]:
    """Parse ``4``, ``"1,2,4"`` or ``[1, 2, 4]`` into a list of distinct positive integers, in the
    order given; raise InputError naming ``--flag`` otherwise."""
    if isinstance(value, bool):
        raise InputError(f"bad --{flag} {value!r}", hint="give a positive integer or a comma list such as 1,2")
    items = [value] if isinstance(value, int) else value.split(",") if isinstance(value, str) else list(value)
    try:
        numbers = [int(str(item).strip()) for item in items if str(item).strip()]
    except ValueError:
        numbers = []
    if not numbers or any(n < 1 for n in numbers):
        raise InputError(f"bad --{flag} {value!r}", hint="give a positive integer or a comma list such as 1,2")
    return list(dict.fromkeys(numbers))


_SHAPE_RE = re.compile(r"^(?:(?P<name>[^:\s]+):)?(?P<dims>\d+(?:[,x]\d+)*)$")


def parse_input_shapes(values: list[str] | tuple[str, ...] | str | None) -> list[InputShape]:
    """Parse ``--input_shape`` values (``1,3,224,224`` or ``name:1,3,224,224``; several
    separated by spaces/semicolons or repeated) into :class:`InputShape` objects."""
    if not values:
        return []
    if isinstance(values, str):
        values = [values]
    items = [item for value in values for item in re.split(r"[;\s]+", value.strip()) if item]
    shapes = []
    for item in items:
        match = _SHAPE_RE.match(item)
        if not match:
            raise InputError(
                f"bad --input_shape {item!r}",
                hint="write it as 1,3,224,224 or name:1,3,224,224 (positive integers)",
            )
        dims = [int(d) for d in re.split(r"[,x]", match.group("dims"))]
        if any(d <= 0 for d in dims):
            raise InputError(f"bad --input_shape {item!r}: every dimension must be positive")
        shapes.append(InputShape(match.group("name"), dims))
    if len(shapes) > 1 and any(s.name is None for s in shapes):
        raise InputError("several --input_shape values need names", hint="use name:1,3,224,224 for each input")
    return shapes


def parse_input_dtypes(values: list[str] | tuple[str, ...] | str | None) -> dict[str | None, str]:
    """Parse ``--input_dtype`` values (``float32`` for all inputs or ``name:int64``) into a map;
    the key None means every input without its own entry."""
    if not values:
        return {}
    if isinstance(values, str):
        values = [values]
    result: dict[str | None, str] = {}
    for item in (i for v in values for i in re.split(r"[;,\s]+", v.strip()) if i):
        name, _, dtype = item.rpartition(":")
        if dtype not in DTYPES:
            raise InputError(f"bad --input_dtype {item!r}", hint=f"dtypes: {', '.join(DTYPES)}")
        result[name or None] = dtype
    return result
