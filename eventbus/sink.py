"""The shape of a file sink: encode events into a buffer, write it in batches.

A sink is lossless and batched: the bus hands it every queued event at once.
It writes at each epoch end, when training ends, every ``flush_interval``
seconds while events flow, and when its stream ends (the bus closing, or
``unsubscribe()``), so a run's record is on disk at the points that matter
and the loop never pays for a write per event.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from .events import EpochEnd, Event, TrainEnd

__all__ = ["BufferedFileSink"]

_FLUSH_ON = (EpochEnd, TrainEnd)


class BufferedFileSink:
    """Subclasses encode in :meth:`append` and may prepare the file in :meth:`_open`."""

    lossless = True
    batched = True

    def __init__(self, path: str | os.PathLike[str], *, flush_interval: float = 1.0, fsync: bool = False) -> None:
        if not flush_interval > 0:
            raise ValueError(f"flush_interval must be > 0 seconds, got {flush_interval!r}")
        self.path = Path(path)
        self.flush_interval = flush_interval
        self.fsync = fsync
        self.written = 0
        """Events taken in so far (written, or buffered until the next flush)."""
        self._buffer = bytearray()
        self._file: BinaryIO | None = None
        self._last_flush = time.monotonic()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {str(self.path)!r} written={self.written}>"

    async def __call__(self, events: list[Event]) -> None:
        self.append(events)
        if any(type(e) in _FLUSH_ON for e in events) or time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def append(self, events: Sequence[Event]) -> None:
        """Encode ``events`` into the write buffer (no I/O)."""
        raise NotImplementedError

    def flush(self) -> None:
        """Write what is buffered (and fsync, if asked)."""
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        file = self._open()
        file.write(self._buffer)
        file.flush()
        if self.fsync:
            os.fsync(file.fileno())
        self._buffer.clear()

    async def aclose(self) -> None:
        """Flush and close the file; the bus calls this when the stream ends."""
        self.close()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self) -> BinaryIO:
        if self._file is None:
            self._file = open(self.path, "ab")  # noqa: SIM115 - kept open across flushes
        return self._file
