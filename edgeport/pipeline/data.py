"""The data of one run: the eval and calibration sets, how they are batched, and the reference
samples every later stage compares against."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeport.core.errors import InputError
from edgeport.core.model import SourceModel, batch_axes
from edgeport.core.plan import CALIBRATED_SCHEMES
from edgeport.data.dataset import Dataset
from edgeport.data.load import load_dataset
from edgeport.data.preprocess import parse_preprocess
from edgeport.options.recipe import Recipe

EVAL_BATCH = 32  # eval batch for models with a dynamic batch dimension
REFERENCE_SAMPLES = 8


@dataclass
class DataPlan:
    """The datasets of one run and how they are batched."""

    eval_data: Dataset
    calibration: Dataset | None
    dynamic: bool  # every input has a symbolic batch dimension (at any axis)
    static_batch: int  # the batch the model declares (1 when dynamic or when an input has no batch axis)
    # --calibration_data opened for a routing threshold (--cascade) when the scheme itself
    # calibrates nothing (dynamic int8, fp16): the threshold is picked on it, not on the eval data.
    routing: Dataset | None = None

    @property
    def batch(self) -> int:
        """Batch used for evaluation and calibration."""
        return EVAL_BATCH if self.dynamic else self.static_batch


def open_data(recipe: Recipe, scheme: str, source: SourceModel, decisions: list[dict[str, str]]) -> DataPlan:
    """Open the eval and (for int8) calibration data; record any fallback as a decision.

    Returns the DataPlan; raises InputError when the eval data is smaller than the model's batch.
    """
    preprocess = parse_preprocess(recipe.preprocess)
    # The batch may sit at any axis (a state [2, batch, 128]); an input without one (a rank-0
    # sample rate) makes the model run one sample at a time.
    axes = batch_axes(source.inputs)
    dynamic = all(axes[s.name] is not None and isinstance(s.shape[axes[s.name]], str) for s in source.inputs)
    declared = [s.shape[axes[s.name]] for s in source.inputs if axes[s.name] is not None]
    static_batch = 1 if dynamic else next((d for d in declared if isinstance(d, int)), 1)

    def open_(path: str | None, limit: int | None, seed: int, synthetic_count: int = 64) -> Dataset:
        return load_dataset(
            path,
            source.inputs,
            limit,
            preprocess,
            seed,
            synthetic_count,
            static_batch,
            text_encoder=source.tokenize,
            dim_sizes=source.dim_sizes,
        )

    eval_data = open_(recipe.eval_data, recipe.eval_samples, recipe.seed, synthetic_count=128)
    calibration = None
    if scheme in (*CALIBRATED_SCHEMES, "auto") or recipe.precision_plan:
        if recipe.calibration_data:
            calibration = open_(recipe.calibration_data, recipe.calibration_samples, recipe.seed)
        elif recipe.eval_data:
            calibration = open_(recipe.eval_data, recipe.calibration_samples, recipe.seed)
            why = "no calibration set was given; accuracy measured on the same samples may be optimistic"
            decisions.append(
                {"asked": f"{scheme} without --calibration_data", "done": "calibrated on the eval data", "why": why}
            )
        else:
            calibration = open_(None, recipe.calibration_samples, recipe.seed + 1)
            why = "no data was given; activation ranges from random inputs can be far from real ones"
            decisions.append(
                {"asked": f"{scheme} without --calibration_data", "done": "calibrated on random inputs", "why": why}
            )
    if len(eval_data) < static_batch:
        raise InputError(f"the eval data has {len(eval_data)} samples; the model's batch is {static_batch}")
    routing = None
    if calibration is None and recipe.cascade and recipe.calibration_data:
        routing = open_(recipe.calibration_data, recipe.calibration_samples, recipe.seed)
    return DataPlan(eval_data, calibration, dynamic, static_batch, routing)


def reference_feeds(data: DataPlan) -> dict[str, np.ndarray]:
    """Return the reference inputs: the first eval samples of one shape (a few for a dynamic
    batch, the declared batch otherwise), which export parity, pruning and reference.npz use."""
    count = min(len(data.eval_data), REFERENCE_SAMPLES if data.dynamic else data.static_batch)
    return data.eval_data.batch(*data.eval_data.spans(count)[0])
