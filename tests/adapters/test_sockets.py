"""The TCP event stream, over real loopback sockets: many clients in order,
resuming with no gap and no duplicate, bad clients cut off while the others are
served, and commands refused unless allowed."""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import msgspec
import pytest

from eventbus import EventBus, commands, events
from eventbus.adapters.sockets import (
    End,
    EventClient,
    GapError,
    RefusedError,
    SocketServer,
    connect,
)
from eventbus.log import EventLog

pytestmark = pytest.mark.anyio
LIMIT = 10.0


@asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[tuple[SocketServer, EventBus]]:
    async with SocketServer("tcp://127.0.0.1:0", **options) as server, EventBus(latency=0.001) as bus:
        bus.subscribe(server)
        yield server, bus


def publish_batches(bus: EventBus, count: int, *, run: str = "r", start: int = 0) -> None:
    for batch in range(start, start + count):
        bus.publish_nowait(events.TrainBatchEnd(run=run, batch=batch, logs={"loss": 1.0 / (batch + 1)}))


async def take(client: EventClient, count: int) -> list[events.Event]:
    got: list[events.Event] = []
    async for event in client:
        got.append(event)
        if len(got) == count:
            break
    return got


# --- raw frames ----------------------------------------------------------------


def frame(message: object) -> bytes:
    payload = msgspec.msgpack.encode(message)
    return struct.pack(">I", len(payload)) + payload


async def read_frame(stream: anyio.abc.ByteStream, buffer: bytearray) -> dict[str, Any] | None:
    """The next frame as a plain map; None at the end of the stream."""
    while True:
        if len(buffer) >= 4:
            (length,) = struct.unpack(">I", buffer[:4])
            if len(buffer) >= 4 + length:
                payload = bytes(buffer[4 : 4 + length])
                del buffer[: 4 + length]
                decoded: dict[str, Any] = msgspec.msgpack.decode(payload)
                return decoded
        try:
            buffer += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return None


async def frames_until_closed(stream: anyio.abc.ByteStream) -> list[dict[str, Any]]:
    buffer = bytearray()
    out = []
    while (message := await read_frame(stream, buffer)) is not None:
        out.append(message)
    return out


async def admitted_small_reader(server: SocketServer) -> socket.socket:
    """A raw client with a 4 KB receive buffer, its hello sent and admitted; it reads only when told."""
    assert server.port is not None
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(frame({"kind": "hello", "since": None}))
    while server.clients == 0:
        await anyio.sleep(0.005)
    return sock


async def _recv(sock: socket.socket) -> bytes:
    while True:
        await anyio.wait_readable(sock)
        try:
            return sock.recv(1 << 16)
        except BlockingIOError:
            continue


# --- serving -------------------------------------------------------------------


async def test_many_clients_receive_every_event_in_order() -> None:
    with anyio.fail_after(LIMIT):
        async with serving(client_buffer=10_000) as (server, bus):
            clients = [connect(server.url, since=-1) for _ in range(16)]
            results: dict[int, list[events.Event]] = {}

            async def read(i: int) -> None:
                results[i] = await take(clients[i], 2001)
                await clients[i].aclose()

            async with anyio.create_task_group() as tg:
                for i in range(16):
                    tg.start_soon(read, i)
                publish_batches(bus, 1000)
                await anyio.sleep(0.05)  # some clients join mid-stream: backlog, then live
                publish_batches(bus, 1000, start=1000)
                bus.publish_nowait(events.EpochEnd(run="r", epoch=0, logs={"loss": 0.5}))
        for got in results.values():
            assert [e.seq for e in got] == list(range(2001))
            assert [e.batch for e in got[:-1]] == list(range(2000))  # type: ignore[attr-defined]
            assert isinstance(got[-1], events.EpochEnd)


async def test_the_stream_ends_when_the_bus_closes() -> None:
    with anyio.fail_after(LIMIT):
        async with SocketServer("tcp://127.0.0.1:0") as server:
            async with EventBus() as bus:
                bus.subscribe(server)
                publish_batches(bus, 10)
                bus.publish_nowait(events.TrainEnd(run="r"))
            got = [e async for e in connect(server.url, since=-1)]  # after the close: the backlog, then the end
        assert [e.seq for e in got] == list(range(11))


