"""File sinks: every event as a line of JSON, and epoch metrics as Keras's CSV.

Neither sink imports Keras or TensorFlow.

:class:`JsonLinesSink` writes one JSON object per event per line (UTF-8,
``\\n``-terminated), the event's ``kind`` tag included, so any JSON Lines
tool can read a run, and :meth:`JsonLinesSink.read` reads it back as the
same typed, frozen structs.

Non-finite floats. JSON has no NaN or infinity, and ``msgspec`` writes them
as ``null``, which would lose them (a NaN loss is exactly what a log must
keep). A line holding one writes it, in place, as one of the strings
``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` (the convention of protobuf's
JSON mapping, readable by eye and by ``jq``), and lists where it did so in one
extra member, last in the object::

    {"kind":"epoch_end", ..., "logs":{"loss":"NaN","val_loss":1.5}, ..., "$nonfinite":[["logs","loss"]]}

Each path is the keys and list indices leading to a non-finite value. The
list makes the encoding exact everywhere: a real string ``"NaN"`` (a run
name, a stop reason, a ``params`` value, a prediction in ``outputs``) is never
mistaken for a float, because only listed positions are turned back into
floats. ``$nonfinite`` is no field name an event can have. A NaN reads back
as ``float("nan")``: its sign bit and payload, which carry no meaning, are not
kept (the binary :class:`~eventbus.log.EventLog` keeps them).

Lines whose floats are all finite are exactly ``msgspec.json.encode(event)``:
the common case pays for no transform, only for one scan of the encoded batch
for ``null``, the token msgspec writes for every non-finite float (an event is
re-encoded only when the scan finds one).

:class:`CsvLogger` writes what ``keras.callbacks.CSVLogger`` writes, byte for
byte, from the bus's epoch events.
"""

from __future__ import annotations

import collections.abc
import csv
import math
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal, TextIO

import msgspec

from eventbus.events import BUS_EVENTS, KERAS_EVENTS, AnyEvent, EpochEnd, Event, TrainBegin, TrainEnd
from eventbus.exceptions import EventBusError
from eventbus.sink import BufferedFileSink
from eventbus.subscriber import Subscriber
from eventbus.subscription import expand_kinds

__all__ = [
    "NONFINITE",
    "CsvLogger",
    "JsonLinesError",
    "JsonLinesSink",
    "JsonLinesWarning",
    "decode_event",
    "encode_event",
    "restore_nonfinite",
]

NONFINITE = "$nonfinite"
"""The member listing where a line's non-finite floats are (as strings)."""

_FROM_STRING = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_MARKER = b'"' + NONFINITE.encode() + b'"'
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(AnyEvent)
_BY_TAG: dict[object, type[Event]] = {cls.__struct_config__.tag: cls for cls in (*KERAS_EVENTS, *BUS_EVENTS)}

StrPath = str | os.PathLike[str]


class JsonLinesError(EventBusError):
    """A line that is not an event, or a file that is not a JSON Lines event log."""

    def __init__(self, message: str, *, line: int) -> None:
        super().__init__(message)
        self.line = line


class JsonLinesWarning(UserWarning):
    """A last line was cut short (its writer stopped mid-write); it was left out."""


# --- encoding ----------------------------------------------------------------


def encode_event(event: Event) -> bytes:
    """One event as one line of JSON (``\\n`` included); non-finite floats kept as the module says."""
    data = _ENCODER.encode(event)
    if b"null" in data:  # a non-finite float, or a plain None: look closer
        data = _with_nonfinite(event) or data
    return data + b"\n"


def _with_nonfinite(event: Event) -> bytes | None:
    """The event re-encoded with its non-finite floats as strings and listed; None if it has none."""
    tree = msgspec.to_builtins(event)
    found: list[list[str | int]] = []
    _mark_nonfinite(tree, (), found)
    if not found:
        return None
    tree[NONFINITE] = found
    return _ENCODER.encode(tree)


def _mark_nonfinite(
    node: dict[str, Any] | list[Any], path: tuple[str | int, ...], found: list[list[str | int]]
) -> None:
    items: Iterable[tuple[Any, Any]] = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        if isinstance(value, float):
            if not math.isfinite(value):
                node[key] = "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
                found.append([*path, key])
        elif isinstance(value, (dict, list)):
            _mark_nonfinite(value, (*path, key), found)


