"""The main job: ``eventbus demo`` trains, prints as the guide does, and reports."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

from eventbus import cli
from eventbus.log import EventLog
from eventbus.summary import summarize


def test_demo_trains_and_reports_what_happened(tmp_path: Path) -> None:
    from eventbus.examples import demo

    out = io.StringIO()
    log = tmp_path / "demo.log"
    assert demo.main(["--epochs", "8", "--patience", "1", "--log", str(log)], out=out) == 0
    text = out.getvalue()
    assert text.startswith("\nEpoch 00000: Learning rate is 0.1000.\nUp to batch 0, the average loss is")
    assert "\nEpoch 00003: Learning rate is 0.0500." in text  # the guide's schedule
    report = text[text.index("== What happened") :]
    ran = int(re.search(r"epochs run: (\d+) of 8", report).group(1))  # type: ignore[union-attr]
    assert text.count("The average loss for epoch") == ran
    assert "commands applied on the training thread:" in report
    assert re.search(r"LossAndErrorPrintingCallback +\d+ +0 +0 +0", report)  # nothing dropped or failed
    assert ran < 8  # the guide's early stopping fires on this seed, and the report says so
    assert "StopTraining(reason='loss has not improved" in report
    assert "RestoreWeights(tag='EarlyStoppingAtMinLoss/best')" in report
    assert "held-out digits: loss" in report
    (summary,) = summarize(EventLog.read(log))  # the log tells the same story
    assert summary.epochs == ran and summary.stopped_by is not None
    assert summary.stopped_by.startswith("EarlyStoppingAtMinLoss: loss has not improved")


def test_the_command_line_explains_itself() -> None:
    assert cli.main([]) == 0
    out = subprocess.run([sys.executable, "-m", "eventbus.cli", "nonsense"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "invalid choice: 'nonsense'" in out.stderr
