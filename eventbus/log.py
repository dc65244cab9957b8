"""The event log: an append-only, checksummed, binary record of a run.

Format (all integers little-endian)::

    header   8 bytes  magic b"\\x89EVLOG\\r\\n" (a text-mode copy or a non-log file fails here)
             4 bytes  format version (u32)
    record   4 bytes  payload length (u32)
             4 bytes  CRC-32 of the payload (u32)
             n bytes  payload: one event, msgpack-encoded (the ``kind`` tag included)

A process killed mid-write leaves a *torn tail*: a last record whose length
runs past the end of the file, or whose checksum fails with nothing after it.
The reader reports it (:class:`TornTail`, and an :class:`EventLogWarning`)
and returns every record before it; it never returns torn bytes as data.
Anything else that is wrong (not a log, a newer format, a bad record with
records after it) raises :class:`EventLogError` with the byte offset.
"""

from __future__ import annotations

import os
import struct
import time
import warnings
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import msgspec

from .events import AnyEvent, Event
from .exceptions import EventBusError
from .sink import BufferedFileSink

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "EventLog",
    "EventLogError",
    "EventLogReader",
    "EventLogWarning",
    "TornTail",
]

MAGIC = b"\x89EVLOG\r\n"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sI")
_RECORD = struct.Struct("<II")
MAX_RECORD = 64 * 1024 * 1024
"""No event comes near this; a larger length is corruption, not data."""


class EventLogError(EventBusError):
    """The file is not an event log, is of a newer format, or is corrupt."""

    def __init__(self, message: str, *, offset: int) -> None:
        super().__init__(f"{message} (at byte {offset})")
        self.offset = offset


class EventLogWarning(UserWarning):
    """A log ended in a torn record (the writer died mid-write); it was cut."""


class TornTail(msgspec.Struct, frozen=True):
    """Where the readable part of a log ends, and how many bytes after it were cut."""

    offset: int
    length: int
    reason: str


class EventLog(BufferedFileSink):
    """A subscriber that appends every event and command to ``path``.

    Lossless and batched: the bus hands it every queued event at once; it
    encodes them into one buffer and writes it at each epoch end, at the end
    of training, every ``flush_interval`` seconds while events flow, and when
    the bus closes. ``fsync=True`` also asks the OS to put each write on disk.

    An existing log is appended to (its header is checked first).
    """

    def __init__(self, path: str | os.PathLike[str], *, flush_interval: float = 1.0, fsync: bool = False) -> None:
        super().__init__(path, flush_interval=flush_interval, fsync=fsync)
        self._encoder = msgspec.msgpack.Encoder()

    def append(self, events: Sequence[Event]) -> None:
        """Encode ``events`` into the write buffer (no I/O)."""
        buffer = self._buffer
        encode = self._encoder.encode
        pack = _RECORD.pack
        crc32 = zlib.crc32
        for event in events:
            payload = encode(event)
            buffer += pack(len(payload), crc32(payload))
            buffer += payload
        self.written += len(events)

    def _open(self) -> BinaryIO:
        if self._file is None:
            exists = self.path.exists() and self.path.stat().st_size > 0
            if exists:
                with open(self.path, "rb") as existing:
                    _check_header(existing.read(_HEADER.size), self.path)
            file = super()._open()
            if not exists:
                file.write(_HEADER.pack(MAGIC, FORMAT_VERSION))
        return super()._open()

    @staticmethod
    def read(path: str | os.PathLike[str]) -> EventLogReader:
        """The events of the log at ``path``, in order, as typed structs."""
        return EventLogReader(path)


