"""The server's side of a TCP connection, over a real socket pair: frames in,
writes that the socket takes only in part, and a peer that goes away."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import anyio
import pytest

from eventbus.adapters.sockets.connections import ConnectionLost, FrameTooLarge, SocketConnection

pytestmark = pytest.mark.anyio
LIMIT = 10.0


@pytest.fixture
def pair() -> Iterator[tuple[SocketConnection, socket.socket]]:
    """An accepted loopback connection, as the server holds it, and its peer with a small receive buffer."""
    with socket.create_server(("127.0.0.1", 0)) as listening:
        peer = socket.socket()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        peer.connect(listening.getsockname())
        server_side, _ = listening.accept()
    with server_side, peer:
        yield SocketConnection(server_side, max_frame=1024), peer


def framed(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


async def test_frames_split_and_joined_across_reads_come_out_whole(
    pair: tuple[SocketConnection, socket.socket],
) -> None:
    connection, peer = pair
    data = framed(b"one") + framed(b"") + framed(b"three")
    with anyio.fail_after(LIMIT):
        peer.sendall(data[:2])  # half a header
        async with anyio.create_task_group() as tg:

            async def rest() -> None:
                await anyio.sleep(0.05)
                peer.sendall(data[2:])

            tg.start_soon(rest)
            assert [await connection.receive() for _ in range(3)] == [b"one", b"", b"three"]


async def test_a_frame_over_the_limit_is_refused_before_it_is_read(
    pair: tuple[SocketConnection, socket.socket],
) -> None:
    connection, peer = pair
    peer.sendall(struct.pack(">I", 1025))
    with anyio.fail_after(LIMIT), pytest.raises(FrameTooLarge, match="1025 bytes is over the limit of 1024"):
        await connection.receive()


async def test_a_write_the_socket_takes_in_part_is_finished_by_drain_in_order(
    pair: tuple[SocketConnection, socket.socket],
) -> None:
    connection, peer = pair
    frames = [framed(bytes([i % 251]) * 50_000) for i in range(200)]  # 10 MB: more than the buffers hold
    assert connection.write_now(frames) is False
    assert connection.unsent
    with pytest.raises(RuntimeError, match="drain"):
        connection.write_now([framed(b"never interleaved")])
    received = bytearray()
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:

            async def read() -> None:
                peer.setblocking(False)
                while len(received) < sum(map(len, frames)) + len(framed(b"after")):
                    await anyio.wait_readable(peer)
                    received.extend(peer.recv(1 << 16))

            tg.start_soon(read)
            await connection.drain()
            assert not connection.unsent
            await connection.send([framed(b"after")])
    assert bytes(received) == b"".join(frames) + framed(b"after")


async def test_a_peer_that_left_is_a_lost_connection(pair: tuple[SocketConnection, socket.socket]) -> None:
    connection, peer = pair
    peer.close()
    with anyio.fail_after(LIMIT):
        with pytest.raises(ConnectionLost, match="closed"):
            await connection.receive()
        with pytest.raises(ConnectionLost):
            for _ in range(100):  # the first writes may land before the reset is seen
                connection.write_now([framed(b"x" * 1000)])
                await connection.drain()
