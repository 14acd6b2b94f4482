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
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeport.core.errors import ConversionError, InputError, describe_exception
from edgeport.core.extras import require
from edgeport.core.hashing import sha256_path
from edgeport.core.model_bundle import Dim, SourceModel, TensorSpec
from edgeport.core.registry import format_entry
from edgeport.options.recipe import Recipe

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
OTHER_FRAMEWORK_WEIGHTS = ("tf_model.h5", "flax_model.msgpack")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer.model", "spiece.model", "vocab.json")
DEFAULT_SEQUENCE_LENGTH = 128  # when the length must be fixed and --sequence_length is not given
SEQUENCE_DIM = "sequence"  # the symbolic sequence axis of a dynamic export
# Token count of made-up inputs when no text is given (a typical sentence has 15-30 tokens).
SYNTHETIC_SEQUENCE_LENGTH = 32
# Output formats whose converters here need static input shapes (onnx2tf; Core ML's from the source).
EMBEDDING_OUTPUT = "sentence_embedding"
POOLING_MODES = ("mean", "cls", "max")

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


def force_offline() -> None:
    """Switch the Hugging Face hub off for this process (before and after its libraries are imported)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # transformers imports TensorFlow too when it is installed: slow, and not needed here.
    os.environ.setdefault("USE_TF", "0")
    os.environ.setdefault("USE_TORCH", "1")
    import sys

    if "huggingface_hub" in sys.modules:  # read at import time: patch the already-imported constant
        import huggingface_hub.constants

        huggingface_hub.constants.HF_HUB_OFFLINE = True


def is_hf_folder(path: Path) -> bool:
    """True when ``path`` is a folder with a config.json (the mark of a Hugging Face model folder)."""
    return path.is_dir() and (path / "config.json").is_file()


def read_config(folder: Path) -> dict[str, Any]:
    """Return the folder's config.json; raise InputError when it is unreadable or not a model config."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(
            f"{folder / 'config.json'} is not valid JSON: {describe_exception(exc, with_type=False)}"
        ) from exc
    if not isinstance(config, dict) or "model_type" not in config:
        raise InputError(f"{folder / 'config.json'} is not a Hugging Face model config (it has no 'model_type')")
    return config


def refuse_remote_code(folder: Path, config: dict[str, Any]) -> None:
    """Refuse a folder whose model or tokenizer needs its own Python code (``auto_map`` in
    config.json or tokenizer_config.json): edgeport never runs code shipped in a model folder
    (every transformers load also passes ``trust_remote_code=False``)."""
    tokenizer_config: Any = {}
    path = folder / "tokenizer_config.json"
    if path.is_file():
        try:
            tokenizer_config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            tokenizer_config = {}  # a broken tokenizer only costs text data (see load_hf_source)
    for name, data in (("config.json", config), ("tokenizer_config.json", tokenizer_config)):
        if isinstance(data, dict) and data.get("auto_map"):
            raise InputError(
                f"{folder / name} maps to custom Python code in the folder (auto_map); edgeport never runs code "
                "from a model folder (no trust_remote_code)",
                hint="convert a model whose architecture transformers ships, or export it to .onnx yourself",
            )


def check_folder(folder: Path) -> dict[str, Any]:
    """Check that ``folder`` is a complete Hugging Face model folder; return its config.

    Raises InputError (one line) naming what is missing: config.json, the weights, or the
    shards a sharded index lists.
    """
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder} is not a complete Hugging Face model folder: config.json is missing")
    config = read_config(folder)
    refuse_remote_code(folder, config)
    if any((folder / name).is_file() and (folder / name).stat().st_size > 0 for name in WEIGHT_FILES):
        return config
    for index_name in WEIGHT_INDEXES:
        index = folder / index_name
        if not index.is_file():
            continue
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise InputError(f"{index} is not a valid weight index: {describe_exception(exc)}") from exc
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise InputError(
                f"{folder} is an incomplete Hugging Face model folder: {len(missing)} of {len(shards)} weight shards "
                f"listed in {index_name} are missing ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})",
                hint="copy the whole folder (edgeport never downloads from the hub)",
            )
        return config
    others = [name for name in OTHER_FRAMEWORK_WEIGHTS if (folder / name).is_file()]
    raise InputError(
        f"{folder} is an incomplete Hugging Face model folder: no PyTorch weights "
        f"({' or '.join(WEIGHT_FILES)})"
        + (f"; only {', '.join(others)}, which edgeport does not read" if others else ""),
        hint="copy the folder with its weights (edgeport never downloads from the hub)",
    )


