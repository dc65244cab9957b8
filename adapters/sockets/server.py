"""The server: a batched, lossless subscriber that fans the stream out to clients."""

from __future__ import annotations

import hmac
import os
import socket
import threading
from collections import deque
from collections.abc import Sequence
from contextlib import AbstractContextManager
from importlib import resources
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.to_thread
import msgspec

from eventbus._wakeup import threadsafe_scheduler
from eventbus.events import Event
from eventbus.exceptions import BusClosedError
from eventbus.subscription import expand_kinds

from .codecs import Codec, JsonCodec, MsgpackCodec
from .connections import Connection, ConnectionLost, FrameTooLarge, SocketConnection, WebSocketConnection
from .fanout import ClientState, Item, Window
from .frames import MAX_FRAME, ClientCommand, Closing, CommandRefused, End, Frame, Gap, Hello, Refused, Welcome
from .urls import is_loopback, parse_url

__all__ = ["EVENTS_PATH", "SocketServer"]

_OPEN_TIMEOUT = 2.0
"""Seconds a WebSocket or HTTP request has to arrive once its connection is open."""

EVENTS_PATH = "/events"
"""Where a WebSocket server takes event connections; ``/`` serves the live page."""


class SocketServer:
    """Serve the bus's events to clients over TCP (``tcp://``) or WebSocket (``ws://``).

    Run it in the bus's loop, then subscribe it::

        async with SocketServer("tcp://127.0.0.1:0") as server, EventBus() as bus:
            bus.subscribe(server)
            print("serving on", server.url)
            ...

    (With ``with EventBus()``, whose loop runs in a background thread, start
    the server with ``with SocketServer(...)``: it runs its own loop in a
    thread of its own.) Entering binds the socket, so ``port`` is known and a
    bad address fails at once; leaving closes every connection. When the bus
    closes, clients get every event still queued for them, then ``End``.

    A ``ws://`` server also serves, at ``/``, a page that draws the loss of
    the run live (open ``http://host:port/`` in a browser; with a token, add
    ``#token=...``); event connections go to ``/events``. It needs the
    ``websockets`` package and an asyncio loop (``with`` starts one).

    Each client has its own buffers: one that falls behind loses batch events
    oldest first (and is told, in a ``Dropped`` notice), or is disconnected
    once ``client_buffer`` other events wait for it. Neither the bus nor the
    other clients ever wait for it.

    Args:
        url: ``tcp://host:port`` or ``ws://host:port``; port 0 picks a free
            port (see ``port``).
        token: a secret clients must send in their hello. Required to bind
            anywhere but loopback.
        window: events held in memory for clients that resume with ``since``.
        client_buffer: batch events, and separately other events, a client may
            have waiting before it loses the oldest (or is disconnected).
        max_frame: the largest frame a client may send, in bytes.
        allow_commands: accept commands from clients (refused otherwise); each
            is issued to the run training now, recorded as ``CommandIssued``.
        log: an :class:`~eventbus.log.EventLog` file to resume from when
            ``since`` is older than the window.
        handshake_timeout: seconds a new connection has to send its hello.
        flush_interval: seconds an event may wait to be sent: each client
            gets one send per interval, however many events (and epochs)
            it holds, so a client costs training the same whether epochs
            take a minute or a millisecond. Notices, and the end of the
            stream, go at once.
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
        flush_interval: float = 0.25,
    ) -> None:
        self.scheme, self.host, self.requested_port = parse_url(url)
        if token is None and not is_loopback(self.host):
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
        if not flush_interval > 0:
            raise ValueError(f"flush_interval must be > 0 seconds, got {flush_interval!r}")
        if self.scheme == "ws":
            _require_websockets()
        self.token = token
        self.window = window
        self.client_buffer = client_buffer
        self.max_frame = max_frame
        self.allow_commands = allow_commands
        self.log = log
        self.handshake_timeout = handshake_timeout
        self.flush_interval = flush_interval
        self.port: int | None = None
        """The bound port (once started)."""
        self.codec: Codec = JsonCodec() if self.scheme == "ws" else MsgpackCodec()
        self._window = Window(window)
        self._next_seq: int | None = None
        self._clients: set[ClientState] = set()
        self._bus: Any = None
        self._commands: deque[tuple[ClientCommand, str]] = deque()  # before the bus is known
        self._inbox: deque[Sequence[Event]] = deque()
        self._loop_thread: int | None = None
        self._schedule_drain = _nothing
        self._ended = threading.Event()
        self._task_group: anyio.abc.TaskGroup | None = None
        self._listening: list[socket.socket] = []
        self._direct: dict[ClientState, SocketConnection] = {}  # clients a flush writes to itself
        self._websocket_server: Any = None
        self._managers: (
            tuple[AbstractContextManager[anyio.from_thread.BlockingPortal], AbstractContextManager[SocketServer]] | None
        ) = None

    def __repr__(self) -> str:
        return f"<SocketServer {self.url} clients={len(self._clients)}>"

    @property
    def url(self) -> str:
        """The address clients connect to (the bound port once started)."""
        port = self.port if self.port is not None else self.requested_port
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{port}"

    @property
    def page_url(self) -> str | None:
        """The live page's address, for a ``ws://`` server."""
        return "http" + self.url[2:] + "/" if self.scheme == "ws" else None

    @property
    def clients(self) -> int:
        """Connections currently served."""
        return len(self._clients)

    # --- lifetime -----------------------------------------------------------

    async def __aenter__(self) -> SocketServer:
        if self._task_group is not None:
            raise RuntimeError("this SocketServer is already running")
        if self.scheme == "ws":
            await self._listen_websocket()
        else:
            self._listening = await _listen_tcp(self.host, self.requested_port)
            self.port = self._listening[0].getsockname()[1]
        self._loop_thread = threading.get_ident()
        self._schedule_drain = threadsafe_scheduler(self._drain_inbox)
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        for listening in self._listening:
            self._task_group.start_soon(self._accept, listening, self._task_group)
        self._task_group.start_soon(self._flush_periodically)
        return self

    async def _flush_periodically(self) -> None:
        while True:
            await anyio.sleep(self.flush_interval)
            self._flush()

    def _flush(self) -> None:
        """Send each client what it holds: in this pass for TCP clients whose writer
        is idle (one ``send`` each, no task switch), else by waking its writer."""
        self._drain_inbox()
        window = self._window
        pack = self.codec.pack
        for client in list(self._clients):
            client.check(window)
            direct = self._direct.get(client)
            if direct is not None and client.parked and client.kicked is None and not client.ended:
                frames = client.take(window, pack)
                if not frames:
                    continue
                try:
                    if direct.write_now(frames):
                        client.sent()
                        continue
                except ConnectionLost as exc:
                    client.kick(f"the connection failed: {exc}")
                    continue
                client.ready.set()  # a full socket buffer: the writer sends the rest, then moves the cursor
            elif client.pending or window.after(client.cursor) < window.end:
                client.ready.set()

    async def _listen_websocket(self) -> None:
        import sniffio

        if sniffio.current_async_library() != "asyncio":
            raise RuntimeError(
                "a ws:// SocketServer runs on asyncio (the websockets library); in a trio program, "
                "start it in a thread of its own with `with SocketServer(...)`"
            )
        from websockets.asyncio.server import serve

        self._websocket_server = await serve(
            self._serve_websocket,
            self.host,
            self.requested_port,
            max_size=self.max_frame,
            process_request=_http_page,
            compression=None,
            # A browser's speculative connection may never send its request: cut it before closing gives up.
            open_timeout=_OPEN_TIMEOUT,
        )
        self.port = self._websocket_server.sockets[0].getsockname()[1]

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
        for listening in self._listening:
            listening.close()
        self._listening = []
        if self._websocket_server is not None:
            self._websocket_server.close()
            with anyio.CancelScope(shield=True), anyio.move_on_after(_OPEN_TIMEOUT + 1.0):
                await self._websocket_server.wait_closed()
            # Connections past the timeout, open or not (a browser's idle HTTP keep-alive): cut.
            for connection in list(getattr(self._websocket_server, "all_connections", ())):
                connection.transport.abort()
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

    def attach(self, bus: Any) -> None:
        """Called by ``bus.subscribe(server)``: clients' commands go to this bus at once."""
        self._bus = bus
        while self._commands:
            self._issue(*self._commands.popleft())

    async def __call__(self, events: list[Event]) -> None:
        """Take a batch of events from the bus (in any thread) for the clients."""
        if self._loop_thread == threading.get_ident():
            self._ingest(events)
        elif self._loop_thread is None:
            raise RuntimeError("the SocketServer is not running: enter `async with server:` (or `with server:`) first")
        else:
            self._inbox.append(events)  # no wake-up: the next flush takes it

    async def aclose(self) -> None:
        """The bus closed: send clients what is queued for them, then ``End``."""
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
        """Encode each event once and hold it once, for the next flush."""
        window = self._window
        encode = self.codec.encode
        for event in events:
            window.append((event.seq, type(event), encode(event)))
        if events:
            self._next_seq = events[-1].seq + 1

    def _end(self) -> None:
        self._ended.set()
        for client in self._clients:
            client.end()

    def _issue(self, frame: ClientCommand, peer: str) -> None:
        try:
            self._bus.issue(frame.command, subscriber=f"{self.name} {peer}")
        except BusClosedError:
            pass  # the run is over: nothing to command

    # --- connections --------------------------------------------------------

    async def _accept(self, listening: socket.socket, task_group: anyio.abc.TaskGroup) -> None:
        while True:  # until shutdown cancels the task group (still accepting while clients are told)
            await anyio.wait_readable(listening)
            try:
                sock, address = listening.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            except OSError:  # out of file descriptors, say: the clients already served go on
                await anyio.sleep(0.1)
                continue
            task_group.start_soon(self._serve_tcp, sock, address)

    async def _serve_tcp(self, sock: socket.socket, address: Any) -> None:
        with sock:
            peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
            await self._serve(SocketConnection(sock, self.max_frame), peer)

    async def _serve_websocket(self, websocket: Any) -> None:
        host, port = websocket.remote_address[:2]
        try:
            await self._serve(WebSocketConnection(websocket), f"{host}:{port}")
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                await websocket.close()
            websocket.transport.abort()  # a peer that never answered the close: no socket left behind

    async def _serve(self, connection: Connection, peer: str) -> None:
        """One client, on any transport: the hello, the backlog, then the live stream."""
        try:
            with anyio.fail_after(self.handshake_timeout):
                hello = self.codec.client_frame(await connection.receive())
        except TimeoutError:
            await self._say(connection, Refused(reason=f"no hello within {self.handshake_timeout} s"))
            return
        except FrameTooLarge as exc:
            await self._say(connection, Refused(reason=str(exc)))
            return
        except msgspec.DecodeError as exc:
            await self._say(connection, Refused(reason=f"malformed hello: {exc}"))
            return
        except ConnectionLost:
            return
        if not isinstance(hello, Hello):
            await self._say(connection, Refused(reason="the first frame must be a hello"))
            return
        reason = self._check_hello(hello)
        if reason is not None:
            await self._say(connection, Refused(reason=reason))
            return
        client = await self._admit(hello)
        if isinstance(client, str):
            await self._say(connection, Refused(reason=client))
            return
        if isinstance(connection, SocketConnection):
            self._direct[client] = connection
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._write, connection, client, tg.cancel_scope)
                await self._read(connection, client, peer)
                with anyio.move_on_after(1.0):
                    await client.done.wait()  # let the writer say why, then close
                tg.cancel_scope.cancel()
        finally:
            self._clients.discard(client)
            self._direct.pop(client, None)
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

    async def _admit(self, hello: Hello) -> ClientState | str:
        """Queue the welcome and what the log holds of the backlog, and set the
        cursor: the window serves the rest, then the live stream, with no
        await in between: no gap, no duplicate."""
        since = hello.since
        window = self._window
        from_log: list[Item] = []
        first_held = window.first_seq if len(window) else self._next_seq
        if since is not None and self.log is not None and (first_held is None or since + 1 < first_held):
            try:
                from_log = await anyio.to_thread.run_sync(_read_log, self.log, since, self.codec)
            except Exception as exc:  # an unreadable log is the client's loss, not the server's
                return f"cannot read the event log: {exc}"
            first_held = window.first_seq if len(window) else self._next_seq  # the window moved meanwhile
        encode = self.codec.encode
        types = expand_kinds(hello.kinds)
        cursor = since if since is not None else (None if self._next_seq is None else self._next_seq - 1)
        client = ClientState(types, self.client_buffer, cursor, encode)
        client.pending.append(encode(Welcome(next=self._next_seq)))
        if since is not None:
            last = since
            for seq, kind, frame in from_log:
                if first_held is not None and seq >= first_held:
                    break
                if seq > last + 1:
                    client.pending.append(encode(Gap(after=last, first=seq)))
                last = seq
                if types is None or kind in types:
                    client.pending.append(frame)
            if len(window) and window.last_evicted is not None and last < window.last_evicted:
                first = window.first_seq
                assert first is not None
                client.pending.append(encode(Gap(after=last, first=first)))  # gone from the window too
                last = first - 1
            elif not len(window) and self._next_seq is not None and last + 1 < self._next_seq:
                client.pending.append(encode(Gap(after=last, first=self._next_seq)))
                last = self._next_seq - 1
            client.cursor = last
        if self._ended.is_set():
            client.end()
        self._clients.add(client)
        client.ready.set()
        return client

    async def _write(self, connection: Connection, client: ClientState, scope: anyio.CancelScope) -> None:
        encode = self.codec.encode
        pack = self.codec.pack
        window = self._window
        direct = connection if isinstance(connection, SocketConnection) else None
        try:
            while True:
                if client.kicked is not None:
                    if direct is None or not direct.unsent:  # never after half a frame
                        with anyio.move_on_after(0.5):
                            await connection.send([encode(Closing(reason=client.kicked))])
                    return
                if direct is not None and direct.unsent:  # the rest of a flush's write
                    with client.sending:
                        await direct.drain()
                    if client.sending.cancelled_caught:
                        return
                    client.sent()
                    client.sending = anyio.CancelScope()
                    continue
                frames = client.take(window, pack)
                if frames:
                    with client.sending:
                        await connection.send(frames)
                    if client.sending.cancelled_caught:
                        return  # cut mid-frame: close without a word, the client resumes
                    client.sent()
                    client.sending = anyio.CancelScope()
                    continue
                if client.ended:
                    with client.sending:
                        await connection.send([encode(End())])
                    return
                client.ready = anyio.Event()
                client.parked = True
                try:
                    await client.ready.wait()  # the next flush, a notice, the end
                finally:
                    client.parked = False
        except ConnectionLost:
            pass
        finally:
            client.done.set()
            self._clients.discard(client)
            scope.cancel()

    async def _read(self, connection: Connection, client: ClientState, peer: str) -> None:
        """Read the client's frames (commands) until it leaves or sends a bad one."""
        while True:
            try:
                frame = self.codec.client_frame(await connection.receive())
            except FrameTooLarge as exc:
                client.kick(str(exc))
                return
            except msgspec.DecodeError as exc:
                client.kick(f"malformed frame: {exc}")
                return
            except ConnectionLost:
                client.kick("the client left")
                return
            if isinstance(frame, Hello):
                client.kick("a second hello")
                return
            if not self.allow_commands:
                client.notify(self.codec.encode(CommandRefused(reason="this server does not accept commands")))
            elif self._bus is None:
                self._commands.append((frame, peer))
            else:
                self._issue(frame, peer)

    async def _say(self, connection: Connection, frame: Frame) -> None:
        """Tell a client why it is refused, if it still listens; never wait long."""
        with anyio.move_on_after(0.5):
            try:
                await connection.send([self.codec.encode(frame)])
            except ConnectionLost:
                pass