async def test_every_event_waits_for_the_flush_so_short_epochs_cost_one_send_per_interval() -> None:
    with anyio.fail_after(LIMIT):
        async with SocketServer("tcp://127.0.0.1:0", flush_interval=3600) as server:
            async with EventBus(latency=0.001) as bus:
                bus.subscribe(server)
                client = connect(server.url, since=None)
                got: list[events.Event] = []

                async def read() -> None:
                    async for event in client:
                        got.append(event)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(read)
                    while server.clients == 0:
                        await anyio.sleep(0.005)
                    for epoch in range(3):
                        bus.publish_nowait(events.EpochBegin(run="r", epoch=epoch))
                        bus.publish_nowait(events.EpochEnd(run="r", epoch=epoch))
                    while bus.statistics()["SocketServer"].delivered < 6:
                        await anyio.sleep(0.005)
                    await anyio.sleep(0.2)
                    assert got == []  # held for the flush, not sent one epoch at a time
                    await bus.aclose()  # the end: everything held goes out, then the stream ends
        assert [(type(e), e.epoch) for e in got] == [  # type: ignore[attr-defined]
            (kind, epoch) for epoch in range(3) for kind in (events.EpochBegin, events.EpochEnd)
        ]


async def test_kinds_filter_and_live_only() -> None:
    with anyio.fail_after(LIMIT):
        async with serving() as (server, bus):
            publish_batches(bus, 5)  # before the client: not sent without since
            client = connect(server.url, kinds=["epoch_end"])
            async with anyio.create_task_group() as tg:

                async def read() -> None:
                    got = await take(client, 2)
                    assert [type(e) for e in got] == [events.EpochEnd, events.EpochEnd]
                    assert [e.epoch for e in got] == [0, 1]  # type: ignore[attr-defined]

                tg.start_soon(read)
                while server.clients == 0:
                    await anyio.sleep(0.005)
                for epoch in range(2):
                    publish_batches(bus, 3)
                    bus.publish_nowait(events.EpochEnd(run="r", epoch=epoch))
            await client.aclose()


# --- resuming ------------------------------------------------------------------


async def test_a_client_resumes_with_since_and_gets_exactly_what_it_missed() -> None:
    with anyio.fail_after(LIMIT):
        async with serving() as (server, bus):
            publish_batches(bus, 100)
            first = connect(server.url, since=-1)
            seen = await take(first, 40)
            await first.aclose()  # killed mid-stream
            publish_batches(bus, 100, start=100)
            second = connect(server.url, since=seen[-1].seq)
            rest = await take(second, 160)
            await second.aclose()
        assert [e.seq for e in seen + rest] == list(range(200))


async def test_since_older_than_the_window_is_a_gap_never_skipped_silently() -> None:
    with anyio.fail_after(LIMIT):
        async with serving(window=10) as (server, bus):
            publish_batches(bus, 50)
            while server.clients == 0 and bus.statistics()["SocketServer"].delivered < 50:
                await anyio.sleep(0.005)
            with pytest.raises(GapError) as caught:
                await take(connect(server.url, since=5), 1)
            assert (caught.value.after, caught.value.first) == (5, 40)
            skipping = connect(server.url, since=5, on_gap="skip")
            got = await take(skipping, 10)
            await skipping.aclose()
            assert [e.seq for e in got] == list(range(40, 50))
            assert [(g.after, g.first) for g in skipping.gaps] == [(5, 40)]


async def test_a_log_not_written_yet_holds_nothing(tmp_path: Path) -> None:
    with anyio.fail_after(LIMIT):
        async with serving(log=tmp_path / "run.log") as (server, bus):
            client = connect(server.url, since=-1)  # before the first event: the log file does not exist yet
            async with anyio.create_task_group() as tg:

                async def read() -> None:
                    got = await take(client, 3)
                    assert [e.seq for e in got] == [0, 1, 2]

                tg.start_soon(read)
                while server.clients == 0:
                    await anyio.sleep(0.005)
                publish_batches(bus, 3)
            await client.aclose()


async def test_since_ahead_of_the_stream_is_refused() -> None:
    with anyio.fail_after(LIMIT):
        async with serving() as (server, bus):
            publish_batches(bus, 3)
            while bus.statistics()["SocketServer"].delivered < 3:
                await anyio.sleep(0.005)
            with pytest.raises(RefusedError, match="ahead"):
                await take(connect(server.url, since=100), 1)


