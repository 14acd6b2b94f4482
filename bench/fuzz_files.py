"""The long fuzz profile of the data and config files edgeport reads (issue #21).

Runs every file fuzzer of tests/fuzz_files.py (data: .npz, .npy, array contents, image folders,
.txt; profile YAML, precision_plan.json, edgeport.yaml; a bundle's manifest.json and
reference.npz through ``edgeport verify``) with EDGEPORT_FUZZ_EXAMPLES examples each (default
1000), prints the outcomes per loader (ok / EdgeportError by exit code / internal error) and
saves them to bench/results/fuzz_files.json. The tests run the same fuzzers with a few dozen
examples each. Exit status 1 when any internal error was found.

    PYTHONPATH=. python bench/fuzz_files.py            # EDGEPORT_FUZZ_EXAMPLES=5000 for longer
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import fuzz_files  # noqa: E402  (after the path: the fuzzers live with the tests)

RESULTS = REPO / "bench" / "results" / "fuzz_files.json"
DEFAULT_EXAMPLES = 1000


def main() -> int:
    examples = int(os.environ.get("EDGEPORT_FUZZ_EXAMPLES") or DEFAULT_EXAMPLES)
    os.environ["EDGEPORT_FUZZ_EXAMPLES"] = str(examples)
    only = set(sys.argv[1:])
    tally = fuzz_files.Tally()
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        bundle = None
        runs = [(name, run, False) for name, run in fuzz_files.FUZZERS.items()]
        runs += [(name, run, True) for name, run in fuzz_files.BUNDLE_FUZZERS.items()]
        for name, run, needs_bundle in runs:
            if only and name not in only:
                continue
            start = time.perf_counter()
            if needs_bundle:
                bundle = bundle or fuzz_files.make_bundle(Path(tmp))
                run(bundle, tally.counter(name), examples)
            else:
                run(tally.counter(name), examples)
            seconds[name] = round(time.perf_counter() - start, 1)
            counts = tally.counts[name]
            line = ", ".join(f"{key} {value}" for key, value in sorted(counts.items()))
            print(f"{name:16} {line}  ({seconds[name]} s)", flush=True)
            for finding in tally.internal[name]:
                print(f"    {finding}", flush=True)
    results = {
        "examples_per_loader": examples,
        "python": platform.python_version(),
        "loaders": {
            name: {
                "ok": counts.get("ok", 0),
                "edgeport_error": {
                    code: counts.get(f"exit {code}", 0) for code in ("2", "3", "4") if counts.get(f"exit {code}")
                },
                "internal_error": counts.get("internal", 0),
                "internal_examples": tally.internal[name],
                "seconds": seconds[name],
            }
            for name, counts in tally.counts.items()
        },
    }
    results["internal_errors"] = sum(v["internal_error"] for v in results["loaders"].values())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"internal errors: {results['internal_errors']}; saved {RESULTS.relative_to(REPO)}")
    return 1 if results["internal_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