@dataclass
class Pooling:
    """A sentence-transformers head: how token states become one vector, and whether it is L2-normalised."""

    mode: str  # "mean", "cls" or "max"
    normalize: bool


def read_sentence_transformers(folder: Path) -> Pooling | None:
    """Read modules.json (+ the Pooling module's config); return the Pooling, or None for plain folders.

    Raises InputError for modules edgeport cannot put in the graph (Dense, several pooling modes).
    """
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return None
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        types = [str(m["type"]).rsplit(".", 1)[-1] for m in modules]
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise InputError(f"{modules_file} is not a valid sentence-transformers module list: {exc}") from exc
    if "Pooling" not in types:
        return None
    unsupported = [t for t in types if t not in ("Transformer", "Pooling", "Normalize")]
    if unsupported:
        raise InputError(
            f"{modules_file} lists module(s) {', '.join(unsupported)} that edgeport cannot fold into the graph",
            hint="pass --task feature-extraction without modules.json to export the token states only",
        )
    pooling_entry = modules[types.index("Pooling")]
    config_file = folder / str(pooling_entry.get("path", "1_Pooling")) / "config.json"
    config: dict[str, Any] = {}
    if config_file.is_file():
        config = json.loads(config_file.read_text(encoding="utf-8"))
    modes = [
        mode
        for mode in POOLING_MODES
        if config.get(f"pooling_mode_{mode}_tokens" if mode != "cls" else "pooling_mode_cls_token")
    ]
    others = [
        k for k, v in config.items() if k.startswith("pooling_mode_") and v and not any(m in k for m in POOLING_MODES)
    ]
    if not config:
        modes = ["mean"]  # sentence-transformers' default
    if len(modes) != 1 or others:
        raise InputError(
            f"{config_file}: edgeport folds exactly one pooling mode ({', '.join(POOLING_MODES)}) into the graph; "
            f"this model uses {', '.join(modes + others) or 'none'}"
        )
    return Pooling(modes[0], "Normalize" in types)


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


def pool_tokens(hidden: Any, attention_mask: Any, pooling: Pooling) -> Any:
    """Pool token states [B, S, H] into sentence vectors [B, H] as sentence-transformers does (torch)."""
    import torch

    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if pooling.mode == "mean":
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    elif pooling.mode == "cls":
        pooled = hidden[:, 0]
    else:
        pooled = torch.where(mask == 0, torch.full_like(hidden, -1e9), hidden).max(dim=1).values
    if pooling.normalize:
        pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
    return pooled


def _module_class():
    import torch

    class HFModule(torch.nn.Module):
        """A transformers model called with positional tensors (in ``input_names`` order).

        Returns the pooled sentence embedding when ``pooling`` is set, else the outputs named
        ``output_names`` (one tensor, or a tuple). transformers models are called with keyword
        arguments: positional ones raise "multiple values for argument 'use_cache'" on export.
        """

        def __init__(
            self, model: Any, input_names: Sequence[str], output_names: Sequence[str], pooling: Pooling | None
        ) -> None:
            super().__init__()
            self.model = model
            self.input_names = list(input_names)
            self.output_names = list(output_names)
            self.pooling = pooling

        def forward(self, *args: Any) -> Any:
            kwargs = dict(zip(self.input_names, args, strict=False))
            output = self.model(**kwargs)
            if self.pooling is not None:
                return pool_tokens(output.last_hidden_state, kwargs["attention_mask"], self.pooling)
            values = tuple(output[name] for name in self.output_names)
            return values[0] if len(values) == 1 else values

    return HFModule


