"""Serve a bundle with the runtime only: ``load_bundle(folder) -> DeployedModel``.

It reads the bundle's ``manifest.json`` (written by ``edgeport/pipeline/report.py``), opens the
artifact with the runner the manifest names (ONNX Runtime or LiteRT, from this folder) and
applies the recommended session options (threads) that batch and thread tuning chose.

With shape buckets (``manifest["buckets"]``, issue 18) the bundle holds one static-shape
artifact per size of one axis (``model_sequence16.onnx``, ...). ``DeployedModel.run`` then
routes the input to the smallest bucket that holds its real length (what the mask marks, so
a tokenizer's padding to a fixed length does not count), pads the bucketed inputs (the
manifest's padding value; 0 for the mask, which it builds when the caller gives none), runs,
and cuts the outputs that carry the axis back to the length given.

With a cascade (``manifest["cascade"]``) the bundle holds a small and a large model and a rule
(``runtime/cascade.py``). ``DeployedModel.run_routed`` applies it: by confidence, it runs the
small one on the batch and the large one on the samples whose confidence is below the threshold
only; by size, it runs the small one on the samples whose size is above the threshold and the
large one on the rest. It returns the outputs with which model answered each sample (``run``
returns the outputs alone).

Like every module here it imports only numpy, its runtime and ``edgeport.core.errors``, so a
device or a server with only numpy and onnxruntime (or LiteRT) installed can run it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.core.errors import InputError
from edgeport.runtime.cascade import MASK_SUM, SIZE, Cascade, sample_sizes, take_rows

MANIFEST = "manifest.json"
# Runner kinds this helper opens (core/registry.py names them; the browser and Core ML need more).
_RUNNER_KINDS = ("onnxruntime", "litert")


def open_runner(kind: str, path: Path, threads: int, kwargs: dict[str, Any]) -> Any:
    """Open the runner ``kind`` on the file ``path`` with ``threads`` and the manifest's kwargs;
    return it (an OrtRunner or a LiteRTRunner). Raises InputError for another kind."""
    if kind == "onnxruntime":
        from edgeport.runtime.ort import OrtRunner

        return OrtRunner(path, threads=threads, **kwargs)
    if kind == "litert":
        from edgeport.runtime.litert import LiteRTRunner

        return LiteRTRunner(path, threads=threads, **kwargs)
    raise InputError(f"runner {kind!r} cannot be served by edgeport.runtime (it serves {', '.join(_RUNNER_KINDS)})")


@dataclass(frozen=True)
class Buckets:
    """The manifest's bucket rule: one static artifact per size of ``axis``; ``inputs`` and
    ``outputs`` map each tensor that carries the axis to its position; ``pads`` the value each
    bucketed input is padded with; ``mask`` the attention-mask input (padded with 0), if any."""

    axis: str
    sizes: list[int]
    files: list[str]
    inputs: dict[str, int]
    outputs: dict[str, int]
    pads: dict[str, float]
    mask: str | None

    @classmethod
    def from_manifest(cls, section: dict[str, Any]) -> Buckets:
        """Read the manifest's ``buckets`` section; raise InputError when it is malformed."""
        try:
            sizes = [int(s) for s in section["sizes"]]
            files = [str(f) for f in section["files"]]
            inputs = {str(k): int(v) for k, v in section["inputs"].items()}
            outputs = {str(k): int(v) for k, v in section.get("outputs", {}).items()}
            pads = {str(k): float(v) for k, v in section.get("pads", {}).items()}
            axis, mask = str(section["axis"]), section.get("mask_input")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"manifest.json: malformed buckets section ({exc})") from exc
        if len(sizes) != len(files) or not sizes or sorted(sizes) != sizes or not inputs:
            raise InputError("manifest.json: buckets need ascending sizes, one file each, and the inputs they cut")
        return cls(axis, sizes, files, inputs, outputs, pads, mask)

    def natural_length(self, feeds: dict[str, np.ndarray]) -> int:
        """The natural length of one sample: the mask's count of real positions (the size routing
        rule's measure, one definition), else the axis size."""
        if self.mask is not None and self.mask in feeds:
            return int(sample_sizes(feeds, self.mask, MASK_SUM)[0])
        name = next(n for n in self.inputs if n in feeds)
        return int(np.asarray(feeds[name]).shape[self.inputs[name]])

    def choose(self, length: int) -> int:
        """Return the index of the smallest bucket that holds ``length`` (the selection rule);
        raise InputError when the input is longer than the largest one."""
        for index, size in enumerate(self.sizes):
            if length <= size:
                return index
        raise InputError(f"input {self.axis} {length} is longer than the largest bucket ({self.sizes[-1]})")


