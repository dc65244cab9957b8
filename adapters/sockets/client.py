"""The client: typed events from a server, resuming after the last one it yielded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Literal

import anyio
import msgspec

from eventbus.commands import Command
from eventbus.events import Event
from eventbus.subscription import expand_kinds

from .codecs import Codec, JsonCodec, MsgpackCodec
from .connections import Connection, ConnectionLost, FrameTooLarge, TcpConnection, WebSocketConnection
from .errors import GapError, RefusedError, SocketError
from .frames import MAX_FRAME, ClientCommand, Closing, CommandRefused, Dropped, End, Gap, Hello, Refused
from .server import EVENTS_PATH
from .urls import parse_url

__all__ = ["EventClient", "connect"]


class EventClient:
    """Events from a :class:`SocketServer`, as an async iterator.

    ``tcp://`` works on asyncio and trio; ``ws://`` on asyncio (the
    ``websockets`` library). Reconnects when the connection drops, waiting
    ``backoff`` seconds, doubled per failed try up to ``max_backoff``, and
    resumes after the last event it yielded. Ends (``StopAsyncIteration``)
    when the server says the stream ended. Raises :class:`RefusedError` when
    the server refuses the hello, and :class:`GapError` when events it asked
    for are gone (unless ``on_gap="skip"``: then it goes on, and ``gaps``
    lists them).
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
        self.scheme, self.host, self.port = parse_url(url)
        types = expand_kinds(kinds)
        self.kinds = None if types is None else sorted(str(t.__struct_config__.tag) for t in types)
        if on_gap not in ("raise", "skip"):
            raise ValueError(f"on_gap must be 'raise' or 'skip', got {on_gap!r}")
        self.url = url
        self.token = token
        self.on_gap = on_gap
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_frame = max_frame
        self.codec: Codec = JsonCodec() if self.scheme == "ws" else MsgpackCodec()
        self.last_seq: int | None = since
        """The seq of the last event yielded (where a reconnection resumes)."""
        self.dropped = 0
        """Batch events the server dropped because this client fell behind."""
        self.gaps: list[Gap] = []
        self.refused_commands: list[str] = []
        self.connections = 0
        """Successful connections so far (1 + reconnections)."""
        self._connection: Connection | None = None
        self._ended = False
        self._closed = False

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        delay = self.backoff
        while True:
            if self._ended or self._closed:
                raise StopAsyncIteration
            if self._connection is None:
                try:
                    await self._connect()
                except (OSError, ConnectionLost):
                    await anyio.sleep(delay)
                    delay = min(delay * 2, self.max_backoff)
                    continue
            assert self._connection is not None
            try:
                frame = self.codec.server_frame(await self._connection.receive())
            except (FrameTooLarge, msgspec.DecodeError) as exc:
                raise SocketError(f"the server sent a bad frame: {exc}") from exc
            except ConnectionLost:
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
        connection = await (self._open_websocket() if self.scheme == "ws" else self._open_tcp())
        try:
            await connection.send([self.codec.encode(Hello(token=self.token, since=self.last_seq, kinds=self.kinds))])
        except BaseException:
            with anyio.CancelScope(shield=True):
                await connection.aclose()
            raise
        self._connection = connection
        self.connections += 1

    async def _open_tcp(self) -> Connection:
        return TcpConnection(await anyio.connect_tcp(self.host, self.port), self.max_frame)

    async def _open_websocket(self) -> Connection:
        import sniffio

        if sniffio.current_async_library() != "asyncio":
            raise SocketError("a ws:// client runs on asyncio (the websockets library); use tcp:// with trio")
        from websockets.asyncio.client import connect as websocket_connect
        from websockets.exceptions import InvalidHandshake

        host = f"[{self.host}]" if ":" in self.host else self.host
        try:
            websocket = await websocket_connect(
                f"ws://{host}:{self.port}{EVENTS_PATH}", max_size=self.max_frame, compression=None
            )
        except InvalidHandshake as exc:
            raise ConnectionLost(str(exc)) from exc
        return WebSocketConnection(websocket, abort_on_close=True)

    async def send(self, command: Command) -> None:
        """Send a command for training (the server must allow commands)."""
        if self._connection is None:
            raise SocketError("not connected: iterate the client first")
        try:
            await self._connection.send([self.codec.encode(ClientCommand(command=command))])
        except ConnectionLost as exc:
            raise SocketError(f"the command was not sent: the connection is lost ({exc})") from exc

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await connection.aclose()
                except Exception:  # closing a broken connection: nothing left to save
                    pass

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