def load_sentence_encoder(folder: str | Path, input_names: Sequence[str] = ("input_ids", "attention_mask")):
    """Return ``(tokenizer, module)`` for a sentence-transformers folder: module(*inputs) -> embeddings.

    The module is the transformers base model (eager attention) plus the folder's pooling and
    normalisation (mean + L2 when modules.json says nothing else), in eval mode.
    """
    force_offline()
    from transformers import AutoModel, AutoTokenizer

    folder = Path(folder)
    pooling = read_sentence_transformers(folder) or Pooling("mean", True)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    model = AutoModel.from_pretrained(
        str(folder), local_files_only=True, trust_remote_code=False, attn_implementation="eager"
    )
    return tokenizer, _module_class()(model.eval(), input_names, [], pooling).eval()


def _reduce(op: str, x: str, axes: list[int], keepdims: int, opset: int, name: str, nodes: list, inits: list) -> str:
    """Append a Reduce* node; its axes are an input from opset 18 (ReduceSum: 13), an attribute before."""
    out = f"{name}_out"
    axes_as_input = opset >= (13 if op == "ReduceSum" else 18)
    if axes_as_input:
        inits.append(numpy_helper.from_array(np.asarray(axes, np.int64), f"{name}_axes"))
        nodes.append(helper.make_node(op, [x, f"{name}_axes"], [out], name=name, keepdims=keepdims))
    else:
        nodes.append(helper.make_node(op, [x], [out], name=name, axes=axes, keepdims=keepdims))
    return out


def append_pooling(
    model: onnx.ModelProto, pooling: Pooling, hidden: str = "last_hidden_state", mask: str = "attention_mask"
) -> None:
    """Append sentence-transformers pooling (+ L2 normalisation) to the exported graph, in place.

    The token-state output ``hidden`` [B, S, H] is replaced by ``sentence_embedding`` [B, H].
    Same arithmetic as :func:`pool_tokens`: mean over the mask (count clamped at 1e-9), the
    first token, or the max over unmasked tokens; then x / max(||x||, 1e-12).
    """
    graph = model.graph
    outputs = {o.name: o for o in graph.output}
    if hidden not in outputs or mask not in {i.name for i in graph.input}:
        raise ConversionError(
            f"cannot add sentence pooling: the exported model lacks the output {hidden!r} or the input {mask!r}"
        )
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 18)
    p = "edgeport_pooling"
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def const(name: str, value: Any, dtype: Any = np.float32) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype), f"{p}/{name}"))
        return f"{p}/{name}"

    nodes.append(helper.make_node("Cast", [mask], [f"{p}/mask_f"], name=f"{p}/Cast", to=TensorProto.FLOAT))
    nodes.append(
        helper.make_node(
            "Unsqueeze", [f"{p}/mask_f", const("last_axis", [-1], np.int64)], [f"{p}/mask3"], name=f"{p}/Unsqueeze"
        )
    )
    if pooling.mode == "mean":
        nodes.append(helper.make_node("Mul", [hidden, f"{p}/mask3"], [f"{p}/masked"], name=f"{p}/Mul"))
        summed = _reduce("ReduceSum", f"{p}/masked", [1], 0, opset, f"{p}/ReduceSum", nodes, inits)
        count = _reduce("ReduceSum", f"{p}/mask3", [1], 0, opset, f"{p}/ReduceSumMask", nodes, inits)
        nodes.append(helper.make_node("Max", [count, const("min_count", 1e-9)], [f"{p}/count"], name=f"{p}/Clamp"))
        nodes.append(helper.make_node("Div", [summed, f"{p}/count"], [f"{p}/pooled"], name=f"{p}/Div"))
    elif pooling.mode == "cls":
        nodes.append(
            helper.make_node(
                "Gather", [hidden, const("first", 0, np.int64)], [f"{p}/pooled"], name=f"{p}/Gather", axis=1
            )
        )
    else:
        nodes.append(helper.make_node("Equal", [f"{p}/mask3", const("zero", 0.0)], [f"{p}/padding"], name=f"{p}/Equal"))
        nodes.append(
            helper.make_node("Where", [f"{p}/padding", const("neg", -1e9), hidden], [f"{p}/filled"], name=f"{p}/Where")
        )
        pooled = _reduce("ReduceMax", f"{p}/filled", [1], 0, opset, f"{p}/ReduceMax", nodes, inits)
        nodes.append(helper.make_node("Identity", [pooled], [f"{p}/pooled"], name=f"{p}/Identity"))
    result = f"{p}/pooled"
    if pooling.normalize:
        nodes.append(helper.make_node("Mul", [result, result], [f"{p}/squares"], name=f"{p}/Square"))
        total = _reduce("ReduceSum", f"{p}/squares", [1], 1, opset, f"{p}/ReduceSumSquares", nodes, inits)
        nodes.append(helper.make_node("Sqrt", [total], [f"{p}/norm"], name=f"{p}/Sqrt"))
        nodes.append(
            helper.make_node("Max", [f"{p}/norm", const("eps", 1e-12)], [f"{p}/norm_c"], name=f"{p}/ClampNorm")
        )
        nodes.append(helper.make_node("Div", [result, f"{p}/norm_c"], [f"{p}/normalized"], name=f"{p}/Normalize"))
        result = f"{p}/normalized"
    nodes.append(helper.make_node("Identity", [result], [EMBEDDING_OUTPUT], name=f"{p}/Output"))
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    hidden_dims = outputs[hidden].type.tensor_type.shape.dim
    batch_dim = hidden_dims[0] if hidden_dims else None
    width = hidden_dims[2].dim_value if len(hidden_dims) == 3 and hidden_dims[2].dim_value else None
    batch: Dim | None = (batch_dim.dim_value or batch_dim.dim_param or None) if batch_dim is not None else None
    embedding = helper.make_tensor_value_info(EMBEDDING_OUTPUT, TensorProto.FLOAT, [batch, width])
    kept = [o for o in graph.output if o.name != hidden]
    del graph.output[:]
    graph.output.extend([*kept, embedding])