async def _listen_tcp(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address of ``host`` (both of ``localhost``), on one port."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    listening: list[socket.socket] = []
    try:
        for family, _, _, _, address in dict.fromkeys(infos):
            sock = socket.create_server((address[0], port, *address[2:]), family=family)
            listening.append(sock)
            sock.setblocking(False)
            port = port or sock.getsockname()[1]  # port 0: the rest bind the port the first got
    except BaseException:
        for sock in listening:
            sock.close()
        raise
    return listening


def _read_log(path: str | os.PathLike[str], since: int, codec: Codec) -> list[Item]:
    """The log's events after ``since``, encoded as frames (in a worker thread).

    A log not written yet holds nothing: its writer starts with the first event."""
    from eventbus.log import EventLog

    if not os.path.exists(path):
        return []
    return [(event.seq, type(event), codec.encode(event)) for event in EventLog.read(path) if event.seq > since]


def _http_page(connection: Any, request: Any) -> Any:
    """A plain HTTP GET of ``/`` gets the live page; ``/events`` goes on to the WebSocket handshake."""
    from websockets.datastructures import Headers
    from websockets.http11 import Response

    path = request.path.split("?", 1)[0]
    if path == EVENTS_PATH:
        return None
    if path not in ("/", "/index.html"):
        return connection.respond(404, f"not found: the page is at /, events at {EVENTS_PATH}\n")
    body = resources.files(__package__).joinpath("page.html").read_bytes()
    headers = Headers(
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
        ]
    )
    return Response(200, "OK", headers, body)


def _require_websockets() -> None:
    try:
        import websockets  # noqa: F401
    except ImportError:
        raise ImportError(
            "a ws:// SocketServer needs the websockets package: pip install 'keras-eventbus[sockets]'"
        ) from None


def _nothing() -> None:
    return None