class EventLogReader:
    """Iterate a log's events. After iterating, ``torn`` tells whether the log
    ended in a torn record (reported once, as an :class:`EventLogWarning`)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.torn: TornTail | None = None
        self._decoder = msgspec.msgpack.Decoder(AnyEvent)

    def __iter__(self) -> Iterator[Event]:
        with open(self.path, "rb") as file:
            data = file.read()  # the file's size, and nothing more, is ever allocated
        yield from self.parse(data)

    def parse(self, data: bytes) -> Iterator[Event]:
        """The events in ``data``, the bytes of a whole log."""
        view = memoryview(data)
        size = len(data)
        _check_header(bytes(view[: _HEADER.size]), self.path)
        offset = _HEADER.size
        decode = self._decoder.decode
        unpack_from = _RECORD.unpack_from
        crc32 = zlib.crc32
        while offset < size:
            if size - offset < _RECORD.size:
                self._cut(offset, size - offset, "a record header cut short")
                return
            length, checksum = unpack_from(data, offset)
            start = offset + _RECORD.size
            end = start + length
            if length > MAX_RECORD:
                if end > size:
                    self._cut(offset, size - offset, "a record length past the end of the file")
                    return
                raise EventLogError(f"{self.path}: record length {length} is beyond any event", offset=offset)
            if end > size:
                self._cut(offset, size - offset, f"a record of {length} bytes with {size - start} written")
                return
            payload = view[start:end]
            if crc32(payload) != checksum:
                if end == size:
                    self._cut(offset, size - offset, "the last record's checksum does not match")
                    return
                raise EventLogError(f"{self.path}: record checksum does not match", offset=offset)
            try:
                event = decode(payload)
            except msgspec.DecodeError as exc:
                raise EventLogError(f"{self.path}: record does not decode as an event: {exc}", offset=offset) from exc
            yield event
            offset = end

    def follow(self, poll_interval: float = 0.25) -> Iterator[Event]:
        """The log's events, then each one as it is appended, for ever (``tail -f``).

        A record still being written is waited for, not reported as torn.
        """
        decode = self._decoder.decode
        with open(self.path, "rb") as file:
            pending = b""
            while len(pending) < _HEADER.size:
                pending += file.read(_HEADER.size - len(pending)) or _wait(poll_interval)
            _check_header(pending, self.path)
            position, pending = _HEADER.size, b""
            while True:
                chunk = file.read()
                if not chunk:
                    time.sleep(poll_interval)
                    continue
                pending += chunk
                used = 0
                while len(pending) - used >= _RECORD.size:
                    length, checksum = _RECORD.unpack_from(pending, used)
                    end = used + _RECORD.size + length
                    if length > MAX_RECORD:
                        raise EventLogError(f"{self.path}: record length {length} is beyond any event", offset=position)
                    if end > len(pending):
                        break  # still being written
                    payload = pending[used + _RECORD.size : end]
                    if zlib.crc32(payload) != checksum:
                        raise EventLogError(f"{self.path}: record checksum does not match", offset=position)
                    try:
                        yield decode(payload)
                    except msgspec.DecodeError as exc:
                        raise EventLogError(
                            f"{self.path}: record does not decode as an event: {exc}", offset=position
                        ) from exc
                    position += end - used
                    used = end
                pending = pending[used:]

    def _cut(self, offset: int, length: int, reason: str) -> None:
        self.torn = TornTail(offset=offset, length=length, reason=reason)
        warnings.warn(
            f"{self.path}: torn tail at byte {offset}: {reason}; {length} bytes ignored "
            "(the writer stopped mid-write; every record before it was read)",
            EventLogWarning,
            stacklevel=3,
        )


def _wait(seconds: float) -> bytes:
    time.sleep(seconds)
    return b""


def _check_header(header: bytes, path: Path) -> None:
    if len(header) < _HEADER.size or header[:8] != MAGIC:
        raise EventLogError(f"{path} is not an event log (no event-log header)", offset=0)
    (_, version) = _HEADER.unpack(header[: _HEADER.size])
    if version > FORMAT_VERSION:
        raise EventLogError(
            f"{path} is an event log of format {version}; this keras-eventbus reads up to "
            f"format {FORMAT_VERSION}: upgrade keras-eventbus to read it",
            offset=8,
        )