@dataclass
class _Shapes:
    """Input shapes of the export: batch (None = dynamic) and sequence length (None = dynamic)."""

    batch: int | None
    sequence_length: int | None


def _static_reason(recipe: Recipe) -> str | None:
    """Why the sequence length must be fixed although nobody asked: the profile requires static
    shapes, or the output format's converter needs them. None when dynamic shapes are fine."""
    if format_entry(recipe.output_format).static_shapes:
        return f"the {recipe.output_format} conversion here needs static input shapes"
    from edgeport.profiles import resolve_profile

    try:
        profile, _ = resolve_profile(recipe.optimize_for)
    except InputError:
        return None  # the pipeline reports the bad profile itself
    if profile.constraints.static_shapes_only:
        return f"profile {profile.name} runs static shapes only (constraints.static_shapes_only)"
    return None


def _resolve_shapes(
    config: dict[str, Any], recipe: Recipe, input_names: list[str]
) -> tuple[_Shapes, list[str], dict[str, str]]:
    """Batch and sequence length from --input_shape / --sequence_length; dynamic by default,
    fixed at 128 (capped by the model) when the profile or the format needs static shapes.

    Returns the shapes, notes and the report decision that says which and why.
    """
    notes = []
    limit = config.get("max_position_embeddings") or config.get("n_positions")
    batch: int | None = None
    length = recipe.sequence_length
    shapes = recipe.input_shape
    asked = "--sequence_length" if length is not None else None
    if shapes:
        dims_by_input = {s.name: s.dims for s in shapes}
        dims = next(iter(dims_by_input.values()))
        if any(name not in (None, *input_names) for name in dims_by_input):
            raise InputError(f"--input_shape names an input the model does not have (inputs: {', '.join(input_names)})")
        if len({tuple(d) for d in dims_by_input.values()}) != 1 or len(dims) != 2:
            raise InputError(
                "--input_shape for a Hugging Face text model is one batch,sequence_length pair for all inputs",
                hint="e.g. --input_shape 1,128 (or --sequence_length 128 with a dynamic batch)",
            )
        if length is not None and length != dims[1]:
            raise InputError(f"--input_shape says sequence length {dims[1]}, --sequence_length says {length}")
        batch, length = (None if recipe.dynamic_batch else dims[0]), dims[1]
        asked = "--input_shape"
    if length is not None:
        decision = {
            "asked": f"{asked} {length}",
            "done": f"sequence length fixed at {length} tokens",
            "why": "asked for; sentences are padded or truncated to it (latency is then measured on padding)",
        }
    else:
        why = _static_reason(recipe)
        if why is None:
            decision = {
                "asked": "Hugging Face export, no --sequence_length",
                "done": "dynamic batch and sequence axes (as optimum exports them)",
                "why": "each sentence runs at its own length, as it will on the device; "
                "--sequence_length N fixes the length when a runtime needs it",
            }
        else:
            length = min(DEFAULT_SEQUENCE_LENGTH, int(limit)) if limit else DEFAULT_SEQUENCE_LENGTH
            decision = {
                "asked": "Hugging Face export, no --sequence_length",
                "done": f"sequence length fixed at {length} tokens",
                "why": f"{why}; --sequence_length N sets another length",
            }
            notes.append(f"sequence length {length} tokens (fixed: {why}; --sequence_length changes it)")
    if limit and length is not None and length > int(limit):
        raise InputError(f"--sequence_length {length} exceeds the model's {limit} positions (max_position_embeddings)")
    return _Shapes(batch, None if length is None else int(length)), notes, decision


