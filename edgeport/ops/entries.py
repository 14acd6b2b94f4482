"""The lowering entries of a custom operator: one small dataclass per way an op can reach a format.

An entry says *how* an op lowers; the format code (frontends/, formats/) decides *when*. Nothing
here imports torch, onnxscript, TensorFlow or coremltools: an entry only holds the user's
callables, so registering an op costs nothing until a format needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# onnxruntime-extensions runs Python kernels (PyOp) only in this domain with onnxruntime 1.32: a
# node in any other domain is "not a registered function/op". Verification copies of a model map
# the user's domain onto it (edgeport/ops/ort.py); the artifact keeps the user's domain.
PYOP_DOMAIN = "ai.onnx.contrib"


@dataclass(frozen=True)
class Decompose:
    """The op written in standard ops.

    ONNX: ``fn`` is an onnxscript function of standard ops (``@onnxscript.script()``); it is the
    torch exporter's translation for the op and also inlines a custom-domain node of an ONNX
    source. TFLite: the ONNX decomposition flows through onnx2tf (``fn`` may be None). Core ML:
    ``fn`` may be None (the ONNX/torch decomposition is used)."""

    fn: Callable[..., Any] | None = None


@dataclass(frozen=True)
class CustomNode:
    """The op kept as one ONNX node in a custom domain, with its runtime implementation.

    ``domain``/``op_type`` default to the entry's ONNX name. ``python_kernel`` (numpy in,
    numpy out; attributes as keyword arguments) runs it in ONNX Runtime through
    onnxruntime-extensions' PyOp; ``library`` is a compiled custom-op library (.so) the app
    registers with ``SessionOptions.register_custom_ops_library``. ``inputs``/``outputs`` are the
    element types of the node's inputs and outputs ("float", "int64", ...), which PyOp needs
    declared; ``attributes`` names the node's attributes and their types ("float", "int64",
    "string")."""

    domain: str | None = None
    op_type: str | None = None
    python_kernel: Callable[..., Any] | None = None
    library: str | None = None
    inputs: tuple[str, ...] = ("float",)
    outputs: tuple[str, ...] = ("float",)
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TFLiteCustom:
    """The op kept as a TFLite custom op named ``name``; the app must register its kernel."""

    name: str


@dataclass(frozen=True)
class CoreMLComposite:
    """A Core ML composite op: ``fn(context, node)`` registered with coremltools' ``register_torch_op``."""

    fn: Callable[..., Any]


@dataclass(frozen=True)
class TorchDecompose:
    """Core ML: a torch function of standard ops that replaces the op before conversion."""

    fn: Callable[..., Any]


OnnxLowering = Decompose | CustomNode
TFLiteLowering = Decompose | TFLiteCustom
CoreMLLowering = Decompose | CoreMLComposite | TorchDecompose


@dataclass(frozen=True)
class OpEntry:
    """One registered custom op.

    ``name`` is ``"namespace::op"``: the torch qualname (``torch.ops.namespace.op``) and, unless
    ``onnx_domain``/``onnx_op_type`` say otherwise, the ONNX node's domain and op type.
    ``reference`` (numpy in, numpy out) is what parity checks compare against. ``int8``: the op
    has an int8 form, so quantization may cover it; otherwise it stays float. ``source`` is the
    file or module that registered it (for the report and the build cache key)."""

    name: str
    onnx: OnnxLowering | None = None
    tflite: TFLiteLowering | None = None
    coreml: CoreMLLowering | None = None
    reference: Callable[..., Any] | None = None
    int8: bool = False
    onnx_domain: str = ""
    onnx_op_type: str = ""
    source: str | None = None

    @property
    def torch_qualname(self) -> str:
        """The torch op's qualified name, ``namespace::op``."""
        return self.name

    def onnx_node_name(self) -> tuple[str, str]:
        """Return the (domain, op_type) a kept node carries in an ONNX model edgeport writes."""
        if isinstance(self.onnx, CustomNode):
            return self.onnx.domain or self.onnx_domain, self.onnx.op_type or self.onnx_op_type
        return self.onnx_domain, self.onnx_op_type

    def keeps_onnx_node(self) -> bool:
        """Return True when the ONNX lowering keeps a custom-domain node (not a decomposition)."""
        return isinstance(self.onnx, CustomNode)

    def describe(self) -> dict[str, Any]:
        """Return a JSON-ready summary (lowering per format, int8, source) for reports and manifests."""

        def kind(lowering: object) -> str | None:
            return None if lowering is None else type(lowering).__name__

        domain, op_type = self.onnx_node_name()
        summary: dict[str, Any] = {
            "name": self.name,
            "onnx_node": f"{domain}::{op_type}",
            "onnx": kind(self.onnx),
            "tflite": kind(self.tflite),
            "coreml": kind(self.coreml),
            "int8": self.int8,
            "reference": self.reference is not None,
            "source": self.source,
        }
        if isinstance(self.onnx, CustomNode):
            summary["library"] = self.onnx.library
            summary["python_kernel"] = self.onnx.python_kernel is not None
        if isinstance(self.tflite, TFLiteCustom):
            summary["tflite_custom"] = self.tflite.name
        return summary