async def test_reconnects_to_a_restarted_server_and_resumes_from_the_log(tmp_path: Path) -> None:
    log = tmp_path / "run.evlog"
    with anyio.fail_after(LIMIT):
        async with EventBus(latency=0.001) as bus:
            bus.subscribe(EventLog(log))
            got: list[events.Event] = []
            async with anyio.create_task_group() as tg:
                async with SocketServer("tcp://127.0.0.1:0") as first:
                    port = first.port
                    subscription = bus.subscribe(first)
                    client = connect(first.url, since=-1)

                    async def read() -> None:
                        async for event in client:
                            got.append(event)
                            if isinstance(event, events.TrainEnd):
                                return

                    tg.start_soon(read)
                    publish_batches(bus, 30)
                    bus.publish_nowait(events.EpochEnd(run="r", epoch=0))  # the log flushes here
                    while len(got) < 31:
                        await anyio.sleep(0.005)
                    subscription.unsubscribe()
                # The first server is gone; the client retries while more events go only to the log.
                publish_batches(bus, 20, start=30)
                bus.publish_nowait(events.EpochEnd(run="r", epoch=1))
                await anyio.sleep(0.1)
                async with SocketServer(f"tcp://127.0.0.1:{port}", log=log) as second:
                    bus.subscribe(second)
                    publish_batches(bus, 10, start=50)
                    bus.publish_nowait(events.TrainEnd(run="r"))
                    with anyio.fail_after(5):
                        while not got or not isinstance(got[-1], events.TrainEnd):
                            await anyio.sleep(0.01)
                    await client.aclose()
        assert [e.seq for e in got] == list(range(63))
        assert client.connections == 2


# --- misbehaving clients ---------------------------------------------------------


async def test_a_flush_larger_than_the_socket_takes_reaches_a_slow_reader_whole() -> None:
    big = {f"metric_{i}": float(i) for i in range(200)}  # ~4 KB an event: 2,000 overflow the socket buffers
    received = bytearray()

    async def read_to_the_end(slow: socket.socket) -> None:
        with slow:
            slow.setblocking(False)
            while data := await _recv(slow):
                received.extend(data)

    with anyio.fail_after(LIMIT):
        async with SocketServer("tcp://127.0.0.1:0", client_buffer=10_000, flush_interval=0.05) as server:
            async with anyio.create_task_group() as tg, EventBus(latency=0.001) as bus:
                bus.subscribe(server)
                slow = await admitted_small_reader(server)
                for batch in range(2000):
                    bus.publish_nowait(events.TrainBatchEnd(run="r", batch=batch, logs=big))
                await anyio.sleep(0.3)  # flushed and not read: the rest of the write waits
                tg.start_soon(read_to_the_end, slow)  # the bus closes meanwhile: what is held, then the end
    messages = []
    while received:
        (length,) = struct.unpack(">I", received[:4])
        messages.append(msgspec.msgpack.decode(bytes(received[4 : 4 + length])))
        del received[: 4 + length]
    assert [m["kind"] for m in messages] == ["welcome"] + ["train_batch_end"] * 2000 + ["end"]
    assert [m["seq"] for m in messages[1:-1]] == list(range(2000))


