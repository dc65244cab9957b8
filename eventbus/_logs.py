"""Turning a framework's log values into the floats events carry, and float32 as Keras keeps it."""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping

__all__ = ["float32", "floats_from"]


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


def float32(value: float) -> float:
    """``value`` rounded to the nearest float32, as a Python float."""
    try:
        return struct.unpack("f", struct.pack("f", value))[0]  # type: ignore[no-any-return]
    except OverflowError:
        return math.copysign(math.inf, value)
