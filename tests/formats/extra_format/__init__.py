"""A trivial extra output format, written only against the contract: it writes the fp32 ONNX
model under another name. Registering it (one FormatEntry) is all edgeport needs to know."""

from edgeport.core.registry import FormatEntry

ENTRY = FormatEntry(
    backend="tests.formats.extra_format.backend:CopyBackend",
    suffix=".copy.onnx",
    runtimes=("onnxruntime",),
    profile_section="onnx",  # targets described by a profile's onnx section
)
