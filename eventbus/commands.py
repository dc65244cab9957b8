"""What subscribers may ask of training.

Subscribers never touch the model. A handler answers an event with ``None``, a
command, or an iterable of commands; the bus records each one as a
:class:`~eventbus.events.CommandIssued` event and hands it to the bridge of the
run the event came from, which applies it on the training thread at the next
hook (at once, for commands answered at a barrier).
"""

from __future__ import annotations

import msgspec

__all__ = [
    "Command",
    "FailTraining",
    "RestoreWeights",
    "SetLearningRate",
    "SnapshotWeights",
    "StopTraining",
]


class _Command(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", gc=False):
    @property
    def kind(self) -> str:
        """The wire tag, e.g. ``"stop_training"``."""
        return type(self).__struct_config__.tag  # type: ignore[return-value]


class StopTraining(_Command, frozen=True, kw_only=True, tag="stop_training"):
    """Stop ``fit`` after the current batch or epoch (stops ``evaluate``/``predict`` too)."""

    reason: str = ""


class SetLearningRate(_Command, frozen=True, kw_only=True, tag="set_learning_rate"):
    """Assign the optimizer's learning rate (a finite float >= 0)."""

    learning_rate: float

    def __post_init__(self) -> None:
        # Schedules often return NumPy scalars; keep the command a plain, encodable float.
        value = self.learning_rate
        if not isinstance(value, (float, bool)) and hasattr(value, "__float__"):
            msgspec.structs.force_setattr(self, "learning_rate", float(value))


class SnapshotWeights(_Command, frozen=True, kw_only=True, tag="snapshot_weights"):
    """Keep a copy of the model's weights under ``tag`` (in memory, on the bridge)."""

    tag: str


class RestoreWeights(_Command, frozen=True, kw_only=True, tag="restore_weights"):
    """Set the model's weights to the snapshot taken under ``tag``."""

    tag: str


class FailTraining(_Command, frozen=True, kw_only=True, tag="fail_training"):
    """Raise ``RuntimeError(message)`` on the training thread: failing hard, opt-in."""

    message: str


Command = StopTraining | SetLearningRate | SnapshotWeights | RestoreWeights | FailTraining
"""Every command: a tagged union, decodable by msgspec."""

COMMAND_TYPES: tuple[type[_Command], ...] = (
    StopTraining,
    SetLearningRate,
    SnapshotWeights,
    RestoreWeights,
    FailTraining,
)
