"""A base class for subscribers written the way Keras callbacks are: one method per hook.

Any async callable is a subscriber. This class adds the familiar shape: define
``on_epoch_end(self, event)`` (plain or ``async def``) and the instance
subscribes to exactly the kinds it has methods for, so the bus never wakes it
for the rest.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

from .events import BUS_EVENTS, KERAS_EVENTS, Event

__all__ = ["Subscriber"]

_BY_METHOD = {f"on_{cls.__struct_config__.tag}": cls for cls in (*KERAS_EVENTS, *BUS_EVENTS)}


class Subscriber:
    """Subclass and define ``on_<kind>`` methods, e.g. ``on_epoch_end(self, event)``.

    Class attributes read by :meth:`EventBus.subscribe`:

    - ``control``: wait for this subscriber at train and epoch boundaries, so
      its commands apply where a Keras callback's would.
    - ``lossless``: never drop its events.
    """

    control: ClassVar[bool] = False
    lossless: ClassVar[bool] = False
    _methods: dict[type[Event], str] = {}
    """Event class -> method name; set per class, narrowed per instance if needed."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._methods = {
            event_type: method for method, event_type in _BY_METHOD.items() if callable(getattr(cls, method, None))
        }

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def kinds(self) -> tuple[type[Event], ...]:
        """The event classes this subscriber has methods for."""
        return tuple(self._methods)

    async def __call__(self, event: Event) -> Any:
        method_name = self._methods.get(type(event))
        if method_name is None:
            return None
        method: Callable[[Event], Any] = getattr(self, method_name)
        result = method(event)
        if inspect.isawaitable(result):
            result = await result
        return result
