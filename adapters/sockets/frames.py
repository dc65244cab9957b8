"""The messages of the wire protocol, both ways, apart from the events themselves.

Every message is a msgspec struct tagged by ``kind``; events keep their own
tags (``"epoch_end"``, ...), so one tagged union decodes anything a server
sends. Only these structs and :mod:`eventbus.events` are ever decoded.
"""

from __future__ import annotations

import msgspec

from eventbus.commands import Command
from eventbus.events import AnyEvent

__all__ = [
    "MAX_FRAME",
    "PROTOCOL",
    "ClientCommand",
    "ClientFrame",
    "Closing",
    "CommandRefused",
    "Dropped",
    "End",
    "Frame",
    "Gap",
    "Hello",
    "Refused",
    "ServerFrame",
    "Welcome",
]

PROTOCOL = 1
"""The protocol version a :class:`Welcome` carries."""
MAX_FRAME = 1024 * 1024
"""The default largest frame payload, in bytes, either way."""


class Frame(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """A protocol message that is not an event."""


class Hello(Frame, frozen=True, kw_only=True, tag="hello"):
    """The client's first frame: who it is and where the stream should start."""

    token: str | None = None
    since: int | None = None
    """The seq of the last event the client holds; ``None``: the live stream only."""
    kinds: list[str] | None = None
    """Event tags to receive; ``None``: every kind."""


class ClientCommand(Frame, frozen=True, kw_only=True, tag="command"):
    """A command for training, from a client (refused unless the server allows commands)."""

    command: Command


class Welcome(Frame, frozen=True, kw_only=True, tag="welcome"):
    """The hello was accepted; events follow."""

    protocol: int = PROTOCOL
    next: int | None = None
    """The seq the live stream continues from, if the server has seen any event."""


class Refused(Frame, frozen=True, kw_only=True, tag="refused"):
    """The hello was refused; the server closes the connection."""

    reason: str


class Dropped(Frame, frozen=True, kw_only=True, tag="dropped"):
    """The client fell behind: ``count`` batch events were lost since the last notice."""

    count: int
    total: int


class Gap(Frame, frozen=True, kw_only=True, tag="gap"):
    """The events after seq ``after`` and before seq ``first`` are no longer held."""

    after: int
    first: int


class Closing(Frame, frozen=True, kw_only=True, tag="closing"):
    """The server closes this connection (a bad frame, a client too slow, shutdown)."""

    reason: str


class End(Frame, frozen=True, kw_only=True, tag="end"):
    """The bus closed: no event follows, on this connection or any other."""


class CommandRefused(Frame, frozen=True, kw_only=True, tag="command_refused"):
    """A client's command was not accepted; the connection goes on."""

    reason: str


ClientFrame = Hello | ClientCommand
ServerFrame = AnyEvent | Welcome | Refused | Dropped | Gap | Closing | End | CommandRefused
