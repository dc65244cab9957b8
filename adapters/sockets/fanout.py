"""One client's queues: filled by the server's fan-out, emptied by its writer."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import anyio

from eventbus.events import BATCH_EVENTS, Event

from .frames import Dropped, Frame, Gap

__all__ = ["ClientQueue", "Item"]

Item = tuple[int, type[Event], Any]
"""An event as the server holds it: seq, class, encoded frame."""


class ClientQueue:
    """Per-client buffers: batch events drop oldest-first (counted, and the client is
    told); any other event waiting past ``buffer`` marks the client too slow."""

    def __init__(
        self,
        types: frozenset[type[Event]] | None,
        buffer: int,
        first: list[Any],
        encode: Callable[[Frame], Any],
    ) -> None:
        self.types = types
        self.buffer = buffer
        self.encode = encode
        self.pending: deque[Any] = deque(first)  # frames never dropped: welcome, backlog, notices
        self.batches: deque[Item] = deque()
        self.others: deque[Item] = deque()
        self.last: int | None = None  # the seq last considered, of any kind: gaps are found here
        self.dropped = 0
        self.dropped_total = 0
        self.kicked: str | None = None
        self.ended = False
        self.ready = anyio.Event()
        self.done = anyio.Event()
        self.sending = anyio.CancelScope()  # cancelled to unblock a send to a stuck client

    def offer(self, item: Item, *, backlog: bool = False) -> None:
        seq, kind, _ = item
        last = self.last
        if last is not None:
            if seq <= last:
                return  # the client holds it already
            if seq > last + 1:
                self.pending.append(self.encode(Gap(after=last, first=seq)))
        self.last = seq
        if self.types is not None and kind not in self.types:
            return
        if backlog:
            self.pending.append(item[2])
        elif kind in BATCH_EVENTS:
            if len(self.batches) >= self.buffer:
                self.batches.popleft()
                self.dropped += 1
                self.dropped_total += 1
            self.batches.append(item)
        else:
            if len(self.others) >= self.buffer:
                self.kick(f"too slow: {len(self.others)} events waiting to be sent")
                return
            self.others.append(item)
        self.ready.set()

    def notify(self, frame: Any) -> None:
        self.pending.append(frame)
        self.ready.set()

    def kick(self, reason: str) -> None:
        if self.kicked is None:
            self.kicked = reason
            self.batches.clear()
            self.others.clear()
            self.sending.cancel()
            self.ready.set()

    def end(self) -> None:
        self.ended = True
        self.ready.set()

    @property
    def idle(self) -> bool:
        return not (self.pending or self.batches or self.others)

    def take(self, limit: int = 512) -> list[Any]:
        """Frames to send next, in seq order, notices of drops first."""
        out: list[Any] = []
        if self.dropped:
            out.append(self.encode(Dropped(count=self.dropped, total=self.dropped_total)))
            self.dropped = 0
        while self.pending and len(out) < limit:
            out.append(self.pending.popleft())
        batches, others = self.batches, self.others
        while (batches or others) and len(out) < limit:
            if not others or (batches and batches[0][0] < others[0][0]):
                out.append(batches.popleft()[2])
            else:
                out.append(others.popleft()[2])
        return out
