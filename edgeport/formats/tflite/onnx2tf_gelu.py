"""Exact GELU brought into the one form onnx2tf converts to TFLite's ``GELU`` builtin (one of
the rewrites of :mod:`edgeport.formats.tflite.onnx2tf_rewrites`).

Exporters at opset < 20 write GELU as ``x * 0.5 * (1 + Erf(x / sqrt 2))`` in various operand
orders. TFLite has no ``Erf`` builtin (the model then needs Flex ops plain LiteRT cannot
run: ``'tf.Erf' op is neither a custom op nor a flex op``); onnx2tf recognises one exact
order, ``Mul(Mul(x, Add(Erf(Div(x, 1.4142135)), 1)), 0.5)``, and emits TFLite's ``GELU``
builtin for it. The rewrite brings the other orders into that one.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeport.formats.tflite.onnx_builder import NodeBuilder

_SQRT2 = float(np.float32(np.sqrt(2.0)))


def _scalar(model_constants: dict[str, np.ndarray], name: str) -> float | None:
    """The value of float scalar constant ``name``, else None."""
    value = model_constants.get(name)
    if value is None or value.size != 1 or value.dtype.kind != "f":
        return None
    return float(value.reshape(()))


def _other(node: onnx.NodeProto, tensor: str) -> str | None:
    """The input of two-input ``node`` that is not ``tensor``, or None when ``tensor`` is not one of two."""
    if len(node.input) != 2 or tensor not in node.input:
        return None
    return node.input[1] if node.input[0] == tensor else node.input[0]


def _near(value: float | None, target: float) -> bool:
    """Whether ``value`` equals ``target`` up to float32 rounding."""
    return value is not None and abs(value - target) <= 1e-6 * max(1.0, abs(target))


class _GraphIndex:
    """Producers, consumers and constant values of a graph's nodes, for matching subgraphs.

    Built from one list of node objects (``all_nodes``): protobuf may hand out a new wrapper
    per access, so every lookup must return objects of that one list.
    """

    def __init__(self, graph: onnx.GraphProto, all_nodes: list[onnx.NodeProto]) -> None:
        self.constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        for node in all_nodes:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        self.constants[node.output[0]] = numpy_helper.to_array(attr.t)
        self.producer = {o: n for n in all_nodes for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in all_nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.graph_outputs = {o.name for o in graph.output}

    def only_consumer(self, tensor: str) -> onnx.NodeProto | None:
        """The one node reading ``tensor``, or None when several (or none) do or it is a graph output."""
        users = self.consumers.get(tensor, [])
        return users[0] if len(users) == 1 and tensor not in self.graph_outputs else None

    def scalar_near(self, name: str | None, target: float) -> bool:
        """Whether ``name`` is a float scalar constant equal to ``target`` (to float32 rounding)."""
        return _near(_scalar(self.constants, name or ""), target)


def _match_gelu(g: _GraphIndex, erf: onnx.NodeProto) -> tuple[str, list[onnx.NodeProto], onnx.NodeProto] | None:
    """Match the Erf-based GELU around ``erf``; return ``(x, its nodes, its last node)`` or None."""
    scale = g.producer.get(erf.input[0])
    if scale is None or scale.op_type not in ("Div", "Mul") or g.only_consumer(scale.output[0]) is not erf:
        return None
    x = scale.input[0]
    if scale.op_type == "Div" and not g.scalar_near(scale.input[1], _SQRT2):
        return None
    if scale.op_type == "Mul":
        c = [i for i in scale.input if g.scalar_near(i, 1 / _SQRT2)]
        if not c:
            return None
        x = _other(scale, c[0])
    add = g.only_consumer(erf.output[0])
    if add is None or add.op_type != "Add" or not g.scalar_near(_other(add, erf.output[0]), 1.0):
        return None
    first = g.only_consumer(add.output[0])
    if first is None or first.op_type != "Mul":
        return None
    partner = _other(first, add.output[0])
    chain = [scale, erf, add, first]
    if g.scalar_near(partner, 0.5) or partner == x:
        # 0.5 * (1 + erf) then * x, or x * (1 + erf) then * 0.5
        last = g.only_consumer(first.output[0])
        want = x if partner != x else None
        if last is None or last.op_type != "Mul":
            return None
        rest = _other(last, first.output[0])
        if want is not None and rest != want:
            return None
        if want is None and not g.scalar_near(rest, 0.5):
            return None
        chain.append(last)
    else:
        # (x * 0.5) * (1 + erf)
        half = g.producer.get(partner or "")
        if half is None or half.op_type != "Mul" or g.only_consumer(half.output[0]) is not first:
            return None
        if _other(half, x) is None or not g.scalar_near(_other(half, x), 0.5):
            return None
        chain.append(half)
        last = first
    return x, chain, last


def _write_gelu(b: NodeBuilder, x: str, out: str) -> None:
    """Append ``out = Mul(Mul(x, Add(Erf(Div(x, sqrt2)), 1)), 0.5)`` (onnx2tf's GELU form) to ``b``."""
    # sqrt 2 as a Constant node, not an initializer: onnx2tf's GELU check reads the divisor
    # as a TF tensor (``.numpy()``), which only a Constant node gives; 1 and 0.5 must be
    # initializers (it reads their ``.values``).
    sqrt2 = b.name("sqrt2")
    b.nodes.append(
        helper.make_node(
            "Constant",
            [],
            [sqrt2],
            name=b.name("sqrt2_node"),
            value=numpy_helper.from_array(np.array(_SQRT2, np.float32)),
        )
    )
    d = b.one("Div", [x, sqrt2], "div")
    e = b.one("Erf", [d], "erf")
    a = b.one("Add", [e, b.const("one", np.array(1.0, np.float32))], "add")
    m = b.one("Mul", [x, a], "mul")
    b.nodes.append(
        helper.make_node("Mul", [m, b.const("half", np.array(0.5, np.float32))], [out], name=b.name("mul_half"))
    )


def _replace_nodes(
    graph: onnx.GraphProto,
    all_nodes: list[onnx.NodeProto],
    replaced: dict[int, list[onnx.NodeProto]],
    removed: set[int],
    graph_outputs: set[str],
) -> None:
    """Rewrite ``graph``'s nodes: each ``replaced`` node (by id) becomes its new nodes, ``removed``
    ones go, and the constants only the removed nodes read are dropped."""
    nodes: list[onnx.NodeProto] = []
    dropped_inputs = {i for n in all_nodes if id(n) in removed for i in n.input}
    for n in all_nodes:
        if id(n) in replaced:
            nodes.extend(replaced[id(n)])  # at the last old node: every input exists by then
        elif id(n) not in removed:
            nodes.append(n)
    # The old scalar constants (0.5, 1, sqrt 2) are now unused: drop them so nothing dangles.
    used = {i for n in nodes for i in n.input} | graph_outputs
    nodes = [n for n in nodes if not (n.op_type == "Constant" and n.output[0] in dropped_inputs - used)]
    kept = [i for i in graph.initializer if i.name in used or i.name not in dropped_inputs]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept)