def decode_event(line: bytes) -> Event:
    """The event on one line written by :func:`encode_event`; raises ``msgspec.DecodeError``."""
    if _MARKER not in line:
        return _DECODER.decode(line)
    tree = restore_nonfinite(msgspec.json.decode(line))
    if isinstance(tree, dict):
        cls = _BY_TAG.get(tree.get("kind"))
        if cls is not None:
            return msgspec.convert(tree, cls)
    event: Event = msgspec.convert(tree, AnyEvent)  # raises msgspec's own error
    return event


def restore_nonfinite(tree: Any) -> Any:
    """Decoded JSON (plain objects) with the floats :func:`encode_event` wrote as strings put back, marker gone."""
    if isinstance(tree, dict):
        paths = tree.pop(NONFINITE, None)
        if paths is not None:
            _restore_nonfinite(tree, paths)
    return tree


def _restore_nonfinite(tree: dict[str, Any], paths: object) -> None:
    if not isinstance(paths, list):
        raise msgspec.ValidationError(f"{NONFINITE} must be a list of paths, got {paths!r}")
    for path in paths:
        try:
            node: Any = tree
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = _FROM_STRING[node[path[-1]]]
        except (KeyError, IndexError, TypeError) as exc:
            raise msgspec.ValidationError(f"{NONFINITE} path {path!r} leads to no non-finite float") from exc


# --- the sink ----------------------------------------------------------------


class JsonLinesSink(BufferedFileSink):
    """A subscriber that appends every event (or those of ``kinds``) to ``path`` as JSON Lines.

    Lossless and batched: the bus hands it every queued event at once; it
    encodes them into one buffer and writes it at each epoch end, at the end
    of training, every ``flush_interval`` seconds while events flow, and when
    the bus closes. An existing file is appended to; a last line cut short by a
    writer that was killed is cut off first, so the file stays readable.
    """

    def __init__(
        self,
        path: StrPath,
        *,
        kinds: Iterable[type[Event] | str] | type[Event] | str | None = None,
        flush_interval: float = 1.0,
    ) -> None:
        super().__init__(path, flush_interval=flush_interval)
        self.kinds = expand_kinds(kinds)  # checked now, not at subscribe time

    def append(self, events: Sequence[Event]) -> None:
        """Encode ``events`` into the write buffer (no I/O)."""
        buffer = self._buffer
        start = len(buffer)
        encode_into = _ENCODER.encode_into
        for event in events:
            encode_into(event, buffer, -1)
            buffer += b"\n"
        if buffer.find(b"null", start) >= 0:  # one scan per batch; events are re-encoded only if it finds one
            del buffer[start:]
            for event in events:
                buffer += encode_event(event)
        self.written += len(events)

    def _open(self) -> BinaryIO:
        if self._file is None:
            _end_last_line(self.path)
        return super()._open()

    @staticmethod
    def read(path: StrPath) -> Iterator[Event]:
        """The events of the file at ``path``, in order, as typed structs.

        Blank lines are skipped. A last line cut short (no ``\\n``, and not an
        event) is left out with a :class:`JsonLinesWarning`; any other line that
        is not an event raises :class:`JsonLinesError` with its line number.
        """
        return _read(Path(path))


def _read(path: Path) -> Iterator[Event]:
    with open(path, "rb") as file:
        for number, line in enumerate(file, 1):
            if line.isspace():
                continue
            try:
                event = decode_event(line)
            except msgspec.DecodeError as exc:
                if not line.endswith(b"\n"):
                    warnings.warn(
                        f"{path}: line {number} was cut short ({len(line)} bytes, no newline) and is left out "
                        "(the writer stopped mid-write; every line before it was read)",
                        JsonLinesWarning,
                        stacklevel=2,
                    )
                    return
                raise JsonLinesError(f"{path}: line {number} is not an event: {exc}", line=number) from exc
            yield event


