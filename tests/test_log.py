"""The event log: round trips, torn tails, corruption, schema evolution."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import msgspec
import pytest

from eventbus import EventBus, commands, events
from eventbus.log import FORMAT_VERSION, MAGIC, EventLog, EventLogError, EventLogWarning
from eventbus.testing import Recorder


def sample_events() -> list[events.Event]:
    out: list[events.Event] = [events.TrainBegin(run="r", seq=0, params={"epochs": 2})]
    seq = 1
    for epoch in range(2):
        for batch in range(3):
            out.append(events.TrainBatchEnd(run="r", seq=seq, batch=batch, logs={"loss": 1.0 / (batch + 1)}))
            seq += 1
        out.append(events.EpochEnd(run="r", seq=seq, epoch=epoch, logs={"loss": math.nan, "val_loss": math.inf}))
        seq += 1
    out.append(
        events.CommandIssued(run="r", seq=seq, command=commands.StopTraining(reason="x"), subscriber="s", cause=2)
    )
    out.append(events.TrainEnd(run="r", seq=seq + 1))
    return out


def write(path: Path, stream: list[events.Event]) -> None:
    log = EventLog(path)
    log.append(stream)
    log.close()


def same(a: list[events.Event], b: list[events.Event]) -> bool:
    return msgspec.msgpack.encode(a) == msgspec.msgpack.encode(b)  # NaN-aware equality


def test_round_trip_keeps_types_and_non_finite_values(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    stream = sample_events()
    write(path, stream)
    reader = EventLog.read(path)
    back = list(reader)
    assert same(back, stream)
    assert [type(e) for e in back] == [type(e) for e in stream]
    assert reader.torn is None
    assert path.read_bytes()[:12] == MAGIC + struct.pack("<I", FORMAT_VERSION)


def test_appending_to_an_existing_log(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    stream = sample_events()
    write(path, stream[:4])
    write(path, stream[4:])
    assert same(list(EventLog.read(path)), stream)


def test_every_truncation_of_the_last_record_is_a_reported_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    stream = sample_events()
    write(path, stream)
    data = path.read_bytes()
    last = len(msgspec.msgpack.encode(stream[-1])) + 8
    clean = EventLog.read(path)
    assert same(list(clean.parse(data[: len(data) - last])), stream[:-1]) and clean.torn is None
    for cut in range(len(data) - last + 1, len(data)):
        reader = EventLog.read(path)
        with pytest.warns(EventLogWarning, match=r"torn tail at byte \d+"):
            back = list(reader.parse(data[:cut]))
        assert same(back, stream[:-1])
        assert reader.torn is not None and reader.torn.offset == len(data) - last
        assert reader.torn.length == cut - (len(data) - last)


def test_a_flipped_bit_is_caught_by_the_checksum(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    stream = sample_events()
    write(path, stream)
    data = path.read_bytes()
    offsets = record_offsets(data)
    for index, (start, end) in enumerate(offsets):
        for position in (start + 8, (start + end) // 2, end - 1):  # in each record's payload
            corrupt = bytearray(data)
            corrupt[position] ^= 0x10
            reader = EventLog.read(path)
            if end == len(data):  # the last record: indistinguishable from a torn write
                with pytest.warns(EventLogWarning, match="checksum does not match"):
                    assert same(list(reader.parse(bytes(corrupt))), stream[:-1])
            else:
                with pytest.raises(EventLogError, match=rf"record checksum does not match \(at byte {start}\)$"):
                    list(reader.parse(bytes(corrupt)))
            assert index < len(stream)


def record_offsets(data: bytes) -> list[tuple[int, int]]:
    offsets, offset = [], 12
    while offset < len(data):
        (length,) = struct.unpack_from("<I", data, offset)
        offsets.append((offset, offset + 8 + length))
        offset += 8 + length
    return offsets


def test_not_a_log_and_newer_formats_are_clear_errors(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not an event log\n")
    with pytest.raises(EventLogError, match=r"notes\.txt is not an event log \(no event-log header\) \(at byte 0\)$"):
        list(EventLog.read(text))
    newer = tmp_path / "newer.log"
    newer.write_bytes(MAGIC + struct.pack("<I", FORMAT_VERSION + 1))
    with pytest.raises(
        EventLogError, match=r"is an event log of format 2; .* upgrade keras-eventbus to read it \(at byte 8\)$"
    ):
        list(EventLog.read(newer))
    log = EventLog(text)  # appending to something that is not a log: refused, untouched
    log.append([events.TrainEnd(run="r")])
    with pytest.raises(EventLogError, match="is not an event log"):
        log.flush()
    assert text.read_text() == "hello, this is not an event log\n"


def test_a_record_that_is_not_an_event_is_an_error_with_its_offset(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    payload = msgspec.msgpack.encode({"kind": "no_such_event"})
    good = msgspec.msgpack.encode(events.TrainEnd(run="r"))
    path.write_bytes(
        MAGIC
        + struct.pack("<I", 1)
        + struct.pack("<II", len(payload), zlib.crc32(payload))
        + payload
        + struct.pack("<II", len(good), zlib.crc32(good))
        + good
    )
    with pytest.raises(EventLogError, match=r"record does not decode as an event: .* \(at byte 12\)$"):
        list(EventLog.read(path))


def test_old_logs_stay_readable_when_events_gain_fields(tmp_path: Path) -> None:
    """A record written before EpochEnd had learning_rate and metric_directions."""
    path = tmp_path / "old.log"
    payload = msgspec.msgpack.encode(
        {"kind": "epoch_end", "run": "r", "seq": 3, "time": 1.0, "epoch": 0, "logs": {"loss": 1.0}}
    )
    path.write_bytes(MAGIC + struct.pack("<I", 1) + struct.pack("<II", len(payload), zlib.crc32(payload)) + payload)
    (event,) = EventLog.read(path)
    assert event == events.EpochEnd(run="r", seq=3, time=1.0, epoch=0, logs={"loss": 1.0})


def test_on_the_bus_the_log_records_every_event_and_closes_with_it(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    recorder = Recorder(lossless=True)
    log = EventLog(path, flush_interval=3600)
    with EventBus() as bus:
        bus.subscribe(log)
        bus.subscribe(recorder)
        for i in range(2000):
            bus.publish_nowait(events.TrainBatchEnd(run="r", batch=i, logs={"loss": float(i)}))
        bus.publish_nowait(events.EpochEnd(run="r", epoch=0))
        bus.publish_nowait(events.TrainBatchEnd(run="r", batch=0))  # after the last epoch end: flushed at close
    assert same(list(EventLog.read(path)), recorder.events)
    assert log.written == 2002
