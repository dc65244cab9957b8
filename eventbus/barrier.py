"""Let the training thread wait until every control subscriber has handled one event.

The bus fills a barrier on its loop thread (who must answer, who has); the
training thread only waits on it, with a timeout. The commands a control
subscriber returns are handed to the bridge before it arrives, so when the
wait returns they are ready to apply: the same point where a synchronous Keras
callback would have acted.
"""

from __future__ import annotations

import threading

__all__ = ["Barrier"]


class Barrier:
    __slots__ = ("_done", "_waiting")

    def __init__(self) -> None:
        self._done = threading.Event()
        self._waiting: set[str] = set()

    def expect(self, names: list[str]) -> None:
        """Loop thread: these subscribers must handle the event (none: open at once)."""
        self._waiting.update(names)
        if not self._waiting:
            self._done.set()

    def arrive(self, name: str) -> None:
        """Loop thread: ``name`` has handled the event (or failed, or left)."""
        self._waiting.discard(name)
        if not self._waiting:
            self._done.set()

    def wait(self, timeout: float | None) -> bool:
        """Any thread: block until every subscriber arrived; ``False`` on timeout."""
        return self._done.wait(timeout)

    @property
    def pending(self) -> list[str]:
        """The subscribers that have not arrived yet, sorted."""
        return sorted(tuple(self._waiting))
