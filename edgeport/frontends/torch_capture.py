"""The inputs a PyTorch source passes to its custom ops, recorded while it runs (for the
custom ops' parity check: the activations that really reach each op)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def capture_custom_op_inputs(
    run: Callable[[dict[str, np.ndarray]], Any], feeds: dict[str, np.ndarray], qualnames: set[str]
) -> dict[str, list[np.ndarray]]:
    """Run ``run(feeds)`` (a source's runner) and return, for each torch op ``namespace::op`` in
    ``qualnames``, the tensor inputs of its first call as numpy arrays (ops never called are absent)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    captured: dict[str, list[np.ndarray]] = {}

    class _Recorder(TorchDispatchMode):
        # A dispatch mode sees every op call below autograd, custom ops included, by overload.
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            name = f"{func.namespace}::{func._opname}"
            if name in qualnames and name not in captured:
                captured[name] = [a.detach().cpu().numpy().copy() for a in args if isinstance(a, torch.Tensor)]
            return func(*args, **(kwargs or {}))

    with _Recorder():
        run(feeds)
    return captured
