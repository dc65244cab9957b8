"""The reader, fuzzed: random and mutated inputs either read, or fail with
EventLogError; nothing hangs, and no length field makes it allocate."""

from __future__ import annotations

import struct
import tracemalloc
import warnings
from pathlib import Path

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventbus import events
from eventbus.log import MAGIC, EventLog, EventLogError, EventLogWarning


def valid_log() -> bytes:
    log_events = [events.TrainBatchEnd(run="r", seq=i, batch=i, logs={"loss": i / 3}) for i in range(5)]
    import zlib

    out = bytearray(MAGIC + struct.pack("<I", 1))
    for event in log_events:
        payload = msgspec.msgpack.encode(event)
        out += struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    return bytes(out)


VALID = valid_log()


def read_all(data: bytes) -> None:
    reader = EventLog.read(Path("fuzz.log"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EventLogWarning)
        try:
            for event in reader.parse(data):
                assert isinstance(event, events.Event)
        except EventLogError:
            pass


@settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_random_bytes(data: bytes) -> None:
    read_all(data)
    read_all(MAGIC + struct.pack("<I", 1) + data)


@settings(max_examples=300, deadline=1000)
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_logs(edits: list[tuple[int, int]]) -> None:
    data = bytearray(VALID)
    for position, value in edits:
        data[position] = value
    read_all(bytes(data))


@settings(max_examples=100, deadline=1000)
@given(st.integers(0, len(VALID)))
def test_truncated_logs(cut: int) -> None:
    read_all(VALID[:cut])


def test_a_huge_length_field_allocates_nothing(tmp_path: Path) -> None:
    data = MAGIC + struct.pack("<I", 1) + struct.pack("<II", 0xFFFFFFF0, 0) + b"x" * 100
    path = tmp_path / "huge.log"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EventLogWarning)
            assert list(EventLog.read(path)) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(data) + 64 * 1024
