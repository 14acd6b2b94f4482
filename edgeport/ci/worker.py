"""One build target in its own process: ``python -m edgeport.ci.worker spec.json``.

The spec holds ``convert()``'s keyword arguments (with ``output_dir``) and where to write the
result. Running each target in a child process isolates it: a converter that crashes or leaks
memory takes only its own target down, and ``edgeport build`` reports it and goes on.

The result file says ``{"status": "passed" | "failed" | "error", "message", "exit_code",
"seconds"}``: ``failed`` is a gate failure with the bundle written, ``error`` means no bundle.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgeport.core.progress import Progress


class _LineProgress(Progress):
    """Progress as plain lines on stderr (captured into the target's log file)."""

    @contextmanager
    def step(self, title: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        """Print the step's start and its end with its time around it (timings recorded as usual)."""
        print(f"... {title}", file=sys.stderr, flush=True)
        with super().step(title, total) as advance:
            yield advance
        print(f"done {title} ({self.timings[title]:.1f} s)", file=sys.stderr, flush=True)


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``edgeport.api.convert`` with the spec's kwargs; return the result record."""
    from edgeport.api import convert
    from edgeport.core.errors import EdgeportError, GateFailed, describe_exception

    started = time.perf_counter()
    kwargs = dict(spec["kwargs"])
    try:
        convert(progress=_LineProgress(), **kwargs)
        result = {"status": "passed", "message": None, "exit_code": 0}
    except GateFailed as exc:
        result = {"status": "failed", "message": exc.one_line(), "exit_code": exc.exit_code}
    except EdgeportError as exc:
        result = {"status": "error", "message": exc.one_line(), "exit_code": exc.exit_code}
    except Exception as exc:  # a bug or a library failure: one line in the summary, the traceback in the log
        traceback.print_exc()
        result = {"status": "error", "message": f"internal error: {describe_exception(exc)}", "exit_code": 1}
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point: read the spec, run it, write the result file. Returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text())
    result = run_spec(spec)
    tmp = Path(spec["result"] + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.rename(spec["result"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
