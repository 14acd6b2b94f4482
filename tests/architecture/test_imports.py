"""The dependency rules of docs/architecture.md, enforced: no import cycles (function-level imports
included), imports point down the layers, runners stay standalone, modules and functions stay small."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from tests.architecture.import_graph import (
    LAYERS,
    PACKAGE_ROOT,
    cycles,
    import_graph,
    layer_package,
    package_graph,
    wrong_way,
)

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 100


@pytest.fixture(scope="module")
def graph():
    return import_graph()[0]


def test_no_import_cycles_between_modules_or_packages(graph):
    assert cycles(graph) == []
    assert cycles(package_graph(graph)) == []


def test_imports_point_down_the_layers(graph):
    assert wrong_way(graph) == []


def test_every_package_has_a_layer(graph):
    packages = {layer_package(m) for m in graph}
    layered = {p for layer in LAYERS for p in layer}
    assert packages <= layered, f"add to LAYERS: {sorted(packages - layered)}"


def test_runners_import_only_core_errors_and_each_other(graph):
    """The device harness ships edgeport/runtime as it is: nothing else of edgeport may come along."""
    for module, imported in graph.items():
        if module.startswith("edgeport.runtime"):
            outside = [m for m in imported if not m.startswith("edgeport.runtime") and m != "edgeport.core.errors"]
            assert outside == [], f"{module} imports {outside}"


def test_the_checker_finds_a_cycle_hidden_in_a_function_and_an_upward_import(tmp_path):
    """A planted cycle (through a function-level import) and an upward import are reported."""
    root = tmp_path / "edgeport"
    files = {
        "__init__.py": "",
        "core/__init__.py": "",
        "core/plan.py": "def f():\n    from edgeport.formats.onnx import backend  # upward, and a cycle\n",
        "formats/__init__.py": "",
        "formats/onnx/__init__.py": "",
        "formats/onnx/backend.py": "from edgeport.core import plan\n",
        "quantize/__init__.py": "",
        "quantize/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from edgeport.formats import onnx\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    planted = import_graph(root)[0]
    assert cycles(planted) == [["edgeport.core.plan", "edgeport.formats.onnx.backend"]]
    problems = wrong_way(planted)
    # the package's __init__ runs too, so both count
    assert problems == [
        "edgeport.core.plan:2 imports edgeport.formats.onnx (core may not import formats)",
        "edgeport.core.plan:2 imports edgeport.formats.onnx.backend (core may not import formats)",
    ]
    assert "edgeport.formats.onnx" not in planted["edgeport.quantize.a"]  # annotations only: not an import


def _sizes() -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    modules, functions = [], []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        text = path.read_text()
        where = str(path.relative_to(PACKAGE_ROOT.parent))
        modules.append((len(text.splitlines()), where))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions.append((node.end_lineno - node.lineno + 1, f"{where}:{node.lineno} {node.name}"))
    return sorted(modules, reverse=True), sorted(functions, reverse=True)


def test_no_module_over_600_lines_and_no_function_over_100():
    modules, functions = _sizes()
    assert [m for m in modules if m[0] > MAX_MODULE_LINES] == []
    assert [f for f in functions if f[0] > MAX_FUNCTION_LINES] == []


def test_one_source_for_each_vocabulary():
    """Format names come from the registry and schemes from core.vocabulary, nowhere else."""
    offenders = []
    for path in PACKAGE_ROOT.rglob("*.py"):
        if path.name in ("registry.py", "vocabulary.py"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Tuple) and len(node.elts) >= 3:
                values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
                formats, schemes = {"onnx", "tflite", "coreml"}, {"int8", "int8-dynamic", "palettize-8"}
                if formats <= set(values) or schemes <= set(values):
                    offenders.append(f"{path.relative_to(PACKAGE_ROOT.parent)}:{node.lineno}")
    assert offenders == [], "use edgeport.core.registry / edgeport.core.vocabulary"


def test_size_report_is_printable(capsys):
    """Prints the five largest modules and functions (the closing note of the redesign quotes them)."""
    modules, functions = _sizes()
    print("largest modules:", modules[:5])
    print("largest functions:", functions[:5])
    assert sum(n for n, _ in modules) > 1000  # the scan saw the package
    assert Path(PACKAGE_ROOT / "core" / "contracts.py").exists()


# Where the whole Recipe may go: the entry points that build it and the pipeline that splits it.
# Stages (frontends, data, prune, quantize, formats, verify) take their option group instead.
RECIPE_HOLDERS = ("edgeport.api", "edgeport.cli.", "edgeport.ci.", "edgeport.pipeline.", "edgeport.options.")


def test_only_the_entry_points_and_the_pipeline_take_the_whole_recipe():
    holders = []
    for path in PACKAGE_ROOT.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "edgeport.options.recipe":
                if any(alias.name == "Recipe" for alias in node.names):
                    holders.append(module)
    assert holders, "the scan found no importer of Recipe"
    assert [m for m in holders if not m.startswith(RECIPE_HOLDERS)] == []
