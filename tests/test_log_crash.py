"""A training process killed with SIGKILL mid-epoch leaves a readable log."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

from eventbus import events
from eventbus.log import EventLog, EventLogWarning

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.path.insert(0, "tests")
    import keras
    from kerasfit import regression_data, regression_model
    from eventbus import EventBus
    from eventbus.adapters.keras import KerasBridge
    from eventbus.log import EventLog

    class Kill(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 3 and batch == 2:
                time.sleep(0.5)  # let the loop write epoch 2's end, as it would while training goes on
                os.kill(os.getpid(), signal.SIGKILL)
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    with EventBus() as bus:
        bus.subscribe(EventLog(sys.argv[1], flush_interval=0.05))
        regression_model().fit(*regression_data(320), epochs=10, batch_size=32, verbose=0,
                               callbacks=[KerasBridge(bus), Kill()])
    """
)


def test_sigkill_mid_epoch_leaves_every_complete_record_readable(tmp_path: Path) -> None:
    path = tmp_path / "killed.log"
    process = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], capture_output=True, timeout=300)
    assert process.returncode == -signal.SIGKILL, process.stderr.decode()[-2000:]
    reader = EventLog.read(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EventLogWarning)  # a torn tail, if the kill landed mid-write
        recorded = list(reader)
    assert [e.seq for e in recorded] == list(range(len(recorded)))  # a gapless prefix of the run
    epoch_ends = [e.epoch for e in recorded if isinstance(e, events.EpochEnd)]
    assert epoch_ends[:3] == [0, 1, 2]  # at or after the last epoch end that was flushed
    assert not any(isinstance(e, events.TrainEnd) for e in recorded)
    if reader.torn is not None:
        assert reader.torn.offset + reader.torn.length == path.stat().st_size
