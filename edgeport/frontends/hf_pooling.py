"""Sentence-transformers heads: reading modules.json, pooling token states in PyTorch (the
reference) and the same pooling appended to the exported ONNX graph; and the ``nn.Module``
wrapper that calls a transformers model with positional tensors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeport.core.errors import ConversionError, InputError
from edgeport.core.model import Dim
from edgeport.frontends.hf_folder import force_offline

EMBEDDING_OUTPUT = "sentence_embedding"
POOLING_MODES = ("mean", "cls", "max")


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


def module_class():
    """Return the ``HFModule`` class (defined on first use: torch is imported only then)."""
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
    return tokenizer, module_class()(model.eval(), input_names, [], pooling).eval()


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
