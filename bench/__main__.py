"""``python -m bench [--quick] [--out DIR] [--only NAME ...]``: run the suite, write and print the results."""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path
from typing import Any

from . import plots, report

MEASUREMENTS = ("memory", "hook_cost", "fit_overhead", "subscriber_cost", "throughput", "event_log", "scaling")
"""In the order they run: memory first, while the heap is fresh (its runs have their
own interpreters, but the suite's own footprint is smallest then too)."""

SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "memory": {"events": 1_000_000, "repeats": 3},
        "hook_cost": {"repeats": 7, "samples": 300, "chunk": 1000},
        "fit_overhead": {"epochs": 7, "repeats": 21, "slow_epochs": 3, "slow_repeats": 3},
        "subscriber_cost": {"pairs": 78, "block_pairs": 60},
        "throughput": {"repeats": 5, "events": 100_000, "deliveries": 1_000_000},
        "event_log": {"repeats": 5, "events": 200_000, "bus_events": 100_000},
        "scaling": {"repeats": 3, "events": 50_000, "deliveries": 400_000, "rates": 10, "duration_s": 0.5},
    },
    "quick": {
        "memory": {"events": 200_000, "repeats": 1},
        "hook_cost": {"repeats": 3, "samples": 100, "chunk": 1000},
        "fit_overhead": {"epochs": 3, "repeats": 5, "slow_epochs": 3, "slow_repeats": 2},
        "subscriber_cost": {"pairs": 18, "block_pairs": 6},
        "throughput": {"repeats": 3, "events": 30_000, "deliveries": 200_000},
        "event_log": {"repeats": 3, "events": 50_000, "bus_events": 30_000},
        "scaling": {"repeats": 2, "events": 20_000, "deliveries": 100_000, "rates": 8, "duration_s": 0.2},
    },
}


def run_suite(
    mode: str,
    out_dir: Path = report.RESULTS_DIR,
    *,
    command: str = "python -m bench",
    sizes: dict[str, dict[str, Any]] | None = None,
    only: tuple[str, ...] = MEASUREMENTS,
) -> dict[str, Any]:
    """Measure, write ``results.md``, ``results.json`` and the plots to ``out_dir``; return the results."""
    import importlib

    sizes = sizes if sizes is not None else SIZES[mode]
    started = time.perf_counter()
    results: dict[str, Any] = {
        "command": command,
        "mode": mode,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "machine": report.machine(),
        "measured": [name for name in MEASUREMENTS if name in only],
    }
    for name in results["measured"]:
        module = importlib.import_module(f"{__package__}.{name}")
        t0 = time.perf_counter()
        results[name] = module.measure(**sizes.get(name, {}))
        results[name]["wall_s"] = time.perf_counter() - t0
    results["wall_s"] = time.perf_counter() - started
    results["budgets"] = report.budgets(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    results["plots"] = plots.draw(results, out_dir)
    report.write(results, out_dir)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (under 2 minutes)")
    parser.add_argument("--out", type=Path, default=report.RESULTS_DIR, help="where to write the results")
    parser.add_argument(
        "--only", nargs="+", choices=MEASUREMENTS, default=MEASUREMENTS, help="run only these measurements"
    )
    args = parser.parse_args(argv)
    command = " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)])
    results = run_suite("quick" if args.quick else "full", args.out, command=command, only=tuple(args.only))
    print(report.render(results), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
