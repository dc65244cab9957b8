"""What a client raises when retrying cannot help."""

from __future__ import annotations

from eventbus.exceptions import EventBusError

__all__ = ["GapError", "RefusedError", "SocketError"]


class SocketError(EventBusError):
    """The event stream over a socket failed in a way retrying cannot fix."""


class RefusedError(SocketError):
    """The server refused the hello (a wrong token, an unknown kind, a bad ``since``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the event server refused the connection: {reason}")
        self.reason = reason


class GapError(SocketError):
    """Events the client asked for are no longer held by the server."""

    def __init__(self, after: int, first: int) -> None:
        super().__init__(
            f"events after seq {after} and before seq {first} are no longer held by the server "
            "(give the server a larger window or an event log, or connect with on_gap='skip')"
        )
        self.after = after
        self.first = first
