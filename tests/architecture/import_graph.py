"""edgeport's internal import graph, read from the source with ``ast``: every import statement,
at module level or inside a function, except those under ``if TYPE_CHECKING:`` (annotations only,
never executed)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "edgeport"

# Lowest first. A module may import modules of its own layer's package and of lower layers only.
# Packages sharing a layer (quantize and prune, data and verify...) may not import each other
# unless listed in SIDEWAYS.
LAYERS: list[tuple[str, ...]] = [
    ("core",),
    ("ops",),
    ("runtime",),
    ("profiles", "reports"),
    ("data", "verify"),
    ("options",),
    ("frontends",),
    ("quantize", "prune"),
    ("formats",),
    ("pipeline",),
    ("api", "__init__"),
    ("ci",),
    ("cli",),
]
# Same-layer imports that are allowed: (importer package, imported package).
SIDEWAYS: set[tuple[str, str]] = {("verify", "data"), ("__init__", "api")}


def module_name(path: Path, root: Path = PACKAGE_ROOT) -> str:
    """``edgeport/formats/onnx/backend.py`` -> ``edgeport.formats.onnx.backend``."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path, modules: set[str], root: Path = PACKAGE_ROOT) -> dict[str, int]:
    """The edgeport modules ``path`` imports, with the line of the first import of each."""
    tree = ast.parse(path.read_text(), str(path))
    this = module_name(path, root)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    skip = _type_checking_lines(tree)
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom) or node.lineno in skip:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for name in names:
            # "from edgeport.x import y": y is a module or a name in edgeport.x
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != this:
                found.setdefault(name, node.lineno)
    return found


def import_graph(root: Path = PACKAGE_ROOT) -> tuple[dict[str, dict[str, int]], dict[str, Path]]:
    """Return ``({module: {imported module: line}}, {module: path})`` for the package at ``root``."""
    paths = {module_name(p, root): p for p in root.rglob("*.py")}
    modules = set(paths)
    return {m: imports_of(p, modules, root) for m, p in paths.items()}, paths


def layer_package(module: str) -> str:
    """The top-level package of ``edgeport.a.b`` (``a``); ``__init__`` for ``edgeport`` itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_of(package: str) -> int:
    """The index of ``package`` in LAYERS; ValueError when it is in none."""
    for index, layer in enumerate(LAYERS):
        if package in layer:
            return index
    raise ValueError(f"edgeport.{package} is in no layer of tests/architecture/import_graph.py")


def wrong_way(graph: dict[str, dict[str, int]]) -> list[str]:
    """Imports that point up the layers or sideways between packages: one line each."""
    problems = []
    for importer, imported in sorted(graph.items()):
        source = layer_package(importer)
        for target_module, line in sorted(imported.items()):
            target = layer_package(target_module)
            if source == target or (source, target) in SIDEWAYS:
                continue
            if layer_of(target) >= layer_of(source):
                problems.append(f"{importer}:{line} imports {target_module} ({source} may not import {target})")
    return problems


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


# Packages imported between modules of one package form cycles too: a module-level cycle check
# over the package graph catches "a.x imports b.y, b.z imports a.w".
def package_graph(graph: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The graph between second-level packages (``edgeport.formats.coreml``, ``edgeport.quantize``)."""
    folded: dict[str, dict[str, int]] = defaultdict(dict)
    for importer, imported in graph.items():
        source = ".".join(importer.split(".")[:2])
        for target_module, line in imported.items():
            target = ".".join(target_module.split(".")[:2])
            if target != source:
                folded[source].setdefault(target, line)
    return dict(folded)
