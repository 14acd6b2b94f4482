"""The registry of output formats and runtimes: names to ``"module:Class"``, imported on demand.

Adding a target is one package under ``edgeport/formats/`` plus one entry in ``FORMATS`` (or a
call to :func:`register_format` from a plugin or a test). The table lives in ``core`` rather than
in ``edgeport.formats`` because the search (``quantize/``) and ``edgeport verify`` look backends
and runners up by name, and they sit below the formats in the dependency order: a string here
keeps that order one-way. Everything that lists formats or runtimes (the CLI's choices, the
profile schema's format sections, the build config, the device harness) reads this table.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from edgeport.core.errors import InputError


@dataclass(frozen=True)
class RuntimeEntry:
    """One runtime that runs artifacts: its runner class, the module the runner loads (imported
    first when memory is probed, so the baseline includes it) and the pip package that gives it."""

    runner: str  # "module:Class"
    module: str
    package: str
    # Its memory is this process's, measured in a child process; False for a runtime in another
    # program (a browser page), whose runner reports its own figures.
    process_memory: bool = True


@dataclass(frozen=True)
class FormatEntry:
    """One output format: its backend class, artifact suffix, the runtimes that run it (the first
    is its own) and the pip extra that installs what its conversion needs (None: the base install)."""

    backend: str  # "module:Class"
    suffix: str
    runtimes: tuple[str, ...]
    extra: str | None = None
    implemented: bool = True
    # The profile's format section that describes this format's target (its name by default).
    profile_section: str | None = None
    # Its converter needs static input shapes (text models get a fixed sequence length).
    static_shapes: bool = False

    def section(self, name: str) -> str:
        """The profile section for format ``name``."""
        return self.profile_section or name


RUNTIMES: dict[str, RuntimeEntry] = {
    "onnxruntime": RuntimeEntry("edgeport.runtime.ort:OrtRunner", "onnxruntime", "onnxruntime"),
    "litert": RuntimeEntry("edgeport.runtime.litert:LiteRTRunner", "ai_edge_litert.interpreter", "ai-edge-litert"),
    "coreml": RuntimeEntry("edgeport.runtime.coreml:CoreMLRunner", "coremltools", "coremltools"),
    # Core ML's figures off macOS: the package's weights, decompressed, run in ONNX Runtime.
    "coreml-emulated": RuntimeEntry(
        "edgeport.formats.coreml.emulate:EmulatedCoreMLRunner", "onnxruntime", "coremltools"
    ),
    # A .tflite with custom ops off the app: LiteRT runs its builtins, Python references its custom ops.
    "litert-custom-emulated": RuntimeEntry(
        "edgeport.formats.tflite.custom_emulation:CustomOpEmulationRunner",
        "ai_edge_litert.interpreter",
        "ai-edge-litert",
    ),
    # ONNX in a web page: onnxruntime-web in headless Chromium (formats/web/).
    "browser-wasm": RuntimeEntry("edgeport.formats.web.runner:BrowserRunner", "onnxruntime", "onnxruntime", False),
    "browser-webgpu": RuntimeEntry("edgeport.formats.web.runner:BrowserRunner", "onnxruntime", "onnxruntime", False),
}

FORMATS: dict[str, FormatEntry] = {
    "onnx": FormatEntry(
        "edgeport.formats.onnx.backend:OnnxBackend", ".onnx", ("onnxruntime", "browser-wasm", "browser-webgpu")
    ),
    "tflite": FormatEntry(
        "edgeport.formats.tflite.backend:TFLiteBackend",
        ".tflite",
        ("litert", "litert-custom-emulated"),
        extra="tflite",
        static_shapes=True,
    ),
    "coreml": FormatEntry(
        "edgeport.formats.coreml.backend:CoreMLBackend",
        ".mlpackage",
        ("coreml", "coreml-emulated"),
        extra="coreml",
        static_shapes=True,
    ),
}

# Target backends a profile's format section may name (``backend: web``) to build and run that
# format's artifacts for another runtime than the format's own: the browser runs ONNX models
# through onnxruntime-web.
TARGETS: dict[str, str] = {"web": "edgeport.formats.web.backend:WebBackend"}

_loaded: dict[str, Any] = {}


def load_object(ref: str) -> Any:
    """Import ``"module:Name"`` and return the object (cached)."""
    if ref not in _loaded:
        module_name, _, attribute = ref.partition(":")
        _loaded[ref] = getattr(importlib.import_module(module_name), attribute)
    return _loaded[ref]


def format_names() -> tuple[str, ...]:
    """The registered output formats, in registration order."""
    return tuple(FORMATS)


def format_entry(name: str) -> FormatEntry:
    """Return the entry of output format ``name``; InputError (exit 2) naming the known ones."""
    entry = FORMATS.get(name)
    if entry is None or not entry.implemented:
        raise InputError(
            f"--output_format {name} is not implemented in this version of edgeport",
            hint=f"available: {', '.join(format_names())}",
        )
    return entry


def profile_sections() -> tuple[str, ...]:
    """The format sections a device profile may describe (one per format, shared sections once)."""
    return tuple(dict.fromkeys(entry.section(name) for name, entry in FORMATS.items()))


def backend_class(name: str, target: str | None = None) -> type:
    """Return the FormatBackend subclass of output format ``name``, imported on demand; with
    ``target`` (a key of ``TARGETS``, from the profile) the target's backend for that format."""
    entry = format_entry(name)
    if target is not None and target in TARGETS:
        return load_object(TARGETS[target])
    return load_object(entry.backend)


def runtime_entry(kind: str) -> RuntimeEntry:
    """Return the entry of runtime ``kind``; ValueError for an unknown runtime."""
    entry = RUNTIMES.get(kind)
    if entry is None:
        raise ValueError(f"unknown runner kind {kind!r} (known: {', '.join(RUNTIMES)})")
    return entry


def runner_class(kind: str) -> type:
    """Return the runner class of runtime ``kind``, imported on demand."""
    return load_object(runtime_entry(kind).runner)


def runtime_for_file(name: str) -> str:
    """The own runtime of the format whose artifact suffix ends ``name`` (ONNX Runtime otherwise)."""
    for entry in FORMATS.values():
        if name.endswith(entry.suffix):
            return entry.runtimes[0]
    return "onnxruntime"


def format_of_runtime(kind: str) -> str | None:
    """The format whose artifacts runtime ``kind`` runs, or None."""
    return next((name for name, entry in FORMATS.items() if kind in entry.runtimes), None)


def register_format(name: str, entry: FormatEntry, runtimes: dict[str, RuntimeEntry] | None = None) -> None:
    """Add (or replace) output format ``name`` and the runtimes it brings."""
    FORMATS[name] = entry
    RUNTIMES.update(runtimes or {})


def unregister_format(name: str) -> None:
    """Remove output format ``name`` (and runtimes no other format uses); for tests and plugins."""
    entry = FORMATS.pop(name, None)
    if entry is None:
        return
    used = {kind for other in FORMATS.values() for kind in other.runtimes}
    for kind in entry.runtimes:
        if kind not in used:
            RUNTIMES.pop(kind, None)
