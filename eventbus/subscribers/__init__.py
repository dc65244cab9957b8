"""Built-in subscribers: Keras's own callbacks, rebuilt as pure functions of the stream."""

from __future__ import annotations

__all__: list[str] = []
