"""Loading the user's op modules: ``--custom_ops module_or_file.py`` and the ``edgeport.custom_ops``
entry-point group.

Loading a ``.py`` file or a module **executes the user's code**, as ``--model_class`` does: it is
what the user asked for by naming it. Nothing is loaded that the user (or an installed package's
entry point) did not name.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path

import edgeport.ops.registry as registry
from edgeport.core.errors import InputError, describe_exception
from edgeport.ops.entries import OpEntry

ENTRY_POINT_GROUP = "edgeport.custom_ops"


def split_specs(specs: str | Iterable[str] | None) -> list[str]:
    """Return the op module specs of a flag value: a comma list, a list of them, or None (none)."""
    if specs is None:
        return []
    items = [specs] if isinstance(specs, str) else list(specs)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def _load_file(spec: str) -> None:
    path = Path(spec).expanduser().resolve()
    if not path.is_file():
        raise InputError(f"--custom_ops {spec}: no such file")
    # A stable module name per file, so loading it twice replaces (not duplicates) its ops.
    name = "edgeport_custom_ops_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise InputError(f"--custom_ops {spec}: not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)


# Specs already loaded in this process (resolved file or module name -> the entries registered):
# executing a file twice would define its torch.library ops twice, which torch refuses, so a
# second load puts back the entries it registered the first time instead (after unregister_op).
_LOADED: dict[str, list[OpEntry]] = {}


def _key(spec: str) -> str:
    return str(Path(spec).expanduser().resolve()) if _is_path(spec) else spec


def load_custom_ops(spec: str) -> list[str]:
    """Import the op module ``spec`` (a module name or a ``.py`` path), which calls ``register_op``;
    return the names of the ops it registered. Each spec is executed once per process (a second
    call registers the same entries again and returns their names). A failure is one line
    (InputError, exit 2)."""
    key = _key(spec)
    if key in _LOADED:
        for entry in _LOADED[key]:
            registry.add_entry(entry)
        return [e.name for e in _LOADED[key]]
    before = {e.name: e for e in registry.registered_ops()}
    registry._LOADING.append(spec)
    try:
        if _is_path(spec):
            _load_file(spec)
        else:
            importlib.import_module(spec)
    except InputError:
        raise
    except Exception as exc:  # the user's code: any error becomes one line naming the module
        raise InputError(f"--custom_ops {spec} failed to load: {describe_exception(exc)}") from exc
    finally:
        registry._LOADING.pop()
    _LOADED[key] = [e for e in registry.registered_ops() if before.get(e.name) is not e]
    return [e.name for e in _LOADED[key]]


def load_entry_points(group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Load every installed ``edgeport.custom_ops`` entry point (each names a module or a callable
    that registers ops); return the names of the ops they registered."""
    names: list[str] = []
    for point in entry_points(group=group):
        before = {e.name: e for e in registry.registered_ops()}
        registry._LOADING.append(f"entry point {point.name} ({point.value})")
        try:
            loaded = point.load()
            if callable(loaded):
                loaded()
        except Exception as exc:
            raise InputError(f"custom-op entry point {point.name} failed: {describe_exception(exc)}") from exc
        finally:
            registry._LOADING.pop()
        names += [e.name for e in registry.registered_ops() if before.get(e.name) is not e]
    return names


def spec_file(spec: str) -> Path | None:
    """Return the file behind an op module spec (the path, or the module's file), None when unknown."""
    if _is_path(spec):
        path = Path(spec).expanduser()
        return path if path.is_file() else None
    try:
        found = importlib.util.find_spec(spec)
    except (ImportError, ValueError):
        return None
    return Path(found.origin) if found is not None and found.origin else None


def custom_ops_fingerprint(specs: Iterable[str], libraries: Iterable[str] = ()) -> str:
    """Return a sha256 over the bytes of every op module and custom-op library named, so a build
    cache key changes when an op's code does. A spec whose file cannot be found counts by name."""
    digest = hashlib.sha256()
    for spec in split_specs(list(specs)) + split_specs(list(libraries)):
        path = spec_file(spec)
        digest.update(spec.encode() + b"\0")
        digest.update(path.read_bytes() if path is not None else b"<missing>")
    return digest.hexdigest()
