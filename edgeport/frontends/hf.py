"""Hugging Face ingestion: a local model folder (config.json + weights) exported to ONNX with
optimum-onnx's exporter, offline only, and checked against the transformers model in PyTorch.

- The folder must be complete: config.json, the weights (model.safetensors, pytorch_model.bin
  or every shard of a sharded index). Nothing is ever downloaded: the hub is switched off
  (``HF_HUB_OFFLINE``) and every load passes ``local_files_only``.
- ``--task`` defaults to what the config's architecture says (``BertModel`` ->
  feature-extraction, ``...ForSequenceClassification`` -> text-classification).
- Inputs keep a dynamic batch and a dynamic sequence length by default, as optimum exports
  them: a sentence runs at its own length (MiniLM: 6.2 ms at a natural 25 tokens against
  20.8 ms padded to 128). The length is fixed only when asked (``--sequence_length N``,
  ``--input_shape B,S``) or needed: a profile with ``static_shapes_only`` or an output format
  whose converter wants static shapes (TFLite, Core ML) gets 128 tokens (capped by the model).
  A report decision says which and why.
- Sentence-transformer folders (modules.json with Pooling, optionally Normalize) get the
  pooling and the L2 normalisation appended to the exported graph, so the artifact returns
  sentence embeddings (output ``sentence_embedding``), not token states.
- The folder's tokenizer turns a text file (one sentence a line) into calibration/eval inputs
  (``SourceModel.tokenize``, used by :func:`edgeport.data.load_dataset`).

This module loads the folder and chooses the task; the rest has one module per job:
``hf_folder`` (the folder on disk, offline hub), ``hf_pooling`` (sentence-transformers heads),
``hf_shapes`` (batch and sequence length), ``hf_export`` (optimum) and ``hf_text`` (tokenizer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeport.core.errors import InputError, describe_exception
from edgeport.core.extras import require
from edgeport.core.hashing import sha256_path
from edgeport.core.model import Dim, SourceModel, TensorSpec
from edgeport.frontends.hf_export import make_exporter
from edgeport.frontends.hf_folder import check_folder, force_offline
from edgeport.frontends.hf_pooling import EMBEDDING_OUTPUT, Pooling, module_class, read_sentence_transformers
from edgeport.frontends.hf_shapes import SEQUENCE_DIM, SYNTHETIC_SEQUENCE_LENGTH, resolve_shapes
from edgeport.frontends.hf_text import load_tokenize
from edgeport.options.groups import SourceOptions

# Architecture class suffix -> optimum task, for the default --task (checked in this order).
_ARCHITECTURE_TASKS = (
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForMultipleChoice", "multiple-choice"),
    ("ForMaskedLM", "fill-mask"),
    ("ForImageClassification", "image-classification"),
    ("ForCausalLM", "text-generation"),
    ("LMHeadModel", "text-generation"),
    ("ForConditionalGeneration", "text2text-generation"),
    ("Model", "feature-extraction"),
)


def default_task(config: dict[str, Any], pooling: Pooling | None) -> tuple[str, str]:
    """The task to export when --task is not given, and why."""
    if pooling is not None:
        return "feature-extraction", "modules.json describes a sentence-transformers model (embeddings)"
    architectures = config.get("architectures") or []
    for architecture in architectures:
        for suffix, task in _ARCHITECTURE_TASKS:
            if architecture.endswith(suffix):
                return task, f"config.json names the architecture {architecture}"
    return "feature-extraction", "config.json names no known architecture; exporting the base model's states"


def load_hf_source(folder: Path, options: SourceOptions) -> SourceModel:
    """Ingest a local Hugging Face model folder; return the SourceModel (PyTorch model, tokenizer, exporter).

    Raises InputError for an incomplete folder, an unknown task or bad shapes.
    """
    force_offline()
    config = check_folder(folder)
    pooling = read_sentence_transformers(folder)
    notes: list[str] = []
    if options.task:
        task, why = options.task, "--task"
        if pooling is not None and task != "feature-extraction":
            notes.append(f"modules.json pooling not applied: --task {task} is not feature-extraction")
            pooling = None
    else:
        task, why = default_task(config, pooling)
    import logging

    logging.getLogger("transformers").setLevel(logging.ERROR)
    require("optimum.exporters.onnx.model_configs", "A Hugging Face model folder", "huggingface")  # registers configs
    from optimum.exporters.tasks import TasksManager

    model_type = str(config["model_type"]).replace("_", "-")
    try:
        supported = TasksManager.get_supported_tasks_for_model_type(
            model_type, exporter="onnx", library_name="transformers"
        )
    except Exception as exc:
        raise InputError(f"optimum cannot export model type {model_type!r} to ONNX: {describe_exception(exc)}") from exc
    if task not in supported:
        raise InputError(
            f"task {task!r} is not exportable for model type {model_type!r}",
            hint=f"--task one of: {', '.join(sorted(supported))}",
        )
    try:
        model_class = TasksManager.get_model_class_for_task(task, framework="pt", library="transformers")
        model = model_class.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False, attn_implementation="eager"
        )
    except Exception as exc:  # transformers raises OSError/ValueError/KeyError... for a bad folder
        raise InputError(f"{folder} does not load with transformers: {describe_exception(exc)}") from exc
    model.eval()
    onnx_config = supported[task](model.config)
    input_names = list(onnx_config.inputs)
    shapes, shape_notes, shape_decision = resolve_shapes(config, options, input_names)
    notes += shape_notes
    dummy = onnx_config.generate_dummy_inputs(
        framework="pt", batch_size=shapes.batch or 2, sequence_length=shapes.sequence_length or 16
    )
    specs = []
    for name in input_names:
        tensor = dummy[name]
        dims: list[Dim] = list(tensor.shape)
        dims[0] = shapes.batch if shapes.batch is not None else "batch"
        if shapes.sequence_length is None and len(dims) > 1:
            dims[1] = SEQUENCE_DIM
        specs.append(TensorSpec(name, dims, str(tensor.dtype).replace("torch.", "")))
    output_names = [EMBEDDING_OUTPUT] if pooling is not None else list(onnx_config.outputs)
    module = module_class()(model, input_names, output_names, pooling).eval()

    from edgeport.frontends.torch import make_torch_runner

    tokenize = load_tokenize(folder, config, specs, shapes.sequence_length, notes)
    architecture = (config.get("architectures") or [model.__class__.__name__])[0]
    kind = "sentence-transformers model folder" if pooling is not None else "Hugging Face model folder"
    notes.insert(
        0,
        f"loaded as a {kind} ({architecture}, model type {config['model_type']}); task {task} ({why}); "
        f"inputs {', '.join(f'{s.name} {s.shape}' for s in specs)}",
    )
    return SourceModel(
        "pytorch",  # the weights run in PyTorch through transformers (Core ML converts from this module)
        "huggingface",
        str(folder),
        sha256_path(folder),
        specs,
        run=make_torch_runner(module, input_names),
        live_model=module,
        notes=notes,
        to_onnx=make_exporter(folder, task, pooling, specs),
        tokenize=tokenize,
        output_kind="embedding" if task == "feature-extraction" else None,
        decisions=[shape_decision],
        dim_sizes={SEQUENCE_DIM: SYNTHETIC_SEQUENCE_LENGTH} if shapes.sequence_length is None else {},
    )
