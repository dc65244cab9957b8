"""Schedule a callback on the running event loop from any thread, without blocking.

anyio's ``from_thread`` helpers wait for the callback's result; a producer that
must never block needs fire-and-forget, which each backend offers natively.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio.lowlevel

__all__ = ["threadsafe_scheduler"]


def threadsafe_scheduler(callback: Callable[[], object]) -> Callable[[], None]:
    """Return a function that, from any thread, schedules ``callback`` on this loop.

    Must be called inside the running loop. The returned function never
    blocks; once the loop has finished it does nothing.
    """
    native = anyio.lowlevel.current_token().native_token
    if isinstance(native, asyncio.AbstractEventLoop):
        loop = native

        def schedule_asyncio() -> None:
            try:
                loop.call_soon_threadsafe(callback)
            except RuntimeError:  # the loop has closed
                pass

        return schedule_asyncio

    import trio  # anyio's only other backend

    token: trio.lowlevel.TrioToken = native  # type: ignore[assignment]

    def schedule_trio() -> None:
        try:
            token.run_sync_soon(callback)
        except trio.RunFinishedError:
            pass

    return schedule_trio
