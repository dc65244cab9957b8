"""Learning curves from an event log, as a picture (matplotlib, an optional extra)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from .events import EpochEnd, Event, TrainBatchEnd, TrainBegin

__all__ = ["MissingExtraError", "plot_curves"]


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message says how to install it."""


def plot_curves(events: Iterable[Event], path: str | os.PathLike[str], *, batches: bool = False) -> int:
    """Draw loss and metrics per epoch (and per batch, if asked) of every ``fit``
    in ``events`` into ``path``; one panel per metric, training and validation
    together. Returns how many panels were drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingExtraError("plotting needs matplotlib: pip install 'keras-eventbus[plot]'") from exc

    per_epoch: dict[str, dict[str, list[tuple[float, float]]]] = {}
    per_batch: dict[str, list[tuple[float, float]]] = {}
    steps: dict[str, int] = {}
    epoch_of: dict[str, int] = {}
    for event in events:
        if isinstance(event, TrainBegin):
            value = event.params.get("steps")
            steps[event.run] = value if isinstance(value, int) and value > 0 else 0
        elif isinstance(event, EpochEnd):
            epoch_of[event.run] = event.epoch + 1
            for name, value in event.logs.items():
                base = name.removeprefix("val_")
                per_epoch.setdefault(base, {}).setdefault(name, []).append((event.epoch + 1, value))
        elif batches and isinstance(event, TrainBatchEnd) and "loss" in event.logs:
            done = epoch_of.get(event.run, 0)
            per_step = steps.get(event.run) or 0
            x = done + (event.batch + 1) / per_step if per_step else done + 1
            per_batch.setdefault("loss", []).append((x, event.logs["loss"]))
    panels = list(per_epoch)
    if not panels:
        raise ValueError("no epoch ends in these events: nothing to plot (was this a fit?)")
    figure, axes = plt.subplots(len(panels), 1, figsize=(7, 2.6 * len(panels)), squeeze=False, sharex=True)
    for axis, base in zip(axes[:, 0], panels, strict=True):
        if batches and base == "loss" and per_batch.get("loss"):
            _line(axis, per_batch["loss"], label="loss per batch (running mean)", alpha=0.4, linewidth=0.8)
        for name, points in per_epoch[base].items():
            _line(axis, points, label=name, marker="o", markersize=3)
        axis.set_ylabel(base)
        axis.grid(True, alpha=0.3)
        axis.legend(loc="best", fontsize="small")
    axes[-1, 0].set_xlabel("epoch")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return len(panels)


def _line(axis: Any, points: list[tuple[float, float]], **style: Any) -> None:
    xs, ys = zip(*points, strict=True)
    axis.plot(xs, ys, **style)
