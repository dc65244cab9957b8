"""A live progress display for training (epochs, batches, ETA, current metrics), on rich."""

from __future__ import annotations

from typing import Any, TextIO

from ..events import EpochBegin, EpochEnd, TrainBatchEnd, TrainBegin, TrainEnd
from ..subscriber import Subscriber

__all__ = ["ProgressBar"]


class ProgressBar(Subscriber):
    """Two bars, epochs and the current epoch's batches, with ETA and metrics.

    It draws from the bus's loop, so it costs the training step nothing; when
    it falls behind it skips batch events, which a display can afford. Needs
    rich: ``pip install 'keras-eventbus[progress]'``.

    Args:
        file: where to draw (standard output by default).
        metrics: how many of the latest logs to show beside the bars.
    """

    def __init__(self, *, file: TextIO | None = None, metrics: int = 4) -> None:
        try:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        except ImportError as exc:
            raise ImportError("ProgressBar needs rich: pip install 'keras-eventbus[progress]'") from exc
        self.metrics = metrics
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[logs]}"),
            console=Console(file=file) if file is not None else None,
        )
        self._epochs: Any = None
        self._batches: Any = None

    def _logs(self, logs: dict[str, float]) -> str:
        return "  ".join(f"{k} {v:.4g}" for k, v in list(logs.items())[: self.metrics])

    def on_train_begin(self, event: TrainBegin) -> None:
        epochs = event.params.get("epochs")
        steps = event.params.get("steps")
        self._progress.start()
        self._epochs = self._progress.add_task("epochs", total=epochs if isinstance(epochs, int) else None, logs="")
        self._batches = self._progress.add_task("batches", total=steps if isinstance(steps, int) else None, logs="")

    def on_epoch_begin(self, event: EpochBegin) -> None:
        if self._batches is not None:
            self._progress.reset(self._batches, logs="")

    def on_train_batch_end(self, event: TrainBatchEnd) -> None:
        if self._batches is not None:
            self._progress.update(self._batches, completed=event.batch + 1, logs=self._logs(event.logs))

    def on_epoch_end(self, event: EpochEnd) -> None:
        if self._epochs is not None:
            self._progress.update(self._epochs, completed=event.epoch + 1, logs=self._logs(event.logs))

    def on_train_end(self, event: TrainEnd) -> None:
        self._progress.stop()
        self._epochs = self._batches = None

    async def aclose(self) -> None:
        """The bus closes it with its stream: stop drawing, even mid-run."""
        self._progress.stop()