def _pad(array: np.ndarray, axis: int, size: int, value: float) -> np.ndarray:
    """Pad ``array`` along ``axis`` up to ``size`` with ``value`` (at the end)."""
    widths = [(0, 0)] * array.ndim
    widths[axis] = (0, size - array.shape[axis])
    return np.pad(array, widths, constant_values=np.asarray(value).astype(array.dtype))


@dataclass
class DeployedModel:
    """A bundle opened for serving: ``run(feeds) -> {output name: array}``."""

    folder: Path
    manifest: dict[str, Any]
    threads: int
    buckets: Buckets | None = None
    cascade: Cascade | None = None
    _runners: dict[str, Any] = field(default_factory=dict)

    @property
    def opened(self) -> list[str]:
        """The bundle files opened so far (with buckets: the buckets used), in order of first use."""
        return list(self._runners)

    def runner(self, file: str) -> Any:
        """The runner of the bundle's ``file`` (opened once, on first use)."""
        if file not in self._runners:
            spec = self.manifest["runner"]
            path = self.folder / file
            if not path.is_file():
                raise InputError(f"bundle {self.folder}: {file} is missing")
            self._runners[file] = open_runner(spec["kind"], path, self.threads, dict(spec.get("kwargs") or {}))
        return self._runners[file]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on ``feeds`` (by input name); return the outputs by name. With buckets,
        route to the smallest bucket that fits, pad, run and cut the outputs back."""
        if self.cascade is not None:
            return self.run_routed(feeds)[0]
        if self.buckets is None:
            runner = self.runner(self.manifest["runner"]["file"])
            return dict(zip(runner.output_names, runner.run(feeds), strict=True))
        return self._run_bucketed(feeds, self.buckets)

    def run_routed(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Apply the bundle's routing rule to a batch (inputs batch-first). By confidence: run the
        small model, then the large one on the samples below the threshold. By size: the samples
        whose size is above the threshold run on the small model, the rest on the large one.
        Return (the outputs by name, a bool per sample that is True where the large model
        answered). Without a cascade every sample is the one model's."""
        if self.cascade is not None and self.cascade.rule == SIZE:
            return self._run_by_size(feeds, self.cascade)
        small = self.runner(self.cascade.small if self.cascade else self.manifest["runner"]["file"])
        outputs = dict(zip(small.output_names, small.run(feeds), strict=True))
        if self.cascade is None:
            return outputs, np.zeros(len(next(iter(outputs.values()))), dtype=bool)
        if self.cascade.output not in outputs:
            raise InputError(f"cascade output {self.cascade.output!r} is not an output of {self.cascade.small}")
        escalated = self.cascade.escalate(outputs[self.cascade.output])
        if escalated.any():
            rows = np.nonzero(escalated)[0]
            large = self.runner(self.cascade.large)
            answers = dict(zip(large.output_names, large.run(take_rows(feeds, rows)), strict=True))
            outputs = _merged(outputs, answers, rows)
        return outputs, escalated

    def _run_by_size(self, feeds: dict[str, np.ndarray], rule: Cascade) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The size rule on a batch: each model runs only the samples it answers (a batch that is
        all one side runs whole, without copying rows)."""
        to_large = rule.to_large(feeds)
        parts = []
        for file, rows in ((rule.small, np.nonzero(~to_large)[0]), (rule.large, np.nonzero(to_large)[0])):
            if rows.size:
                runner = self.runner(file)
                fed = feeds if rows.size == len(to_large) else take_rows(feeds, rows)
                parts.append((rows, dict(zip(runner.output_names, runner.run(fed), strict=True))))
        outputs = parts[0][1]
        if len(parts) == 2:
            outputs = _merged(_spread(outputs, parts[0][0], len(to_large)), parts[1][1], parts[1][0])
        return outputs, to_large

    def _run_bucketed(self, feeds: dict[str, np.ndarray], buckets: Buckets) -> dict[str, np.ndarray]:
        """Route by the real length (trailing positions the mask marks as padding do not count),
        pad the bucketed inputs to the chosen bucket (building the mask if absent), run, and
        return the outputs that carry the axis at the length given (positions past the real
        length are 0: a tokenizer's padding to a fixed length keeps its shapes)."""
        given = {name: np.asarray(feeds[name]) for name in buckets.inputs if name in feeds}
        lengths = {array.shape[buckets.inputs[name]] for name, array in given.items()}
        if len(lengths) != 1:
            raise InputError(f"inputs {', '.join(buckets.inputs)} must share one {buckets.axis} length (got {lengths})")
        length = lengths.pop()
        mask = buckets.mask
        real = _real_length(given[mask], buckets.inputs[mask]) if mask in given else length
        index = buckets.choose(real)
        size = buckets.sizes[index]
        if mask is not None and mask not in given:
            # No mask given: every position of the natural input is real.
            like = next(iter(given.values()))
            given[mask] = np.ones(like.shape[: buckets.inputs[mask] + 1], dtype=np.int64)
        padded = dict(feeds)
        for name, array in given.items():
            value = 0.0 if name == mask else buckets.pads.get(name, 0.0)
            cut = np.take(array, np.arange(real), axis=buckets.inputs[name])
            padded[name] = _pad(cut, buckets.inputs[name], size, value)
        runner = self.runner(buckets.files[index])
        outputs = dict(zip(runner.output_names, runner.run(padded), strict=True))
        for name, axis in buckets.outputs.items():
            if name in outputs:
                kept = np.take(outputs[name], np.arange(real), axis=axis)
                outputs[name] = _pad(kept, axis, length, 0.0)
        return outputs


def _spread(outputs: dict[str, np.ndarray], rows: np.ndarray, count: int) -> dict[str, np.ndarray]:
    """Outputs of the samples ``rows`` placed into zeroed batch-first arrays of ``count`` samples."""
    spread = {}
    for name, array in outputs.items():
        full = np.zeros((count, *np.shape(array)[1:]), dtype=np.asarray(array).dtype)
        full[rows] = array
        spread[name] = full
    return spread


def _merged(outputs: dict[str, np.ndarray], answers: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """``outputs`` with the samples ``rows`` replaced by ``answers`` (the other model's), copied."""
    merged = dict(outputs)
    for name, array in answers.items():
        if name in merged:
            updated = np.array(merged[name], copy=True)
            updated[rows] = array
            merged[name] = updated
    return merged


def _real_length(mask: np.ndarray, axis: int) -> int:
    """The length up to the last position any row of ``mask`` marks as real (at least 1)."""
    real = np.nonzero(np.any(np.moveaxis(mask, axis, -1).reshape(-1, mask.shape[axis]) != 0, axis=0))[0]
    return int(real[-1]) + 1 if real.size else 1


def load_bundle(path: str | Path, threads: int | None = None) -> DeployedModel:
    """Open the bundle folder ``path`` for serving and return its DeployedModel.

    ``threads``: the intra-op thread count; None takes the manifest's recommended session
    options (batch and thread tuning), else 1. Raises InputError for a folder without a
    readable manifest or a runner this helper cannot open."""
    folder = Path(path)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder} is not an edgeport bundle: cannot read {MANIFEST} ({exc})") from exc
    if not isinstance(manifest, dict) or "runner" not in manifest:
        raise InputError(f"{folder / MANIFEST} names no runner")
    if manifest["runner"].get("kind") not in _RUNNER_KINDS:
        raise InputError(f"runner {manifest['runner'].get('kind')!r} cannot be served by edgeport.runtime")
    recommended = manifest.get("recommended_session_options") or {}
    chosen = threads if threads is not None else int(recommended.get("intra_op_num_threads") or 1)
    if chosen < 1:
        raise InputError("threads must be >= 1")
    section = manifest.get("buckets")
    buckets = Buckets.from_manifest(section) if section else None
    rule = Cascade.from_manifest(manifest["cascade"]) if manifest.get("cascade") else None
    return DeployedModel(folder, manifest, chosen, buckets, rule)
