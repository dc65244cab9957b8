"""The event stream over TCP: a server subscriber, and a resuming client.

Neither side imports Keras. Only msgspec decodes what comes off the wire, and
only into the structs below and the events of :mod:`eventbus.events`: no
pickle, nothing executable.

Framing. Every message, both ways, is one frame::

    4 bytes  payload length, unsigned, big-endian (network order)
    n bytes  payload: one msgpack map with a ``kind`` tag

A frame longer than ``max_frame`` bytes (1 MiB by default) is refused.

Protocol. The client opens with a :class:`Hello` (``token``, ``since``,
``kinds``). The server answers :class:`Refused` (with the reason, then closes)
or :class:`Welcome`, then sends events, each as the event struct itself (its
``kind`` is the event's tag), interleaved with notices:

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
stream.

Commands. With ``allow_commands=True`` a client may send
:class:`ClientCommand` frames. The server hands them to the bus as a
subscriber's answer, so the bus records each one as a ``CommandIssued`` event
(subscriber: the server's name) and routes it to the bridge of the run of the
event the server answers next.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import struct
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Literal
from urllib.parse import urlsplit

import anyio
import anyio.abc
import anyio.from_thread
import anyio.to_thread
import msgspec
from anyio.streams.buffered import BufferedByteReceiveStream

from eventbus._wakeup import threadsafe_scheduler
from eventbus.commands import Command
from eventbus.events import BATCH_EVENTS, AnyEvent, Event
from eventbus.exceptions import EventBusError
from eventbus.subscription import expand_kinds

__all__ = [
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

PROTOCOL = 1
"""The protocol version a :class:`Welcome` carries."""
MAX_FRAME = 1024 * 1024
"""The default largest frame payload, in bytes, either way."""

_HEADER = struct.Struct(">I")
_LOOPBACK_NAMES = frozenset({"localhost"})


# --- frames -----------------------------------------------------------------


class _Frame(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    pass


class Hello(_Frame, frozen=True, kw_only=True, tag="hello"):
    """The client's first frame: who it is and where the stream should start."""

    token: str | None = None
    since: int | None = None
    """The seq of the last event the client holds; ``None``: the live stream only."""
    kinds: list[str] | None = None
    """Event tags to receive; ``None``: every kind."""


class ClientCommand(_Frame, frozen=True, kw_only=True, tag="command"):
    """A command for training, from a client (refused unless the server allows commands)."""

    command: Command


class Welcome(_Frame, frozen=True, kw_only=True, tag="welcome"):
    """The hello was accepted; events follow."""

    protocol: int = PROTOCOL
    next: int | None = None
    """The seq the live stream continues from, if the server has seen any event."""


class Refused(_Frame, frozen=True, kw_only=True, tag="refused"):
    """The hello was refused; the server closes the connection."""

    reason: str


class Dropped(_Frame, frozen=True, kw_only=True, tag="dropped"):
    """The client fell behind: ``count`` batch events were lost since the last notice."""

    count: int
    total: int


class Gap(_Frame, frozen=True, kw_only=True, tag="gap"):
    """The events after seq ``after`` and before seq ``first`` are no longer held."""

    after: int
    first: int


class Closing(_Frame, frozen=True, kw_only=True, tag="closing"):
    """The server closes this connection (a bad frame, a client too slow, shutdown)."""

    reason: str


class End(_Frame, frozen=True, kw_only=True, tag="end"):
    """The bus closed: no event follows, on this connection or any other."""


class CommandRefused(_Frame, frozen=True, kw_only=True, tag="command_refused"):
    """A client's command was not accepted; the connection goes on."""

    reason: str


ClientFrame = Hello | ClientCommand
ServerFrame = AnyEvent | Welcome | Refused | Dropped | Gap | Closing | End | CommandRefused

_ENCODER = msgspec.msgpack.Encoder()
_CLIENT_DECODER = msgspec.msgpack.Decoder(ClientFrame)
_SERVER_DECODER = msgspec.msgpack.Decoder(ServerFrame)


def _frame(message: object) -> bytes:
    payload = _ENCODER.encode(message)
    return _HEADER.pack(len(payload)) + payload