def _end_last_line(path: Path) -> None:
    """Before appending: a last line with no newline would run into the next event.

    An event missing only its newline gets it; a cut-short event line (one that
    starts as every event line does) is cut off, with a warning. Anything else
    means the file is not an event log: it is left untouched, and refused.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    with open(path, "rb+") as file:
        file.seek(size - 1)
        if file.read(1) == b"\n":
            return
        start, end = 0, size
        while end > 0:  # find where the last line starts, reading back in chunks
            begin = max(0, end - 65536)
            file.seek(begin)
            newline = file.read(end - begin).rfind(b"\n")
            if newline >= 0:
                start = begin + newline + 1
                break
            end = begin
        file.seek(start)
        tail = file.read()
        try:
            decode_event(tail)
        except msgspec.DecodeError:
            if not tail.startswith(b'{"kind":'):
                raise JsonLinesError(
                    f"{path} does not end in a newline and its last line is not an event: "
                    "not a JSON Lines event log; not appending to it",
                    line=-1,
                ) from None
            file.truncate(start)
            warnings.warn(
                f"{path}: its last line was cut short ({size - start} bytes, no newline); "
                "cut off before appending (the writer stopped mid-write)",
                JsonLinesWarning,
                stacklevel=2,
            )
        else:
            file.seek(size)
            file.write(b"\n")


# --- CSV ---------------------------------------------------------------------


class CsvLogger(Subscriber):
    """``keras.callbacks.CSVLogger`` on the bus: the same file, byte for byte.

    One row per epoch: ``epoch``, then the epoch's logs by sorted key. If the
    first epoch has no ``val_`` keys, ``val_`` columns are added anyway and
    filled with ``NA``, as Keras does. Floats are written by the csv module as
    ``repr`` writes them, so NaN and infinities come out as ``nan``, ``inf`` and
    ``-inf``, which ``float()`` reads back. The file is opened at train begin
    (``append``: added to, with no second header if it already has a line),
    flushed after every row and closed at train end.

    It logs one ``fit`` at a time: the run of the latest train begin (a train
    begin always starts the file anew, as Keras's does); epoch events of other
    runs are ignored. Subscribed in the middle of a ``fit``, it starts at the
    next epoch end. Unlike Keras's, it writes a header whenever the file it
    appends to does not exist, and local paths only (no ``gs://``).

    Args:
        filename: the CSV file, e.g. ``"run/log.csv"``.
        separator: the one-character field delimiter.
        append: add to an existing file (to continue training) instead of overwriting it.
    """

    lossless = True

    def __init__(self, filename: StrPath, separator: str = ",", append: bool = False) -> None:
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = append
        self.keys: list[str] | None = None
        self.append_header = True
        self.run: str | None = None
        self._file: TextIO | None = None
        self._writer: csv.DictWriter[str] | None = None

    def __repr__(self) -> str:
        return f"<CsvLogger {self.filename!r}>"

    def on_train_begin(self, event: TrainBegin) -> None:
        self._open(event.run)

    def on_epoch_end(self, event: EpochEnd) -> None:
        if self.run is None:
            self._open(event.run)  # subscribed mid-fit
        elif event.run != self.run:
            return
        file = self._file
        if file is None:
            return
        logs = event.logs
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(key.startswith("val_") for key in self.keys):
                self.keys.extend([f"val_{key}" for key in self.keys])
        if self._writer is None:

            class Dialect(csv.excel):
                delimiter = self.separator

            self._writer = csv.DictWriter(file, fieldnames=["epoch", *self.keys], dialect=Dialect)
            if self.append_header:
                self._writer.writeheader()
        row: dict[str, object] = {"epoch": event.epoch}
        row.update((key, _cell(logs.get(key, "NA"))) for key in self.keys)
        self._writer.writerow(row)
        file.flush()

    def on_train_end(self, event: TrainEnd) -> None:
        if event.run == self.run:
            self.close()

    async def aclose(self) -> None:
        """Close the file; the bus calls this when it closes (a ``fit`` that died has no train end)."""
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._writer = None

    def _open(self, run: str) -> None:
        self.close()
        mode: Literal["a", "w"]
        if self.append:
            mode = "a"
            self.append_header = True
            if os.path.exists(self.filename):
                with open(self.filename) as existing:
                    self.append_header = not existing.readline()
        else:
            mode = "w"
            self.append_header = True
        # Text mode with the platform's defaults, as Keras opens it: the same bytes.
        self._file = open(self.filename, mode)  # noqa: SIM115 - kept open across epochs
        self.keys = None
        self.run = run


def _cell(value: object) -> object:
    """Keras's ``handle_value``: strings as they are, 1-D iterables as a quoted list."""
    if isinstance(value, str):
        return value
    if isinstance(value, collections.abc.Iterable) and getattr(value, "ndim", None) != 0:
        return f'"[{", ".join(map(str, value))}]"'
    return value
