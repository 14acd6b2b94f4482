"""LSTM/GRU/RNN nodes unrolled per time step before onnx2tf (one of the rewrites of
:mod:`edgeport.formats.tflite.onnx2tf_rewrites`).

onnx2tf turns an ONNX ``LSTM``/``GRU``/``RNN`` node into a Keras ``RNN`` layer with a custom
cell, which TFLite runs as a ``WHILE`` loop.
Measured here (onnx2tf 1.29.24, TF 2.21) on models exported by
``torch.onnx.export(dynamo=True)``: the LSTM fails in fp32 already (``initial_state ... not
compatible with cell.state_size``: onnx2tf mis-transposes the zero initial state), the GRU
fails with ``Split ... size = 8 ... num_split 3`` (the weights are transposed as if they were
channels-first activations), and int8 calibration of an onnx2tf GRU segfaulted inside
TFLite's calibrator. With a static sequence length the loop is written out instead: each
step is a ``MatMul`` of the step's input and of the previous hidden state with constant
weights, the gate activations (``Sigmoid``/``Tanh``/...), and elementwise ``Mul``/``Add``, all
2-D ``[batch, features]`` tensors. Those are TFLite builtins with float and int8 kernels, and
onnx2tf converts them without layout guessing. The rewrite follows the ONNX operator
definition exactly. Not unrolled (left to onnx2tf, with a reason): a dynamic sequence
length, more than ``max_steps`` steps, ``sequence_lens``, peepholes, ``clip``,
``input_forget``, non-constant weights, or activations other than Sigmoid/Tanh/Relu.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeport.formats.tflite.onnx_builder import NodeBuilder

RECURRENT_OPS = ("LSTM", "GRU", "RNN")
MAX_STEPS = 256  # beyond this the unrolled graph gets large; such models stay with onnx2tf's loop
_ACTIVATIONS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}
_DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}
_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


@dataclass
class UnrollResult:
    """What :func:`unroll_recurrent` did: the rewritten model and one line per recurrent node."""

    model: onnx.ModelProto
    unrolled: list[str] = field(default_factory=list)  # "LSTM node_x: 12 steps, forward"
    skipped: dict[str, str] = field(default_factory=dict)  # node -> why it was left as it is


def _static_dim(model: onnx.ModelProto, tensor: str, axis: int) -> int | None:
    """Return dimension ``axis`` of ``tensor`` when shape inference knows it, else None."""
    for value in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        if value.name == tensor:
            dims = value.type.tensor_type.shape.dim
            if len(dims) > axis and dims[axis].HasField("dim_value") and dims[axis].dim_value > 0:
                return int(dims[axis].dim_value)
            return None
    return None


def _constant(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    """Return the value of an initializer or Constant-node output ``name``, else None."""
    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
    return None


def _why_not(model: onnx.ModelProto, node: onnx.NodeProto, max_steps: int) -> str | None:
    """Return why ``node`` cannot be unrolled, or None when it can."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    inputs = list(node.input) + [""] * (8 - len(node.input))
    if attrs.get("clip") is not None:
        return "clip is set"
    if attrs.get("input_forget"):
        return "input_forget is set"
    if node.op_type == "LSTM" and inputs[7]:
        return "peephole weights"
    if inputs[4]:
        return "sequence_lens is given"
    for i, what in ((1, "W"), (2, "R"), (3, "B")):
        if inputs[i] and _constant(model, inputs[i]) is None:
            return f"{what} is not a constant"
    names = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    unknown = [a for a in names if a.lower() not in _ACTIVATIONS]
    if unknown:
        return f"activation {unknown[0]} is not supported by the unroller"
    if attrs.get("activation_alpha") or attrs.get("activation_beta"):
        return "activation_alpha/beta are set"
    layout = int(attrs.get("layout", 0))
    steps = _static_dim(model, node.input[0], 1 if layout else 0)
    if steps is None:
        return "the sequence length is not static"
    if steps > max_steps:
        return f"{steps} time steps (more than {max_steps})"
    return None


def _initial_state(model: onnx.ModelProto, b: NodeBuilder, name: str, index: int, d: int, layout: int) -> str | None:
    """The initial state ``name`` (node input ``index``) of direction ``d`` as [batch, H], or None when it is zero."""
    if not name:
        return None
    value = _constant(model, name)
    if value is not None and not np.any(value):
        return None  # all zeros: the same as no initial state, and lets step 0 skip the recurrent term
    if value is not None and layout == 0:
        return b.const(f"init{index}_d{d}", value[d].astype(np.float32))
    if value is not None:
        return b.const(f"init{index}_d{d}", value[:, d].astype(np.float32))
    index_name = b.const(f"dir{d}", np.array(d, np.int64))
    return b.one("Gather", [name, index_name], f"init{index}_d{d}", axis=1 if layout else 0)


