"""The fan-out's bookkeeping, without sockets: the shared window and one client's cursor."""

from __future__ import annotations

from typing import Any

import pytest

from eventbus import events
from eventbus.adapters.sockets.fanout import ClientState, Window
from eventbus.adapters.sockets.frames import Dropped, Frame, Gap


def item(seq: int, kind: type[events.Event] = events.TrainBatchEnd) -> tuple[int, type[events.Event], str]:
    return (seq, kind, f"event {seq}")


def encode(frame: Frame) -> Frame:
    return frame  # notices stay structs here, events are their labels


def pack(frames: list[Any]) -> list[Any]:
    return frames


def test_the_window_holds_the_last_events_and_counts_others_across_compaction() -> None:
    window = Window(4)
    kinds = [events.TrainBatchEnd, events.EpochEnd] * 10
    for seq, kind in enumerate(kinds):
        window.append(item(seq, kind))
        assert len(window) == min(seq + 1, 4)
    assert window.first_seq == 16 and window.last_evicted == 15 and window.first_ever == 0
    i = window.after(15)
    assert window.seq_at(i) == 16 and window.after(None) == i
    assert window.others(i, window.end) == 2  # seqs 17 and 19 are epoch events
    assert [seq for seq, _, _ in window.items(i, window.end)] == [16, 17, 18, 19]


@pytest.mark.anyio
async def test_a_client_behind_loses_the_oldest_batch_events_and_is_told() -> (
    None
):  # a client's events need a running loop
    window = Window(100)
    for seq in range(10):
        window.append(item(seq))
    window.append(item(10, events.EpochEnd))
    client = ClientState(None, 3, -1, encode)
    frames = client.take(window, pack)
    assert frames == [Dropped(count=7, total=7), "event 7", "event 8", "event 9", "event 10"]
    assert client.cursor == -1  # not until the send completes
    client.sent()
    assert client.cursor == 10 and client.take(window, pack) == []


@pytest.mark.anyio
async def test_a_filtered_client_is_told_of_holes_in_what_the_server_held() -> (
    None
):  # a client's events need a running loop
    window = Window(100)
    for seq in (0, 1, 5, 6):  # the server was not subscribed for seqs 2 to 4
        window.append(item(seq, events.EpochEnd if seq in (1, 6) else events.TrainBatchEnd))
    client = ClientState(frozenset({events.EpochEnd}), 10, None, encode)
    assert client.take(window, pack) == ["event 1", Gap(after=1, first=5), "event 6"]


@pytest.mark.anyio
async def test_a_client_joined_before_any_event_that_falls_out_of_the_window_is_cut_off() -> (
    None
):  # a client's events need a running loop
    window = Window(3)
    client = ClientState(None, 1000, None, encode)
    for seq in range(5):
        window.append(item(seq))
    client.check(window)
    assert client.kicked == "too slow: fell behind the 3 events the server holds"


@pytest.mark.anyio
async def test_too_many_other_events_waiting_cut_a_client_off() -> None:  # a client's events need a running loop
    window = Window(100)
    client = ClientState(None, 2, -1, encode)
    for seq in range(3):
        window.append(item(seq, events.EpochEnd))
    client.check(window)
    assert client.kicked == "too slow: 3 events waiting to be sent"
