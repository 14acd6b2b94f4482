"""Import a user-named Python object: ``package.module:Name`` or ``path/to/file.py:Name``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from edgeport.core.errors import InputError


def looks_like_object_ref(value: str) -> bool:
    """True when ``value`` has the ``module:Name`` form and is not an existing file path."""
    module, sep, name = value.rpartition(":")
    return bool(sep and module and name.isidentifier() and not Path(value).exists() and len(module) > 1)


def import_object(ref: str, what: str) -> Any:
    """Import and return the object named by ``ref`` (``pkg.mod:Name`` or ``file.py:Name``).

    ``what`` names the flag for error messages. Raises InputError when it cannot be found.
    """
    module_ref, sep, name = ref.rpartition(":")
    if not sep or not module_ref or not name:
        raise InputError(f"{what} {ref!r} must look like package.module:Name or path/file.py:Name")
    try:
        if module_ref.endswith(".py"):
            file_path = Path(module_ref).resolve()
            if not file_path.is_file():
                raise InputError(f"{what}: file not found: {module_ref}")
            spec = importlib.util.spec_from_file_location(file_path.stem, file_path)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            sys.modules.setdefault(file_path.stem, module)
            spec.loader.exec_module(module)
        else:
            if str(Path.cwd()) not in sys.path:
                # Users name modules relative to where they run edgeport, as with python -m.
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(module_ref)
    except InputError:
        raise
    except ImportError as exc:
        raise InputError(f"{what}: cannot import {module_ref!r}: {exc}") from exc
    except Exception as exc:  # the user's module raised while importing
        raise InputError(f"{what}: importing {module_ref!r} raised {type(exc).__name__}: {exc}") from exc
    if not hasattr(module, name):
        raise InputError(f"{what}: module {module_ref!r} has no attribute {name!r}")
    return getattr(module, name)
