"""edgeport.core.extras: the one-line error naming the pip install, and the imports behind it."""

from __future__ import annotations

import sys

import pytest

from edgeport.core.errors import InputError
from edgeport.core.extras import import_hiding, missing_extra, require, require_installed


def test_missing_extra_names_the_pip_install() -> None:
    """The hint is the command that fixes it; onnx2tf, which no extra can declare, is named too."""
    error = missing_extra("A PyTorch model", "torch")
    assert str(error.args[0]) == "A PyTorch model needs the 'torch' extra, which is not installed"
    assert error.hint == "pip install 'edgeport[torch]'"
    assert missing_extra("TFLite output", "tflite").hint == (
        "pip install 'edgeport[tflite]' && pip install --no-deps onnx2tf==1.29.24"
    )


def test_require_returns_the_module_or_the_missing_extra() -> None:
    """An installed module comes back; a missing one is an InputError naming the extra."""
    assert require("json", "JSON", "none") is sys.modules["json"]
    with pytest.raises(InputError, match="'coreml' extra") as raised:
        require("edgeport_no_such_module.sub", "Core ML export", "coreml")
    assert raised.value.hint == "pip install 'edgeport[coreml]'"


def test_require_installed_looks_without_importing() -> None:
    """Present modules pass without being imported; one absent module raises the extra's error."""
    require_installed(("json", "email.mime"), "nothing", "none")
    with pytest.raises(InputError, match="'tflite' extra"):
        require_installed(("json", "edgeport_no_such_module"), "TFLite output", "tflite")


def test_import_hiding_hides_only_during_the_import(tmp_path, monkeypatch) -> None:
    """The hidden package looks absent to the imported module, and is visible again afterwards;
    a package already imported is not hidden."""
    (tmp_path / "probe_hiding.py").write_text("import importlib.util\nFOUND = importlib.util.find_spec('json')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "probe_hiding", raising=False)
    assert import_hiding("probe_hiding", ("json",)).FOUND is not None  # json is already imported
    monkeypatch.delitem(sys.modules, "probe_hiding")
    monkeypatch.delitem(sys.modules, "edgeport_absent_pkg", raising=False)
    (tmp_path / "probe_hiding.py").write_text(
        "import importlib.util\nFOUND = importlib.util.find_spec('edgeport_absent_pkg')\n"
    )
    (tmp_path / "edgeport_absent_pkg.py").write_text("")
    assert import_hiding("probe_hiding", ("edgeport_absent_pkg",)).FOUND is None
    assert "edgeport_absent_pkg" not in sys.modules
    assert require("edgeport_absent_pkg", "x", "none").__name__ == "edgeport_absent_pkg"
