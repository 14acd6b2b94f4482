"""How to open a runner for an artifact, as JSON-ready data a child process or another machine
can rebuild. The runner classes themselves are looked up in :mod:`edgeport.core.registry`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgeport.core.registry import runner_class


@dataclass
class RunnerSpec:
    """How to open a runner: its runtime ``kind`` (a key of ``registry.RUNTIMES``: onnxruntime,
    litert, coreml, coreml-emulated...), the artifact's file and keyword arguments."""

    kind: str
    path: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def open(self, threads: int = 1):
        """Return a loaded runner (see ``core.contracts.Runner``) for this spec."""
        return runner_class(self.kind)(self.path, threads, **self.kwargs)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {"kind": self.kind, "path": self.path, "kwargs": self.kwargs}
