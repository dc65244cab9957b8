"""File sinks: JSON Lines round trips (non-finite floats included), and CSV
files equal, byte for byte, to what Keras's own CSVLogger writes in the same fit."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import keras
import msgspec
import numpy as np
import pytest
from kerasfit import regression_data, regression_model

from eventbus import EventBus, commands, events
from eventbus.adapters.files import (
    NONFINITE,
    CsvLogger,
    JsonLinesError,
    JsonLinesSink,
    JsonLinesWarning,
    decode_event,
    encode_event,
)
from eventbus.adapters.keras import KerasBridge
from eventbus.testing import Recorder

NAN, INF = math.nan, math.inf


def same(a: Sequence[events.Event], b: Sequence[events.Event]) -> bool:
    """Equal event for event, type for type, float for float (by repr: -0.0 is not 0.0,
    and NaN is NaN; a NaN's sign bit, which Keras's NaNs have, is not compared)."""
    return [type(e) for e in a] == [type(e) for e in b] and [exact(e) for e in a] == [exact(e) for e in b]


def exact(node: Any) -> Any:
    if isinstance(node, msgspec.Struct):
        node = msgspec.to_builtins(node)
    if isinstance(node, dict):
        return [(key, exact(value)) for key, value in node.items()]
    if isinstance(node, list):
        return [exact(value) for value in node]
    return (type(node).__name__, repr(node))


def every_kind() -> list[events.Event]:
    """One or more events of every kind, with non-finite floats wherever a float goes,
    and strings that look like them where a string goes."""
    logs = {"loss": NAN, "mae": INF, "val_loss": -INF, "acc": 0.5, "$nonfinite": NAN, "null": 1.0}
    stop = commands.StopTraining(reason="NaN")
    stream: list[events.Event] = [
        events.TrainBegin(
            run="NaN",
            params={"epochs": 2, "steps": None, "rate": NAN, "big": INF, "name": "NaN", "other": "-Infinity"},
            learning_rate=INF,
            metric_directions={"loss": "down"},
        ),
        events.EpochBegin(run="r", epoch=0, learning_rate=-INF),
        events.TrainBatchBegin(run="r", batch=0),
        events.TrainBatchEnd(run="r", batch=0, logs=logs),
        events.TestBegin(run="r", validation=True),
        events.TestBatchBegin(run="r", batch=0, validation=True),
        events.TestBatchEnd(run="r", batch=0, logs={"loss": -INF}, validation=True),
        events.TestEnd(run="r", logs={"loss": NAN}, validation=True),
        events.EpochEnd(run="r", epoch=0, logs=logs, learning_rate=NAN, metric_directions={"acc": "up"}),
        events.CommandIssued(run="r", command=stop, subscriber="Infinity", cause=8),
        events.CommandApplied(run="r", command=stop, issued=9),
        events.CommandIssued(run="r", command=commands.SetLearningRate(learning_rate=NAN), subscriber="s", cause=8),
        events.CommandRejected(run="r", command=commands.SetLearningRate(learning_rate=-INF), reason="NaN", issued=11),
        events.CommandApplied(run="r", command=commands.SnapshotWeights(tag="null"), issued=3),
        events.CommandApplied(run="r", command=commands.RestoreWeights(tag="null"), issued=4),
        events.CommandIssued(run="r", command=commands.FailTraining(message="$nonfinite"), subscriber="s", cause=1),
        events.SubscriberFailed(run="r", subscriber="s", cause=3, error="ValueError: NaN", traceback="..."),
        events.EventsDropped(run="r", subscriber="s", count=3, total=7),
        events.BarrierTimedOut(run="r", cause=8, subscribers=["a", "NaN"], timeout=INF),
        events.TrainEnd(run="r", logs={"loss": NAN}),
        events.TestBegin(run="e"),
        events.TestBatchBegin(run="e", batch=0),
        events.TestBatchEnd(run="e", batch=0, logs={"loss": 1.0}),
        events.TestEnd(run="e", logs={"loss": 1.0}),
        events.PredictBegin(run="p"),
        events.PredictBatchBegin(run="p", batch=0),
        events.PredictBatchEnd(run="p", batch=0, output_size=3, outputs=[[NAN, 1.0], [INF, -INF], ["NaN", None]]),
        events.PredictBatchEnd(run="p", batch=1, output_size=2),
        events.PredictEnd(run="p"),
        events.EpochEnd(run="r", epoch=1, logs={"loss": 0.25}, learning_rate=0.01),  # all finite
    ]
    stream = [msgspec.structs.replace(e, seq=i, time=1.0 + i) for i, e in enumerate(stream)]
    return [*stream, events.TrainEnd(run="r", seq=len(stream), time=NAN)]


def write_lines(path: Path, stream: Sequence[events.Event], **options: Any) -> JsonLinesSink:
    sink = JsonLinesSink(path, **options)
    sink.append(stream)
    sink.close()
    return sink


def no_constants(name: str) -> Any:
    raise AssertionError(f"not standard JSON: {name}")


# --- JSON Lines: the encoding --------------------------------------------------


def test_every_event_kind_round_trips_with_non_finite_values(tmp_path: Path) -> None:
    stream = every_kind()
    assert {type(e) for e in stream} == {*events.KERAS_EVENTS, *events.BUS_EVENTS}
    path = tmp_path / "run.jsonl"
    write_lines(path, stream)
    back = list(JsonLinesSink.read(path))
    assert same(back, stream)
    lines = path.read_bytes().splitlines()
    assert len(lines) == len(stream)
    for line, event in zip(lines, stream, strict=True):
        parsed = json.loads(line, parse_constant=no_constants)  # standard JSON: no bare NaN
        assert parsed["kind"] == event.kind


def test_real_strings_that_look_like_non_finite_floats_stay_strings(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write_lines(path, every_kind())
    train_begin, *_ = JsonLinesSink.read(path)
    assert isinstance(train_begin, events.TrainBegin)
    assert train_begin.run == "NaN"
    params = train_begin.params
    assert params["name"] == "NaN" and params["other"] == "-Infinity" and params["steps"] is None
    assert isinstance(params["rate"], float) and math.isnan(params["rate"])
    assert params["big"] == INF and train_begin.learning_rate == INF
    (outputs,) = [e for e in JsonLinesSink.read(path) if isinstance(e, events.PredictBatchEnd) and e.outputs]
    rows = outputs.outputs
    assert rows is not None and math.isnan(rows[0][0]) and rows[1] == [INF, -INF] and rows[2] == ["NaN", None]  # type: ignore[index]


def test_non_finite_floats_are_written_in_place_as_strings_and_listed() -> None:
    event = events.EpochEnd(run="r", epoch=0, logs={"a": 1.0, "loss": NAN, "z": -INF}, learning_rate=INF)
    line = encode_event(event)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    parsed = json.loads(line)
    assert parsed["logs"] == {"a": 1.0, "loss": "NaN", "z": "-Infinity"}
    assert parsed["learning_rate"] == "Infinity"
    assert parsed[NONFINITE] == [["logs", "loss"], ["logs", "z"], ["learning_rate"]]
    assert list(parsed)[-1] == NONFINITE
    assert same([decode_event(line)], [event])


@pytest.mark.parametrize(
    "event",
    [
        events.TrainBatchEnd(run="r", seq=4, time=1.5, batch=2, logs={"loss": 0.5, "mae": 1e-300}),
        events.TrainBegin(run="r", params={"epochs": 2, "steps": None}),  # has null, but no non-finite float
        events.PredictBatchEnd(run="p", batch=0, output_size=3),
        events.CommandIssued(run="r", command=commands.StopTraining(), subscriber="s", cause=1),
    ],
    ids=lambda e: e.kind,
)
def test_finite_events_are_plain_msgspec_json(event: events.Event) -> None:
    assert encode_event(event) == msgspec.json.encode(event) + b"\n"
    sink = JsonLinesSink("unused.jsonl")
    sink.append([event, event])
    assert bytes(sink._buffer) == (msgspec.json.encode(event) + b"\n") * 2
    assert decode_event(encode_event(event)) == event


def test_a_batch_mixing_finite_and_non_finite_events_encodes_each_right() -> None:
    stream = every_kind()
    sink = JsonLinesSink("unused.jsonl")
    sink.append(stream)
    assert bytes(sink._buffer) == b"".join(encode_event(e) for e in stream)
    assert sink.written == len(stream)
    assert same([decode_event(line) for line in bytes(sink._buffer).splitlines()], stream)


def test_a_damaged_non_finite_list_is_an_error() -> None:
    line = encode_event(events.TrainEnd(run="r", logs={"loss": NAN}))
    with pytest.raises(msgspec.ValidationError, match="leads to no non-finite float"):
        decode_event(line.replace(b'["logs","loss"]', b'["logs","lost"]'))
    with pytest.raises(msgspec.ValidationError, match="leads to no non-finite float"):
        decode_event(line.replace(b'"loss":"NaN"', b'"loss":"nan"'))
    with pytest.raises(msgspec.ValidationError, match="Expected `float`, got `str`"):
        decode_event(line.replace(b',"' + NONFINITE.encode() + b'":[["logs","loss"]]', b""))


# --- JSON Lines: the file ------------------------------------------------------


async def test_flushes_at_epoch_end_train_end_on_interval_and_at_close(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    sink = JsonLinesSink(path, flush_interval=3600)

    def lines() -> int:
        return len(path.read_bytes().splitlines()) if path.exists() else 0

    await sink([events.TrainBegin(run="r"), events.TrainBatchEnd(run="r", batch=0)])
    assert lines() == 0
    await sink([events.TrainBatchEnd(run="r", batch=1), events.EpochEnd(run="r", epoch=0)])
    assert lines() == 4
    await sink([events.TrainBatchEnd(run="r", batch=0)])
    assert lines() == 4
    await sink([events.TrainEnd(run="r")])
    assert lines() == 6
    await sink([events.PredictBegin(run="p")])
    assert lines() == 6
    await sink.aclose()
    assert lines() == 7

    timed = JsonLinesSink(tmp_path / "timed.jsonl", flush_interval=0.05)
    await timed([events.TrainBatchEnd(run="r", batch=0)])
    assert not timed.path.exists()
    await anyio.sleep(0.06)
    await timed([events.TrainBatchEnd(run="r", batch=1)])
    assert len(timed.path.read_bytes().splitlines()) == 2
    timed.close()


def test_only_the_kinds_asked_for_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "epochs.jsonl"
    with EventBus() as bus:
        bus.subscribe(JsonLinesSink(path, kinds=[events.EpochEnd, "train_end"]))
        for event in every_kind():
            bus.publish_nowait(event)
    back = list(JsonLinesSink.read(path))
    assert [e.kind for e in back] == ["epoch_end", "train_end", "epoch_end", "train_end"]
    with pytest.raises(ValueError, match="unknown event kind 'epoch'"):
        JsonLinesSink(path, kinds="epoch")
    with pytest.raises(ValueError, match="flush_interval must be > 0"):
        JsonLinesSink(path, flush_interval=0)


def test_appending_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    stream = every_kind()
    write_lines(path, stream[:5])
    write_lines(path, stream[5:])
    assert same(list(JsonLinesSink.read(path)), stream)


def test_a_last_line_cut_short_is_left_out_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    stream = every_kind()
    write_lines(path, stream)
    data = path.read_bytes()
    last = len(encode_event(stream[-1]))
    for cut in (1, last // 2, last - 2):
        path.write_bytes(data[: len(data) - last + cut])
        with pytest.warns(JsonLinesWarning, match=rf"line {len(stream)} was cut short \({cut} bytes, no newline\)"):
            assert same(list(JsonLinesSink.read(path)), stream[:-1])
    path.write_bytes(data[:-1])  # only the newline is missing: the event is whole
    assert same(list(JsonLinesSink.read(path)), stream)


def test_appending_after_a_cut_short_line_cuts_it_off(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    stream = every_kind()
    write_lines(path, stream[:5])
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.warns(JsonLinesWarning, match="last line was cut short"):
        write_lines(path, stream[4:])
    assert same(list(JsonLinesSink.read(path)), stream)

    write_lines(path, stream[:5])  # a whole event missing only its newline gets it
    path.write_bytes(path.read_bytes()[:-1])
    write_lines(path, stream[5:])
    assert same(list(JsonLinesSink.read(path)), [*stream, *stream])


def test_a_file_that_is_not_an_event_log_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("line one\nno newline at the end")
    sink = JsonLinesSink(path)
    sink.append(every_kind()[:1])
    with pytest.raises(JsonLinesError, match="not a JSON Lines event log"):
        sink.flush()
    assert path.read_text() == "line one\nno newline at the end"
    path.write_text("line one\n")
    with pytest.raises(JsonLinesError, match=r"notes\.txt: line 1 is not an event: JSON is malformed"):
        list(JsonLinesSink.read(path))


def test_a_bad_line_before_the_last_is_an_error_with_its_number(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    stream = every_kind()
    write_lines(path, stream)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[3] = b'{"kind":"no_such_event"}\n'
    lines.insert(1, b"\n")  # blank lines are skipped, but counted
    path.write_bytes(b"".join(lines))
    with pytest.raises(JsonLinesError, match=r"line 5 is not an event: .*no_such_event") as caught:
        list(JsonLinesSink.read(path))
    assert caught.value.line == 5


def test_the_module_imports_neither_keras_nor_tensorflow() -> None:
    code = "import sys, eventbus.adapters.files; assert not {'keras', 'tensorflow'} & set(sys.modules), sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- JSON Lines: on a live bus ----------------------------------------------------


def test_on_a_live_bus_the_file_equals_what_a_recorder_saw(tmp_path: Path) -> None:
    """A fit that goes to NaN and is stopped by a command, an evaluate, a predict of
    NaN outputs: the file holds exactly the events a recorder received."""
    path = tmp_path / "run.jsonl"
    x, y = regression_data(96)
    y[:32] = np.inf
    recorder = Recorder(lossless=True)
    sink = JsonLinesSink(path, flush_interval=3600)

    async def stop_on_nan(event: events.EpochEnd) -> commands.StopTraining | None:
        return None if math.isfinite(event.logs["loss"]) else commands.StopTraining(reason="NaN loss")

    model = regression_model()
    with EventBus() as bus:
        bus.subscribe(sink)
        bus.subscribe(recorder)
        bus.subscribe(stop_on_nan, kinds=[events.EpochEnd], control=True)
        bridge = KerasBridge(bus, predict_outputs=True)
        history = model.fit(x, y, epochs=5, batch_size=32, validation_split=0.25, verbose=0, callbacks=[bridge])
        model.evaluate(x, y, batch_size=48, verbose=0, callbacks=[bridge])
        model.predict(x[:40], batch_size=32, verbose=0, callbacks=[bridge])
    assert len(history.history["loss"]) == 1  # stopped by the command
    back = list(JsonLinesSink.read(path))
    assert same(back, recorder.events)
    assert sink.written == len(recorder.events) == bus.statistics().published
    kinds = {e.kind for e in back}
    assert {"command_issued", "command_applied", "train_batch_end", "test_end", "predict_batch_end"} <= kinds
    (applied,) = [e for e in back if isinstance(e, events.CommandApplied)]
    assert applied.command == commands.StopTraining(reason="NaN loss")
    (epoch_end,) = [e for e in back if isinstance(e, events.EpochEnd)]
    assert not math.isfinite(epoch_end.logs["loss"])
    outputs = [row for e in back if isinstance(e, events.PredictBatchEnd) for row in e.outputs or []]
    assert len(outputs) == 40 and all(math.isnan(row[0]) for row in outputs)  # type: ignore[index]
    assert NONFINITE.encode() in path.read_bytes()


# --- CSV -------------------------------------------------------------------------


def fit_both(
    data: tuple[np.ndarray, np.ndarray],
    ours: CsvLogger,
    theirs: keras.callbacks.CSVLogger,
    *,
    keras_first: bool,
    **fit: Any,
) -> dict[str, list[float]]:
    """One fit with both loggers: Keras's in the callbacks list, ours on the bus."""
    with EventBus() as bus:
        bus.subscribe(ours)
        bridge = KerasBridge(bus)
        # Neither callback changes the logs it is handed, so the order cannot change what
        # either writes; both orders are run to show it. (A callback that adds to the logs,
        # like ReduceLROnPlateau's "learning_rate", would make the order matter: the bridge
        # copies the logs at its own hook, so Keras's logger would have to precede it.)
        callbacks = [theirs, bridge] if keras_first else [bridge, theirs]
        history = regression_model().fit(*data, batch_size=32, verbose=0, shuffle=False, callbacks=callbacks, **fit)
    return dict(history.history)


