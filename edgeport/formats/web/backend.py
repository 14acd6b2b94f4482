"""The browser target: ONNX artifacts for a web page, quantized like any ONNX model, then run,
checked and timed in headless Chromium with onnxruntime-web (WebAssembly or WebGPU), and shipped
with a ``web/`` page that runs them.

It is a target backend for the ONNX format (``core/registry.py`` ``TARGETS["web"]``), chosen by
a profile whose ``onnx`` section says ``backend: web`` (browser-wasm, browser-webgpu).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeport.core.runner_spec import RunnerSpec
from edgeport.formats.onnx.backend import OnnxBackend
from edgeport.formats.web.assets import ORT_WEB_VERSION


class WebBackend(OnnxBackend):
    """ONNX artifacts run by onnxruntime-web in Chromium: built by ONNX Runtime's quantizer (the
    wasm backend is ONNX Runtime's CPU provider compiled to WebAssembly), measured in the page."""

    kernel_profiler = None  # onnxruntime-web has no per-kernel profile that reaches Python
    # The search's per-layer sensitivity runs on ONNX Runtime's CPU provider here: the same
    # kernels as the wasm backend, without one browser load per layer.
    proxy_sensitivity = True

    def __init__(
        self, profile: Any = None, options: Any = None, canonical: Any = None, samples: dict | None = None
    ) -> None:
        super().__init__(profile, options, canonical, samples, providers=["CPUExecutionProvider"])
        self.web_backend = web_backend_of(profile)
        if canonical is not None:  # a conversion: no browser is a one-line error before any work
            from edgeport.formats.web.chromium import find_chromium

            find_chromium()

    def build(
        self,
        baseline: Path,
        plan: Any,
        out: Path,
        work: Path,
        calibration: Any,
        batch: int,
        progress=None,
    ) -> Any:
        """The ONNX build (see OnnxBackend.build), saved with an IR version onnxruntime-web reads."""
        artifact = super().build(baseline, plan, out, work, calibration, batch, progress)
        if lower_ir_version(out, out):
            artifact.notes.append(f"IR version {MAX_IR_VERSION}: the newest onnxruntime-web {ORT_WEB_VERSION} reads")
        return artifact

    def fp32_reference(self, baseline: Path, out_dir: Path, work: Path) -> tuple[RunnerSpec, Path | None]:
        """The fp32 model timed beside the artifact in the page: the baseline itself, or a copy
        of it with an IR version onnxruntime-web reads (written in ``out_dir``)."""
        copy = out_dir / "baseline_fp32_web.onnx"
        if lower_ir_version(baseline, copy):
            return self.runner(copy), copy
        return self.runner(baseline), None

    def runner(self, path: Path) -> RunnerSpec:
        """How to run an ONNX file in the browser with the profile's onnxruntime-web backend."""
        return RunnerSpec(f"browser-{self.web_backend}", str(path), {"backend": self.web_backend})

    def measured_label(self, runner: Any) -> str:
        """Where the figures come from: the browser, its backend and threads, and for WebGPU on
        Chromium's software adapter, that it is not a GPU's figure."""
        facts = runner.describe().get("browser") or {}
        where = (
            f"measured in the browser ({facts.get('browser') or 'Chromium'}, onnxruntime-web "
            f"{facts.get('ort_web_version', '')} {self.web_backend}, {facts.get('threads', '?')} thread(s), "
            f"SIMD {'on' if facts.get('simd') else 'off'}) on this host"
        )
        if self.web_backend == "webgpu" and facts.get("software_adapter"):
            where += "; WebGPU on Chromium's software adapter (SwiftShader): not a GPU's latency"
        return where

    def check_ops(self, path: Path) -> dict[str, Any]:
        """Ops the profile's onnxruntime-web backend would not run where meant (see formats/web/ops.py)."""
        from edgeport.formats.web.ops import check_web_ops

        return check_web_ops(path, self.profile, self.web_backend)

    def profile_kernels(
        self, baseline: Path, artifact: Path, feeds: dict[str, Any], threads: int, layers: dict[str, list[str]]
    ) -> dict[str, Any] | None:
        """None: no kernel profile comes out of the page."""
        del baseline, artifact, feeds, threads, layers
        return None

    def bundle_files(self, bundle: Path, artifact: Path) -> list[str]:
        """Write ``web/``: the page, its ES module and the vendored onnxruntime-web, which load
        ``../<artifact>`` and ``../reference.npz``; return the files written, relative to ``bundle``."""
        from edgeport.formats.web.web_folder import write_web_folder

        return list(write_web_folder(bundle, (self.web_backend,), artifact.name))


def web_backend_of(profile: Any) -> str:
    """The onnxruntime-web backend ("wasm" or "webgpu") the profile names; wasm by default."""
    if profile is None:
        return "wasm"
    return profile.onnxruntime.web_backend or "wasm"


# onnxruntime-web 1.31.1 refuses newer models ("Unsupported model IR version: 14, max supported IR
# version: 13") that onnx 1.19+ writes by default; the IR version only tags the file format.
MAX_IR_VERSION = 13


def lower_ir_version(source: Path, target: Path) -> bool:
    """Save ``source`` to ``target`` with IR version ``MAX_IR_VERSION`` when it is newer (weights
    in external data stay where they are: ``target`` sits in the same folder or is ``source``).
    Returns whether a file was written."""
    import onnx

    model = onnx.load(str(source), load_external_data=False)
    external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    if model.ir_version <= MAX_IR_VERSION or (external and Path(source).parent != Path(target).parent):
        return False  # external data is found relative to the model file: a copy elsewhere loses it
    model.ir_version = MAX_IR_VERSION
    onnx.save(model, str(target))
    return True
