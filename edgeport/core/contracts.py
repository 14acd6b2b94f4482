"""The written contracts: what a format backend and a runner must provide.

A format backend turns the fp32 ONNX model and a precision plan into an artifact and says how
to run it. The pipeline and the search talk to it only through :class:`FormatBackend`; every
attribute they read is declared here with its default, so nothing is probed with ``getattr``.
A runner loads an artifact and runs it on numpy inputs (:class:`Runner`, structural: the
runners in ``edgeport/runtime`` import nothing from edgeport, so the device harness can ship
them as they are).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from edgeport.core.runner_spec import RunnerSpec

if TYPE_CHECKING:  # annotations only: these types live in packages above core
    import numpy as np

    from edgeport.core.plan import PrecisionPlan
    from edgeport.core.progress import Progress


@runtime_checkable
class Runner(Protocol):
    """A loaded artifact. ``run`` takes inputs by name (cast to the model's dtypes by the runner)
    and returns the outputs in ``output_names`` order; ``describe`` gives the runtime, its version,
    threads and host for the report."""

    kind: str
    load_seconds: float
    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...

    def describe(self) -> dict[str, Any]: ...


@runtime_checkable
class TimedTogether(Protocol):
    """A runner whose runtime times itself (the browser page times its sessions with
    ``performance.now()``: a round trip from Python per run would time the channel, not the
    model). ``time_together`` times ``runners`` (this one among them) side by side, interleaved
    after a warm-up, the way ``runtime/timing.py`` does, and returns per name the run times in
    ns; None when they cannot be timed together (they run in different places)."""

    def time_together(
        self, runners: dict[str, Any], feed_list: list[dict[str, np.ndarray]], runs: int, warmup: int
    ) -> dict[str, list[int]] | None: ...


@dataclass
class Artifact:
    """A built artifact: its file, how to run it, notes, and format facts for the manifest."""

    path: Path
    runner: RunnerSpec
    notes: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    # Choices the build made that the report lists as decisions (asked / done / why).
    decisions: list[dict[str, str]] = field(default_factory=list)
    # When the artifact's runtime cannot run on this host (Core ML off macOS): a stand-in that
    # computes its outputs for an *emulated* fidelity; latency, load time and memory are not run.
    emulation: RunnerSpec | None = None


class FormatBackend(ABC):
    """One output format. Built once per conversion from the device profile, the format's own option
    group (``Recipe.format_options()``: TFLiteOptions, CoreMLOptions; None for a format without
    options), the (normalized, possibly pruned) CanonicalModel and sample inputs by name; each may
    be None where a backend does not need it (the search builds an ONNX proxy backend from
    providers alone).

    Class attributes the search and the pipeline read (override them, do not probe them):
    """

    format: ClassVar[str]  # the registry name, e.g. "onnx"
    file_name: ClassVar[str]  # the artifact's name in the bundle, e.g. "model.onnx"
    # The search times candidates only where the target's runtime runs on this host.
    times_on_host: bool = True
    # What a layer kept out of the quantization scheme computes in on this target.
    float_precision: str = "fp32"
    # The search may try graph-rewrite variants (smoothing, bias correction) of each scheme.
    plan_variants: bool = True
    # The search measures per-layer sensitivity by quantizing one layer at a time.
    measure_sensitivity: bool = True
    # The format rounds int8 weights by GPTQ on its own file (a start variant of the search).
    weight_rounding: bool = False
    # The runtime's kernel profiler that ``profile_kernels`` uses, for the progress line (None: none).
    kernel_profiler: str | None = None
    # Per-layer sensitivity is measured on ONNX Runtime's CPU provider as a proxy (building and
    # loading one artifact per layer in the target's own converter or runtime is too slow).
    proxy_sensitivity: bool = True

    def __init__(self, profile: Any, options: Any = None, canonical: Any = None, samples: dict | None = None) -> None:
        self.profile = profile
        self.options = options
        self.canonical = canonical
        self.samples = samples or {}

    @abstractmethod
    def build(
        self,
        baseline: Path,
        plan: PrecisionPlan,
        out: Path,
        work: Path,
        calibration: Any,
        batch: int,
        progress: Progress | None = None,
    ) -> Artifact:
        """Apply ``plan`` to the fp32 ONNX file ``baseline`` and write the artifact to ``out``
        (``work``: a scratch folder). The Artifact says how to run it (its RunnerSpec carries what
        the export learnt: layouts, tensor names). Raises ConversionError when the format cannot
        express the model or the plan."""

    @abstractmethod
    def fp32_reference(self, baseline: Path, out_dir: Path, work: Path) -> tuple[RunnerSpec, Path | None]:
        """The fp32 model timed side by side with the artifact, in the same runtime, and the file
        written for it in ``out_dir`` (None when the baseline itself serves)."""

    @abstractmethod
    def measured_label(self, runner: Any) -> str:
        """Where the latency figures were measured (the target's runtime, a stand-in, emulated)."""

    @abstractmethod
    def check_ops(self, path: Path) -> dict[str, Any]:
        """Read the artifact (not run it) and return ``{"ops": {op: count}, "flagged": [...]}``:
        the ops the profile's runtime would not run where meant."""

    def auto_schemes(self, real_calibration: bool) -> list[str] | None:
        """The uniform schemes the auto search starts from, most compressed first; None lets the
        search take them from the profile."""
        del real_calibration
        return None

    def bundle_files(self, bundle: Path, artifact: Path) -> list[str]:
        """Write the files this target adds to the bundle beside the artifact (the browser's
        ``web/`` page) into the folder ``bundle``; return their paths relative to it."""
        del bundle, artifact
        return []

    def run_decisions(self) -> list[dict[str, str]]:
        """Choices any build in this run made that the report lists, the search's candidates
        included (a TFLite candidate that fell back to the other route): the chosen artifact may
        be one built before them, so its own ``decisions`` do not hold them all."""
        return []

    def profile_kernels(
        self, baseline: Path, artifact: Path, feeds: dict[str, np.ndarray], threads: int, layers: dict[str, list[str]]
    ) -> dict[str, Any] | None:
        """Per-kernel timings of the artifact against the baseline, where the runtime has a
        profiler (``kernel_profiler``); None elsewhere."""
        del baseline, artifact, feeds, threads, layers
        return None
