"""One connection, whatever the transport: receive a frame, send frames, close.

The server and the client speak through this small interface, so the
protocol (hello, backlog, notices, commands) is written once for TCP and for
WebSocket. Transport failures of every kind surface as :class:`ConnectionLost`.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any, Protocol

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.buffered import BufferedByteReceiveStream

from .codecs import HEADER

__all__ = ["Connection", "ConnectionLost", "FrameTooLarge", "SocketConnection", "TcpConnection", "WebSocketConnection"]


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
    """Frames on a TCP stream: each a 4-byte big-endian length, then the payload (the client's side)."""

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


class SocketConnection:
    """The server's side of a TCP connection: frames on a non-blocking socket it owns.

    A flush writes to every client in one pass, with no task switch per
    client: :meth:`write_now` hands the socket what it takes at once, and
    keeps the rest (a full socket buffer) for the client's own writer to
    :meth:`drain`. A stream's ``send`` would need a task, and a wake-up, per
    client per flush.
    """

    def __init__(self, sock: socket.socket, max_frame: int) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a flush is one write: send it now
        self.sock = sock
        self.max_frame = max_frame
        self._received = bytearray()
        self._unsent = memoryview(b"")

    @property
    def unsent(self) -> bool:
        """Part of a write waits for :meth:`drain`."""
        return bool(self._unsent)

    async def receive(self) -> bytes:
        await anyio.lowlevel.checkpoint()  # frames already read still take turns with the other tasks
        (length,) = HEADER.unpack(await self._receive_exactly(HEADER.size))
        if length > self.max_frame:
            raise FrameTooLarge(f"a frame of {length} bytes is over the limit of {self.max_frame}")
        return await self._receive_exactly(length) if length else b""

    async def _receive_exactly(self, size: int) -> bytes:
        received = self._received
        while len(received) < size:
            await anyio.wait_readable(self.sock)
            try:
                data = self.sock.recv(max(65536, size - len(received)))
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                raise ConnectionLost(str(exc) or type(exc).__name__) from exc
            if not data:
                raise ConnectionLost("the peer closed the connection")
            received += data
        out = bytes(received[:size])
        del received[:size]
        return out

    def write_now(self, frames: Sequence[bytes]) -> bool:
        """Write what the socket takes without waiting; True if that was everything."""
        if self._unsent:
            raise RuntimeError("drain() the last write first: frames must not interleave")
        data = b"".join(frames)
        try:
            written = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError as exc:
            raise ConnectionLost(str(exc) or type(exc).__name__) from exc
        if written < len(data):
            self._unsent = memoryview(data)[written:]
        return not self._unsent

    async def drain(self) -> None:
        """Wait until what :meth:`write_now` kept is written."""
        while self._unsent:
            await anyio.wait_writable(self.sock)
            try:
                written = self.sock.send(self._unsent)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                raise ConnectionLost(str(exc) or type(exc).__name__) from exc
            self._unsent = self._unsent[written:]

    async def send(self, frames: Sequence[bytes]) -> None:
        await self.drain()
        if not self.write_now(frames):
            await self.drain()

    async def aclose(self) -> None:
        self.sock.close()


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
