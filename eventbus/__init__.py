"""keras-eventbus: an event-sourced, asynchronous callback bus for Keras.

``import eventbus`` never imports TensorFlow or Keras; the bridge that does
lives in :mod:`eventbus.adapters.keras`.
"""

from __future__ import annotations

from . import commands as commands
from . import events as events
from . import subscribers as subscribers
from .barrier import Barrier as Barrier
from .bus import BusStatistics as BusStatistics
from .bus import EventBus as EventBus
from .bus import EventBusWarning as EventBusWarning
from .bus import EventStream as EventStream
from .exceptions import BusClosedError as BusClosedError
from .exceptions import BusNotRunningError as BusNotRunningError
from .exceptions import EventBusError as EventBusError
from .exceptions import LoopThreadError as LoopThreadError
from .subscriber import Subscriber as Subscriber
from .subscription import SubscriberStatistics as SubscriberStatistics
from .subscription import Subscription as Subscription

__all__ = [
    "Barrier",
    "BusClosedError",
    "BusNotRunningError",
    "BusStatistics",
    "EventBus",
    "EventBusError",
    "EventBusWarning",
    "EventStream",
    "LoopThreadError",
    "Subscriber",
    "SubscriberStatistics",
    "Subscription",
    "commands",
    "events",
    "subscribers",
]

__version__ = "0.1.0"
