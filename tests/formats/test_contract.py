"""One contract test, written once and run against every registered format backend (the shipped
ones and a trivial extra format registered by the test): build the fp32 artifact of one small
model, run it through the runner the backend names, and compare with ONNX Runtime on the fp32
ONNX model."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeport.api import convert
from edgeport.core import registry
from edgeport.core.contracts import Artifact, FormatBackend, Runner
from edgeport.core.plan import uniform_plan
from edgeport.core.runner_spec import RunnerSpec
from edgeport.frontends import ingest
from edgeport.frontends.normalize import normalize
from edgeport.options.recipe import Recipe
from edgeport.profiles import shipped_profiles
from edgeport.runtime.ort import OrtRunner
from tests.formats import extra_format

EXTRA = "onnx-copy"
FORMATS = [*registry.format_names(), EXTRA]


@pytest.fixture(scope="module")
def extra_registered():
    registry.register_format(EXTRA, extra_format.ENTRY)
    yield
    registry.unregister_format(EXTRA)


@pytest.fixture(scope="module")
def normalized(tiny_files):
    """TinyNet's .pt2, ingested and normalized once (the Core ML backend converts from its source)."""
    recipe = Recipe(input_model=str(tiny_files["pt2"]))
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)}
    source, onnx_source = ingest(recipe.source)
    bundle, reference = normalize(source, onnx_source, feeds, recipe.source)
    return bundle, feeds, reference


def _profile_for(name: str):
    section = registry.format_entry(name).section(name)
    return next(p for p in shipped_profiles().values() if section in p.formats)


@pytest.mark.parametrize("name", FORMATS)
def test_backend_keeps_the_contract(name, extra_registered, normalized, tmp_path):
    bundle, feeds, reference = normalized
    entry = registry.format_entry(name)
    backend_type = registry.backend_class(name)
    assert issubclass(backend_type, FormatBackend) and backend_type.format == name
    assert backend_type.file_name.endswith(entry.suffix)
    profile = _profile_for(name)
    backend = backend_type(profile, Recipe(input_model="x.onnx", output_format=name).format_options(), bundle, feeds)
    baseline = tmp_path / "baseline_fp32.onnx"
    onnx.save(bundle.onnx_model, str(baseline))
    out = tmp_path / backend.file_name
    work = tmp_path / "work"
    work.mkdir()
    artifact = backend.build(baseline, uniform_plan(bundle.onnx_model, "none", profile), out, work, None, 1)
    assert isinstance(artifact, Artifact) and out.exists()
    assert artifact.runner.kind in entry.runtimes

    # Off macOS a Core ML package runs only as its emulation; the contract says so in `emulation`.
    spec = artifact.runner
    if spec.kind == "coreml" and platform.system() != "Darwin":
        assert artifact.emulation is not None
        spec = artifact.emulation
    runner = RunnerSpec(**json.loads(json.dumps(spec.as_dict()))).open(1)  # JSON round trip, as in a child
    assert isinstance(runner, Runner)
    fp32 = OrtRunner(baseline).run(feeds)
    outputs = [runner.run({k: v[i : i + 1] for k, v in feeds.items()}) for i in range(2)]
    got = np.concatenate([o[0] for o in outputs])
    np.testing.assert_allclose(got, fp32[0], rtol=0, atol=2e-2 * float(np.abs(fp32[0]).max()))
    np.testing.assert_allclose(fp32[0], reference[0], atol=1e-4)
    assert isinstance(runner.describe()["runtime"], str)

    reference_spec, _ = backend.fp32_reference(baseline, tmp_path, work)
    assert reference_spec.kind in registry.RUNTIMES
    assert isinstance(backend.measured_label(runner), str) and backend.measured_label(runner)
    ops = backend.check_ops(out)
    assert sum(ops["ops"].values()) > 0 and isinstance(ops["flagged"], list)


def test_an_extra_format_converts_end_to_end_without_changes_elsewhere(extra_registered, tiny_files, tmp_path):
    """A registry entry plus its package: edgeport.convert writes, verifies and reports it."""
    result = convert(
        str(tiny_files["onnx"]),
        output_format=EXTRA,
        quantization="none",
        optimize_for="cpu",
        output_dir=str(tmp_path / "bundle"),
        latency_runs=5,
    )
    bundle = Path(result.bundle_dir)
    assert (bundle / "model.copy.onnx").read_bytes() == (bundle / "baseline_fp32.onnx").read_bytes()
    report = json.loads((bundle / "report.json").read_text())
    assert report["status"] == "passed" and report["target"]["format"] == EXTRA
    assert report["fidelity"]  # measured, by the runner the backend named
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["artifact"] == "model.copy.onnx" and manifest["runner"]["kind"] == "onnxruntime"


def test_unregistered_format_is_a_one_line_input_error():
    from edgeport.core.errors import InputError

    with pytest.raises(InputError, match="unknown --output_format 'webgpu'") as raised:
        Recipe(input_model="x.onnx", output_format="webgpu")
    assert raised.value.hint == f"choose one of {', '.join(registry.format_names())}"
