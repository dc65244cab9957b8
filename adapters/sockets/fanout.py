"""The fan-out: one shared window of encoded events, and a cursor per client.

An event is encoded once and appended once, whatever the number of clients:
the bus's batches cost the server O(events), not O(events x clients). Each
client's writer takes what lies past its cursor when it is due: at the
server's periodic flush, or at once for a notice or the end. Clients that
read the whole stream share one encoded slice per flush.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio

from eventbus.events import BATCH_EVENTS, Event

from .frames import Dropped, Frame, Gap

__all__ = ["ClientState", "Item", "Window"]

Item = tuple[int, type[Event], Any]
"""An event as the server holds it: seq, class, encoded frame."""


class Window:
    """The last ``size`` events, in seq order, with running counts for O(1) questions."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: list[Item] = []
        self._seqs: list[int] = []
        self._others: list[int] = [0]  # non-batch events before each index
        self._base = 0  # the first index still held
        self.last_evicted: int | None = None
        """The seq of the last event that fell out of the window."""
        self.first_ever: int | None = None
        """The seq of the first event ever held."""
        self._shared: tuple[int, int, list[Any]] | None = None

    def __len__(self) -> int:
        return len(self._items) - self._base

    @property
    def first_seq(self) -> int | None:
        return self._seqs[self._base] if len(self) else None

    @property
    def end(self) -> int:
        return len(self._items)

    def append(self, item: Item) -> None:
        if self.first_ever is None:
            self.first_ever = item[0]
        self._items.append(item)
        self._seqs.append(item[0])
        self._others.append(self._others[-1] + (item[1] not in BATCH_EVENTS))
        if len(self) > self.size:
            self.last_evicted = self._seqs[self._base]
            self._base += 1
            if self._base >= self.size:  # compact now and then: amortized O(1)
                base = self._base
                del self._items[:base], self._seqs[:base], self._others[:base]
                self._base = 0
                self._shared = None

    def after(self, seq: int | None) -> int:
        """The index of the first held event after ``seq`` (``None``: the start)."""
        if seq is None:
            return self._base
        return bisect_right(self._seqs, seq, self._base)

    def others(self, i: int, j: int) -> int:
        """Non-batch events in ``[i, j)``."""
        return self._others[j] - self._others[i]

    def items(self, i: int, j: int) -> list[Item]:
        return self._items[i:j]

    def seq_at(self, i: int) -> int:
        return self._seqs[i]

    def contiguous(self, i: int, j: int) -> bool:
        return self._seqs[j - 1] - self._seqs[i] == j - 1 - i

    def shared(self, i: int, j: int, pack: Callable[[list[Any]], list[Any]]) -> list[Any]:
        """``[i, j)``'s frames, packed once for every client that reads all of them."""
        cached = self._shared
        if cached is not None and cached[0] == i and cached[1] == j:
            return cached[2]
        frames = pack([item[2] for item in self._items[i:j]])
        self._shared = (i, j, frames)
        return frames


class ClientState:
    """One connection: its cursor in the window, its notices, and why it ended."""

    def __init__(
        self,
        types: frozenset[type[Event]] | None,
        buffer: int,
        cursor: int | None,
        encode: Callable[[Frame], Any],
    ) -> None:
        self.types = types
        self.buffer = buffer
        self.cursor = cursor
        """The seq of the last event handled for this client (sent, filtered out or dropped)."""
        self.taken = cursor
        """Where the cursor goes once what :meth:`take` gave is sent."""
        self.encode = encode
        self.pending: deque[Any] = deque()  # frames before any event past the cursor: welcome, backlog, notices
        self.dropped_total = 0
        self.kicked: str | None = None
        self.ended = False
        self.ready = anyio.Event()
        self.done = anyio.Event()
        self.sending = anyio.CancelScope()  # cancelled to unblock a send to a stuck client
        self.parked = False
        """Its writer waits for work: a flush may write for it, with no wake-up."""

    def notify(self, frame: Any) -> None:
        self.pending.append(frame)
        self.ready.set()

    def kick(self, reason: str) -> None:
        if self.kicked is None:
            self.kicked = reason
            self.pending.clear()
            self.sending.cancel()
            self.ready.set()

    def end(self) -> None:
        self.ended = True
        self.ready.set()

    def check(self, window: Window) -> None:
        """Disconnect this client if it fell out of the window, or too many
        non-batch events wait for it (batch events are dropped instead)."""
        if self.kicked is not None:
            return
        self._settle(window)
        if self.cursor is not None and window.last_evicted is not None and self.cursor < window.last_evicted:
            self.kick(f"too slow: fell behind the {window.size} events the server holds")
            return
        i = window.after(self.cursor)
        waiting = window.others(i, window.end)
        if waiting > self.buffer and (self.types is None or self._waiting_others(window, i) > self.buffer):
            self.kick(f"too slow: {waiting} events waiting to be sent")

    def _waiting_others(self, window: Window, i: int) -> int:
        types = self.types or frozenset()
        return len([kind for _, kind, _ in window.items(i, window.end) if kind not in BATCH_EVENTS and kind in types])

    def take(self, window: Window, pack: Callable[[list[Any]], list[Any]]) -> list[Any]:
        """Frames to send next: notices, then events past the cursor, in seq order,
        the oldest batch events dropped (and the client told) past ``buffer``.
        The cursor moves on at :meth:`sent`: events in a stuck send still wait."""
        out: list[Any] = list(self.pending)
        self.pending.clear()
        self._settle(window)
        i, j = window.after(self.cursor), window.end
        if i == j:
            return out
        batches = (j - i) - window.others(i, j)
        if self.types is None and batches <= self.buffer and window.contiguous(i, j):
            if self.cursor is not None and window.seq_at(i) != self.cursor + 1:
                out.append(self.encode(Gap(after=self.cursor, first=window.seq_at(i))))
            out += window.shared(i, j, pack)  # the common case: every event, no drop
        else:
            out += self._selected(window.items(i, j), batches)
        self.taken = window.seq_at(j - 1)
        return out

    def sent(self) -> None:
        self.cursor = self.taken

    def _settle(self, window: Window) -> None:
        """A client that joined before any event starts before the first one ever
        held: if that fell out of the window meanwhile, the client is told."""
        if self.cursor is None and window.first_ever is not None:
            self.cursor = self.taken = window.first_ever - 1

    def _selected(self, items: list[Item], batches: int) -> list[Any]:
        """The slow path: a kinds filter, drops, or holes in the window."""
        types = self.types
        if types is not None:
            batches = sum(1 for _, kind, _ in items if kind in BATCH_EVENTS and kind in types)
        drop = max(0, batches - self.buffer)
        frames: list[Any] = []
        if drop:
            self.dropped_total += drop
            frames.append(self.encode(Dropped(count=drop, total=self.dropped_total)))
        last = self.cursor
        for seq, kind, frame in items:
            if last is not None and seq > last + 1:
                frames.append(self.encode(Gap(after=last, first=seq)))
            last = seq
            if types is not None and kind not in types:
                continue
            if drop and kind in BATCH_EVENTS:
                drop -= 1
                continue
            frames.append(frame)
        return frames