class _FrameTooLarge(Exception):
    pass


async def _read_frame(reader: BufferedByteReceiveStream, max_frame: int) -> bytes:
    """One frame's payload; raises ``_FrameTooLarge`` before reading an oversize one."""
    (length,) = _HEADER.unpack(await reader.receive_exactly(_HEADER.size))
    if length > max_frame:
        raise _FrameTooLarge(f"a frame of {length} bytes is over the limit of {max_frame}")
    return await reader.receive_exactly(length) if length else b""


# --- errors -----------------------------------------------------------------


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


# --- the server -------------------------------------------------------------

_Item = tuple[int, type[Event], bytes]
"""An event as the server holds it: seq, class, encoded frame."""


class _Client:
    """One connection's buffers; filled by the server's fan-out, emptied by its writer."""

    def __init__(self, types: frozenset[type[Event]] | None, buffer: int, first: list[bytes]) -> None:
        self.types = types
        self.buffer = buffer
        self.pending: deque[bytes] = deque(first)  # frames never dropped: welcome, backlog, notices
        self.batches: deque[_Item] = deque()
        self.others: deque[_Item] = deque()
        self.last: int | None = None  # the seq last considered, of any kind: gaps are found here
        self.dropped = 0
        self.dropped_total = 0
        self.kicked: str | None = None
        self.ended = False
        self.ready = anyio.Event()
        self.done = anyio.Event()
        self.sending = anyio.CancelScope()  # cancelled to unblock a send to a stuck client

    def offer(self, item: _Item, *, backlog: bool = False) -> None:
        seq, kind, _ = item
        last = self.last
        if last is not None:
            if seq <= last:
                return  # the client holds it already
            if seq > last + 1:
                self.pending.append(_frame(Gap(after=last, first=seq)))
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

    def notify(self, frame: bytes) -> None:
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

    def take(self, limit: int = 512) -> list[bytes]:
        """Frames to send next, in seq order, notices of drops first."""
        out: list[bytes] = []
        if self.dropped:
            out.append(_frame(Dropped(count=self.dropped, total=self.dropped_total)))
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