def _unroll_node(model: onnx.ModelProto, node: onnx.NodeProto, b: NodeBuilder) -> str:
    """Append the unrolled ops of ``node`` to ``b``; return a one-line description."""
    kind = node.op_type
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    inputs = list(node.input) + [""] * (8 - len(node.input))
    outputs = list(node.output) + [""] * (3 - len(node.output))
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    layout = int(attrs.get("layout", 0))
    hidden = int(attrs["hidden_size"])
    gates = _GATES[kind]
    steps = _static_dim(model, inputs[0], 1 if layout else 0)
    assert steps is not None
    w = _constant(model, inputs[1]).astype(np.float32)  # [dirs, gates*H, in]
    r = _constant(model, inputs[2]).astype(np.float32)  # [dirs, gates*H, H]
    dirs = w.shape[0]
    bias = (
        _constant(model, inputs[3]).astype(np.float32)
        if inputs[3]
        else np.zeros((dirs, 2 * gates * hidden), np.float32)
    )
    names = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    per_dir = len(_DEFAULT_ACTIVATIONS[kind])
    if not names:
        names = _DEFAULT_ACTIVATIONS[kind] * dirs
    acts = [_ACTIVATIONS[a.lower()] for a in names]
    linear_before_reset = int(attrs.get("linear_before_reset", 0))

    seq_axis = 1 if layout else 0
    step_index = [b.const(f"t{t}", np.array(t, np.int64)) for t in range(steps)]
    xs = [b.one("Gather", [inputs[0], step_index[t]], f"x{t}", axis=seq_axis) for t in range(steps)]
    hs_by_dir: list[list[str]] = []  # [dir][t] hidden state after step t (in time order)
    finals_h: list[str] = []
    finals_c: list[str] = []
    order = {"forward": [False], "reverse": [True], "bidirectional": [False, True]}[direction]
    for d, backwards in enumerate(order):
        f_act, g_act = acts[d * per_dir], acts[d * per_dir + min(1, per_dir - 1)]
        h_act = acts[d * per_dir + 2] if kind == "LSTM" else ""
        w_t = b.const(f"W_d{d}", w[d].T.copy())  # [in, gates*H]: x @ W^T as a plain MatMul
        wb, rb = bias[d, : gates * hidden], bias[d, gates * hidden :]
        sizes = b.const(f"split_d{d}", np.full(gates, hidden, np.int64))
        consts: dict[str, str] = {}

        def shared(key: str, value: np.ndarray, d: int = d, consts: dict[str, str] = consts) -> str:
            """One constant per direction, shared by every step."""
            if key not in consts:
                consts[key] = b.const(f"{key}_d{d}", value)
            return consts[key]

        h = _initial_state(model, b, inputs[5], 5, d, layout)
        c = _initial_state(model, b, inputs[6], 6, d, layout) if kind == "LSTM" else None
        hs: dict[int, str] = {}
        for t in range(steps - 1, -1, -1) if backwards else range(steps):
            tag = f"d{d}t{t}"
            xw = b.one("MatMul", [xs[t], w_t], f"xw_{tag}")
            if kind == "GRU":
                h = _gru_step(b, tag, xw, h, r[d], wb, rb, hidden, sizes, f_act, g_act, linear_before_reset, shared)
            else:
                h, c = _lstm_rnn_step(b, kind, tag, xw, h, c, r[d], wb, rb, sizes, (f_act, g_act, h_act), shared)
            hs[t] = h
        assert h is not None
        hs_by_dir.append([hs[t] for t in range(steps)])
        finals_h.append(h)
        if c is not None:
            finals_c.append(c)
    _write_outputs(b, kind, outputs, layout, steps, dirs, hs_by_dir, finals_h, finals_c)
    return f"{kind} {node.name or node.output[0]}: {steps} steps, {direction}, hidden {hidden}"


