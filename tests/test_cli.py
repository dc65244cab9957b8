"""The command line over event logs and event servers: inspect, tail, replay, plot."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from eventbus import EventBus, cli, commands, events
from eventbus.adapters.sockets import SocketServer
from eventbus.log import EventLog


def run_events() -> list[events.Event]:
    stream: list[events.Event] = [events.TrainBegin(run="fit-1", seq=0, params={"epochs": 10})]
    losses = [1.0, 0.8, 0.85, 0.9, 0.95]
    seq = 1
    for epoch, loss in enumerate(losses):
        stream.append(events.TrainBatchEnd(run="fit-1", seq=seq, batch=0, logs={"loss": loss}))
        stream.append(
            events.EpochEnd(
                run="fit-1",
                seq=seq + 1,
                epoch=epoch,
                logs={"loss": loss, "val_acc": 1 - loss},
                metric_directions={"acc": "up"},
            )
        )
        seq += 2
    stream += [
        events.CommandIssued(
            run="fit-1",
            seq=seq,
            command=commands.StopTraining(reason="plateau"),
            subscriber="EarlyStopping",
            cause=seq - 1,
        ),
        events.CommandApplied(run="fit-1", seq=seq + 1, command=commands.StopTraining(reason="plateau"), issued=seq),
        events.EventsDropped(run="fit-1", seq=seq + 2, subscriber="slow", count=3, total=3),
        events.TrainEnd(run="fit-1", seq=seq + 3, logs={"loss": 0.95}),
    ]
    return stream


def write_run(path: Path) -> None:
    log = EventLog(path)
    log.append(run_events())
    log.close()


def test_inspect_tells_what_happened(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.log"
    write_run(path)
    assert cli.main(["inspect", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "fit fit-1",
        "  epochs: 5 of 10",
        "  stopped early by EarlyStopping: plateau",
        "  best loss: 0.8 at epoch 1 (min)",
        "  best val_acc: 0.2 at epoch 1 (max)",
        "  commands applied: 1 x StopTraining",
        "  slow dropped 3 batch events",
    ]


def test_replay_answers_what_if(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.log"
    write_run(path)
    assert cli.main(["replay", str(path), "--early-stopping", "patience=2", "monitor=loss"]) == 0
    out = capsys.readouterr().out
    assert "fit-1: would have stopped at epoch 3 (Keras prints: Epoch 4: early stopping)" in out
    assert "EarlyStopping: best epoch 1 (loss = 0.8)" in out
    assert cli.main(["replay", str(path), "--early-stopping", "patience=9", "monitor=loss"]) == 0
    assert "would not have stopped within the recorded epochs" in capsys.readouterr().out


def test_replay_refuses_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.log"
    write_run(path)
    with pytest.raises(SystemExit):
        cli.main(["replay", str(path), "--early-stopping", "patience"])
    assert "options are KEY=VALUE, got 'patience'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["replay", str(path), "--early-stopping", "paitence=2"])
    assert "unexpected keyword argument 'paitence'" in capsys.readouterr().err
    assert cli.main(["inspect", str(tmp_path / "missing.log")]) == 1
    assert "No such file or directory" in capsys.readouterr().err


def test_tail_prints_the_last_events_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.log"
    write_run(path)
    assert cli.main(["tail", "-n", "2", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line[:30] for line in lines] == ['{"kind":"events_dropped","run"', '{"kind":"train_end","run":"fit']


def test_tail_follows_a_growing_log(tmp_path: Path) -> None:
    path = tmp_path / "live.log"
    log = EventLog(path)
    log.append([events.TrainBegin(run="r")])
    log.flush()
    process = subprocess.Popen(
        [sys.executable, "-m", "eventbus.cli", "tail", "-f", str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert '"kind":"train_begin"' in first

        def append_later() -> None:
            time.sleep(0.3)
            log.append([events.EpochEnd(run="r", epoch=0, logs={"loss": 1.5})])
            log.flush()

        threading.Thread(target=append_later).start()
        second = process.stdout.readline()
        assert '"kind":"epoch_end"' in second and '"loss":1.5' in second
    finally:
        process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()
        log.close()


def test_plot_draws_the_curves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "run.log"
    write_run(path)
    picture = tmp_path / "curves.png"
    assert cli.main(["plot", str(path), "-o", str(picture), "--batches"]) == 0
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out == f"wrote {picture} (2 panels)\n"


def test_plot_says_how_to_install_matplotlib(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "run.log"
    write_run(path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    assert cli.main(["plot", str(path), "-o", str(tmp_path / "x.png")]) == 2
    assert "plotting needs matplotlib: pip install 'keras-eventbus[plot]'" in capsys.readouterr().err


# --- following a live event server ---------------------------------------------------


@contextmanager
def serving(log: Path | None = None, scheme: str = "tcp", **options: Any) -> Iterator[tuple[SocketServer, EventBus]]:
    """A thread-mode bus serving its events on a loopback port (and logging them to ``log``)."""
    with SocketServer(f"{scheme}://127.0.0.1:0", **options) as server, EventBus() as bus:
        if log is not None:
            bus.subscribe(EventLog(log))
        bus.subscribe(server)
        yield server, bus


@pytest.mark.parametrize("scheme", ["tcp", "ws"])
def test_tail_follows_an_event_server_as_it_prints_a_log(
    scheme: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "run.log"
    with ThreadPoolExecutor(1) as pool, serving(path, scheme) as (server, bus):
        url = server.url
        # From the start (--since -1), whether it connects before, during or after the run.
        tailing = pool.submit(cli.main, ["tail", url, "--since", "-1", "-f"])
        for event in run_events():
            bus.publish_nowait(event)
        bus.close()  # the server ends the stream: the tail returns
        assert tailing.result(timeout=5) == 0
        followed = capsys.readouterr()
        # After the close the server still holds the run: --kinds keeps only those kinds.
        assert cli.main(["tail", url, "--since", "-1", "--kinds", "epoch_end,train_end"]) == 0
        filtered = capsys.readouterr()
    assert cli.main(["tail", str(path)]) == 0
    logged = capsys.readouterr().out.splitlines()
    assert len(logged) == 15
    assert followed.out.splitlines() == logged
    assert followed.err == ""
    kept = [line for line in logged if line.startswith(('{"kind":"epoch_end"', '{"kind":"train_end"'))]
    assert len(kept) == 6
    assert filtered.out.splitlines() == kept


def test_tail_reports_events_the_server_no_longer_holds(capsys: pytest.CaptureFixture[str]) -> None:
    with serving(window=5) as (server, bus):
        for epoch in range(20):
            bus.publish_nowait(events.EpochEnd(run="r", epoch=epoch))
        bus.close()
        assert cli.main(["tail", server.url, "--since", "2"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "-- events after seq 2 and before seq 15 are gone --\n"
    assert [line[:29] for line in captured.out.splitlines()] == ['{"kind":"epoch_end","run":"r"'] * 5
    assert ['"epoch":15,' in line for line in captured.out.splitlines()] == [True, False, False, False, False]


def test_tail_of_a_server_says_why_it_was_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with serving(token="s3cret") as (server, _bus):
        assert cli.main(["tail", server.url, "--token", "guess"]) == 1
        assert capsys.readouterr().err == "eventbus tail: the event server refused the connection: wrong token\n"
        assert cli.main(["tail", server.url]) == 1  # no token at all
        assert "wrong token" in capsys.readouterr().err


def test_tail_gives_up_on_a_server_it_cannot_reach(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as bound:  # bound, never listening: every connection is refused
        bound.bind(("127.0.0.1", 0))
        url = f"tcp://127.0.0.1:{bound.getsockname()[1]}"
        started = time.monotonic()
        assert cli.main(["tail", url, "--connect-timeout", "0.5"]) == 1
        assert 0.5 <= time.monotonic() - started < 3
    assert capsys.readouterr().err == f"eventbus tail: cannot reach {url} (no connection within 0.5 s)\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tail", "tcp://127.0.0.1:7878", "-n", "5"], "-n/--lines is for a log file"),
        (["tail", "tcp://127.0.0.1:7878", "--kinds", "epoch_end,epoch_ending"], "unknown event kind 'epoch_ending'"),
        (["tail", "tcp://127.0.0.1", "--since", "-1"], "must name a host and a port"),
        (["tail", "tcp://127.0.0.1:7878", "--connect-timeout", "0"], "--connect-timeout must be > 0"),
        (["tail", "run.log", "--since", "3", "--token", "x"], "--since, --token: only for following a server"),
    ],
)
def test_tail_refuses_options_that_do_not_fit(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_ctrl_c_stops_a_tail_of_a_server_quietly() -> None:
    with serving() as (server, bus):
        bus.publish_nowait(events.TrainBegin(run="r"))
        process = subprocess.Popen(
            [sys.executable, "-m", "eventbus.cli", "tail", server.url, "--since", "-1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            assert '"kind":"train_begin"' in process.stdout.readline()  # connected, waiting for more
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=5)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 130
    assert (out, err) == ("", "")
