"""Built-in subscribers: Keras's own callbacks, rebuilt as pure functions of the stream.

Each takes the same arguments as its Keras twin and makes the same decisions,
expressed as commands; none of them ever sees the model.
"""

from __future__ import annotations

from .early_stopping import EarlyStopping as EarlyStopping
from .history import History as History
from .learning_rate_scheduler import LearningRateScheduler as LearningRateScheduler
from .print_logger import PrintLogger as PrintLogger
from .progress import ProgressBar as ProgressBar
from .reduce_lr_on_plateau import ReduceLROnPlateau as ReduceLROnPlateau
from .terminate_on_nan import TerminateOnNaN as TerminateOnNaN

__all__ = [
    "EarlyStopping",
    "History",
    "LearningRateScheduler",
    "PrintLogger",
    "ProgressBar",
    "ReduceLROnPlateau",
    "TerminateOnNaN",
]
