"""The size budget of ``--quantization auto`` (``--max_size`` or the profile's default): which
extra starting schemes it brings, how it ranks the search's starts, and how close the chosen
plan came when nothing fit.

A plan is feasible only when its built artifact (bytes on disk, external data included) is
within the budget as well as its accuracy drop within the accuracy budget. Keeping layers in
float only adds bytes, so a start over the size budget stays over it whatever the search keeps
in float; the schemes that shrink weights most (int4/int8 weight-only, MatMulNBits) are then the
starts that can fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import onnx

from edgeport.core.sizes import artifact_bytes, format_size, over_budget

# Weight-only schemes, least compressed first: they quarter (int8) or eighth (int4) the bytes of
# the MatMul weights that dominate large models, where static int8 also stores Q/DQ parameters.
SIZE_SCHEMES = ("int8-weight", "int4-weight")


def embedding_gathers(model: onnx.ModelProto) -> list[str]:
    """Return the names of the Gather nodes that look rows up (axis 0) in a 2-D float constant:
    embedding tables, often most of a text model's bytes. A weight-only plan with
    ``details["embeddings"]`` stores them block-wise (ONNX: GatherBlockQuantized)."""
    tables = {i.name for i in model.graph.initializer if len(i.dims) == 2 and i.data_type == onnx.TensorProto.FLOAT}
    found = []
    for node in model.graph.node:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if node.op_type == "Gather" and axis == 0 and node.input[0] in tables and node.input[1] not in tables:
            found.append(node.name)
    return found


def fits(size_bytes: int | None, max_size: int | None) -> bool:
    """Whether an artifact of ``size_bytes`` meets ``max_size`` (no budget: always; unknown size: never)."""
    return max_size is None or (size_bytes is not None and size_bytes <= max_size)


def size_schemes(runs: tuple[str, ...], max_size: int | None, have_int8: bool) -> list[str]:
    """The weight-only schemes the search also starts from: under a size budget, or when the
    profile runs no int8 scheme at all (WebGPU), those of SIZE_SCHEMES that the format runs."""
    if max_size is None and have_int8:
        return []
    return [s for s in SIZE_SCHEMES if s in runs]


def start_rank(point: Any, order: int, budget: float, recoverable: float, max_size: int | None) -> tuple:
    """The rank of one measured start (higher is better): a start within the size budget beats
    any other; among those over it, the smallest; then, as without a size budget, usable starts
    (within the accuracy budget, or untimed and plausibly recoverable) by measured speedup, and
    unusable ones by accuracy."""
    if not fits(point.size_bytes, max_size):
        return (False, False, -float(point.size_bytes or 0))
    usable = point.feasible or (point.speedup is None and point.drop <= recoverable * budget + 1e-9)
    return (True, usable, (point.speedup or -order) if usable else -point.drop)


def size_section(chosen: Any, points: list[Any], max_size: int | None, source: str | None) -> dict[str, Any] | None:
    """The search report's size-budget entry: the budget, where it came from, whether the chosen
    plan fits, and how close the smallest plan came when none did; None without a budget."""
    if max_size is None:
        return None
    sizes = [p.size_bytes for p in points if p.size_bytes is not None]
    smallest = min(sizes) if sizes else None
    met = fits(chosen.size_bytes, max_size)
    section = {
        "max_size_bytes": max_size,
        "source": source,
        "chosen_bytes": chosen.size_bytes,
        "met": met,
        "smallest_bytes": smallest,
    }
    if not met and smallest is not None:
        section["how_close"] = f"smallest artifact {over_budget(smallest, max_size)}"
    elif chosen.size_bytes is not None:
        section["how_close"] = f"chosen artifact {format_size(chosen.size_bytes)} within {format_size(max_size)}"
    return section


# Stored bits per weight of each precision: block-wise weight-only schemes add one fp32 scale per
# 32-weight block (1 bit per weight); int16 plans keep int8 weights.
STORED_BITS = {
    "fp32": 32.0, "none": 32.0, "fp16": 16.0, "int8": 8.0, "int8-dynamic": 8.0, "int16": 8.0,
    "int8-weight": 9.0, "int4-weight": 5.0,
}  # fmt: skip


def layer_weights(model: onnx.ModelProto, layers: dict[str, list[str]]) -> dict[str, int]:
    """Return the number of constant weights (initializers of 2 or more dimensions) each layer's
    nodes read, by layer name (``layers``: layer -> its ONNX node names)."""
    sizes = {i.name: int(math.prod(i.dims)) for i in model.graph.initializer if len(i.dims) >= 2}
    by_node = {n.name: n for n in model.graph.node}
    return {
        name: sum(sizes.get(i, 0) for node in nodes if node in by_node for i in by_node[node].input)
        for name, nodes in layers.items()
    }


def size_cost_function(model: onnx.ModelProto, plan: Any, sensitivity: dict[str, Any]) -> Callable[[str, str], float]:
    """A cost per MAC (the search's unit) that measures bytes: a layer's weights times the bits its
    precision stores, spread over its MACs (``sensitivity``'s). Under a binding size budget the
    search then keeps in float the layers that hurt accuracy most per byte added, not per unit of time."""
    weights = layer_weights(model, {name: layer.nodes for name, layer in plan.layers.items()})
    macs = {name: info.macs for name, info in sensitivity.items()}

    def cost(layer: str, precision: str) -> float:
        return weights.get(layer, 0) * STORED_BITS.get(precision, 32.0) / 8 / max(macs.get(layer, 1), 1)

    return cost


def binding_budget(fp32_model: Any, max_size: int | None) -> int | None:
    """``max_size`` when it constrains the search of the fp32 model file ``fp32_model``, else None
    (a model already within it needs no weight-only starts: they are slower and buy no fit)."""
    return max_size if size_binds(artifact_bytes(fp32_model), max_size) else None


def size_binds(fp32_bytes: int, max_size: int | None) -> bool:
    """Whether the size budget constrains the search: the fp32 model itself would not fit."""
    return max_size is not None and fp32_bytes > max_size