def _fix_dims(model: onnx.ModelProto, specs: list[TensorSpec]) -> None:
    """Give the exported graph's inputs the chosen static dims (and its outputs the same named dims).

    optimum exports every text dim as symbolic (batch_size, sequence_length); edgeport names
    them ``batch`` and ``sequence`` when they stay dynamic, and writes the length in when it is
    fixed, so shape inference and the simplifier see static shapes.
    """
    values: dict[str, Dim] = {}
    by_name = {s.name: s for s in specs}
    for value in model.graph.input:
        spec = by_name.get(value.name)
        if spec is None:
            continue
        for dim, size in zip(value.type.tensor_type.shape.dim, spec.shape, strict=False):
            if dim.dim_param:
                values[dim.dim_param] = size
            if isinstance(size, int):
                dim.Clear()
                dim.dim_value = size
            else:
                dim.dim_param = size
    for value in model.graph.output:
        for dim in value.type.tensor_type.shape.dim:
            size = values.get(dim.dim_param) if dim.dim_param else None
            if isinstance(size, int):
                dim.Clear()
                dim.dim_value = size
            elif isinstance(size, str):
                dim.dim_param = size


def _make_exporter(folder: Path, task: str, pooling: Pooling | None, specs: list[TensorSpec]):
    """Return ``to_onnx(feeds, recipe)``: optimum's main_export on the folder (offline), then fixed dims and pooling."""

    def to_onnx(feeds: dict[str, np.ndarray], recipe: Recipe) -> tuple[onnx.ModelProto, str, list[str]]:
        import logging

        force_offline()
        from optimum.exporters.onnx import main_export

        for name in ("optimum", "transformers", "torch.onnx"):
            logging.getLogger(name).setLevel(logging.ERROR)
        with tempfile.TemporaryDirectory(prefix="edgeport-hf-") as out, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                main_export(
                    str(folder),
                    output=out,
                    task=task,
                    opset=recipe.opset,
                    device="cpu",
                    local_files_only=True,
                    do_validation=False,  # edgeport's own parity check follows, on the reference inputs
                    library_name="transformers",
                    trust_remote_code=False,
                )
            except Exception as exc:  # optimum and the torch exporter raise many unrelated types
                raise ConversionError(
                    f"optimum's ONNX export failed for task {task}: {describe_exception(exc)}",
                    hint="check --task (optimum lists the tasks each architecture exports) and --opset",
                ) from exc
            path = Path(out) / "model.onnx"
            if not path.is_file():
                written = sorted(p.name for p in Path(out).glob("*.onnx"))
                raise ConversionError(
                    f"task {task} exports several ONNX models ({', '.join(written)}); edgeport converts one model",
                    hint="choose a single-model task (e.g. feature-extraction, text-classification)",
                )
            model = onnx.load(str(path), load_external_data=True)
        _fix_dims(model, specs)
        notes = []
        if pooling is not None:
            append_pooling(model, pooling)
            notes.append(
                f"sentence-transformers head folded into the graph: {pooling.mode} pooling"
                + (" + L2 normalisation" if pooling.normalize else "")
                + f" -> output {EMBEDDING_OUTPUT!r}"
            )
        version = metadata.version("optimum-onnx")
        return model, f"optimum-onnx {version} main_export (task {task}, opset {recipe.opset})", notes

    return to_onnx


