"""Turning a framework's log values into the floats events carry."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["floats_from"]


def floats_from(logs: Mapping[str, object]) -> dict[str, float]:
    """What Keras's ``pythonify_logs`` does: flatten nested dicts, sort the keys,
    ``float()`` each value (a tensor's ``__float__`` reads it from its device),
    and leave out what does not convert."""
    result: dict[str, float] = {}
    for key, value in sorted(logs.items()):
        if isinstance(value, Mapping):
            result.update(floats_from(value))
            continue
        try:
            result[key] = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
    return result
