"""``python -m bench [--quick] [--out DIR]``: run the suite, write and print the results."""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path
from typing import Any

from . import report

SIZES: dict[str, dict[str, dict[str, int]]] = {
    "full": {
        "hook_cost": {"repeats": 7, "samples": 300, "chunk": 1000},
        "fit_overhead": {"epochs": 15, "repeats": 7, "slow_epochs": 2, "slow_repeats": 3},
    },
    "quick": {
        "hook_cost": {"repeats": 3, "samples": 100, "chunk": 1000},
        "fit_overhead": {"epochs": 3, "repeats": 3, "slow_epochs": 1, "slow_repeats": 2},
    },
}


def run_suite(
    mode: str,
    out_dir: Path = report.RESULTS_DIR,
    *,
    command: str = "python -m bench",
    hook_sizes: dict[str, Any] | None = None,
    fit_sizes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure, write ``results.md`` and ``results.json`` to ``out_dir``; return the results."""
    from . import fit_overhead, hook_cost

    started = time.perf_counter()
    results: dict[str, Any] = {
        "command": command,
        "mode": mode,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "machine": report.machine(),
    }
    results["hook_cost"] = hook_cost.measure(**(hook_sizes or SIZES[mode]["hook_cost"]))
    results["fit_overhead"] = fit_overhead.measure(**(fit_sizes or SIZES[mode]["fit_overhead"]))
    results["wall_s"] = time.perf_counter() - started
    report.write(results, out_dir)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (under 2 minutes)")
    parser.add_argument("--out", type=Path, default=report.RESULTS_DIR, help="where to write the results")
    args = parser.parse_args(argv)
    command = " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)])
    results = run_suite("quick" if args.quick else "full", args.out, command=command)
    print(report.render(results), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