def _lstm_rnn_step(
    b: NodeBuilder,
    kind: str,
    tag: str,
    xw: str,
    h: str | None,
    c: str | None,
    r: np.ndarray,
    wb: np.ndarray,
    rb: np.ndarray,
    sizes: str,
    acts: tuple[str, str, str],
    shared: Callable[[str, np.ndarray], str],
) -> tuple[str, str | None]:
    """One LSTM (ONNX gate order i, o, f, c) or RNN step; return the new hidden and cell states.

    ``h``/``c`` None is a zero state: the recurrent MatMul (resp. ``f * c``) is left out.
    ``acts`` are the direction's f, g and h activations (h unused by an RNN).
    """
    f_act, g_act, h_act = acts
    pre = xw
    if h is not None:  # a zero state adds nothing: step 0 skips the recurrent MatMul
        # R transposed for ``h @ R^T`` as a plain MatMul
        hr = b.one("MatMul", [h, shared("R", r.T.copy())], f"hr_{tag}")
        pre = b.one("Add", [pre, hr], f"g_{tag}")
    gsum = b.one("Add", [pre, shared("b", wb + rb)], f"gb_{tag}")
    if kind == "RNN":
        return b.one(f_act, [gsum], f"h_{tag}"), c
    i_g, o_g, f_g, c_g = b.op("Split", [gsum, sizes], f"split_{tag}", outputs=4, axis=1)
    i_g = b.one(f_act, [i_g], f"i_{tag}")
    o_g = b.one(f_act, [o_g], f"o_{tag}")
    c_g = b.one(g_act, [c_g], f"cc_{tag}")
    new_c = b.one("Mul", [i_g, c_g], f"ic_{tag}")
    if c is not None:  # f * c_prev vanishes for a zero cell state
        f_g = b.one(f_act, [f_g], f"f_{tag}")
        new_c = b.one("Add", [b.one("Mul", [f_g, c], f"fc_{tag}"), new_c], f"c_{tag}")
    return b.one("Mul", [o_g, b.one(h_act, [new_c], f"tc_{tag}")], f"h_{tag}"), new_c


def _stack(b: NodeBuilder, values: list[str], axes: list[int], axis: int, hint: str, out: str) -> None:
    """Write ``out`` = ``values``, each unsqueezed at ``axes``, concatenated on ``axis``."""
    axes_name = b.const(f"{hint}_axes", np.array(axes, np.int64))
    parts = [b.one("Unsqueeze", [v, axes_name], f"{hint}_u{i}") for i, v in enumerate(values)]
    b.nodes.append(helper.make_node("Concat", parts, [out], name=b.name(f"{hint}_concat"), axis=axis))


def _write_outputs(
    b: NodeBuilder,
    kind: str,
    outputs: list[str],
    layout: int,
    steps: int,
    dirs: int,
    hs_by_dir: list[list[str]],
    finals_h: list[str],
    finals_c: list[str],
) -> None:
    """Write the node's outputs that are used from the per-step states, in the ONNX layouts:
    Y [seq, dirs, batch, H] (layout 0) / [batch, seq, dirs, H]; Y_h, Y_c [dirs, batch, H]
    (layout 0) / [batch, dirs, H]."""
    if outputs[0]:
        per_step = []
        for t in range(steps):
            name = b.name(f"y{t}")
            _stack(b, [hs_by_dir[d][t] for d in range(dirs)], [0, 1], 1, f"y{t}", name)
            per_step.append(name)
        if layout == 0:
            b.nodes.append(helper.make_node("Concat", per_step, [outputs[0]], name=b.name("Y_concat"), axis=0))
        else:
            # per step [1, dirs, batch, H] -> concat on axis 0 -> [seq, dirs, batch, H] -> [batch, seq, dirs, H]
            seq = b.one("Concat", per_step, "Y_seq", axis=0)
            b.nodes.append(helper.make_node("Transpose", [seq], [outputs[0]], name=b.name("Y_t"), perm=[2, 0, 1, 3]))
    if outputs[1]:
        _stack(b, finals_h, [0] if layout == 0 else [1], 0 if layout == 0 else 1, "Y_h", outputs[1])
    if kind == "LSTM" and outputs[2]:
        _stack(b, finals_c, [0] if layout == 0 else [1], 0 if layout == 0 else 1, "Y_c", outputs[2])