def make_tokenize(tokenizer: Any, specs: list[TensorSpec], length: int | None, limit: int | None = None):
    """Return ``tokenize(sentences) -> {input name: array}`` padded/truncated to ``length`` tokens.

    ``length`` None (a dynamic sequence axis): each call pads only to its longest sentence, so a
    sentence alone keeps its own length; sentences longer than ``limit`` (the model's positions)
    are truncated.
    """

    def tokenize(sentences: list[str]) -> dict[str, np.ndarray]:
        if length is None:
            encoded = tokenizer(
                list(sentences), padding="longest", truncation=limit is not None, max_length=limit, return_tensors="np"
            )
        else:
            encoded = tokenizer(
                list(sentences), padding="max_length", truncation=True, max_length=length, return_tensors="np"
            )
        width = encoded["input_ids"].shape[1]
        feeds = {}
        for spec in specs:
            if spec.name in encoded:
                feeds[spec.name] = np.asarray(encoded[spec.name]).astype(spec.dtype)
            elif spec.name == "token_type_ids":  # some tokenizers do not return it; BERT-style zeros
                feeds[spec.name] = np.zeros((len(sentences), width), spec.dtype)
            else:
                raise InputError(f"the folder's tokenizer does not produce the model input {spec.name!r}")
        return feeds

    return tokenize


def load_hf_source(folder: Path, recipe: Recipe) -> SourceModel:
    """Ingest a local Hugging Face model folder; return the SourceModel (PyTorch model, tokenizer, exporter).

    Raises InputError for an incomplete folder, an unknown task or bad shapes.
    """
    force_offline()
    config = check_folder(folder)
    pooling = read_sentence_transformers(folder)
    notes: list[str] = []
    if recipe.task:
        task, why = recipe.task, "--task"
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
    shapes, shape_notes, shape_decision = _resolve_shapes(config, recipe, input_names)
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
    module = _module_class()(model, input_names, output_names, pooling).eval()

    from edgeport.frontends.torch import make_torch_runner

    tokenize = None
    if any((folder / name).is_file() for name in TOKENIZER_FILES):
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
            limit = config.get("max_position_embeddings") or config.get("n_positions")
            tokenize = make_tokenize(tokenizer, specs, shapes.sequence_length, int(limit) if limit else None)
        except Exception as exc:  # a broken tokenizer only costs text data, not the conversion
            notes.append(f"the folder's tokenizer did not load ({describe_exception(exc)}): no text data")
    else:
        notes.append("the folder has no tokenizer files: text calibration/eval data cannot be used")
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
        to_onnx=_make_exporter(folder, task, pooling, specs),
        tokenize=tokenize,
        output_kind="embedding" if task == "feature-extraction" else None,
        decisions=[shape_decision],
        dim_sizes={SEQUENCE_DIM: SYNTHETIC_SEQUENCE_LENGTH} if shapes.sequence_length is None else {},
    )
