"""The scaling figure: per-event cost as subscribers double, and as the event rate doubles.

matplotlib is optional (the ``bench`` extra): without it the plot is skipped
and the results say so, and nothing else changes. Figures are drawn with
matplotlib's object API and the Agg canvas, never pyplot, so no display and
no global backend are involved.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SCALING_PNG = "scaling.png"
MISSING = "skipped: matplotlib is not installed (pip install 'keras-eventbus[bench]')"


def draw(results: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Draw what the results hold into ``out_dir``; per plot, its file name or why it is missing."""
    plots: dict[str, Any] = {}
    if results.get("scaling"):
        plots["scaling"] = _scaling(results["scaling"], out_dir / SCALING_PNG)
    return plots


def _scaling(scaling: dict[str, Any], path: Path) -> dict[str, Any]:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return {"path": None, "note": MISSING}
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    left, right = figure.subplots(1, 2)

    counts = [p["subscribers"] for p in scaling["subscribers"]]
    for key, label in (
        ("wall_us_per_event", "end to end, wall"),
        ("loop_cpu_us_per_event", "bus loop CPU"),
        ("producer_us_per_publish", "producer, per publish"),
    ):
        _line(left, counts, [p[key] for p in scaling["subscribers"]], label)
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.set_xticks(counts, [str(n) for n in counts])
    left.set_xlabel("subscribers (one producer, as fast as it can)")
    left.set_ylabel("us per event (median, min-max)")
    left.set_title("as subscribers double")

    rates = [p["target_rate"] for p in scaling["rates"]]
    for key, label in (
        ("loop_cpu_us_per_event", "bus loop CPU"),
        ("producer_us_per_publish", "producer, per publish"),
    ):
        _line(right, rates, [p[key] for p in scaling["rates"]], label)
    right.set_xscale("log", base=2)
    right.set_yscale("log")
    right.set_xticks(rates, [_rate(r) for r in rates])
    right.set_xlabel("target events/s (paced producer, one subscriber)")
    right.set_ylabel("us per event (median, min-max)")
    right.set_title("as the event rate doubles")

    for axes in (left, right):
        axes.grid(True, which="major", alpha=0.3)
        axes.legend()
    figure.suptitle(f"keras-eventbus: per-event cost ({scaling['config']['backend']})")
    tmp = path.with_name(path.name + ".tmp")
    figure.savefig(tmp, format="png", dpi=110)
    os.replace(tmp, path)
    return {"path": path.name, "note": None}


def _line(axes: Any, xs: list[float], spreads: list[dict[str, float]], label: str) -> None:
    medians = [s["median"] for s in spreads]
    below = [s["median"] - s["min"] for s in spreads]
    above = [s["max"] - s["median"] for s in spreads]
    axes.errorbar(xs, medians, yerr=[below, above], marker="o", capsize=3, label=label)


def _rate(rate: float) -> str:
    return f"{rate / 1e6:g}M" if rate >= 1e6 else f"{rate / 1e3:g}k"