async def test_bad_clients_are_cut_off_while_the_others_are_served() -> None:
    with anyio.fail_after(LIMIT):
        async with serving(token="s3cret", client_buffer=64, max_frame=1024) as (server, bus):
            host, port = "127.0.0.1", server.port
            assert port is not None
            good = connect(server.url, since=-1, token="s3cret")
            got: list[events.Event] = []

            async def read_good() -> None:
                async for event in good:
                    got.append(event)
                    if isinstance(event, events.TrainEnd):
                        return

            # A client that sends its hello, then never reads: a tiny receive buffer fills at once.
            stuck = socket.socket()
            stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stuck.connect((host, port))
            stuck.sendall(frame({"kind": "hello", "token": "s3cret", "since": None}))

            async def refused_with(data: bytes) -> list[dict[str, Any]]:
                async with await anyio.connect_tcp(host, port) as stream:
                    await stream.send(data)
                    return await frames_until_closed(stream)

            async with anyio.create_task_group() as tg:
                tg.start_soon(read_good)
                garbage = await refused_with(b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1")
                oversize = await refused_with(struct.pack(">I", 1025) + b"x" * 1025)
                wrong = await refused_with(frame({"kind": "hello", "token": "guess", "since": -1}))
                http = await refused_with(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                big = {f"metric_{i}": float(i) for i in range(200)}  # ~4 KB an event
                for epoch in range(5):
                    for batch in range(400):
                        bus.publish_nowait(events.TrainBatchEnd(run="r", batch=batch, logs=big))
                    bus.publish_nowait(events.EpochEnd(run="r", epoch=epoch))
                    await anyio.sleep(0.01)
                # After the hello, a malformed frame closes that connection with a reason.
                async with await anyio.connect_tcp(host, port) as stream:
                    await stream.send(frame({"kind": "hello", "token": "s3cret", "since": None}))
                    await stream.send(b"\x00\x00\x00\x02\xc1\xc1")
                    late = await frames_until_closed(stream)
                bus.publish_nowait(events.TrainEnd(run="r"))
            await good.aclose()
            stuck.close()

        for refusal in (garbage, oversize, wrong, http):
            assert [message["kind"] for message in refusal] == ["refused"]  # nothing else, no event
        assert "malformed" in garbage[0]["reason"]
        assert "over the limit" in oversize[0]["reason"] and "over the limit" in http[0]["reason"]
        assert wrong[0]["reason"] == "wrong token"
        assert late[0]["kind"] == "welcome" and late[-1]["kind"] == "closing"
        assert "malformed" in late[-1]["reason"]
        # The good client, reading as fast as it can with a small buffer, may have lost
        # batch events, counted; it never lost an epoch event, and saw the rest in order.
        seqs = [e.seq for e in got]
        assert seqs == sorted(set(seqs))
        assert [e.epoch for e in got if isinstance(e, events.EpochEnd)] == list(range(5))  # type: ignore[attr-defined]
        assert len(got) + good.dropped == 2006


async def test_a_client_that_never_reads_is_dropped_without_slowing_the_bus() -> None:
    with anyio.fail_after(LIMIT):
        async with serving(client_buffer=16) as (server, bus):
            stuck = await admitted_small_reader(server)  # and never reads
            big = {f"metric_{i}": float(i) for i in range(200)}
            for epoch in range(200):  # epoch events are never dropped: past the buffer, the client is cut off
                bus.publish_nowait(events.EpochEnd(run="r", epoch=epoch, logs=big))
            while server.clients:
                await anyio.sleep(0.01)
            assert bus.statistics()["SocketServer"].buffered == 0
            stuck.close()


async def test_a_client_that_falls_out_of_the_window_is_told_never_skipped() -> None:
    with anyio.fail_after(LIMIT):
        async with serving(window=10, client_buffer=100_000) as (server, bus):
            stuck = await admitted_small_reader(server)  # joins before any event, then never reads
            big = {f"metric_{i}": float(i) for i in range(200)}
            for batch in range(400):  # batch events only: past the window, not past the buffer
                bus.publish_nowait(events.TrainBatchEnd(run="r", batch=batch, logs=big))
            while server.clients:
                await anyio.sleep(0.01)
            stuck.setblocking(False)
            received = bytearray()
            with contextlib.suppress(BlockingIOError):
                while chunk := stuck.recv(1 << 20):
                    received += chunk
            stuck.close()
        messages = []
        while len(received) >= 4 and len(received) >= 4 + struct.unpack(">I", received[:4])[0]:
            (length,) = struct.unpack(">I", received[:4])
            messages.append(msgspec.msgpack.decode(bytes(received[4 : 4 + length])))
            del received[: 4 + length]
        # Cut off (with the reason, unless cut mid-send), and never an event past a silent hole.
        seqs = [m["seq"] for m in messages if m["kind"] == "train_batch_end"]
        assert seqs == list(range(len(seqs)))
        closing = [m for m in messages if m["kind"] == "closing"]
        assert all("fell behind the 10 events the server holds" in m["reason"] for m in closing)


async def test_a_client_that_never_says_hello_is_refused_after_the_timeout() -> None:
    with anyio.fail_after(LIMIT):
        async with serving(handshake_timeout=0.2) as (server, _bus):
            assert server.port is not None
            async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
                messages = await frames_until_closed(stream)
        assert [m["kind"] for m in messages] == ["refused"]
        assert "no hello" in messages[0]["reason"]


# --- commands ------------------------------------------------------------------


async def test_commands_are_refused_by_default() -> None:
    with anyio.fail_after(LIMIT):
        async with serving() as (server, bus):
            applied: list[commands.Command] = []
            bus.attach_run("r", lambda seq, command: applied.append(command))
            client = connect(server.url, since=-1)
            publish_batches(bus, 1)
            await take(client, 1)
            await client.send(commands.StopTraining(reason="from a client"))
            while not client.refused_commands:
                publish_batches(bus, 1)
                await take(client, 1)
            await client.aclose()
        assert applied == []
        assert "does not accept commands" in client.refused_commands[0]


async def test_allowed_commands_apply_at_once_and_are_recorded() -> None:
    with anyio.fail_after(LIMIT):
        async with serving(allow_commands=True) as (server, bus):
            applied: list[tuple[int, commands.Command]] = []
            bus.attach_run("r", lambda seq, command: applied.append((seq, command)))
            client = connect(server.url, since=-1)
            publish_batches(bus, 1)
            await take(client, 1)
            stop = commands.StopTraining(reason="from a client")
            await client.send(stop)
            # No further event is published: the command reaches the bridge, and its record the client, at once.
            (record,) = await take(client, 1)
            await client.aclose()
        assert isinstance(record, events.CommandIssued)
        assert record.command == stop and record.run == "r" and record.cause == -1
        assert record.subscriber.startswith("SocketServer 127.0.0.1:")
        assert applied == [(record.seq, stop)]


async def test_a_command_with_no_run_training_is_recorded_as_rejected() -> None:
    with anyio.fail_after(LIMIT):
        async with serving(allow_commands=True) as (server, bus):
            client = connect(server.url, since=-1)
            publish_batches(bus, 1)
            await take(client, 1)
            await client.send(commands.SetLearningRate(learning_rate=0.1))
            issued, rejected = await take(client, 2)
            await client.aclose()
        assert isinstance(issued, events.CommandIssued) and isinstance(rejected, events.CommandRejected)
        assert rejected.issued == issued.seq and "no run is training" in rejected.reason


# --- construction, and the thread mode ----------------------------------------------


def test_binding_beyond_loopback_needs_a_token() -> None:
    with pytest.raises(ValueError, match="without a token"):
        SocketServer("tcp://0.0.0.0:0")
    with pytest.raises(ValueError, match="without a token"):
        SocketServer("tcp://example.org:7878")
    SocketServer("tcp://0.0.0.0:0", token="secret")  # fine: not bound until started
    SocketServer("tcp://localhost:0")
    SocketServer("tcp://[::1]:0")
    with pytest.raises(ValueError, match="tcp://"):
        SocketServer("http://127.0.0.1:0")
    with pytest.raises(ValueError, match="no path"):
        SocketServer("tcp://127.0.0.1:0/events")


async def test_a_port_in_use_fails_at_once_and_the_first_server_serves_on() -> None:
    with anyio.fail_after(LIMIT):
        async with serving() as (server, bus):
            with pytest.raises(OSError, match=f"in use.*{server.port}"):
                async with SocketServer(f"tcp://127.0.0.1:{server.port}"):
                    pass
            publish_batches(bus, 3)
            client = connect(server.url, since=-1)
            assert [e.seq for e in await take(client, 3)] == [0, 1, 2]
            await client.aclose()


async def test_a_connection_while_the_server_shuts_down_is_closed_and_the_shutdown_completes() -> None:
    stop = anyio.Event()

    async def run(*, task_status: anyio.abc.TaskStatus[SocketServer]) -> None:
        async with SocketServer("tcp://127.0.0.1:0") as server:
            task_status.started(server)
            await stop.wait()

    with anyio.fail_after(LIMIT), socket.socket() as first, socket.socket() as late:
        async with anyio.create_task_group() as tg:
            server = await tg.start(run)
            address = ("127.0.0.1", server.port)
            first.connect(address)
            first.sendall(frame({"kind": "hello", "since": None}))
            while server.clients == 0:
                await anyio.sleep(0.005)
            stop.set()
            first.setblocking(False)
            told = bytearray()
            while b"closing" not in told:  # the shutdown has begun: the clients are being told
                told += await _recv(first)
            late.connect(address)  # accepted while the server waits for its clients to leave
        assert server.clients == 0
        late.setblocking(False)
        assert await _recv(late) == b""  # closed, with no welcome


def test_a_thread_bus_with_a_thread_server() -> None:
    with EventBus() as bus, SocketServer("tcp://127.0.0.1:0") as server:
        bus.subscribe(server)
        publish_batches(bus, 20)
        bus.publish_nowait(events.TrainEnd(run="r"))

        async def read() -> list[events.Event]:
            with anyio.fail_after(LIMIT):
                async with connect(server.url, since=-1) as client:
                    return await take(client, 21)

        got = anyio.run(read)
    assert [e.seq for e in got] == list(range(21))
    assert End  # the end frame is exported for clients in other languages
