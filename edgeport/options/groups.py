"""The options of each stage: typed, frozen views of the fields of a ``Recipe``.

``Recipe`` stays the one flat record users fill (CLI flags, :func:`edgeport.convert` kwargs,
``edgeport.yaml``) and the one place defaults are written. A stage takes only its group
(``recipe.source``, ``recipe.data``, ... or ``recipe.options_for("source")``), so what a stage
may read is written in its signature and a format's flags do not travel into the frontends.
A group's fields carry no defaults: they are copied from a Recipe, never built on their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: recipe.py imports this module
    from edgeport.options.recipe import InputShape


@dataclass(frozen=True)
class SourceOptions:
    """What the frontends need to load a model and normalize it to ONNX.

    Besides the loading flags, the target facts that change how a source is exported:
    ``output_format`` and ``optimize_for`` (a Hugging Face export fixes its sequence length for
    static-shape targets), ``quantization`` (an ONNX source's opset is upgraded for Q/DQ), the
    parity tolerances the export is checked with, and the memory budget an ONNX file is read under.
    """

    input_model: str
    input_shape: list[InputShape]
    input_dtype: dict[str | None, str]
    dynamic_batch: bool
    model_class: str | None
    allow_pickle: bool
    task: str | None
    sequence_length: int | None
    opset: int
    max_memory: str | None
    parity_rtol: float
    parity_atol: float
    output_format: str
    optimize_for: str
    quantization: str


@dataclass(frozen=True)
class DataOptions:
    """Where calibration and evaluation inputs come from, how many, and how they are prepared."""

    calibration_data: str | None
    eval_data: str | None
    preprocess: str | None
    calibration_samples: int
    eval_samples: int | None
    seed: int


@dataclass(frozen=True)
class QuantizeOptions:
    """The scheme asked for, a saved plan or the search's budget, the accuracy it must keep and
    the size budget (``--max_size``, unparsed) the artifact must fit."""

    quantization: str
    precision_plan: str | None
    search_budget: str | None
    max_accuracy_drop: float | None
    threads: int
    max_size: str | None


@dataclass(frozen=True)
class PruneOptions:
    """What to prune, the recovery steps, the budget the ratios are spread within, and what
    decides the quantization reserve (a saved plan) and the Core ML path (the output format)."""

    prune: str | None
    finetune_steps: int
    seed: int
    max_accuracy_drop: float | None
    threads: int
    latency_runs: int
    precision_plan: str | None
    output_format: str


@dataclass(frozen=True)
class VerifyOptions:
    """How the artifact is measured against the source: timing runs, parity tolerances and the gate."""

    threads: int
    latency_runs: int
    warmup_runs: int
    parity_rtol: float
    parity_atol: float
    metric: str | Callable[..., Any]
    max_accuracy_drop: float | None


@dataclass(frozen=True)
class BucketOptions:
    """Shape buckets (issue 18): ``buckets`` in its canonical spelling (``seq=16,32``) or None."""

    buckets: str | None

    @property
    def spec(self) -> Any:
        """The parsed BucketSpec (``axis``, ``sizes``), or None without buckets."""
        from edgeport.options.buckets import parse_buckets

        return parse_buckets(self.buckets)


@dataclass(frozen=True)
class CascadeOptions:
    """Model routing (issue 18): the large model (``"fp32"``: the run's fp32 baseline) or None,
    a forced threshold (None: picked on the calibration data) and the rule (``"confidence"``:
    the cascade; ``"size"``: by input size)."""

    cascade: str | None
    cascade_threshold: float | None
    route: str


@dataclass(frozen=True)
class TuneOptions:
    """Batch and thread tuning: the objective, the grid swept, the latency target, the timing runs.

    ``threads`` is the one count evaluation uses; ``thread_sweep`` the counts swept (empty: just
    ``threads``). ``batch_sizes`` is None for the latency objective without a list (batch 1 only).
    """

    objective: str
    batch_sizes: list[int] | None
    threads: int
    thread_sweep: list[int]
    max_latency_ms: float | None
    latency_runs: int
    warmup_runs: int

    @property
    def active(self) -> bool:
        """Whether verification sweeps a grid (throughput, lists given, or a latency target)."""
        return (
            self.objective == "throughput"
            or self.batch_sizes is not None
            or bool(self.thread_sweep)
            or self.max_latency_ms is not None
        )

    @property
    def grid_batches(self) -> list[int]:
        """The batch sizes swept."""
        return list(self.batch_sizes or [1])

    @property
    def grid_threads(self) -> list[int]:
        """The thread counts swept."""
        return list(self.thread_sweep or [self.threads])


@dataclass(frozen=True)
class RunOptions:
    """What the pipeline itself decides with: the target, where the bundle goes, the memory budget."""

    input_model: str
    output_format: str
    quantization: str
    optimize_for: str
    output_dir: str | None
    max_memory: str | None


@dataclass(frozen=True)
class TFLiteOptions:
    """TFLite's own flags: the artifact's input/output dtype, and loading Keras code for the direct path."""

    io_dtype: str
    allow_pickle: bool


@dataclass(frozen=True)
class CoreMLOptions:
    """Core ML's own flags: image inputs, with the scale/bias of ``--preprocess``."""

    coreml_image_input: bool
    preprocess: str | None


@dataclass(frozen=True)
class CustomOpsOptions:
    """The custom operators of the run (edgeport/ops): op modules or files to load, and compiled
    custom-op libraries every ONNX Runtime session registers."""

    custom_ops: list[str]
    custom_op_library: list[str]


# Stage name -> its group; formats are named as in --output_format.
GROUPS: dict[str, type] = {
    "source": SourceOptions,
    "data": DataOptions,
    "quantize": QuantizeOptions,
    "prune": PruneOptions,
    "verify": VerifyOptions,
    "run": RunOptions,
    "tune": TuneOptions,
    "buckets": BucketOptions,
    "cascade": CascadeOptions,
    "custom_ops": CustomOpsOptions,
    "tflite": TFLiteOptions,
    "coreml": CoreMLOptions,
}


def group_fields(group: type) -> tuple[str, ...]:
    """Return the names of the fields of ``group`` (a class of :data:`GROUPS`)."""
    return tuple(item.name for item in fields(group))


def make_group(group: type, record: Any) -> Any:
    """Return an instance of ``group`` holding the values of the same-named attributes of ``record``
    (a Recipe, or any object with those attributes); ``record`` itself when it already is one."""
    if isinstance(record, group):
        return record
    return group(**{name: getattr(record, name) for name in group_fields(group)})
