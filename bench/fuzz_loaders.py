"""The long fuzz profile of the model loaders: tests/frontends/test_fuzz_models.py with N examples
per loader (default 200), every outcome counted instead of stopping at the first internal error.

Prints the counts per loader (ok / EdgeportError by exit code / internal error) and writes them to
bench/results/fuzz_models.json. Exit status 1 when any loader had an internal error.

    python bench/fuzz_loaders.py [--examples N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULT = REPO / "bench" / "results" / "fuzz_models.json"
OUTCOMES = ("ok", "error_exit_2", "error_exit_3", "error_exit_4", "internal_error")


def run(examples: int) -> dict:
    """Run the fuzz tests with ``examples`` per loader; return the counts per loader."""
    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "counts.json"
        env = dict(os.environ, EDGEPORT_FUZZ_EXAMPLES=str(examples), EDGEPORT_FUZZ_RECORD=str(record))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/frontends/test_fuzz_models.py",
        ]
        started = time.monotonic()
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        seconds = time.monotonic() - started
        if not record.is_file():
            sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
            raise SystemExit(f"the fuzz tests wrote no counts (pytest exit {result.returncode})")
        counts = json.loads(record.read_text())
    loaders = {name: c for name, c in counts.items() if not name.endswith(":internal")}
    internals = {name.split(":")[0]: c for name, c in counts.items() if name.endswith(":internal")}
    return {
        "examples_per_loader": examples,
        "seconds": round(seconds, 1),
        "pytest_exit": result.returncode,
        "loaders": {name: {k: loaders[name].get(k, 0) for k in OUTCOMES} for name in sorted(loaders)},
        "internal_errors": internals,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200, help="examples per loader (default 200)")
    args = parser.parse_args()
    summary = run(args.examples)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{'loader':28} " + " ".join(f"{k:>14}" for k in OUTCOMES))
    for name, counts in summary["loaders"].items():
        print(f"{name:28} " + " ".join(f"{counts[k]:>14}" for k in OUTCOMES))
    for name, errors in summary["internal_errors"].items():
        for error, count in errors.items():
            print(f"internal error in {name} ({count}x): {error}")
    print(f"{summary['seconds']} s; written to {RESULT.relative_to(REPO)}")
    return 1 if summary["internal_errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
