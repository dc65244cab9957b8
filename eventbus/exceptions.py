"""Errors raised by the bus.

The tree::

    EventBusError
     +-- BusClosedError        publishing to, or starting, a bus that has closed
     +-- BusNotRunningError    a bridge used outside ``with EventBus()`` / ``async with``
     +-- LoopThreadError       ``fit`` called on the bus's own event-loop thread

Bad arguments raise plain ``TypeError`` / ``ValueError`` with a message that
says what to do instead.
"""

from __future__ import annotations

__all__ = [
    "BusClosedError",
    "BusNotRunningError",
    "EventBusError",
    "LoopThreadError",
]


class EventBusError(Exception):
    """Base class of every error the bus raises."""


class BusClosedError(EventBusError):
    """The bus has been closed; open a new one."""


class BusNotRunningError(EventBusError):
    """The bus has no running event loop to deliver events on."""


class LoopThreadError(EventBusError):
    """A blocking call was made on the bus's own event-loop thread."""
