"""The WebSocket event stream, over real loopback sockets: JSON text frames with
the same structs, the live page served over HTTP, bad clients cut off."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect as websocket_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from eventbus import EventBus, commands, events
from eventbus.adapters.sockets import EVENTS_PATH, EventClient, RefusedError, SocketError, SocketServer, connect

pytestmark = pytest.mark.anyio
LIMIT = 10.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the websockets library runs on asyncio


@asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[tuple[SocketServer, EventBus]]:
    async with SocketServer("ws://127.0.0.1:0", **options) as server, EventBus(latency=0.001) as bus:
        bus.subscribe(server)
        yield server, bus


def publish_batches(bus: EventBus, count: int, *, start: int = 0) -> None:
    for batch in range(start, start + count):
        bus.publish_nowait(events.TrainBatchEnd(run="r", batch=batch, logs={"loss": 1.0 / (batch + 1)}))


async def take(client: EventClient, count: int) -> list[events.Event]:
    got: list[events.Event] = []
    async for event in client:
        got.append(event)
        if len(got) == count:
            break
    return got


async def messages_until_closed(websocket: Any) -> list[Any]:
    got: list[Any] = []
    try:
        async for message in websocket:
            got.append(json.loads(message))
    except ConnectionClosed:
        pass
    return got


async def test_frames_are_json_text_with_the_kind_tag() -> None:
    with anyio.fail_after(LIMIT):
        async with serving() as (server, bus):
            publish_batches(bus, 2)
            bus.publish_nowait(events.EpochEnd(run="r", epoch=0, logs={"loss": math.nan, "acc": math.inf}))
            bus.publish_nowait(events.TrainEnd(run="r"))
            async with websocket_connect(server.url + EVENTS_PATH) as websocket:
                await websocket.send(json.dumps({"kind": "hello", "since": -1}))
                raw = [await websocket.recv() for _ in range(5)]
        assert all(isinstance(message, str) for message in raw)  # text frames, one message each
        decoded = [json.loads(message) for message in raw]
        assert [m["kind"] for m in decoded] == [
            "welcome",
            "train_batch_end",
            "train_batch_end",
            "epoch_end",
            "train_end",
        ]
        assert [m["seq"] for m in decoded[1:]] == [0, 1, 2, 3]
        assert decoded[3]["logs"] == {"loss": "NaN", "acc": "Infinity"}  # JSON has no NaN: strings, listed
        assert sorted(decoded[3]["$nonfinite"]) == [["logs", "acc"], ["logs", "loss"]]


async def test_the_client_gets_typed_events_and_resumes_with_since() -> None:
    with anyio.fail_after(LIMIT):
        async with serving() as (server, bus):
            bus.publish_nowait(events.EpochEnd(run="r", epoch=0, logs={"loss": math.nan}))
            publish_batches(bus, 99)
            first = connect(server.url, since=-1)
            seen = await take(first, 40)
            await first.aclose()  # killed mid-stream
            publish_batches(bus, 100, start=99)
            second = connect(server.url, since=seen[-1].seq)
            rest = await take(second, 160)
            await second.aclose()
        assert [e.seq for e in seen + rest] == list(range(200))
        epoch_end = seen[0]
        assert isinstance(epoch_end, events.EpochEnd) and math.isnan(epoch_end.logs["loss"])
        assert all(isinstance(e, events.TrainBatchEnd) for e in seen[1:] + rest)


async def test_the_stream_ends_when_the_bus_closes_and_commands_go_through() -> None:
    with anyio.fail_after(LIMIT):
        async with SocketServer("ws://127.0.0.1:0", allow_commands=True) as server:
            applied: list[commands.Command] = []
            async with EventBus(latency=0.001) as bus:
                bus.subscribe(server)
                bus.attach_run("r", lambda seq, command: applied.append(command))
                client = connect(server.url, since=-1)
                publish_batches(bus, 1)
                await take(client, 1)
                await client.send(commands.StopTraining(reason="from the browser"))
                (issued,) = await take(client, 1)
            rest = [e async for e in client]  # the end: iteration stops
        assert isinstance(issued, events.CommandIssued) and issued.command == commands.StopTraining(
            reason="from the browser"
        )
        assert applied == [issued.command] and rest == []


async def test_bad_clients_are_cut_off_while_the_others_are_served() -> None:
    with anyio.fail_after(LIMIT):
        async with serving(token="s3cret", max_frame=1024) as (server, bus):
            url = server.url + EVENTS_PATH
            good = connect(server.url, since=-1, token="s3cret")
            publish_batches(bus, 10)
            got = await take(good, 5)

            async def refusal(message: str | bytes) -> list[Any]:
                async with websocket_connect(url) as websocket:
                    await websocket.send(message)
                    return await messages_until_closed(websocket)

            garbage = await refusal("{not json")
            binary = await refusal(b"\x81\x82")
            wrong = await refusal(json.dumps({"kind": "hello", "token": "guess"}))
            async with websocket_connect(url, max_size=None) as websocket:  # oversize: closed by the server
                await websocket.send("x" * 2048)
                with pytest.raises(ConnectionClosed) as closed:
                    await websocket.recv()
            with pytest.raises(RefusedError, match="wrong token"):
                await take(connect(server.url, since=-1), 1)
            publish_batches(bus, 10, start=10)
            got += await take(good, 15)
            await good.aclose()
        for answer in (garbage, binary, wrong):
            assert [m["kind"] for m in answer] == ["refused"]  # no event reaches a refused client
        assert "malformed" in garbage[0]["reason"] and "binary" in binary[0]["reason"]
        assert wrong[0]["reason"] == "wrong token"
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # "message too big"
        assert [e.seq for e in got] == list(range(20))


async def test_the_page_is_served_over_http_and_other_paths_are_not() -> None:
    with anyio.fail_after(LIMIT):
        async with serving() as (server, _bus):
            assert server.page_url == f"http://127.0.0.1:{server.port}/"

            def get(path: str) -> tuple[int, str, str]:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as response:
                        return response.status, response.headers["Content-Type"], response.read().decode()
                except urllib.error.HTTPError as error:
                    return error.code, error.headers["Content-Type"], error.read().decode()

            status, content_type, body = await anyio.to_thread.run_sync(get, "/")
            missing = await anyio.to_thread.run_sync(get, "/secrets")
            with pytest.raises(InvalidStatus) as elsewhere:
                await websocket_connect(f"{server.url}/elsewhere")
        assert status == 200 and content_type.startswith("text/html")
        assert "new WebSocket(" in body and EVENTS_PATH in body
        assert missing[0] == 404
        assert elsewhere.value.response.status_code == 404


def test_on_trio_a_ws_server_says_to_run_in_its_own_thread() -> None:
    async def main() -> None:
        async with SocketServer("ws://127.0.0.1:0"):
            pass

    with pytest.raises(RuntimeError, match="thread of its own"):
        anyio.run(main, backend="trio")


def test_on_trio_a_ws_client_says_to_use_tcp() -> None:
    async def main() -> None:
        await take(connect("ws://127.0.0.1:1"), 1)

    with pytest.raises(SocketError, match="use tcp:// with trio"):
        anyio.run(main, backend="trio")
