"""The custom-op registry: register and look up, load an op module by path, by module name and
through the ``edgeport.custom_ops`` entry-point group, and fingerprint its file."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from edgeport import ops
from edgeport.core.errors import InputError


@pytest.fixture
def clean_registry():
    """Drop the ops a test registers, so tests do not see each other's."""
    before = {e.name for e in ops.registered_ops()}
    yield
    for entry in ops.registered_ops():
        if entry.name not in before:
            ops.unregister_op(entry.name)


def _op_file(folder, name: str, body: str = "") -> str:
    path = folder / f"{name}.py"
    path.write_text(
        textwrap.dedent(
            f"""
            import numpy as np
            from edgeport.ops import CustomNode, register_op

            def kernel(x):
                return np.maximum(x, 0.0) - 0.5
            {body}
            register_op("{name}::Shift", onnx=CustomNode(python_kernel=kernel), reference=kernel)
            """
        )
    )
    return str(path)


def test_register_and_look_up_by_torch_and_onnx_name(clean_registry):
    entry = ops.register_op(
        "tstlib::gated", onnx=ops.Decompose(None), tflite=ops.TFLiteCustom("Gated"), reference=np.tanh
    )
    assert ops.find_torch_op("tstlib::gated") is entry
    assert ops.find_torch_op("tstlib::gated.default") is entry
    assert ops.find_onnx_op("tstlib", "gated") is entry
    assert ops.find_onnx_op("tstlib", "other") is None
    kept = ops.register_op("tstlib::soft", onnx=ops.CustomNode("com.acme", "SoftThreshold"), onnx_op_type="Soft")
    assert ops.find_onnx_op("com.acme", "SoftThreshold") is kept  # the node it keeps
    assert ops.find_onnx_op("tstlib", "Soft") is kept  # its declared ONNX name
    assert kept.describe()["onnx_node"] == "com.acme::SoftThreshold"
    assert entry.describe()["tflite_custom"] == "Gated"
    assert [e.name for e in ops.custom_node_entries() if e.name.startswith("tstlib")] == ["tstlib::soft"]


def test_a_bad_name_is_one_line():
    with pytest.raises(InputError, match="not 'namespace::op'"):
        ops.register_op("fused_gelu")


def test_load_by_path_records_the_source_and_runs_once(tmp_path, clean_registry):
    path = _op_file(tmp_path, "pathlib1", "print('loaded')")
    assert ops.load_custom_ops(path) == ["pathlib1::Shift"]
    entry = ops.find_onnx_op("pathlib1", "Shift")
    assert entry.source == path
    assert float(entry.onnx.python_kernel(np.array([2.0]))[0]) == 1.5
    assert ops.load_custom_ops(path) == ["pathlib1::Shift"]  # cached: not executed twice
    assert ops.find_onnx_op("pathlib1", "Shift") is entry
    ops.unregister_op("pathlib1::Shift")
    assert ops.find_onnx_op("pathlib1", "Shift") is None
    assert ops.load_custom_ops(path) == ["pathlib1::Shift"]  # put back, still not executed again
    assert ops.find_onnx_op("pathlib1", "Shift") is entry


def test_load_by_module_name_and_comma_lists(tmp_path, monkeypatch, clean_registry):
    _op_file(tmp_path, "modlib1")
    _op_file(tmp_path, "modlib2")
    monkeypatch.syspath_prepend(str(tmp_path))
    specs = ops.split_specs(["modlib1, modlib2", " "])
    assert specs == ["modlib1", "modlib2"]
    assert [ops.load_custom_ops(s) for s in specs] == [["modlib1::Shift"], ["modlib2::Shift"]]
    assert ops.find_torch_op("modlib2::Shift").source == "modlib2"


def test_a_broken_module_is_one_input_error(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("raise RuntimeError('boom\\nsecond line')\n")
    with pytest.raises(InputError, match=r"broken.py failed to load: RuntimeError: boom$"):
        ops.load_custom_ops(str(bad))
    with pytest.raises(InputError, match="no such file"):
        ops.load_custom_ops(str(tmp_path / "absent.py"))


def test_entry_point_group_loads_installed_modules(tmp_path, monkeypatch, clean_registry):
    _op_file(tmp_path, "eplib1")
    dist = tmp_path / "eplib1-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: eplib1\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ops.ENTRY_POINT_GROUP}]\neplib = eplib1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert ops.load_entry_points() == ["eplib1::Shift"]
    assert ops.find_onnx_op("eplib1", "Shift").source.startswith("entry point eplib")
    sys.modules.pop("eplib1", None)


def test_fingerprint_follows_the_file_bytes(tmp_path):
    path = _op_file(tmp_path, "fplib1")
    first = ops.custom_ops_fingerprint([path])
    assert ops.custom_ops_fingerprint([path]) == first
    (tmp_path / "fplib1.py").write_text((tmp_path / "fplib1.py").read_text() + "\n# changed\n")
    assert ops.custom_ops_fingerprint([path]) != first
