"""The Python API: ``edgeport.convert(...)``, the same job as ``edgeport convert``."""

from __future__ import annotations

from typing import Any

from edgeport.core.progress import Progress
from edgeport.options.recipe import Recipe, default_of, parse_input_dtypes, parse_input_shapes


def convert(
    input_model: str,
    *,
    # Defaults read from Recipe's fields, where they are written once (the CLI reads them too).
    output_format: str = default_of("output_format"),
    quantization: str = default_of("quantization"),
    optimize_for: str = default_of("optimize_for"),
    input_shape: str | list[str] | None = None,
    input_dtype: str | list[str] | None = None,
    progress: Progress | None = None,
    **options: Any,
):
    """Convert ``input_model`` into a verified artifact bundle and return the pipeline Result.

    ``input_model`` is a model file, a TensorFlow SavedModel folder, a Hugging Face model
    folder or a ``module:factory`` reference. Keyword options are the CLI flags (snake_case):
    calibration_data, eval_data, output_dir, dynamic_batch, model_class, allow_pickle,
    max_accuracy_drop, preprocess, threads, task and sequence_length (Hugging Face),
    prune and finetune_steps (pruning), objective (``"throughput"``), batch_sizes (``"1,2,4"``
    or a list) and max_latency_ms (batch and thread tuning; threads may be a list too),
    max_memory (``"4GB"``: refuse a model or input that would need more, before loading it),
    max_size (``"10MB"``: the artifact's size budget; the auto search keeps only plans that
    fit), buckets (``"seq=16,32,64,128"``: one static artifact per size of that dynamic axis,
    ONNX only), cascade (``"fp32"``: the artifact answers when its max softmax probability
    reaches a threshold picked on the calibration data, the fp32 baseline the rest; optional
    cascade_threshold), custom_ops (op modules or .py files calling ``edgeport.ops.register_op``;
    a comma list or a list) and custom_op_library (compiled custom-op libraries for ONNX Runtime), ...
    Returns ``edgeport.pipeline.run.Result`` (``bundle_dir``, ``report``, ``passed``).
    Raises InputError (bad input), ConversionError (conversion failed) or GateFailed (the
    accuracy gate failed; the bundle is still written and marked failed).
    """
    from dataclasses import fields

    from edgeport.core.errors import InputError
    from edgeport.pipeline.run import run

    known = {f.name for f in fields(Recipe)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(f"unknown option {unknown[0]!r}", hint=f"options: {', '.join(sorted(known))}")
    recipe = Recipe(
        input_model=str(input_model),
        output_format=output_format,
        quantization=quantization,
        optimize_for=optimize_for,
        input_shape=parse_input_shapes(input_shape),
        input_dtype=parse_input_dtypes(input_dtype),
        **options,
    )
    return run(recipe, progress)