def _gru_step(
    b: NodeBuilder,
    tag: str,
    xw: str,
    h: str | None,
    r: np.ndarray,
    wb: np.ndarray,
    rb: np.ndarray,
    hidden: int,
    sizes: str,
    f_act: str,
    g_act: str,
    linear_before_reset: int,
    shared: Callable[[str, np.ndarray], str],
) -> str:
    """One GRU step (ONNX gate order z, r, h); return the new hidden state.

    ``h`` None is a zero state: ``h @ R`` is zero and only the recurrent bias remains.
    ``shared(key, value)`` returns the direction's constant of that name (made once).
    """
    zx, rx, nx = b.op(
        "Split",
        [b.one("Add", [xw, shared("wb", wb)], f"gx_{tag}"), sizes],
        f"gx_split_{tag}",
        outputs=3,
        axis=1,
    )
    rb_z, rb_r, rb_n = (rb[i * hidden : (i + 1) * hidden] for i in range(3))
    if h is None:
        zh, rh = shared("rbz", rb_z), shared("rbr", rb_r)
    else:
        key, rows = ("R", r) if linear_before_reset else ("Rzr", r[: 2 * hidden])
        gh = b.one(
            "Add",
            [
                b.one("MatMul", [h, shared(key, rows.T.copy())], f"hr_{tag}"),
                shared("rb" if linear_before_reset else "rbzr", rb if linear_before_reset else rb[: 2 * hidden]),
            ],
            f"gh_{tag}",
        )
        if linear_before_reset:
            zh, rh, nh = b.op("Split", [gh, sizes], f"gh_split_{tag}", outputs=3, axis=1)
        else:
            two = shared("split2", np.full(2, hidden, np.int64))
            zh, rh = b.op("Split", [gh, two], f"gh_split_{tag}", outputs=2, axis=1)
    z = b.one(f_act, [b.one("Add", [zx, zh], f"z_pre_{tag}")], f"z_{tag}")
    rg = b.one(f_act, [b.one("Add", [rx, rh], f"r_pre_{tag}")], f"r_{tag}")
    if h is None:
        # linear_before_reset: r * (0 @ Rh + Rbh); otherwise (r * 0) @ Rh + Rbh = Rbh
        rbn = shared("rbn", rb_n)
        inner = b.one("Mul", [rg, rbn], f"rn_{tag}") if linear_before_reset else rbn
    elif linear_before_reset:
        inner = b.one("Mul", [rg, nh], f"rn_{tag}")
    else:
        rh_prod = b.one("Mul", [rg, h], f"rh_{tag}")
        inner = b.one(
            "Add",
            [b.one("MatMul", [rh_prod, shared("Rn", r[2 * hidden :].T.copy())], f"rhr_{tag}"), shared("rbn", rb_n)],
            f"rn_{tag}",
        )
    n = b.one(g_act, [b.one("Add", [nx, inner], f"n_pre_{tag}")], f"n_{tag}")
    if h is None:  # h' = (1 - z) * n + z * 0
        one = shared("one", np.ones(1, np.float32))
        return b.one("Mul", [b.one("Sub", [one, z], f"1mz_{tag}"), n], f"h_{tag}")
    # h' = (1 - z) * n + z * h = n + z * (h - n)
    return b.one("Add", [n, b.one("Mul", [z, b.one("Sub", [h, n], f"hmn_{tag}")], f"zd_{tag}")], f"h_{tag}")


def unroll_recurrent(model: onnx.ModelProto, max_steps: int = MAX_STEPS) -> UnrollResult:
    """Return a copy of ``model`` with every unrollable LSTM/GRU/RNN node written out per time step.

    Nodes that cannot be unrolled stay as they are, with the reason in ``skipped``. The
    caller should compare the result with the original (ONNX Runtime) before using it.
    """
    result = UnrollResult(onnx.ModelProto())
    if not any(n.op_type in RECURRENT_OPS for n in model.graph.node):
        result.model = model
        return result
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    work = onnx.ModelProto()
    work.CopyFrom(model)
    if opset < 13:  # Split/Unsqueeze take their sizes/axes as inputs from opset 13 on
        for node in work.graph.node:
            if node.op_type in RECURRENT_OPS:
                result.skipped[node.name or node.output[0]] = f"opset {opset} < 13"
        result.model = work
        return result
    inferred = onnx.shape_inference.infer_shapes(work, strict_mode=False)
    taken = {n.name for n in work.graph.node} | {o for n in work.graph.node for o in list(n.input) + list(n.output)}
    taken |= {i.name for i in work.graph.initializer} | {v.name for v in work.graph.input}
    new_nodes: list[onnx.NodeProto] = []
    replaced_inputs: set[str] = set()
    for index, node in enumerate(work.graph.node):
        if node.op_type not in RECURRENT_OPS:
            new_nodes.append(node)
            continue
        label = node.name or node.output[0]
        why = _why_not(inferred, node, max_steps)
        if why:
            result.skipped[label] = why
            new_nodes.append(node)
            continue
        builder = NodeBuilder(f"unrolled_{node.op_type}_{index}", taken)
        result.unrolled.append(_unroll_node(inferred, node, builder))
        replaced_inputs.update(node.input)
        new_nodes.extend(builder.nodes)
        work.graph.initializer.extend(builder.initializers)
    del work.graph.node[:]
    work.graph.node.extend(new_nodes)
    # Drop the weights only the unrolled nodes used (now copied, transposed, into new constants).
    used = {i for n in work.graph.node for i in n.input} | {o.name for o in work.graph.output}
    used |= {v.name for v in work.graph.input}
    kept = [i for i in work.graph.initializer if i.name in used or i.name not in replaced_inputs]
    del work.graph.initializer[:]
    work.graph.initializer.extend(kept)
    result.model = work
    return result
