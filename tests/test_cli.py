"""The command line over event logs: inspect, tail, replay."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from eventbus import cli, commands, events
from eventbus.log import EventLog


def write_run(path: Path) -> None:
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
    log = EventLog(path)
    log.append(stream)
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
