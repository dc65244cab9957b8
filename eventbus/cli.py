"""The ``eventbus`` command line: the demo, and tools over event logs and live event servers."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

import anyio
import msgspec

__all__ = ["main"]

_JSON = msgspec.json.Encoder()

_SUBSCRIBERS_FOR_REPLAY = {
    "early-stopping": "EarlyStopping",
    "reduce-lr-on-plateau": "ReduceLROnPlateau",
    "terminate-on-nan": "TerminateOnNaN",
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if argv[:1] == ["demo"]:  # the demo parses its own options
        return _demo(argv[1:])
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `eventbus tail run.log | head`
        return 0
    except _UsageError as exc:
        parser.error(str(exc))
    except Exception as exc:  # noqa: BLE001 - a tool's errors are messages, not tracebacks
        from .exceptions import EventBusError

        if isinstance(exc, (EventBusError, OSError)):
            print(f"eventbus: {exc}", file=sys.stderr)
            return 1
        raise


class _UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventbus", description="An event-sourced, asynchronous callback bus for Keras."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "demo", help="train the Keras guide's model on the digits data set, with its callbacks on the bus"
    )

    inspect = commands.add_parser("inspect", help="summarize a run's event log")
    inspect.add_argument("log", help="an event log (written by eventbus.log.EventLog)")
    inspect.set_defaults(handler=_inspect)

    tail = commands.add_parser(
        "tail",
        help="print a log's events, or a live event server's, one per line",
        description="Print the events of an event log, or follow a SocketServer's live stream "
        "(`eventbus tail tcp://127.0.0.1:7878`), one JSON object per line. A server's stream is "
        "followed until it ends (the bus closed) or Ctrl-C; reconnections resume where they left off, "
        "and events the server no longer holds are reported on stderr.",
    )
    tail.add_argument(
        "log", metavar="LOG|URL", help="an event log, or tcp://host:port (or ws://host:port) of a SocketServer"
    )
    tail.add_argument(
        "-f", "--follow", action="store_true", help="keep printing events as they are appended (implied for a URL)"
    )
    tail.add_argument(
        "-n", "--lines", type=int, default=None, help="only the last N events (before following); logs only"
    )
    server = tail.add_argument_group("following a server (tcp:// or ws://host:port)")
    server.add_argument(
        "--since",
        type=int,
        default=None,
        metavar="SEQ",
        help="start after the event with this seq (-1: everything the server holds); default: live events only",
    )
    server.add_argument(
        "--kinds", default=None, metavar="KIND,...", help="only these event kinds, e.g. epoch_end,train_end"
    )
    server.add_argument("--token", default=None, help="the server's token, if it has one")
    server.add_argument(
        "--connect-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up if no connection succeeds within this time (default 10)",
    )
    tail.set_defaults(handler=_tail)

    replay = commands.add_parser(
        "replay",
        help="what if: replay a log through differently configured subscribers",
        description="Replay a log through subscribers configured as given, e.g. "
        "`eventbus replay run.log --early-stopping patience=5 monitor=val_loss`, "
        "and print what they would have decided. Nothing is trained.",
    )
    replay.add_argument("log")
    for flag in _SUBSCRIBERS_FOR_REPLAY:
        replay.add_argument(f"--{flag}", nargs="*", metavar="KEY=VALUE", action="append", default=None)
    replay.set_defaults(handler=_replay)

    plot = commands.add_parser("plot", help="draw a run's loss and metrics per epoch into a PNG (needs matplotlib)")
    plot.add_argument("log")
    plot.add_argument("-o", "--output", default="curves.png", help="the picture to write (default curves.png)")
    plot.add_argument("--batches", action="store_true", help="also draw the loss of every training batch")
    plot.set_defaults(handler=_plot)
    return parser


def _demo(argv: list[str]) -> int:
    try:
        demo = importlib.import_module("eventbus.examples.demo")
    except ImportError as exc:
        print(
            f"eventbus demo needs TensorFlow and scikit-learn ({exc}); "
            "install them with: pip install 'keras-eventbus[demo]'",
            file=sys.stderr,
        )
        return 2
    return int(demo.main(argv))


def _inspect(args: argparse.Namespace) -> int:
    from .log import EventLog
    from .summary import summarize

    reader = EventLog.read(args.log)
    summaries = summarize(reader)
    if reader.torn is not None:
        print(f"note: the log ends in a torn record at byte {reader.torn.offset} ({reader.torn.reason})")
    if not summaries:
        print("no runs in this log")
    for summary in summaries:
        print(f"{summary.kind} {summary.run}")
        if summary.kind == "fit":
            planned = f" of {summary.planned_epochs}" if summary.planned_epochs else ""
            print(f"  epochs: {summary.epochs}{planned}")
            if summary.stopped_by:
                print(f"  stopped early by {summary.stopped_by}")
            elif summary.finished:
                print("  ran to the end")
            else:
                print("  did not finish: the log ends inside the run")
            for name, best in summary.best.items():
                print(f"  best {name}: {best.value:.6g} at epoch {best.epoch} ({best.direction})")
        elif summary.last_logs:
            print("  " + ", ".join(f"{k}: {v:.6g}" for k, v in summary.last_logs.items()))
        if summary.applied:
            print("  commands applied: " + ", ".join(f"{n} x {k}" for k, n in summary.applied.items()))
        for rejected in summary.rejected:
            print(f"  command rejected: {rejected}")
        for name, count in summary.dropped.items():
            print(f"  {name} dropped {count} batch events")
        for name, count in summary.failures.items():
            print(f"  {name} failed {count} times")
    return 0


def _line(event: Any) -> str:
    """An event as ``eventbus tail`` prints it: one JSON object, ``kind`` first."""
    return _JSON.encode(event).decode()


def _tail(args: argparse.Namespace) -> int:
    from collections import deque

    from .log import EventLog

    if args.log.startswith(("tcp://", "ws://")):
        return _tail_server(args)
    given = [f"--{name.replace('_', '-')}" for name in _SERVER_OPTIONS if getattr(args, name) is not None]
    if given:
        raise _UsageError(f"{', '.join(given)}: only for following a server (tcp:// or ws://), not a log file")
    reader = EventLog.read(args.log)
    if args.follow:
        events = reader.follow()
        if args.lines is not None:  # the last N of what is there, then follow
            existing = list(EventLog.read(args.log))
            skip = max(0, len(existing) - args.lines)
            for index, event in enumerate(events):
                if index >= skip:
                    print(_line(event), flush=True)
                if index + 1 >= len(existing):
                    break
        for event in events:
            print(_line(event), flush=True)
        return 0
    selected: Any = deque(reader, maxlen=args.lines) if args.lines is not None else reader
    for event in selected:
        print(_line(event))
    return 0


_SERVER_OPTIONS = ("since", "kinds", "token", "connect_timeout")


def _tail_server(args: argparse.Namespace) -> int:
    """Follow a SocketServer's stream until it ends; ``-f`` is implied."""
    # eventbus.adapters is the top-level adapters/ folder, mapped by setuptools; mypy sees it as `adapters`.
    from .adapters.sockets import RefusedError, connect  # type: ignore[import-not-found,unused-ignore]

    if args.lines is not None:
        raise _UsageError("-n/--lines is for a log file: a server's stream has no last N; use --since SEQ")
    timeout = 10.0 if args.connect_timeout is None else args.connect_timeout
    if not timeout > 0:
        raise _UsageError(f"--connect-timeout must be > 0 seconds, got {timeout}")
    kinds = None if args.kinds is None else [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    try:
        client = connect(args.log, since=args.since, kinds=kinds, token=args.token, on_gap="skip")
    except (ValueError, TypeError) as exc:  # a bad URL, an unknown kind
        raise _UsageError(str(exc)) from exc

    async def follow() -> int:
        reached = True
        failure: Exception | None = None
        gaps = dropped = 0

        def report() -> None:  # what the client noted since the last event, before the next one
            nonlocal gaps, dropped
            for gap in client.gaps[gaps:]:
                print(f"-- events after seq {gap.after} and before seq {gap.first} are gone --", file=sys.stderr)
            gaps = len(client.gaps)
            if client.dropped > dropped:
                print(f"-- {client.dropped - dropped} batch events dropped: this tail fell behind --", file=sys.stderr)
                dropped = client.dropped

        async def give_up_unless_connected(scope: anyio.CancelScope) -> None:
            nonlocal reached
            await anyio.sleep(timeout)
            if client.connections == 0:
                reached = False
                scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(give_up_unless_connected, tg.cancel_scope)
            try:  # errors leave the task group as themselves, not in an exception group
                async with client:
                    async for event in client:
                        report()
                        print(_line(event), flush=True)
                    report()
            except Exception as exc:  # noqa: BLE001 - re-raised below
                failure = exc
            tg.cancel_scope.cancel()
        if isinstance(failure, RefusedError):
            print(f"eventbus tail: {failure}", file=sys.stderr)
            return 1
        if failure is not None:
            raise failure
        if not reached:
            print(f"eventbus tail: cannot reach {args.log} (no connection within {timeout:g} s)", file=sys.stderr)
            return 1
        return 0

    return anyio.run(follow, backend="asyncio")


def _replay(args: argparse.Namespace) -> int:
    from . import subscribers
    from .replay import replay

    chosen = []
    for flag, class_name in _SUBSCRIBERS_FOR_REPLAY.items():
        for options in getattr(args, flag.replace("-", "_")) or []:
            kwargs = dict(_option(item) for item in options)
            try:
                chosen.append(getattr(subscribers, class_name)(**kwargs))
            except TypeError as exc:
                raise _UsageError(f"--{flag}: {exc}") from exc
    if not chosen:
        raise _UsageError("name at least one subscriber to replay through, e.g. --early-stopping patience=5")
    result = anyio.run(replay, args.log, *chosen)
    print(f"replayed {result.events} events through {', '.join(type(s).__name__ for s in chosen)}")
    for run, epoch in result.stopped_at.items():
        print(f"{run}: would have stopped at epoch {epoch} (Keras prints: Epoch {epoch + 1}: early stopping)")
    for subscriber in chosen:
        if isinstance(subscriber, subscribers.EarlyStopping):
            if not subscriber.stopped_epoch:
                print("EarlyStopping: would not have stopped within the recorded epochs")
            print(f"EarlyStopping: best epoch {subscriber.best_epoch} ({subscriber.monitor} = {subscriber.best})")
    for replayed in result.commands:
        where = f"epoch {replayed.epoch}" if replayed.epoch is not None else "start"
        print(f"  {replayed.run} {where}: {replayed.subscriber} -> {_describe(replayed.command)}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from .log import EventLog
    from .plot import MissingExtraError, plot_curves

    try:
        panels = plot_curves(EventLog.read(args.log), args.output, batches=args.batches)
    except (MissingExtraError, ValueError) as exc:
        print(f"eventbus plot: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} ({panels} panels)")
    return 0


def _option(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise _UsageError(f"options are KEY=VALUE, got {item!r}")
    value: Any
    try:
        value = msgspec.json.decode(raw)  # numbers, true/false, null
    except msgspec.DecodeError:
        value = raw  # a bare string, such as monitor=val_loss
    return key.replace("-", "_"), value


def _describe(command: Any) -> str:
    fields = ", ".join(f"{name}={getattr(command, name)!r}" for name in command.__struct_fields__)
    return f"{type(command).__name__}({fields})"


if __name__ == "__main__":
    raise SystemExit(main())