@pytest.mark.parametrize("keras_first", [True, False], ids=["keras-first", "bridge-first"])
def test_csv_equals_keras_csv_logger_byte_for_byte(tmp_path: Path, keras_first: bool) -> None:
    ours, theirs = tmp_path / "ours.csv", tmp_path / "keras.csv"
    history = fit_both(
        regression_data(96),
        CsvLogger(ours),
        keras.callbacks.CSVLogger(str(theirs)),
        keras_first=keras_first,
        epochs=3,
        validation_split=0.25,
    )
    assert ours.read_bytes() == theirs.read_bytes()
    with ours.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["epoch", "loss", "mean_absolute_error", "val_loss", "val_mean_absolute_error"]
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert [float(r["val_loss"]) for r in rows] == history["val_loss"]  # repr: exact
    assert ours.read_bytes().count(b"\r\n") == 4


def test_csv_without_validation_has_na_val_columns_like_keras(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours.csv", tmp_path / "keras.csv"
    fit_both(regression_data(64), CsvLogger(ours), keras.callbacks.CSVLogger(theirs), keras_first=True, epochs=2)
    assert ours.read_bytes() == theirs.read_bytes()
    assert ours.read_text().splitlines()[1].endswith(",NA,NA")


def test_csv_append_continues_a_file_like_keras(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours.csv", tmp_path / "keras.csv"
    data = regression_data(64)
    fit_both(data, CsvLogger(ours), keras.callbacks.CSVLogger(theirs), keras_first=True, epochs=2)
    first = ours.read_bytes()
    fit_both(
        data,
        CsvLogger(ours, append=True),
        keras.callbacks.CSVLogger(theirs, append=True),
        keras_first=True,
        epochs=2,
        validation_split=0.5,  # now the val_ columns, NA before, get values
    )
    assert ours.read_bytes() == theirs.read_bytes()
    assert ours.read_bytes().startswith(first) and len(ours.read_bytes()) > len(first)
    lines = ours.read_text().splitlines()
    assert len(lines) == 5 and lines[0].startswith("epoch,") and lines[3].startswith("0,")
    assert sum(line.startswith("epoch") for line in lines) == 1

    fit_both(data, CsvLogger(ours), keras.callbacks.CSVLogger(theirs), keras_first=True, epochs=1)
    assert ours.read_bytes() == theirs.read_bytes()
    assert len(ours.read_text().splitlines()) == 2  # append=False starts over


def drive_keras(path: Path, stream: Sequence[events.Event], **options: Any) -> None:
    """Call Keras's CSVLogger's hooks with the events' logs, as fit would."""
    logger = keras.callbacks.CSVLogger(str(path), **options)
    for event in stream:
        if isinstance(event, events.TrainBegin):
            logger.on_train_begin(dict(event.logs))
        elif isinstance(event, events.EpochEnd):
            logger.on_epoch_end(event.epoch, dict(event.logs))
        elif isinstance(event, events.TrainEnd):
            logger.on_train_end(dict(event.logs))


def drive_ours(path: Path, stream: Sequence[events.Event], **options: Any) -> CsvLogger:
    logger = CsvLogger(path, **options)

    async def feed() -> None:
        for event in stream:
            if type(event) in logger.kinds:
                await logger(event)

    anyio.run(feed)
    return logger


def epochs(*logs: dict[str, float], run: str = "r") -> list[events.Event]:
    return [
        events.TrainBegin(run=run),
        *(events.EpochEnd(run=run, epoch=i, logs=epoch_logs) for i, epoch_logs in enumerate(logs)),
        events.TrainEnd(run=run),
    ]


@pytest.mark.parametrize("separator", [",", ";", "\t"])
def test_non_finite_metrics_in_csv_are_keras_bytes_and_read_back(tmp_path: Path, separator: str) -> None:
    stream = epochs(
        {"loss": NAN, "acc": 0.1, "val_loss": INF, "val_acc": -INF},
        {"loss": 1e-300, "acc": 1 / 3, "val_loss": -0.0, "val_acc": 12345678.9},
        {"loss": 0.5, "val_loss": 0.25},  # missing keys: NA
    )
    ours, theirs = tmp_path / "ours.csv", tmp_path / "keras.csv"
    drive_ours(ours, stream, separator=separator)
    drive_keras(theirs, stream, separator=separator)
    assert ours.read_bytes() == theirs.read_bytes()
    with ours.open(newline="") as file:
        rows = list(csv.DictReader(file, delimiter=separator))
    assert list(rows[0]) == ["epoch", "acc", "loss", "val_acc", "val_loss"]
    first = {key: float(value) for key, value in rows[0].items()}
    assert math.isnan(first["loss"]) and first["val_loss"] == INF and first["val_acc"] == -INF
    for row, event in zip(rows, stream[1:4], strict=True):
        assert isinstance(event, events.EpochEnd) and int(row.pop("epoch")) == event.epoch
        read_back = {key: float(value) for key, value in row.items() if value != "NA"}
        assert msgspec.json.encode(read_back, order="sorted") == msgspec.json.encode(event.logs, order="sorted")
        assert [math.isnan(v) for v in read_back.values()] == [math.isnan(event.logs[k]) for k in read_back]
    assert rows[2]["acc"] == rows[2]["val_acc"] == "NA"


def test_nan_and_inf_from_a_real_fit_in_csv(tmp_path: Path) -> None:
    x, y = regression_data(64)
    y[:32] = np.inf
    ours, theirs = tmp_path / "ours.csv", tmp_path / "keras.csv"
    fit_both((x, y), CsvLogger(ours), keras.callbacks.CSVLogger(theirs), keras_first=False, epochs=2)
    assert ours.read_bytes() == theirs.read_bytes()
    with ours.open(newline="") as file:
        losses = [float(row["loss"]) for row in csv.DictReader(file)]
    assert len(losses) == 2 and all(math.isnan(v) or math.isinf(v) for v in losses)


@pytest.mark.parametrize("existing", [None, "", "epoch,loss\r\n0,1.0\r\n"], ids=["absent", "empty", "with-rows"])
def test_csv_append_writes_a_header_only_to_a_file_without_one(tmp_path: Path, existing: str | None) -> None:
    ours, theirs = tmp_path / "ours.csv", tmp_path / "keras.csv"
    for path in (ours, theirs):
        if existing is not None:
            path.write_bytes(existing.encode())
    stream = epochs({"loss": 0.5}, {"loss": NAN})
    drive_ours(ours, stream, append=True)
    drive_keras(theirs, stream, append=True)
    assert ours.read_bytes() == theirs.read_bytes()
    assert ours.read_text().count("epoch,") == 1


def test_csv_logs_the_latest_fit_and_ignores_other_runs(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours.csv", tmp_path / "keras.csv"
    first, second = epochs({"loss": 1.0}, {"loss": 1.5}, run="a"), epochs({"loss": 2.0}, {"loss": 3.0}, run="b")
    interleaved = [first[0], first[1], second[0], first[2], second[1], first[3], second[2], second[3]]
    logger = drive_ours(ours, interleaved)
    drive_keras(theirs, second)
    assert ours.read_bytes() == theirs.read_bytes()
    assert logger.run == "b"

    late = tmp_path / "late.csv"  # subscribed mid-fit: starts at the next epoch end
    drive_ours(late, second[1:])
    drive_keras(theirs, second)
    assert late.read_bytes() == theirs.read_bytes()


async def test_the_bus_closes_the_csv_file_of_a_fit_that_never_ended(tmp_path: Path) -> None:
    path = tmp_path / "ours.csv"
    logger = CsvLogger(path)
    async with EventBus() as bus:
        bus.subscribe(logger)
        await bus.publish(events.TrainBegin(run="r"))
        await bus.publish(events.EpochEnd(run="r", epoch=0, logs={"loss": 1.0}))
    assert logger._file is None
    assert path.read_bytes() == b"epoch,loss,val_loss\r\n0,1.0,NA\r\n"
