"""The event stream over sockets: a server subscriber, and a resuming client.

Two transports, one protocol. ``tcp://host:port``: every message, both ways,
is a 4-byte big-endian length and one msgpack map. ``ws://host:port``: one
JSON text message each (the ``websockets`` library), at ``/events``; the
same server serves, at ``/``, a page that draws the loss live. Every message
is a struct with a ``kind`` tag: events keep their own tags. Only msgspec
decodes what comes off the wire, and only into the structs of
:mod:`~eventbus.adapters.sockets.frames` and :mod:`eventbus.events`: no
pickle, nothing executable. A frame over ``max_frame`` bytes (1 MiB by
default) closes that connection.

Protocol. The client opens with a :class:`Hello` (``token``, ``since``,
``kinds``). The server answers :class:`Refused` (with the reason, then closes)
or :class:`Welcome`, then sends events, interleaved with notices:

- :class:`Dropped`: the client fell behind and lost ``count`` batch events,
  oldest first, since the last notice (lifecycle and epoch events are never
  dropped; a client that falls behind on those too is disconnected).
- :class:`Gap`: events after seq ``after`` and before seq ``first`` are not
  held by the server, so a resumed stream is never silently cut short.
- :class:`Closing`: the server closes this connection, and why.
- :class:`End`: the bus closed; the stream is complete.
- :class:`CommandRefused`: a :class:`ClientCommand` was not accepted.

Resuming. ``since`` is the seq of the last event the client holds: the server
sends every event after it that it still has (in its in-memory window, and in
an :class:`~eventbus.log.EventLog` file when given one), then the live stream,
with no event twice and none missing; ``since=None`` starts with the live
stream, ``since=-1`` with everything held.

Commands. With ``allow_commands=True`` a client may send
:class:`ClientCommand` frames. The server issues each to the bus at once
(:meth:`eventbus.EventBus.issue`), for the run training now: it is recorded
as a ``CommandIssued`` event (subscriber: ``SocketServer host:port``) and
applied by that run's bridge, like a local subscriber's.
"""

from .client import EventClient, connect
from .errors import GapError, RefusedError, SocketError
from .frames import (
    MAX_FRAME,
    PROTOCOL,
    ClientCommand,
    Closing,
    CommandRefused,
    Dropped,
    End,
    Gap,
    Hello,
    Refused,
    Welcome,
)
from .server import EVENTS_PATH, SocketServer

__all__ = [
    "EVENTS_PATH",
    "MAX_FRAME",
    "PROTOCOL",
    "ClientCommand",
    "Closing",
    "CommandRefused",
    "Dropped",
    "End",
    "EventClient",
    "Gap",
    "GapError",
    "Hello",
    "RefusedError",
    "Refused",
    "SocketError",
    "SocketServer",
    "Welcome",
    "connect",
]