def canonical_gelu(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Return a copy of ``model`` with Erf-based GELU subgraphs in onnx2tf's GELU form, and how many.

    Matches ``x / sqrt2`` (or ``x * 1/sqrt2``) -> ``Erf`` -> ``+ 1`` -> then either
    ``* 0.5`` and ``* x`` or ``* x`` and ``* 0.5`` or ``(x * 0.5) * (...)``, in any operand
    order, when the intermediate values have no other consumers; writes
    ``Mul(Mul(x, Add(Erf(Div(x, sqrt2)), 1)), 0.5)`` (sqrt 2 from a Constant node).
    """
    if not any(n.op_type == "Erf" for n in model.graph.node):
        return model, 0
    work = onnx.ModelProto()
    work.CopyFrom(model)
    graph = work.graph
    # One list of node objects for every lookup: protobuf may hand out a new wrapper per access.
    all_nodes = list(graph.node)
    index = _GraphIndex(graph, all_nodes)
    replaced: dict[int, list[onnx.NodeProto]] = {}  # id(last old node) -> new nodes
    removed: set[int] = set()
    taken = (
        {o for n in all_nodes for o in n.output}
        | {n.name for n in all_nodes}
        | set(index.constants)
        | {v.name for v in graph.input}
    )
    count = 0
    for erf in all_nodes:
        if erf.op_type != "Erf" or id(erf) in removed:
            continue
        match = _match_gelu(index, erf)
        if match is None:
            continue
        x, chain, last = match
        b = NodeBuilder(f"gelu_{count}", taken)
        _write_gelu(b, x, last.output[0])
        graph.initializer.extend(b.initializers)
        removed.update(id(n) for n in chain)
        replaced[id(last)] = b.nodes
        count += 1
    if not count:
        return work, 0
    _replace_nodes(graph, all_nodes, replaced, removed, index.graph_outputs)
    return work, count
