"""One connection, whatever the transport: receive a frame, send frames, close.

The server and the client speak through this small interface, so the
protocol (hello, backlog, notices, commands) is written once for TCP and for
WebSocket. Transport failures of every kind surface as :class:`ConnectionLost`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from .codecs import HEADER

__all__ = ["Connection", "ConnectionLost", "FrameTooLarge", "TcpConnection", "WebSocketConnection"]


class ConnectionLost(Exception):
    """The peer left, or the connection failed."""


class FrameTooLarge(Exception):
    """A frame over the limit; refused before it is read."""


class Connection(Protocol):
    async def receive(self) -> Any:
        """One frame's payload. Raises :class:`ConnectionLost` or :class:`FrameTooLarge`."""

    async def send(self, frames: Sequence[Any]) -> None:
        """Write whole frames, in order. Raises :class:`ConnectionLost`."""

    async def aclose(self) -> None: ...


_TCP_ERRORS = (
    anyio.IncompleteRead,
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
)


class TcpConnection:
    """Frames on a TCP stream: each a 4-byte big-endian length, then the payload."""

    def __init__(self, stream: anyio.abc.SocketStream, max_frame: int) -> None:
        self.stream = stream
        self.max_frame = max_frame
        self._reader = BufferedByteReceiveStream(stream)

    async def receive(self) -> bytes:
        try:
            (length,) = HEADER.unpack(await self._reader.receive_exactly(HEADER.size))
            if length > self.max_frame:
                raise FrameTooLarge(f"a frame of {length} bytes is over the limit of {self.max_frame}")
            return await self._reader.receive_exactly(length) if length else b""
        except _TCP_ERRORS as exc:
            raise ConnectionLost(str(exc) or type(exc).__name__) from exc

    async def send(self, frames: Sequence[bytes]) -> None:
        try:
            await self.stream.send(b"".join(frames))
        except _TCP_ERRORS as exc:
            raise ConnectionLost(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        await self.stream.aclose()


class WebSocketConnection:
    """Frames as WebSocket messages (the ``websockets`` library; asyncio only)."""

    def __init__(self, websocket: Any, *, abort_on_close: bool = False) -> None:
        self.websocket = websocket
        self.abort_on_close = abort_on_close

    async def receive(self) -> str | bytes:
        from websockets.exceptions import ConnectionClosed, PayloadTooBig

        try:
            message: str | bytes = await self.websocket.recv()
        except PayloadTooBig as exc:
            raise FrameTooLarge(str(exc)) from exc
        except ConnectionClosed as exc:
            if exc.rcvd is None and exc.sent is not None and exc.sent.code == 1009:
                raise FrameTooLarge(f"a message over the limit ({exc.sent.reason})") from exc
            raise ConnectionLost(str(exc)) from exc
        except OSError as exc:
            raise ConnectionLost(str(exc)) from exc
        return message

    async def send(self, frames: Sequence[str | bytes]) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for frame in frames:
                await self.websocket.send(frame)
        except (ConnectionClosed, OSError) as exc:
            raise ConnectionLost(str(exc)) from exc

    async def aclose(self) -> None:
        if self.abort_on_close:
            # A client that leaves may have stopped reading (its queue full): a closing
            # handshake would wait for a reply it cannot read. Nothing left matters to it.
            self.websocket.transport.abort()
            return
        await self.websocket.close()
