"""The run's custom operators (edgeport/ops): load the op modules the recipe names and the
installed entry points, and make every ONNX Runtime session of the run able to execute the
registered custom-domain nodes (their libraries, or their Python kernels through PyOp)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from edgeport.ops import load_custom_ops, load_entry_points, registered_ops
from edgeport.ops.ort import session_custom_ops
from edgeport.options.recipe import Recipe
from edgeport.runtime.ort import custom_ops_in_use, use_custom_ops


@contextmanager
def custom_ops_active(recipe: Recipe) -> Iterator[list[str]]:
    """Load ``recipe.custom_ops`` and the ``edgeport.custom_ops`` entry points, set the process's
    ONNX Runtime custom ops for the run (restored after it) and yield the names of the ops loaded."""
    names: list[str] = []
    for spec in recipe.custom_ops:
        names += load_custom_ops(spec)
    names += load_entry_points()
    previous = custom_ops_in_use()
    if registered_ops():
        libraries, renames = session_custom_ops(recipe.custom_op_library)
        use_custom_ops(libraries, renames)
    try:
        yield sorted(set(names))
    finally:
        use_custom_ops(*previous)


def custom_ops_decision(recipe: Recipe, names: list[str]) -> dict[str, str] | None:
    """Return the report's decision line for the custom ops loaded (None when there are none)."""
    if not names:
        return None
    return {
        "asked": "--custom_ops " + ",".join(recipe.custom_ops) if recipe.custom_ops else "entry points",
        "done": "registered " + ", ".join(names),
        "why": "custom ops are lowered as their entries say and verified against their reference",
    }