class SocketServer:
    """Serve the bus's events to TCP clients; a batched, lossless subscriber.

    Run it in the bus's loop, then subscribe it::

        async with SocketServer("tcp://127.0.0.1:0") as server, EventBus() as bus:
            bus.subscribe(server)
            print("serving on port", server.port)
            ...

    (With ``with EventBus()``, whose loop runs in a background thread, start
    the server with ``with SocketServer(...)``: it runs its own loop in a
    thread of its own.) Entering binds the socket, so ``port`` is known and a
    bad address fails at once; leaving closes every connection. When the bus
    closes, clients get every event still queued for them, then :class:`End`.

    Each client has its own buffers: one that falls behind loses batch events
    oldest first (and is told, in a :class:`Dropped` notice), or is
    disconnected once ``client_buffer`` other events wait for it. Neither the
    bus nor the other clients ever wait for it.

    Args:
        url: ``tcp://host:port``; port 0 picks a free port (see ``port``).
        token: a secret clients must send in their hello. Required to bind
            anywhere but loopback.
        window: events held in memory for clients that resume with ``since``.
        client_buffer: batch events, and separately other events, a client may
            have waiting before it loses the oldest (or is disconnected).
        max_frame: the largest frame a client may send, in bytes.
        allow_commands: accept commands from clients (refused otherwise).
        log: an :class:`~eventbus.log.EventLog` file to resume from when
            ``since`` is older than the window.
        handshake_timeout: seconds a new connection has to send its hello.
    """

    lossless = True
    batched = True
    name = "SocketServer"

    def __init__(
        self,
        url: str = "tcp://127.0.0.1:7878",
        *,
        token: str | None = None,
        window: int = 10_000,
        client_buffer: int = 1024,
        max_frame: int = MAX_FRAME,
        allow_commands: bool = False,
        log: str | os.PathLike[str] | None = None,
        handshake_timeout: float = 10.0,
    ) -> None:
        self.host, self.requested_port = _parse_url(url)
        if token is None and not _is_loopback(self.host):
            raise ValueError(
                f"refusing to serve events on {self.host!r} without a token: anyone who can reach it "
                "could read the run (and send commands); pass token=... or bind to 127.0.0.1"
            )
        if token is not None and not token:
            raise ValueError("token must be a non-empty string, or None on loopback")
        for label, value in (("window", window), ("client_buffer", client_buffer), ("max_frame", max_frame)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{label} must be an integer > 0, got {value!r}")
        if not handshake_timeout > 0:
            raise ValueError(f"handshake_timeout must be > 0 seconds, got {handshake_timeout!r}")
        self.token = token
        self.window = window
        self.client_buffer = client_buffer
        self.max_frame = max_frame
        self.allow_commands = allow_commands
        self.log = log
        self.handshake_timeout = handshake_timeout
        self.port: int | None = None
        """The bound port (once started)."""
        self._held: deque[_Item] = deque(maxlen=window)
        self._next_seq: int | None = None
        self._clients: set[_Client] = set()
        self._commands: deque[Command] = deque()  # thread-safe appends and pops
        self._inbox: deque[Sequence[Event]] = deque()
        self._loop_thread: int | None = None
        self._schedule_drain = _nothing
        self._ended = threading.Event()
        self._task_group: anyio.abc.TaskGroup | None = None
        self._listener: anyio.abc.Listener[anyio.abc.SocketStream] | None = None
        self._managers: (
            tuple[AbstractContextManager[anyio.from_thread.BlockingPortal], AbstractContextManager[SocketServer]] | None
        ) = None

    def __repr__(self) -> str:
        return f"<SocketServer tcp://{self.host}:{self.port} clients={len(self._clients)}>"

    @property
    def url(self) -> str:
        """The address clients connect to (the bound port once started)."""
        port = self.port if self.port is not None else self.requested_port
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{port}"

    @property
    def clients(self) -> int:
        """Connections currently served."""
        return len(self._clients)

    # --- lifetime -----------------------------------------------------------

    async def __aenter__(self) -> SocketServer:
        if self._task_group is not None:
            raise RuntimeError("this SocketServer is already running")
        listener = await anyio.create_tcp_listener(local_host=self.host, local_port=self.requested_port)
        self._listener = listener
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        self._loop_thread = threading.get_ident()
        self._schedule_drain = threadsafe_scheduler(self._drain_inbox)
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(listener.serve, self._serve_client)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task_group, self._task_group = self._task_group, None
        if task_group is None:
            return
        for client in list(self._clients):
            client.kick("the server is shutting down")
        with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
            while self._clients:
                await anyio.sleep(0.01)
        task_group.cancel_scope.cancel()
        await task_group.__aexit__(None, None, None)
        if self._listener is not None:
            await self._listener.aclose()
        self._schedule_drain = _nothing
        self._loop_thread = None

    def __enter__(self) -> SocketServer:
        """Run the server in a thread of its own, for a bus run with ``with EventBus()``."""
        portal_cm = anyio.from_thread.start_blocking_portal()
        portal = portal_cm.__enter__()
        try:
            server_cm = portal.wrap_async_context_manager(self)
            server_cm.__enter__()
        except BaseException:
            portal_cm.__exit__(None, None, None)
            raise
        self._managers = (portal_cm, server_cm)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        managers, self._managers = self._managers, None
        if managers is None:
            return
        portal_cm, server_cm = managers
        try:
            server_cm.__exit__(None, None, None)
        finally:
            portal_cm.__exit__(None, None, None)

    # --- the subscriber -----------------------------------------------------

    async def __call__(self, events: list[Event]) -> list[Command] | None:
        """Take a batch from the bus; hand back the commands clients sent since the last one."""
        if self._loop_thread == threading.get_ident():
            self._ingest(events)
        elif self._loop_thread is None:
            raise RuntimeError("the SocketServer is not running: enter `async with server:` (or `with server:`) first")
        else:
            self._inbox.append(events)
            self._schedule_drain()
        if not self._commands:
            return None
        commands: list[Command] = []
        while self._commands:
            commands.append(self._commands.popleft())
        return commands

    async def aclose(self) -> None:
        """The bus closed: send clients what is queued for them, then :class:`End`."""
        if self._loop_thread == threading.get_ident():
            self._end()
        elif self._loop_thread is not None:
            self._inbox.append(())  # the end marker, after every batch
            self._schedule_drain()
        else:
            return
        with anyio.move_on_after(5.0):
            while not self._ended.is_set() or any(not c.done.is_set() for c in list(self._clients)):
                await anyio.sleep(0.01)

    def _drain_inbox(self) -> None:
        while self._inbox:
            events = self._inbox.popleft()
            if events:
                self._ingest(events)
            else:
                self._end()

    def _ingest(self, events: Sequence[Event]) -> None:
        held = self._held
        clients = self._clients
        encode = _ENCODER.encode
        pack = _HEADER.pack
        for event in events:
            payload = encode(event)
            item: _Item = (event.seq, type(event), pack(len(payload)) + payload)
            held.append(item)
            for client in clients:
                client.offer(item)
        if events:
            self._next_seq = events[-1].seq + 1
        for client in [c for c in clients if c.kicked is not None]:
            clients.discard(client)

    def _end(self) -> None:
        self._ended.set()
        for client in self._clients:
            client.end()

    # --- connections --------------------------------------------------------

    async def _serve_client(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            reader = BufferedByteReceiveStream(stream)
            try:
                with anyio.fail_after(self.handshake_timeout):
                    hello = _CLIENT_DECODER.decode(await _read_frame(reader, self.max_frame))
            except TimeoutError:
                await _say(stream, Refused(reason=f"no hello within {self.handshake_timeout} s"))
                return
            except _FrameTooLarge as exc:
                await _say(stream, Refused(reason=str(exc)))
                return
            except msgspec.DecodeError as exc:
                await _say(stream, Refused(reason=f"malformed hello: {exc}"))
                return
            except (anyio.IncompleteRead, anyio.BrokenResourceError, anyio.EndOfStream, OSError):
                return
            if not isinstance(hello, Hello):
                await _say(stream, Refused(reason="the first frame must be a hello"))
                return
            reason = self._check_hello(hello)
            if reason is not None:
                await _say(stream, Refused(reason=reason))
                return
            client = await self._admit(hello)
            if isinstance(client, str):
                await _say(stream, Refused(reason=client))
                return
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._write, stream, client, tg.cancel_scope)
                    await self._read(reader, client)
                    with anyio.move_on_after(1.0):
                        await client.done.wait()  # let the writer say why, then close
                    tg.cancel_scope.cancel()
            finally:
                self._clients.discard(client)
                client.done.set()

    def _check_hello(self, hello: Hello) -> str | None:
        if self.token is not None:
            given = (hello.token or "").encode()
            if not hmac.compare_digest(given, self.token.encode()):
                return "wrong token"
        if hello.kinds is not None:
            try:
                expand_kinds(hello.kinds)
            except (ValueError, TypeError) as exc:
                return str(exc)
        if hello.since is not None and hello.since < -1:
            return f"since must be a seq >= -1 or null, got {hello.since}"
        if hello.since is not None and self._next_seq is not None and hello.since >= self._next_seq:
            return (
                f"since={hello.since} is ahead of this stream (its next seq is {self._next_seq}): "
                "the client followed another bus"
            )
        return None

    async def _admit(self, hello: Hello) -> _Client | str:
        """Queue the welcome and the backlog, and join the live fan-out, with no await
        between the backlog's last event and the first live one: no gap, no duplicate."""
        since = hello.since
        from_log: list[_Item] = []
        if since is not None and self.log is not None:
            first_held = self._held[0][0] if self._held else self._next_seq
            if first_held is None or since + 1 < first_held:
                try:
                    from_log = await anyio.to_thread.run_sync(_read_log, self.log, since)
                except Exception as exc:  # an unreadable log is the client's loss, not the server's
                    return f"cannot read the event log: {exc}"
        welcome = _frame(Welcome(next=self._next_seq))
        client = _Client(expand_kinds(hello.kinds), self.client_buffer, [welcome])
        if since is not None:
            client.last = since
            first_held = self._held[0][0] if self._held else None
            for item in from_log:
                if first_held is not None and item[0] >= first_held:
                    break
                client.offer(item, backlog=True)
            for item in self._held:
                client.offer(item, backlog=True)
            if self._next_seq is not None and client.last is not None and client.last + 1 < self._next_seq:
                client.notify(_frame(Gap(after=client.last, first=self._next_seq)))
                client.last = self._next_seq - 1
        if self._ended.is_set():
            client.end()
        self._clients.add(client)
        return client

    async def _write(self, stream: anyio.abc.SocketStream, client: _Client, scope: anyio.CancelScope) -> None:
        try:
            while True:
                if client.kicked is not None:
                    with anyio.move_on_after(0.5):
                        await stream.send(_frame(Closing(reason=client.kicked)))
                    return
                frames = client.take()
                if frames:
                    with client.sending:
                        await stream.send(b"".join(frames))
                    if client.sending.cancelled_caught:
                        return  # cut mid-frame: close without a word, the client resumes
                    client.sending = anyio.CancelScope()
                    continue
                if client.ended:
                    with client.sending:
                        await stream.send(_frame(End()))
                    return
                client.ready = anyio.Event()
                if client.idle and client.kicked is None and not client.ended and not client.dropped:
                    await client.ready.wait()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            client.done.set()
            self._clients.discard(client)
            scope.cancel()

    async def _read(self, reader: BufferedByteReceiveStream, client: _Client) -> None:
        """Read the client's frames (commands) until it leaves or sends a bad one."""
        while True:
            try:
                payload = await _read_frame(reader, self.max_frame)
                frame = _CLIENT_DECODER.decode(payload)
            except _FrameTooLarge as exc:
                client.kick(str(exc))
                return
            except msgspec.DecodeError as exc:
                client.kick(f"malformed frame: {exc}")
                return
            except (anyio.IncompleteRead, anyio.BrokenResourceError, anyio.EndOfStream, anyio.ClosedResourceError):
                client.kick("the client left")
                return
            except OSError:
                client.kick("the connection failed")
                return
            if isinstance(frame, Hello):
                client.kick("a second hello")
                return
            if not self.allow_commands:
                client.notify(_frame(CommandRefused(reason="this server does not accept commands")))
                continue
            self._commands.append(frame.command)


async def _say(stream: anyio.abc.SocketStream, frame: _Frame) -> None:
    """Tell a client why it is refused, if it still listens; never wait long."""
    with anyio.move_on_after(0.5):
        try:
            await stream.send(_frame(frame))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass


def _read_log(path: str | os.PathLike[str], since: int) -> list[_Item]:
    """The log's events after ``since``, encoded as frames (in a worker thread)."""
    from eventbus.log import EventLog

    items: list[_Item] = []
    pack = _HEADER.pack
    for event in EventLog.read(path):
        if event.seq > since:
            payload = _ENCODER.encode(event)
            items.append((event.seq, type(event), pack(len(payload)) + payload))
    return items


# --- the client -------------------------------------------------------------


class EventClient:
    """Events from a :class:`SocketServer`, as an async iterator (asyncio or trio).

    Reconnects when the connection drops, waiting ``backoff`` seconds, doubled
    per failed try up to ``max_backoff``, and resumes after the last event it
    yielded. Ends (``StopAsyncIteration``) when the server says the stream
    ended. Raises :class:`RefusedError` when the server refuses the hello, and
    :class:`GapError` when events it asked for are gone (unless
    ``on_gap="skip"``: then it goes on, and ``gaps`` lists them).
    """

    def __init__(
        self,
        url: str,
        *,
        since: int | None = None,
        kinds: Iterable[type[Event] | str] | None = None,
        token: str | None = None,
        on_gap: Literal["raise", "skip"] = "raise",
        backoff: float = 0.05,
        max_backoff: float = 5.0,
        max_frame: int = MAX_FRAME,
    ) -> None:
        self.host, self.port = _parse_url(url)
        types = expand_kinds(kinds)
        self.kinds = None if types is None else sorted(str(t.__struct_config__.tag) for t in types)
        if on_gap not in ("raise", "skip"):
            raise ValueError(f"on_gap must be 'raise' or 'skip', got {on_gap!r}")
        self.token = token
        self.on_gap = on_gap
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_frame = max_frame
        self.last_seq: int | None = since
        """The seq of the last event yielded (where a reconnection resumes)."""
        self.dropped = 0
        """Batch events the server dropped because this client fell behind."""
        self.gaps: list[Gap] = []
        self.refused_commands: list[str] = []
        self.connections = 0
        """Successful connections so far (1 + reconnections)."""
        self._stream: anyio.abc.SocketStream | None = None
        self._reader: BufferedByteReceiveStream | None = None
        self._ended = False
        self._closed = False

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        delay = self.backoff
        while True:
            if self._ended or self._closed:
                raise StopAsyncIteration
            if self._reader is None:
                try:
                    await self._connect()
                except OSError:
                    await anyio.sleep(delay)
                    delay = min(delay * 2, self.max_backoff)
                    continue
            assert self._reader is not None
            try:
                frame = _SERVER_DECODER.decode(await _read_frame(self._reader, self.max_frame))
            except (_FrameTooLarge, msgspec.DecodeError) as exc:
                raise SocketError(f"the server sent a bad frame: {exc}") from exc
            except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                await self._drop()
                await anyio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
                continue
            if isinstance(frame, Event):
                self.last_seq = frame.seq
                return frame
            if isinstance(frame, Dropped):
                self.dropped += frame.count
            elif isinstance(frame, Gap):
                if self.on_gap == "raise":
                    await self.aclose()
                    raise GapError(frame.after, frame.first)
                self.gaps.append(frame)
            elif isinstance(frame, CommandRefused):
                self.refused_commands.append(frame.reason)
            elif isinstance(frame, End):
                self._ended = True
                await self._drop()
            elif isinstance(frame, Closing):
                await self._drop()  # resume on a new connection, after a pause
                await anyio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
            elif isinstance(frame, Refused):
                await self.aclose()
                raise RefusedError(frame.reason)

    async def _connect(self) -> None:
        stream = await anyio.connect_tcp(self.host, self.port)
        try:
            await stream.send(_frame(Hello(token=self.token, since=self.last_seq, kinds=self.kinds)))
        except BaseException:
            await stream.aclose()
            raise
        self._stream = stream
        self._reader = BufferedByteReceiveStream(stream)
        self.connections += 1

    async def send(self, command: Command) -> None:
        """Send a command for training (the server must allow commands)."""
        if self._stream is None:
            raise SocketError("not connected: iterate the client first")
        await self._stream.send(_frame(ClientCommand(command=command)))

    async def _drop(self) -> None:
        stream, self._stream, self._reader = self._stream, None, None
        if stream is not None:
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    async def aclose(self) -> None:
        """Close the connection; iteration ends."""
        self._closed = True
        await self._drop()

    async def __aenter__(self) -> EventClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def connect(
    url: str,
    *,
    since: int | None = None,
    kinds: Iterable[type[Event] | str] | None = None,
    token: str | None = None,
    on_gap: Literal["raise", "skip"] = "raise",
) -> EventClient:
    """Typed events from a :class:`SocketServer`: ``async for event in connect(url): ...``.

    ``since`` is the seq of the last event already held (``None``: live only).
    See :class:`EventClient` for reconnection, gaps and sending commands.
    """
    return EventClient(url, since=since, kinds=kinds, token=token, on_gap=on_gap)


# --- helpers ----------------------------------------------------------------


def _parse_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "tcp":
        raise ValueError(f"only tcp://host:port URLs are supported, got {url!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port in {url!r}: {exc}") from None
    if port is None or parts.hostname is None:
        raise ValueError(f"the URL must name a host and a port (0 for any free one), got {url!r}")
    return parts.hostname, port


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _nothing() -> None:
    return None
